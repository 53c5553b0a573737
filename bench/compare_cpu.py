#!/usr/bin/env python3
"""Same-run CPU comparison: tabula vs ONNX Runtime (and PyTorch eager) on the same weights and batch.

Peers are measured in one process run, one after the other, on the same machine, with the same thread count:
  * ONNX Runtime CPU: the torchvision/timm model (random init, torch.manual_seed(seed)) exported to ONNX
    (opset 17), ORT_ENABLE_ALL, intra_op_num_threads=T, inter_op_num_threads=1;
  * PyTorch eager, torch.set_num_threads(T), inference_mode;
  * tabula: `tabula bench ARCH --seed SEED --batch B --threads T`, whose weights equal torch's for the seed.
Prints a Markdown table row per peer with images/s and the ratio tabula/peer.

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
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]  # median seconds per batch


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
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    model, size = build_torch_model(args.arch, args.seed)
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(model, x, onnx_path, opset_version=17, input_names=["x"], output_names=["y"],
                          dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        t = time_loop(lambda: sess.run(None, {"x": xn}), args.iters, args.warmup)
        rows.append(("ONNX Runtime " + ort.__version__, args.batch / t, t))

    if not args.skip_torch:
        with torch.inference_mode():
            t = time_loop(lambda: model(x), args.iters, args.warmup)
        rows.append(("PyTorch " + torch.__version__ + " eager", args.batch / t, t))

    cmd = [args.tabula, "bench", args.arch, "--seed", str(args.seed), "--batch", str(args.batch),
           "--threads", str(args.threads), "--iters", str(args.iters), "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"([0-9.]+) images/s", out)
    if not m:
        raise SystemExit("could not parse tabula bench output:\n" + out)
    tab = float(m.group(1))
    rows.append(("tabula", tab, args.batch / tab))

    print(f"\n{args.arch}, fp32, batch {args.batch}, {args.threads} threads, {cpu_model()}")
    print("| engine | images/s | ms/batch | tabula ÷ engine |")
    print("|---|---:|---:|---:|")
    for name, ips, t in rows:
        print(f"| {name} | {ips:.2f} | {t * 1000:.0f} | {tab / ips:.2f}× |")
    print("\n" + out.strip())


if __name__ == "__main__":
    main()
