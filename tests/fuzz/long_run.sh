#!/usr/bin/env bash
# The long fuzz campaign (issue #11: each target >= 10 million executions or 30 minutes): every libFuzzer target in
# BUILD/fuzz (a `make fuzz` build), one after the other, each until FUZZ_RUNS executions or SECONDS of wall time,
# whichever comes first, on a scratch copy of its corpus, niced so that it yields to interactive work. Prints one
# line per target (executions, wall and CPU time, exec/s, corpus size, peak RSS, result, libFuzzer's last line) for
# bench/RESULTS_fuzz.md. A crash stops that target; its reproducer stays in the scratch folder printed at the start
# (see tests/fuzz/findings/).
# Usage: bash tests/fuzz/long_run.sh [BUILD] [SECONDS] [TARGETS...]    (env FUZZ_RUNS, default 10000000)
set -uo pipefail
build=$(realpath "${1:-build-fuzz}") seconds=${2:-1800}
shift 2 || true
runs=${FUZZ_RUNS:-10000000}
src=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(npy safetensors checkpoint image tiff jp2 json csv relationships arch cli_args)
work=$(mktemp -d "${TMPDIR:-/tmp}/tabula-fuzz-long.XXXXXX")
echo "fuzz campaign: until ${runs} executions or ${seconds}s per target, scratch $work, started $(date -u +%H:%M:%S)," \
     "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus"
  cp -r "$src/corpus/$t"/. "$work/$t/corpus/" 2>/dev/null || true
  seeds=$(ls "$work/$t/corpus" | wc -l)
  load0=$(cut -d' ' -f1 /proc/loadavg)
  # /usr/bin/time -o: wall seconds, user and system CPU seconds of the fuzzer (libFuzzer runs in-process here).
  (cd "$work/$t" && /usr/bin/time -o times -f "%e %U %S" nice -n 19 "$build/fuzz/fuzz_$t" -runs="$runs" \
     -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 corpus >log 2>&1)
  rc=$?
  stat() { grep -o "stat::$1: *[0-9]*" "$work/$t/log" | grep -o '[0-9]*$'; }
  read -r wall user sys < <(tail -n1 "$work/$t/times")
  units=$(ls "$work/$t/corpus" | wc -l)
  bytes=$(du -sk "$work/$t/corpus" | cut -f1)
  result=$([ $rc -eq 0 ] && echo "no crash/leak/UB" ||
           echo "FAILED rc=$rc: $(ls "$work/$t" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | head -3 | tr '\n' ' ')")
  done_line=$(grep -E '^Done [0-9]+ runs' "$work/$t/log" | tail -n1)
  echo "$t: $(stat number_of_executed_units) execs, ${wall}s wall, $(awk "BEGIN{print $user+$sys}")s CPU," \
       "$(stat average_exec_per_sec) exec/s, corpus ${seeds} -> ${units} files (${bytes} KiB), peak RSS" \
       "$(stat peak_rss_mb) MB, load ${load0} -> $(cut -d' ' -f1 /proc/loadavg), ${result}; libFuzzer: ${done_line}"
done
echo "finished $(date -u +%H:%M:%S), load: $(cut -d' ' -f1-3 /proc/loadavg)"
