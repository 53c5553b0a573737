#!/usr/bin/env python3
"""Writes JPEG decode fixtures into tests/fixtures/data/decode/: files encoded by Pillow (libjpeg-turbo) and the
samples Pillow decodes them to (C x H x W float32 .npy beside each file). tabula decodes JPEG with libjpeg-turbo
at libjpeg's (and Pillow's) defaults, so the test expects these samples exactly.

Run from the repository root:  /work/venv/bin/python weights_tools/reference/jpeg_fixtures.py
"""
import os

import numpy as np
from PIL import Image

DEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "data", "decode")
rng = np.random.default_rng(6)


def save(name, arr, **kw):
    path = os.path.join(DEC, name)
    Image.fromarray(arr).save(path, **kw)
    out = np.asarray(Image.open(path))
    out = out[None] if out.ndim == 2 else out.transpose(2, 0, 1)
    np.save(path + ".npy", out.astype(np.float32))


def main():
    os.makedirs(DEC, exist_ok=True)
    # Odd sizes (not a multiple of the 16x16 MCU of 4:2:0) exercise edge upsampling.
    H, W = 23, 37
    yy, xx = np.mgrid[0:H, 0:W]
    texture = ((np.sin(yy / 3.0) * np.cos(xx / 5.0) + 1) * 100).astype(np.uint8)
    noise = rng.integers(0, 40, (H, W, 3), dtype=np.uint8)
    rgb = (np.stack([texture, texture[::-1], texture[:, ::-1]], axis=2) + noise).astype(np.uint8)
    save("grey.jpg", texture + noise[..., 0], quality=90)
    save("rgb_420.jpg", rgb, quality=85, subsampling=2)  # 4:2:0 chroma: fancy upsampling matters
    save("rgb_progressive.jpg", rgb, quality=75, progressive=True, optimize=True)


if __name__ == "__main__":
    main()
