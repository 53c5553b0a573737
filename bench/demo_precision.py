#!/usr/bin/env python3
"""Issue 23's fidelity check: do the demo's eval numbers in bf16 equal fp32's within the bootstrap noise the report
shows?

Runs `tabula demo --quick` once per variant with the same binary (fp32, bf16, and fp32 controls that compute the
same numbers another legitimate way: TABULA_CPU=avx2 runs the AVX2 micro-kernels, TABULA_WINOGRAD=0 the direct
convolutions), then compares every (section, model, layer) mean the report prints with a 95 % bootstrap interval
("resnet18-s0 avgpool: 0.2375 [0.225, 0.250]") against fp32's, two ways:
  * inside: the variant's mean lies in fp32's interval (at the 3 decimals the report prints the bounds with);
  * overlap: the two intervals overlap -- what the report itself calls "within noise" (its noise table's caption).
Zero-width fp32 intervals (every resampled unit has the same value) are counted apart: any change is "outside"
there. The baselines (pixels, nuclei) run no GEMM and must be identical; summary.csv rows are compared exactly too.

No Python at tabula run time: this only drives the binary and reads its report. Usage:
  python bench/demo_precision.py --tabula build/tabula --out /tmp/demo-precision [--variants fp32,bf16,avx2]
  python bench/demo_precision.py --compare A/report.html B/report.html   (two existing demo folders' reports)
"""
import argparse
import csv
import html
import os
import re
import subprocess
import sys
import time

VARIANTS = {  # name: (precision, extra environment)
    "fp32": ("fp32", {}),
    "bf16": ("bf16", {}),
    "avx2": ("fp32", {"TABULA_CPU": "avx2"}),
    "nowinograd": ("fp32", {"TABULA_WINOGRAD": "0"}),
}


def parse_report(path):
    """{(section, model, layer): (mean, lo, hi)} for every mean the report prints with its 95 % interval."""
    text = html.unescape(re.sub(r"<[^>]+>", "\n", open(path, encoding="utf-8").read()))
    out, section = {}, None
    for line in (x.strip() for x in text.split("\n")):
        if re.match(r"^.+ — \S+$", line):
            section = line
        m = re.match(r"^(\S+) (\S+): ([-0-9.]+) \[([-0-9.]+), ([-0-9.]+)\]$", line)
        if m and section:
            out[(section, m.group(1), m.group(2))] = tuple(float(m.group(i)) for i in (3, 4, 5))
    return out


def compare(ref_report, var_report, name):
    a, b = parse_report(ref_report), parse_report(var_report)
    keys = sorted(set(a) & set(b))
    if not keys:
        sys.exit(f"no intervals found in {ref_report} / {var_report}")
    half = 5e-4  # the bounds are printed with 3 decimals
    inside = [k for k in keys if a[k][1] - half <= b[k][0] <= a[k][2] + half]
    overlap = [k for k in keys if not (b[k][2] < a[k][1] or b[k][1] > a[k][2])]
    zero = [k for k in keys if a[k][2] == a[k][1]]
    outside = [k for k in keys if k not in inside]
    diffs = [abs(a[k][0] - b[k][0]) for k in keys]
    print(f"\n## {name} vs fp32: {len(keys)} means with a 95 % bootstrap interval")
    print(f"inside fp32's interval: {len(inside)} (outside {len(outside)}, of them on a zero-width fp32 interval: "
          f"{sum(1 for k in outside if k in zero)}); intervals overlap (the report's 'within noise'): "
          f"{len(overlap)}")
    print(f"|{name} - fp32| of the means: mean {sum(diffs) / len(diffs):.4f}, max {max(diffs):.4f}; "
          f"fp32 interval width: mean {sum(a[k][2] - a[k][1] for k in keys) / len(keys):.4f}")
    for k in outside:
        print(f"  outside: {k[0]} | {k[1]} {k[2]}: fp32 {a[k][0]} [{a[k][1]}, {a[k][2]}], {name} {b[k][0]} "
              f"[{b[k][1]}, {b[k][2]}]" + ("  (no overlap)" if k not in overlap else ""))
    sa, sb = (os.path.join(os.path.dirname(p), "summary.csv") for p in (ref_report, var_report))
    if os.path.exists(sa) and os.path.exists(sb):
        ra, rb = list(csv.DictReader(open(sa))), list(csv.DictReader(open(sb)))
        same = sum(1 for x, y in zip(ra, rb) if x["value"] == y["value"])
        base = [(x, y) for x, y in zip(ra, rb) if x["model"] in ("pixels", "nuclei") and x["value"] != y["value"]]
        print(f"summary.csv: {same} of {len(ra)} values identical; baselines (no GEMM) changed: {len(base)}")
    return len(outside), len(keys) - len(overlap)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tabula", default="build/tabula")
    ap.add_argument("--out", default="demo-precision")
    ap.add_argument("--variants", default="fp32,bf16,avx2", help="comma list of " + ",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare", nargs=2, metavar=("FP32_REPORT", "OTHER_REPORT"))
    args = ap.parse_args()
    if args.compare:
        compare(args.compare[0], args.compare[1], "other")
        return
    names = args.variants.split(",")
    if names[0] != "fp32":
        names.insert(0, "fp32")
    for n in names:
        if n not in VARIANTS:
            sys.exit(f"unknown variant {n!r} (known: {', '.join(VARIANTS)})")
    os.makedirs(args.out, exist_ok=True)
    for n in names:
        prec, env = VARIANTS[n]
        out = os.path.join(args.out, n)
        t = time.time()
        cmd = [args.tabula, "demo", "--quick", "--quiet", "--threads", str(args.threads), "--precision", prec,
               "--out", out]
        r = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
        print(f"{n}: {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(cmd)}  ({time.time() - t:.0f} s)")
    for n in names[1:]:
        compare(os.path.join(args.out, "fp32", "report.html"), os.path.join(args.out, n, "report.html"), n)


if __name__ == "__main__":
    main()
