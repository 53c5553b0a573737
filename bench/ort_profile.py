#!/usr/bin/env python3
"""Where ONNX Runtime spends its time on a model, per op type and per named module (to set tabula's per-op rates
from bench_ops against): ORT's own profiler (SessionOptions.enable_profiling), same export, threads and session
options as bench/compare_cpu.py, kernel time summed over the profiled batches.

Usage: python bench/ort_profile.py --arch vit_base_patch16_224 --batch 16 --threads 2 [--batches 2]
"""
import argparse
import collections
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_cpu import build_torch_model  # noqa: E402


def module_of(node_name):
    """'/blocks/blocks.3/attn/qkv/MatMul' -> 'attn/qkv' (block index dropped), else the op name."""
    parts = [p for p in node_name.split("/") if p and not re.fullmatch(r"(blocks|layer\d)\.\d+|blocks|layer\d", p)]
    return "/".join(parts[:-1][-2:]) or node_name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="vit_base_patch16_224")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batches", type=int, default=2)
    a = ap.parse_args()
    import onnxruntime as ort
    import torch

    model, size = build_torch_model(a.arch, a.seed)
    x = torch.randn(a.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(model, x, path, opset_version=17, input_names=["x"], output_names=["y"], dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        sess.run(None, {"x": xn})  # warm-up (profiled too: dropped below by taking the last runs only)
        for _ in range(a.batches):
            sess.run(None, {"x": xn})
        events = json.load(open(sess.end_profiling()))
    runs = [e for e in events if e.get("name") == "model_run"]
    t0 = runs[-a.batches]["ts"] if len(runs) >= a.batches else 0
    by_type, by_module = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < t0:
            continue
        by_type[e["args"].get("op_name", "?")] += e["dur"]
        by_module[module_of(e["name"][: -len("_kernel_time")])] += e["dur"]
    total = sum(by_type.values())
    print(f"{a.arch}, batch {a.batch}, {a.threads} threads, ORT {ort.__version__}: "
          f"{total / 1e3 / a.batches:.0f} ms kernel time per batch (wall, load {os.getloadavg()[0]:.1f})")
    for title, c in (("op type", by_type), ("module", by_module)):
        print(f"\n| {title} | ms / batch | share |\n|---|---:|---:|")
        for k, v in c.most_common(14):
            print(f"| {k} | {v / 1e3 / a.batches:.1f} | {100 * v / total:.1f} % |")


if __name__ == "__main__":
    main()
