#!/usr/bin/env python3
"""Same-run CPU speed of the CONCH v1 vision tower: tabula vs PyTorch eager.

PyTorch runs the authors' module (mahmoodlab/CONCH conch/open_clip_custom, installed from its public source:
`pip install --no-deps <checkout>`): torch.manual_seed(0); _build_vision_tower(conch_ViT-B-16) in eval mode and
inference_mode, called as CoCa._encode_image calls it, `visual(x)` (the timm trunk, both attentional poolers,
ln_contrast, proj_contrast, ln_caption) -- the same work `tabula bench conch_vit_b16` times (the whole forward; `embed`
stops earlier, after ln_contrast). tabula runs `tabula bench conch_vit_b16 --batch B --threads T` (untrained weights
of seed 0). The two alternate in rounds; per engine the table gives the median wall time per batch and the median
process CPU time per batch (all threads), the steadier number on a shared machine.

Usage: /work/venv/bin/python bench/conch_vs_torch.py --tabula build/tabula [--threads 2] [--batch 4] [--rounds 3]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import time

import torch


def torch_tower():
    import conch.open_clip_custom as occ
    from conch.open_clip_custom.coca_model import _build_vision_tower
    with open(os.path.join(os.path.dirname(occ.__file__), "model_configs", "conch_ViT-B-16.json")) as f:
        cfg = json.load(f)
    torch.manual_seed(0)
    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], cfg["embed_dim_caption"]).eval()


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


def time_tabula(tabula, batch, threads, iters):
    out = subprocess.run([tabula, "bench", "conch_vit_b16", "--batch", str(batch), "--threads", str(threads),
                          "--iters", str(iters), "--warmup", "1"], check=True, capture_output=True, text=True).stdout
    m = re.search(r"([\d.]+) ms/batch \(median; min [\d.]+; cpu ([\d.]+)\)", out)
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tabula", default="build/tabula")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tower = torch_tower()
    x = torch.randn(a.batch, 3, 448, 448)
    load0 = os.getloadavg()[0]
    t_wall, t_cpu, s_wall, s_cpu, ratios = [], [], [], [], []
    for r in range(a.rounds):
        w, c = time_torch(tower, x, a.iters)
        t_wall.append(w)
        t_cpu.append(c)
        w2, c2 = time_tabula(a.tabula, a.batch, a.threads, a.iters)
        s_wall.append(w2)
        s_cpu.append(c2)
        ratios.append(c / c2)
        print(f"round {r}: torch {w:.0f} / {c:.0f} ms, tabula {w2:.0f} / {c2:.0f} ms (wall / CPU), "
              f"CPU ratio {c / c2:.2f}x", flush=True)
    tw, tc, sw, sc = (statistics.median(v) for v in (t_wall, t_cpu, s_wall, s_cpu))
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), threads {a.threads}, "
          f"batch {a.batch}, load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print("| arch | input | PyTorch ms (wall / CPU) | tabula ms (wall / CPU) | CPU-time ratio torch/tabula |")
    print("|---|---|---|---|---|")
    print(f"| conch_vit_b16 | {a.batch}x3x448x448 (785 tokens) | {tw:.0f} / {tc:.0f} | {sw:.0f} / {sc:.0f} | "
          f"{tc / sc:.2f}x (rounds {', '.join(f'{v:.2f}' for v in ratios)}) |")


if __name__ == "__main__":
    main()
