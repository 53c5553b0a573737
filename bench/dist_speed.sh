#!/usr/bin/env bash
# Same-run CPU speed of two tabula binaries (the dist tarball's vs the build tree's, bench/RESULTS.md), interleaved
# so that both see the same machine load: ROUNDS rounds of `tabula bench ARCH` with each binary in turn.
#   bash bench/dist_speed.sh DIST_BIN BUILD_BIN [ARCH] [ROUNDS]
# Prints per round the process CPU time and median wall time per batch of each, and their ratios (dist/build).
set -euo pipefail
a=${1:?usage: dist_speed.sh DIST_BIN BUILD_BIN [ARCH] [ROUNDS]}
b=${2:?usage: dist_speed.sh DIST_BIN BUILD_BIN [ARCH] [ROUNDS]}
arch=${3:-resnet50}
rounds=${4:-3}
args=(bench "$arch" --batch 16 --threads 2 --iters 3 --warmup 1)
# "...: 1234.5 ms/batch (median; min 1200.1; cpu 2400.3), ..." -> "1234.5 2400.3"
measure() {
  "$1" "${args[@]}" 2>&1 | sed -n 's/.*: \([0-9.]*\) ms\/batch (median; min [0-9.]*; cpu \([0-9.]*\)).*/\1 \2/p'
}
echo "round  dist wall/cpu ms  build wall/cpu ms  ratio wall  ratio cpu  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for r in $(seq 1 "$rounds"); do
  read -r aw ac < <(measure "$a")
  read -r bw bc < <(measure "$b")
  awk -v r="$r" -v aw="$aw" -v ac="$ac" -v bw="$bw" -v bc="$bc" \
    'BEGIN { printf "%5d  %7.1f / %7.1f  %7.1f / %7.1f  %10.3f  %9.3f\n", r, aw, ac, bw, bc, aw / bw, ac / bc }'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
