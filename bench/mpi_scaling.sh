#!/usr/bin/env bash
# 1 vs N MPI ranks on this machine, same run, same inputs (issue #10): `tabula embed` and `tabula eval map`, each
# checked byte-identical to the single-process output, plus the per-stage costs the JUMP-scale model in
# bench/RESULTS_mpi.md is built from. Usage:
#   bash bench/mpi_scaling.sh [BUILD_DIR] [RANKS]     (defaults: build, 2)
# Needs mpirun (openmpi-bin) and a tabula built with MPI; python3 with numpy for the eval-map input.
set -euo pipefail
BUILD=${1:-build}
NP=${2:-2}
TABULA=$(readlink -f "$BUILD/tabula")
PY=${PYTHON:-/work/venv/bin/python}
[ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/tabula-mpi-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
MPIRUN="mpirun --allow-run-as-root --oversubscribe -np $NP"
secs() { local t0=$(date +%s.%N); "$@" >/dev/null 2>"$W/last.err" || { cat "$W/last.err"; exit 1; }; echo "$(date +%s.%N) - $t0" | bc; }
same() { for f in "$@"; do cmp -s "$W/one/$f" "$W/many/$f" || { echo "DIFFERENT: $f"; exit 1; }; done; echo identical; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$TABULA" --version | grep -i mpi || true

# ---- embed: ResNet-18 (untrained, seed 0), 32 fields x 5 channels of 256 px, per-channel 224 crops ------------------
"$TABULA" synth cellpainting --out "$W/cp" --batches 1 --plates 1 --sites 1 --seed 1 >/dev/null 2>&1
ROWS=$(($(wc -l < "$W/cp/load_data.csv") - 1))
E="embed --arch resnet18 --seed 0 --data $W/cp/load_data.csv --layers layer3,avgpool --batch 5 --quiet"   # batch 5: 4-field chunks, 8 of them, 4 per rank
t1=$(secs "$TABULA" $E --out "$W/one" --threads "$NP")
tn=$(secs $MPIRUN "$TABULA" $E --out "$W/many")   # each rank: its share of the cores (1 thread here)
echo "embed resnet18, $ROWS fields x 5 channels: 1 process x $NP threads ${t1}s, $NP ranks x 1 thread ${tn}s," \
     "speed-up $(echo "scale=2; $t1 / $tn" | bc); $(same layer3.npy avgpool.npy index.csv)"
# run.json differs only in "threads" (here: 2 vs 1 per rank)
rm -rf "$W/one" "$W/many"

# ---- eval map: 10,000 profiles x 256 features, 200 compounds x 50 replicates over 25 plates -----------
"$PY" - "$W" <<'EOF'
import sys, numpy as np
w = sys.argv[1]
rng = np.random.default_rng(0)
n, d, comps, plates = 10000, 256, 200, 25
comp = np.arange(n) % comps
x = rng.standard_normal((n, d)).astype(np.float32) + 0.5 * rng.standard_normal((comps, d)).astype(np.float32)[comp]
np.save(f"{w}/x.npy", x)
with open(f"{w}/meta.csv", "w") as f:
    f.write("Metadata_Compound,Metadata_Plate\n")
    for i in range(n):
        f.write(f"c{comp[i]},p{(i // comps) % plates}\n")
EOF
M="eval map --features $W/x.npy --meta $W/meta.csv --pos-sameby Metadata_Compound --neg-diffby Metadata_Compound --null-size 10000"
t1=$(secs "$TABULA" $M --threads "$NP" --out "$W/one")
tn=$(secs $MPIRUN "$TABULA" $M --threads 1 --out "$W/many")
echo "eval map dense (negatives: every other compound), 10000 x 256: 1 process x $NP threads ${t1}s, $NP ranks x 1 thread ${tn}s," \
     "speed-up $(echo "scale=2; $t1 / $tn" | bc); $(same average_precision.csv mean_average_precision.csv summary.json)"
rm -rf "$W/one" "$W/many"
M="eval map --features $W/x.npy --meta $W/meta.csv --pos-sameby Metadata_Compound --neg-sameby Metadata_Plate --neg-diffby Metadata_Compound --null-size 10000"
t1=$(secs "$TABULA" $M --threads "$NP" --out "$W/one")
tn=$(secs $MPIRUN "$TABULA" $M --threads 1 --out "$W/many")
echo "eval map sparse (negatives within the plate), 10000 x 256: 1 process x $NP threads ${t1}s, $NP ranks x 1 thread ${tn}s," \
     "speed-up $(echo "scale=2; $t1 / $tn" | bc); $(same average_precision.csv mean_average_precision.csv summary.json)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
