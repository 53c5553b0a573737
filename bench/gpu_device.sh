#!/usr/bin/env bash
# Runs tabula's GPU checks on a machine with a CUDA device, from binaries built elsewhere.
#
# The build machine (no GPU) packs the binaries and the shared libraries they need (except glibc and the CUDA
# libraries, which the GPU machine has) into one folder:
#     bench/gpu_device.sh pack build .devbin
# and the GPU machine, in a copy of the source tree with that folder beside it, runs
#     bench/gpu_device.sh run .devbin OUT_DIR [STEPS]
# STEPS (default "tests bench"): any of
#     tests    every Gpu*/Cuda* test (ctest label gpu) plus the model tests that take --device cuda, the device
#              preprocessing kernels against the CPU path (test_data) and `embed --preprocess device` (test_cli)
#     sanitize the Gpu* op tests under compute-sanitizer memcheck; the device preprocessing kernels under memcheck,
#              racecheck (the radix select's shared-memory histograms) and synccheck
#     bench    the Gpu op micro-benchmarks (TFLOP/s per op and precision)
#     prep     embed --preprocess cpu vs device, same run, on JUMP-like fields (64 fields of 5 x 1080^2 u16, deflate
#              TIFF, illumination; ResNet-50 bf16, percentiles, per-channel): fields/s, embed's busy breakdown, and
#              whether the two embeddings are byte-identical (they should be: same inputs, same forward)
#     compare  bench/gpu_compare.py: tabula vs PyTorch eager (+ torch.compile unless NO_COMPILE=1) in one run
#     giant    DINOv2 ViT-g/14 (dinov2_vitg14) forwards in bf16 (tabula bench, batch GIANT_BATCH, default 32)
#     profile  device time per op (TABULA_CUDA_PROFILE) of `tabula bench` for PROFILE_ARCHS (default resnet50 and
#              vit_base_patch16_224) at batch PROFILE_BATCH (256) in PROFILE_PRECISION (bf16), eager forwards
# Logs land in OUT_DIR (gtest.log, sanitize.log, bench_ops.log, gpu_compare.md/.json).
set -u

pack() {
  local build=$1 dest=$2
  rm -rf "$dest" && mkdir -p "$dest/lib"
  # libtabula_cuda.so: the CUDA backend `tabula` loads from beside itself (engine/cuda_module.h).
  cp "$build/tabula" "$build/libtabula_cuda.so" "$build/tests/test_engine" "$build/tests/test_models" \
     "$build/tests/test_data" "$build/tests/test_cli" "$build/tabula_bench_ops" "$dest/" 2>/dev/null
  # Every shared library the binaries load, except glibc's and CUDA's (taken from the GPU machine).
  ldd "$dest"/tabula "$dest"/libtabula_cuda.so "$dest"/test_* "$dest"/tabula_bench_ops | awk '/=> \//{print $1, $3}' | sort -u |
    grep -vE '^(libc|libm|libdl|libpthread|librt|libresolv|libcudart|libcublasLt|libcublas|libcudnn[a-z_]*)\.so' |
    while read -r _ path; do cp -L "$path" "$dest/lib/"; done
  du -sh "$dest"
}

find_cuda_libs() {
  # cuDNN and cuBLAS(Lt) from the toolkit or from PyTorch's pip wheels, whichever the machine has.
  local dirs="" f
  for lib in libcudnn.so.9 libcublasLt.so.13 libcudart.so.13; do
    f=$(find /usr/local/cuda*/ /usr/lib/x86_64-linux-gnu /opt /usr/local/lib -name "$lib" 2>/dev/null | head -1)
    [ -n "$f" ] && dirs="$dirs:$(dirname "$f")" || echo "gpu_device.sh: $lib not found on this machine" >&2
  done
  echo "${dirs#:}"
}

