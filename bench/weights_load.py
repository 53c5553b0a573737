#!/usr/bin/env python3
"""Load-time comparison for weight files (numbers go to bench/RESULTS_weights.md).

    /work/venv/bin/python bench/weights_load.py build/tabula [SCRATCH_DIR]

Writes a ViT-B/16 state dict (timm, random init, 86.6 M parameters, f32) as a torch.save zip checkpoint and as
safetensors into SCRATCH_DIR (default: a temporary folder, removed afterwards), then times, best of 3:
torch.load(weights_only=True), torch.load(weights_only=True, mmap=True), safetensors.torch.load_file, and the
`tabula weights inspect` / `tabula weights convert` commands (each a fresh process; inspect includes the
SHA-256 of the whole file, convert also writes the output).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import safetensors.torch
import timm
import torch


def best_of(fn, n=3):
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    tabula = os.path.abspath(sys.argv[1])
    scratch = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="tabula-weights-bench-")
    os.makedirs(scratch, exist_ok=True)
    try:
        torch.manual_seed(0)
        sd = timm.create_model("vit_base_patch16_224", pretrained=False).state_dict()
        pth, st, out = (os.path.join(scratch, n) for n in ("vitb16.pth", "vitb16.safetensors", "out.safetensors"))
        torch.save(sd, pth)
        safetensors.torch.save_file(sd, st)
        size = os.path.getsize(pth) / 2**20
        rows = [
            ("torch.load(weights_only=True)", pth, lambda: torch.load(pth, weights_only=True)),
            ("torch.load(weights_only=True, mmap=True)", pth, lambda: torch.load(pth, weights_only=True, mmap=True)),
            ("safetensors.torch.load_file", st, lambda: safetensors.torch.load_file(st)),
        ]
        for f in (pth, st):
            rows.append((f"tabula weights inspect --no-hash ({os.path.basename(f)})", f,
                         lambda f=f: subprocess.run([tabula, "weights", "inspect", "--no-hash", f], check=True,
                                                    capture_output=True)))
            rows.append((f"tabula weights inspect ({os.path.basename(f)}, incl. sha256)", f,
                         lambda f=f: subprocess.run([tabula, "weights", "inspect", f], check=True, capture_output=True)))
            rows.append((f"tabula weights convert ({os.path.basename(f)} -> safetensors)", f,
                         lambda f=f: subprocess.run([tabula, "weights", "convert", f, "--arch", "vit_base_patch16_224",
                                                     "--out", out, "--force"], check=True, capture_output=True)))
        print(f"ViT-B/16 f32 state dict, {size:.0f} MiB, torch {torch.__version__}, {os.cpu_count()} CPUs, "
              f"torch threads {torch.get_num_threads()}")
        print("| what | seconds (best of 3) |\n|---|---|")
        for name, _, fn in rows:
            print(f"| {name} | {best_of(fn):.3f} |")
    finally:
        if len(sys.argv) <= 2:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
