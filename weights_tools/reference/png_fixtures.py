#!/usr/bin/env python3
"""Writes PNG decode fixtures into tests/fixtures/data/decode/: the PNG variants that PNG decoders treat
differently (palette with and without tRNS, 1/2/4-bit grey, grey with tRNS, grey+alpha and RGB(A) at 16 bits,
Adam7 interlacing), each with the samples tabula must produce (C x H x W float32 .npy beside each file).

Expected samples are Pillow's (np.asarray(Image.open(f).convert(...))) wherever Pillow keeps the file's bit
depth: palette -> RGB, 1/2/4-bit grey scaled to 8 bits, alpha/tRNS dropped. For 16-bit grey+alpha and RGB(A)
Pillow reduces the samples to 8 bits while tabula keeps all 16 (as for 16-bit grey, where Pillow keeps them
too), so there the expected samples are the array written. Files Pillow cannot write (2/4-bit grey, tRNS on
grey, 16-bit grey+alpha and RGBA, interlaced) are written by the small encoder below (zlib, filter 0; Adam7).

Run from the repository root:  /work/venv/bin/python weights_tools/reference/png_fixtures.py
"""
import os
import struct
import zlib

import numpy as np
from PIL import Image

DEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "data", "decode")
rng = np.random.default_rng(11)
H, W = 13, 19  # odd sizes: partial Adam7 passes, partial bytes of packed 1/2/4-bit rows


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(row, depth):
    """One scanline's samples (1-D, already interleaved) as bytes at `depth` bits per sample (big-endian)."""
    if depth == 16:
        return row.astype(">u2").tobytes()
    if depth == 8:
        return row.astype(np.uint8).tobytes()
    per = 8 // depth
    out = bytearray((len(row) + per - 1) // per)
    for i, v in enumerate(row):
        out[i // per] |= int(v) << (8 - depth * (i % per + 1))
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(name, hwc, color_type, depth, interlace=False, extra=b""):
    """hwc: H x W x samples-per-pixel integer array. Filter 0 on every row."""
    h, w = hwc.shape[:2]
    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = hwc[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue  # an empty pass has no scanlines at all
        for r in sub:
            raw += b"\x00" + pack_row(r.reshape(-1), depth)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(os.path.join(DEC, name), "wb") as f:
        f.write(data)


def expect(name, chw):
    chw = np.asarray(chw)
    if chw.ndim == 2:
        chw = chw[None]
    np.save(os.path.join(DEC, name + ".npy"), chw.astype(np.float32))


def pillow(name, mode):
    a = np.asarray(Image.open(os.path.join(DEC, name)).convert(mode))
    return a if a.ndim == 2 else a.transpose(2, 0, 1)


def main():
    os.makedirs(DEC, exist_ok=True)
    # Palette, 8-bit indices into 200 colours; and the same with a tRNS chunk (alpha per entry, dropped).
    pal = rng.integers(0, 256, (200, 3), dtype=np.uint8)
    idx = rng.integers(0, 200, (H, W), dtype=np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette(pal.reshape(-1).tolist())
    im.save(os.path.join(DEC, "palette8.png"))
    expect("palette8.png", pillow("palette8.png", "RGB"))
    assert (pillow("palette8.png", "RGB") == pal[idx].transpose(2, 0, 1)).all()
    im.save(os.path.join(DEC, "palette8_trns.png"), transparency=bytes(rng.integers(0, 256, 200, dtype=np.uint8)))
    expect("palette8_trns.png", pillow("palette8_trns.png", "RGB"))
    # Palette with 4-bit indices (16 colours).
    idx4 = rng.integers(0, 16, (H, W), dtype=np.uint8)
    im4 = Image.fromarray(idx4, "P")
    im4.putpalette(pal[:16].reshape(-1).tolist())
    im4.save(os.path.join(DEC, "palette4.png"), bits=4)
    with open(os.path.join(DEC, "palette4.png"), "rb") as f:
        assert f.read()[24] == 4, "Pillow did not write a 4-bit palette"
    expect("palette4.png", pillow("palette4.png", "RGB"))
    # Grey at 1, 2 and 4 bits: Pillow (and libpng's expand) scale to 8 bits (x255, x85, x17).
    for depth, scale in ((1, 255), (2, 85), (4, 17)):
        g = rng.integers(0, 1 << depth, (H, W), dtype=np.uint8)
        name = f"grey{depth}.png"
        write_png(name, g[..., None], 0, depth)
        assert (pillow(name, "L") == g * scale).all(), name
        expect(name, pillow(name, "L"))
    # Grey with a tRNS colour key: no channel is added.
    g8 = rng.integers(0, 256, (H, W), dtype=np.uint8)
    write_png("grey8_trns.png", g8[..., None], 0, 8, extra=chunk(b"tRNS", struct.pack(">H", int(g8[0, 0]))))
    assert (pillow("grey8_trns.png", "L") == g8).all()
    expect("grey8_trns.png", pillow("grey8_trns.png", "L"))
    # 16-bit grey+alpha, RGB and RGBA: all 16 bits kept, alpha dropped (Pillow would keep only the high byte).
    ga = rng.integers(0, 65536, (H, W, 2), dtype=np.uint16)
    write_png("greyalpha16.png", ga, 4, 16)
    expect("greyalpha16.png", ga[..., 0])
    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    write_png("rgb16.png", rgb16, 2, 16)
    expect("rgb16.png", rgb16.transpose(2, 0, 1))
    rgba16 = rng.integers(0, 65536, (H, W, 4), dtype=np.uint16)
    write_png("rgba16.png", rgba16, 6, 16)
    expect("rgba16.png", rgba16[..., :3].transpose(2, 0, 1))
    assert (pillow("rgb16.png", "RGB") == (rgb16 >> 8).transpose(2, 0, 1)).all()  # why not Pillow's samples here
    # Adam7 interlaced: 8-bit RGB (Pillow's samples) and 16-bit grey (Pillow's I;16 samples).
    rgb8 = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    write_png("rgb8_interlaced.png", rgb8, 2, 8, interlace=True)
    assert (pillow("rgb8_interlaced.png", "RGB") == rgb8.transpose(2, 0, 1)).all()
    expect("rgb8_interlaced.png", pillow("rgb8_interlaced.png", "RGB"))
    g16 = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    write_png("grey16_interlaced.png", g16[..., None], 0, 16, interlace=True)
    got = np.asarray(Image.open(os.path.join(DEC, "grey16_interlaced.png")))
    assert (got == g16).all()
    expect("grey16_interlaced.png", got)


if __name__ == "__main__":
    main()
