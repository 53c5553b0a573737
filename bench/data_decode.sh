#!/usr/bin/env bash
# Issue #22, "decode at the I/O limit": CPU cost of decoding and preprocessing JUMP-like fields (5 single-channel
# 1080 x 1080 uint16 TIFFs per field, uncompressed / deflate + predictor / LZW + predictor / deflate without predictor,
# illumination .npy per channel), for two builds
# in the same run, alternately, so that before/after ratios share the machine's load:
#   1. bench_data.cpp's Google Benchmark cases (process CPU time per field: decode only, load_sample, load +
#      cpg0016-style preprocessing, percentile scaling alone, staging for --preprocess device; a case the before build
#      lacks shows 0.00), REPEAT rounds of each binary;
#   2. `tabula preprocess` on the same 32-field folders (2 worker threads; CPU seconds and wall per field), the
#      model inputs written once per build and compared byte for byte.
# Usage: bash bench/data_decode.sh BEFORE_BUILD AFTER_BUILD [REPEAT] [PARTS]
#        (PARTS: gb,preprocess by default; each build dir holds tabula and tabula_bench_ops;
#        fields are written once to $BENCH_DATA_DIR, default /tmp/tabula-bench-data)
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bash bench/data_decode.sh BEFORE_BUILD AFTER_BUILD [REPEAT] [PARTS]" >&2; exit 2; }
before=$(realpath "$1") after=$(realpath "$2") repeat=${3:-2} parts=${4:-gb,preprocess}
export BENCH_DATA_DIR=${BENCH_DATA_DIR:-/tmp/tabula-bench-data}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "load: $(uptime)"
if [[ $parts == *gb* ]]; then
# Google Benchmark CSV: name,iterations,real_time,cpu_time,time_unit,... (times in ms per field).
for i in $(seq "$repeat"); do
  for b in before after; do
    dir=$([ $b = before ] && echo "$before" || echo "$after")
    "$dir/tabula_bench_ops" --benchmark_filter='BM_Data(Decode|Load|Preprocess|Stage)Field/|BM_DataPercentile' \
      --benchmark_min_time=1 --benchmark_format=csv 2>/dev/null |
      awk -F, -v b=$b '/^"BM_Data/ { gsub(/"/, "", $1); sub(/\/process_time/, "", $1); print b "," $1 "," $4 }' \
      >> "$work/gb.csv"
  done
done
echo
echo "CPU ms per field (median of $repeat rounds; process CPU time)"
printf "%-36s %10s %10s %8s\n" case before after ratio
awk -F, '{ v[$2 "," $1] = v[$2 "," $1] " " $3; names[$2] = 1 }
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  END { for (c in names) { x = median(v[c ",before"]); y = median(v[c ",after"]);
    printf "%-36s %10.2f %10.2f %7.2fx\n", c, x, y, x / y } }' "$work/gb.csv" | sort
fi
[[ $parts == *preprocess* ]] || exit 0
echo
echo "tabula preprocess, 32 fields, --threads 2 (cpg0016-style: percentile 1/99, resize 224, crop 224, per-channel)"
for codec in none deflate lzw deflate_nopred; do
  [ -f "$BENCH_DATA_DIR/$codec/load_data.csv" ] || continue  # deflate_nopred: written by the after build's bench
  for i in $(seq "$repeat"); do
    for b in before after; do
      dir=$([ $b = before ] && echo "$before" || echo "$after")
      out="$work/$b-$codec.npy"
      start=$(date +%s.%N)
      /usr/bin/time -f "%U %S" -o "$work/time" "$dir/tabula" preprocess --data "$BENCH_DATA_DIR/$codec/load_data.csv" \
        --out "$out" --preset torchvision --resize 224 --crop 224 --intensity percentile --threads 2 >/dev/null 2>&1
      cpu=$(tail -1 "$work/time")
      end=$(date +%s.%N)
      echo "$cpu" | awk -v b=$b -v c=$codec -v s="$start" -v e="$end" '{
        printf "  %-7s %-6s %.3f CPU-s per field (user %.1f s, sys %.1f s), %.1f fields/s wall\n",
          c, b, ($1 + $2) / 32, $1, $2, 32 / (e - s) }'
    done
  done
  cmp -s "$work/before-$codec.npy" "$work/after-$codec.npy" && echo "  $codec: model inputs byte-identical" ||
    echo "  $codec: MODEL INPUTS DIFFER"
done
echo "load: $(uptime)"
