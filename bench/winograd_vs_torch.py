#!/usr/bin/env python3
"""End-to-end accuracy of tabula's CPU ResNet-50 (Winograd F(4x4,3x3) on the 3x3 stride-1 convs of layers 1-3)
against torchvision, same weights (torch.manual_seed(seed) + the constructor) and the same input tensor.

Runs `tabula embed --pool none` on a random [N, 3, 224, 224] .npy (once with TABULA_WINOGRAD=0: the direct path,
once with the default) and prints, per tap, max |tabula - torch| / max |torch| for both.
Usage: python bench/winograd_vs_torch.py --tabula build/tabula [--n 4]
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np
import torch
import torchvision

TAPS = ["layer1.0.conv2", "layer1", "layer2", "layer3", "layer4", "avgpool"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tabula", default="build/tabula")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = torchvision.models.resnet50().eval()
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((a.n, 3, 224, 224)).astype(np.float32))
    want = {}
    mods = dict(model.named_modules())
    for t in TAPS:
        mods[t].register_forward_hook(lambda m, i, o, t=t: want.__setitem__(t, o.detach().numpy()))
    with torch.inference_mode():
        model(x)
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "x.npy"), x.numpy())
        for wino in ("0", "1"):
            out = os.path.join(d, "emb" + wino)
            env = dict(os.environ, TABULA_WINOGRAD=wino)
            subprocess.run([a.tabula, "embed", "--arch", "resnet50", "--seed", str(a.seed), "--data",
                            os.path.join(d, "x.npy"), "--out", out, "--layers", ",".join(TAPS), "--pool", "none",
                            "--threads", "2", "--quiet"], check=True, env=env)
            for t in TAPS:
                got = np.load(os.path.join(out, t + ".npy")).reshape(want[t].shape)
                err = np.abs(got.astype(np.float64) - want[t]).max() / np.abs(want[t]).max()
                print(f"{'winograd' if wino == '1' else 'direct  '} {t:16s} max|err|/max|torch| = {err:.2e}")


if __name__ == "__main__":
    main()
