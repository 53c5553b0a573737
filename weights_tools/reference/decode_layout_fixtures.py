#!/usr/bin/env python3
"""Writes tests/fixtures/data/decode_layouts/: TIFF sample layouts for the decoder's typed conversion paths (issue #22),
each with the array tifffile decodes it to (CHW float32 in <file>.npy, the oracle).

Every sample type (8/16/32-bit integers, signed and unsigned, 32/64-bit float) in both byte orders, odd strip heights
(the last strip short), tiles with partial edge tiles, planar (separate) and contiguous multi-sample pixels,
uncompressed / deflate / LZW / PackBits, with and without the horizontal and floating-point predictors, and BigTIFF.
Images are 29 x 37 so every file stays a few kB.

Run from the repository root with the venv that has tifffile and imagecodecs (LZW encoding):
    /work/venv/bin/python weights_tools/reference/decode_layout_fixtures.py
"""
import json
import os

import imagecodecs
import numpy as np
import tifffile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "data", "decode_layouts")
rng = np.random.default_rng(22)
H, W = 29, 37


def samples(dtype, shape):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


def write(name, data, **kw):
    path = os.path.join(OUT, name)
    tifffile.imwrite(path, data, **kw)
    got = tifffile.imread(path)  # the oracle: what tifffile decodes
    if got.ndim == 2:
        got = got[None]
    elif kw.get("planarconfig") != "separate":
        got = np.moveaxis(got, -1, 0)  # HWC -> CHW
    np.save(path + ".npy", np.ascontiguousarray(got.astype(np.float32)))
    cases[name] = {"dtype": str(np.dtype(data.dtype)), "channels": int(got.shape[0]),
                   **{k: str(v) for k, v in kw.items()}}


cases = {}
os.makedirs(OUT, exist_ok=True)
for dtype in ["u1", "i1", "u2", "i2", "u4", "i4", "f4", "f8"]:
    for order in "<>":
        tag = f"{np.dtype(dtype).kind}{8 * np.dtype(dtype).itemsize}_{'le' if order == '<' else 'be'}"
        write(f"{tag}_strip7.tif", samples(dtype, (H, W)), byteorder=order, rowsperstrip=7)
for order in "<>":
    tag = "le" if order == "<" else "be"
    u16 = samples("u2", (H, W))
    write(f"u16_{tag}_deflate_strip5.tif", u16, byteorder=order, rowsperstrip=5, compression="zlib", predictor=True)
    write(f"u16_{tag}_lzw_strip3.tif", u16, byteorder=order, rowsperstrip=3, compression="lzw")
    write(f"u16_{tag}_tiled16.tif", u16, byteorder=order, tile=(16, 16))
    write(f"f32_{tag}_tiled16_lzw.tif", samples("f4", (H, W)), byteorder=order, tile=(16, 32), compression="lzw")
    write(f"u16_{tag}_rgb_contig_strip4.tif", samples("u2", (H, W, 3)), byteorder=order, photometric="rgb",
          rowsperstrip=4)
    write(f"u16_{tag}_rgb_separate_strip4.tif", samples("u2", (3, H, W)), byteorder=order, photometric="rgb",
          planarconfig="separate", rowsperstrip=4)
    write(f"u8_{tag}_rgb_contig_tiled16.tif", samples("u1", (H, W, 3)), byteorder=order, photometric="rgb",
          tile=(16, 16))
    write(f"i32_{tag}_separate_tiled16_deflate.tif", samples("i4", (2, H, W)), byteorder=order,
          photometric="minisblack", planarconfig="separate", tile=(16, 16), compression="zlib")
write("u8_packbits_strip6.tif", samples("u1", (H, W)), rowsperstrip=6, compression="packbits")
# Horizontal predictor (Predictor=2, undone by tabula's own loop, data/tiff_predictor.h) on every integer width, signed
# and unsigned, one and three samples per pixel, strips and partial tiles; and the floating-point predictor (3, left
# to libtiff). Written after the files above so that their random samples stay the same.
for order in "<>":
    tag = "le" if order == "<" else "be"
    write(f"u8_{tag}_deflate_pred_strip5.tif", samples("u1", (H, W)), byteorder=order, rowsperstrip=5,
          compression="zlib", predictor=2)
    write(f"i16_{tag}_lzw_pred_strip3.tif", samples("i2", (H, W)), byteorder=order, rowsperstrip=3,
          compression="lzw", predictor=2)
    write(f"u16_{tag}_rgb_contig_deflate_pred_strip4.tif", samples("u2", (H, W, 3)), byteorder=order,
          photometric="rgb", rowsperstrip=4, compression="zlib", predictor=2)
    write(f"u16_{tag}_tiled16_deflate_pred.tif", samples("u2", (H, W)), byteorder=order, tile=(16, 16),
          compression="zlib", predictor=2)
    write(f"u32_{tag}_deflate_pred_strip7.tif", samples("u4", (H, W)), byteorder=order, rowsperstrip=7,
          compression="zlib", predictor=2)
    write(f"u8_{tag}_rgb_contig_lzw_pred_tiled16.tif", samples("u1", (H, W, 3)), byteorder=order,
          photometric="rgb", tile=(16, 16), compression="lzw", predictor=2)
    write(f"f32_{tag}_deflate_fpred_strip5.tif", samples("f4", (H, W)), byteorder=order, rowsperstrip=5,
          compression="zlib", predictor=3)
# BigTIFF (64-bit offsets, the format of large whole-slide and plate scans), uncompressed and compressed.
write("u16_le_bigtiff_strip7.tif", samples("u2", (H, W)), bigtiff=True, rowsperstrip=7)
write("u16_be_bigtiff_deflate_pred_strip5.tif", samples("u2", (H, W)), byteorder=">", bigtiff=True, rowsperstrip=5,
      compression="zlib", predictor=2)
with open(os.path.join(OUT, "cases.json"), "w") as f:
    versions = {"tifffile": tifffile.__version__, "imagecodecs": imagecodecs.__version__, "numpy": np.__version__}
    json.dump({**versions, "cases": cases}, f, indent=1, sort_keys=True)
print(f"{len(cases)} files in {os.path.normpath(OUT)}")