run() {
  local bin=$1 out=$2 steps=${3:-tests bench}
  bin=$(cd "$bin" && pwd)
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$bin/lib:$(find_cuda_libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export TABULA_FIXTURES="$PWD/tests/fixtures" TABULA_BINARY="$bin/tabula" TABULA_TEST_TMP=/tmp/tabula-tests
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/device.txt"
  "$bin/tabula" --version | tee -a "$out/device.txt"
  if ldd "$bin/tabula" | grep -q "not found"; then ldd "$bin/tabula" | grep "not found"; fi
  for step in $steps; do
    echo "=== $step ($(date +%T))"
    case $step in
      tests)
        timeout 300 "$bin/test_engine" --gtest_filter='Gpu*:Cuda*' 2>&1 | tee "$out/gtest.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |OK \]|Failure|error|rel|abs" | head -150
        [ -x "$bin/test_models" ] && timeout 300 "$bin/test_models" --gtest_filter='Gpu*' 2>&1 | tee -a "$out/gtest.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |OK \]|Failure|error" | head -80
        # Device preprocessing: the kernels bit for bit against data/preprocess, then embed --preprocess device vs cpu.
        [ -x "$bin/test_data" ] && timeout 120 "$bin/test_data" --gtest_filter='GpuDevicePreprocess*:Device*' 2>&1 |
          tee -a "$out/gtest.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |OK \]|Failure|error|differ" | head -40
        [ -x "$bin/test_cli" ] && timeout 120 "$bin/test_cli" --gtest_filter='GpuCliDevicePreprocess*' 2>&1 |
          tee -a "$out/gtest.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |OK \]|Failure|error" | head -20
        ;;
      sanitize)
        timeout 240 compute-sanitizer --tool memcheck --print-limit 20 "$bin/test_engine" --gtest_filter='GpuOps*:GpuDevice*:Gpu/GpuOpCases*' >"$out/sanitize.log" 2>&1
        grep -E "ERROR SUMMARY|Invalid|FAILED|PASSED" "$out/sanitize.log" | head -40
        # The device preprocessing kernels (engine/cuda/preprocess.cu): out-of-bounds / uninitialised reads,
        # shared-memory races in the radix histograms, barrier misuse.
        for tool in memcheck racecheck synccheck; do
          timeout 150 compute-sanitizer --tool $tool --print-limit 20 "$bin/test_data" \
            --gtest_filter='GpuDevicePreprocess.KernelsEqualCpuPathBitForBit' >"$out/sanitize_preprocess_$tool.log" 2>&1
          echo "preprocess $tool:"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|Race|FAILED|PASSED" \
            "$out/sanitize_preprocess_$tool.log" | head -20
        done
        ;;
      prep)
        local w=/tmp/tabula-devprep
        [ -f "$w/cp/load_data.csv" ] || "$bin/tabula" synth cellpainting --out "$w/cp" --batches 1 --plates 1 \
          --sites 2 --size 1080 >/dev/null
        local fields=$(( $(wc -l <"$w/cp/load_data.csv") - 1 ))
        for where in cpu device cpu device; do
          local t0=$(date +%s.%N)
          timeout 200 "$bin/tabula" embed --arch resnet50 --seed 0 --device cuda --precision bf16 --batch 80 \
            --intensity percentile --data "$w/cp/load_data.csv" --out "$w/out-$where" --force --preprocess $where \
            >/dev/null 2>"$w/err-$where" || tail -3 "$w/err-$where"
          local t1=$(date +%s.%N)
          awk -v w=$where -v n=$fields -v a="$t0" -v b="$t1" \
            'BEGIN { printf "%s: %d fields in %.1f s = %.2f fields/s; ", w, n, b - a, n / (b - a) }'
          grep "model busy" "$w/err-$where" | sed 's/^tabula embed: //' || echo "(no summary: see $w/err-$where)"
        done | tee "$out/prep.log"
        cmp "$w/out-cpu/avgpool.npy" "$w/out-device/avgpool.npy" &&
          echo "prep: embeddings byte-identical" | tee -a "$out/prep.log"
        ;;
      bench)
        timeout 240 "$bin/tabula_bench_ops" --benchmark_filter=Gpu --benchmark_min_time=0.05 2>&1 | tee "$out/bench_ops.log" | tail -80
        ;;
      giant)
        timeout 150 "$bin/tabula" bench dinov2_vitg14 --device cuda --precision bf16 --batch "${GIANT_BATCH:-32}" \
          --iters 3 --warmup 1 2>&1 | tee "$out/giant.log"
        ;;
      profile)
        for a in ${PROFILE_ARCHS:-resnet50 vit_base_patch16_224}; do
          TABULA_CUDA_PROFILE=1 timeout 120 "$bin/tabula" bench "$a" --device cuda --precision "${PROFILE_PRECISION:-bf16}" \
            --batch "${PROFILE_BATCH:-256}" --iters 3 --warmup 1 2>&1 | tee -a "$out/profile.log" | head -40
        done
        ;;
      compare)
        PYTHONUNBUFFERED=1 timeout 500 python3 bench/gpu_compare.py --tabula "$bin/tabula" --out "$out/gpu_compare.md" \
          ${NO_COMPILE:+--no-compile} ${COMPARE_ARGS:-} 2>&1 | tee "$out/compare.log" | grep -v '^{' 
        ;;
    esac
  done
}

case ${1:-} in
  pack) pack "$2" "$3" ;;
  run) run "$2" "$3" "${4:-}" ;;
  *) echo "usage: $0 pack BUILD_DIR DEST | run BIN_DIR OUT_DIR [STEPS]" >&2; exit 2 ;;
esac
