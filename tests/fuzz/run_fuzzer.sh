#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time on a scratch copy of its corpus (the committed corpus is only
# read). A crash leaves crash-* files in the scratch folder and fails the test; copy the file into
# tests/fuzz/corpus/<name>/ once fixed, so it stays a regression test. Usage: run_fuzzer.sh BINARY CORPUS SECONDS
set -euo pipefail
bin=$1 corpus=$2 seconds=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/tabula-fuzz.XXXXXX")
mkdir -p "$work/corpus"
cp -r "$corpus"/. "$work/corpus/" 2>/dev/null || true
cd "$work"
"$bin" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 corpus
echo "fuzz: $(basename "$bin") ran ${seconds}s without a crash (scratch: $work)"
