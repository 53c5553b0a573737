#!/usr/bin/env python3
"""Same-run CPU speed of the channel-agnostic ViT (OpenPhenom-S/16) and DINOv3 ViT-S/16: tabula vs PyTorch eager.

PyTorch runs the authors' own modules (Recursion's maes_microscopy vit.py + MAEEncoder on timm; the official
DINOv3 DinoVisionTransformer from its hub constructor), torch.set_num_threads(T), inference_mode, the
forward_features the embedding uses; tabula runs `tabula bench ARCH --batch B --threads T` (untrained weights of
the same seed). The two alternate in rounds; per engine the table gives the median wall time per batch and the
median process CPU time per batch (all threads), which is the steadier number on a shared machine.

Usage: /work/venv/bin/python bench/newvit_vs_torch.py --maes /path/maes_microscopy --dinov3 /path/dinov3 \
           --tabula build/tabula [--threads 1] [--batch 1] [--rounds 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "weights_tools", "reference"))


def torch_models(maes, dinov3):
    from newvit_fixtures import import_maes
    sys.path.insert(0, dinov3)
    mae_modules, maes_vit = import_maes(maes)
    from dinov3.hub import backbones
    torch.manual_seed(0)
    ca = mae_modules.MAEEncoder(maes_vit.sincos_positional_encoding_vit(maes_vit.vit_small_patch16_256(
        global_pool="avg")), max_in_chans=11, channel_agnostic=True).vit_backbone.eval()
    torch.manual_seed(0)
    d3 = backbones.dinov3_vits16(pretrained=False).eval()
    return [("ca_vit_small_patch16_256", lambda x: ca.forward_features(x), (6, 256, 256)),
            ("dinov3_vits16", lambda x: d3.forward_features(x)["x_norm_clstoken"], (3, 224, 224))]


def time_torch(fn, x, iters):
    walls, cpus = [], []
    with torch.inference_mode():
        fn(x)
        for _ in range(iters):
            w0, c0 = time.perf_counter(), time.process_time()
            fn(x)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    return statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3


def time_tabula(tabula, arch, batch, threads, iters):
    out = subprocess.run([tabula, "bench", arch, "--batch", str(batch), "--threads", str(threads), "--iters",
                          str(iters), "--warmup", "1"], check=True, capture_output=True, text=True).stdout
    m = re.search(r"([\d.]+) ms/batch \(median; min [\d.]+; cpu ([\d.]+)\)", out)
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maes", required=True)
    ap.add_argument("--dinov3", required=True)
    ap.add_argument("--tabula", default="build/tabula")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), threads {a.threads}, "
          f"batch {a.batch}, load average {os.getloadavg()[0]:.1f}")
    print("| arch | input | PyTorch ms (wall / CPU) | tabula ms (wall / CPU) | CPU-time ratio torch/tabula |")
    print("|---|---|---|---|---|")
    for arch, fn, chw in torch_models(a.maes, a.dinov3):
        x = torch.randn(a.batch, *chw)
        t_wall, t_cpu, s_wall, s_cpu = [], [], [], []
        for _ in range(a.rounds):
            w, c = time_torch(fn, x, a.iters)
            t_wall.append(w)
            t_cpu.append(c)
            w, c = time_tabula(a.tabula, arch, a.batch, a.threads, a.iters)
            s_wall.append(w)
            s_cpu.append(c)
        tw, tc, sw, sc = (statistics.median(v) for v in (t_wall, t_cpu, s_wall, s_cpu))
        print(f"| {arch} | {a.batch}x{'x'.join(map(str, chw))} | {tw:.0f} / {tc:.0f} | {sw:.0f} / {sc:.0f} | "
              f"{tc / sc:.2f}x |")


if __name__ == "__main__":
    main()
