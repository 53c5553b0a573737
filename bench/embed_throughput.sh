#!/usr/bin/env bash
# Issue #6's throughput criterion, end to end: does decoding + preprocessing 5-channel 16-bit 1080 x 1080 fields
# into 224 crops keep ResNet-50 on 2 CPU threads busy? Runs, alternately and REPEAT times each:
#   e2e    tabula embed on the TIFF fields (2 decode workers + the model's 2 threads, prefetching)
#   model  tabula embed on the same model inputs already preprocessed into a .npy (the model alone)
# and prints embed's own breakdown (model busy %, forward / waiting / writing seconds) plus inputs/s of both;
# e2e inputs/s over model inputs/s is the fraction of the model's own speed the pipeline sustains.
# Usage: bash bench/embed_throughput.sh [BUILD_DIR] [WORK_DIR] [REPEAT]
set -euo pipefail
build=${1:-build} work=${2:-/tmp/tabula-embed-throughput} repeat=${3:-2}
tabula=$(realpath "$build/tabula")
mkdir -p "$work"
if [ ! -f "$work/cp/load_data.csv" ]; then
  # 1 batch x 1 plate x 1 site: 32 wells (fields), 5 channels of 1080 x 1080 u16, deflate TIFF, illumination files.
  "$tabula" synth cellpainting --out "$work/cp" --batches 1 --plates 1 --sites 1 --size 1080
fi
if [ ! -f "$work/x.npy" ]; then
  "$tabula" preprocess --data "$work/cp/load_data.csv" --out "$work/x.npy" --preset torchvision --channels per-channel
fi
echo "load: $(uptime)"
for i in $(seq "$repeat"); do
  for mode in e2e model; do
    data=$([ $mode = e2e ] && echo "$work/cp/load_data.csv" || echo "$work/x.npy")
    start=$(date +%s.%N)
    # stdout: "OUT: N rows; avgpool [D] (S s)"; stderr: the progress lines and the "model busy" breakdown.
    summary=$("$tabula" embed --arch resnet50 --seed 0 --threads 2 --batch 16 --data "$data" --out "$work/out-$mode" \
      --force 2>"$work/err-$mode")
    end=$(date +%s.%N)
    grep "model busy" "$work/err-$mode" | sed "s/^tabula embed: /$mode: /"
    # Model inputs = rows x (avgpool width / 2048): 5 per field under per-channel, 1 per .npy row.
    echo "$summary" | awk -v m=$mode -v s="$start" -v e="$end" '{
      rows = $2; match($0, /\[[0-9]+\]/); d = substr($0, RSTART + 1, RLENGTH - 2); n = rows * d / 2048;
      printf "%s: %d model inputs (3x224x224) in %.1f s = %.2f inputs/s\n", m, n, e - s, n / (e - s) }'
  done
done
echo "load: $(uptime)"
