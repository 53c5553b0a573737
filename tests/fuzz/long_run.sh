#!/usr/bin/env bash
# The long fuzz campaign: every libFuzzer target in BUILD/fuzz (a `make fuzz` build), one after the other, each for
# SECONDS on a scratch copy of its corpus, niced so that it yields to interactive work. Prints one line per target
# (executions, exec/s, corpus size, peak RSS, result) for tests/fuzz/README.md / bench/RESULTS_fuzz.md. A crash
# stops that target; its reproducer stays in the scratch folder printed at the end (see tests/fuzz/findings/).
# Usage: bash tests/fuzz/long_run.sh [BUILD] [SECONDS] [TARGETS...]
set -uo pipefail
build=$(realpath "${1:-build-fuzz}") seconds=${2:-300}
shift 2 || true
src=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(npy safetensors checkpoint image csv relationships arch cli_args)
work=$(mktemp -d "${TMPDIR:-/tmp}/tabula-fuzz-long.XXXXXX")
echo "fuzz campaign: ${seconds}s per target, scratch $work, started $(date -u +%H:%M:%S), load: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus"
  cp -r "$src/corpus/$t"/. "$work/$t/corpus/" 2>/dev/null || true
  (cd "$work/$t" && nice -n 19 "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 \
     -print_final_stats=1 corpus >log 2>&1)
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t/log" | grep -o '[0-9]*$')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$work/$t/log" | grep -o '[0-9]*$')
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$work/$t/log" | grep -o '[0-9]*$')
  units=$(ls "$work/$t/corpus" | wc -l)
  result=$([ $rc -eq 0 ] && echo "no crash" || echo "FAILED rc=$rc: $(ls "$work/$t" | grep -E '^(crash|leak|timeout|oom)-' | head -3 | tr '\n' ' ')")
  echo "$t: ${execs:-?} execs, ${rate:-?} exec/s, corpus ${units} files, peak RSS ${rss:-?} MB, ${result}"
done
echo "finished $(date -u +%H:%M:%S), load: $(cut -d' ' -f1-3 /proc/loadavg)"
