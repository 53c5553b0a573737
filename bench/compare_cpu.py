#!/usr/bin/env python3
"""Same-run CPU comparison: tabula vs ONNX Runtime (and PyTorch eager) on the same weights and batch.

Peers are measured in one process run, one after the other, on the same machine, with the same thread count:
  * ONNX Runtime CPU: the torchvision/timm model (random init, torch.manual_seed(seed)) exported to ONNX
    (opset 17), ORT_ENABLE_ALL, intra_op_num_threads=T, inter_op_num_threads=1;
  * PyTorch eager, torch.set_num_threads(T), inference_mode;
  * tabula: `tabula bench ARCH --seed SEED --batch B --threads T`, whose weights equal torch's for the seed.
Prints a Markdown table row per peer with images/s and the ratio tabula/peer.
With --bf16 the bf16 engines join the same rounds: `tabula bench --precision bf16` and PyTorch eager under
torch.autocast("cpu", dtype=torch.bfloat16) (PyTorch's own CPU bf16 path), and the ratios are tabula bf16's.

The build machine is shared, so the peers run in interleaved rounds (ORT, PyTorch, tabula, then again) and the
table gives, per engine, the best and the median wall time per batch over all rounds and the median process CPU
time per batch (every thread of the engine; ORT's idle spinning is off with --no-ort-spin, the default, so its CPU
time is work, as tabula's pool sleeps when idle). On a quiet machine best and median agree; under load the best
wall time and the CPU time are the steadier estimates.

Needs (outside the build, never at tabula run time): pip install torch torchvision timm onnx onnxruntime
Usage: python bench/compare_cpu.py --arch resnet50 --batch 16 --threads 2 --tabula build/tabula
"""
import argparse
import os
import platform
import re
import subprocess
import tempfile
import time


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_torch_model(arch, seed):
    import torch
    torch.manual_seed(seed)
    if arch.startswith("resnet") or arch.startswith("wide_resnet"):
        import torchvision
        return getattr(torchvision.models, arch)().eval(), 224
    import timm
    m = timm.create_model(arch, pretrained=False).eval()
    return m, m.default_cfg["input_size"][-1]


def time_loop(fn, iters, warmup):
    """(wall seconds, process CPU seconds) per timed batch."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tabula", default="build/tabula")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every engine")
    ap.add_argument("--ort-spin", action="store_true", help="leave ORT's intra-op spinning on (its default)")
    ap.add_argument("--bf16", action="store_true", help="also tabula --precision bf16 and PyTorch bf16 autocast")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    model, size = build_torch_model(args.arch, args.seed)
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    samples = {}  # engine -> list of (wall s, cpu s) per batch
    tabula_out = ""

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(model, x, onnx_path, opset_version=17, input_names=["x"], output_names=["y"],
                          dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not args.ort_spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        ort_name = "ONNX Runtime " + ort.__version__ + ("" if args.ort_spin else " (no spin)")
        torch_name = "PyTorch " + torch.__version__ + " eager"
        cmd = [args.tabula, "bench", args.arch, "--seed", str(args.seed), "--batch", str(args.batch),
               "--threads", str(args.threads), "--iters", str(args.iters), "--warmup", str(args.warmup)]
        tabulas = [("tabula bf16" if args.bf16 else "tabula", [])]
        if args.bf16:
            tabulas = [("tabula fp32", []), ("tabula bf16", ["--precision", "bf16"])]

        def torch_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(x)

        for _ in range(args.rounds):
            samples.setdefault(ort_name, []).extend(
                time_loop(lambda: sess.run(None, {"x": xn}), args.iters, args.warmup))
            if not args.skip_torch:
                with torch.inference_mode():
                    samples.setdefault(torch_name, []).extend(time_loop(lambda: model(x), args.iters, args.warmup))
                    if args.bf16:
                        samples.setdefault("PyTorch " + torch.__version__ + " bf16 autocast", []).extend(
                            time_loop(torch_bf16, args.iters, args.warmup))
            for name, extra in tabulas:
                out = subprocess.run(cmd + extra, check=True, capture_output=True, text=True).stdout
                m = re.search(r"([0-9.]+) ms/batch \(median; min ([0-9.]+); cpu ([0-9.]+)\)", out)
                if not m:
                    raise SystemExit("could not parse tabula bench output:\n" + out)
                # tabula reports median / min / mean CPU per round: keep the round's median and min as samples
                med, mn, cpu = (float(g) / 1000 for g in m.groups())
                samples.setdefault(name, []).extend([(med, cpu), (mn, cpu)])
                tabula_out += out

    best = {k: min(w for w, _ in v) for k, v in samples.items()}
    med = {k: median([w for w, _ in v]) for k, v in samples.items()}
    cpu = {k: median([c for _, c in v]) for k, v in samples.items()}
    ref = tabulas[-1][0]
    precisions = "fp32 and bf16" if args.bf16 else "fp32"
    print(f"\n{args.arch}, {precisions}, batch {args.batch}, {args.threads} threads, {cpu_model()}, "
          f"{args.rounds} interleaved rounds, load average {os.getloadavg()[0]:.1f}")
    print(f"| engine | images/s (best) | images/s (median) | CPU s/batch | {ref} ÷ engine (best) | "
          f"{ref} ÷ engine (CPU time) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in samples:
        print(f"| {name} | {args.batch / best[name]:.2f} | {args.batch / med[name]:.2f} | {cpu[name]:.2f} | "
              f"{best[name] / best[ref]:.2f}× | {cpu[name] / cpu[ref]:.2f}× |")
    print("\n" + tabula_out.strip())


if __name__ == "__main__":
    main()
