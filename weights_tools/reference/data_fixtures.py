#!/usr/bin/env python3
"""Writes tests/fixtures/data/: small images encoded by tifffile / Pillow (libtiff, libpng, libjpeg,
OpenJPEG) with the pixel values they decode to, and torchvision preprocessing outputs on fixed inputs.

Run from the repository root with the venv that has torch/torchvision/timm/tifffile/pillow:
    /work/venv/bin/python weights_tools/reference/data_fixtures.py
Everything is generated from fixed seeds; re-running rewrites identical arrays (encoders may differ in bytes
across library versions, and tifffile puts a random UUID into OME-XML, which does not matter: the tests
compare decoded values).
"""
import json
import math
import os
import sys

import numpy as np
import tifffile
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode as IM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "data")
DEC = os.path.join(ROOT, "decode")
PRE = os.path.join(ROOT, "preprocess")
rng = np.random.default_rng(20240611)
manifest = {"torch": torch.__version__, "torchvision": torchvision.__version__, "tifffile": tifffile.__version__,
            "pillow": Image.__version__, "numpy": np.__version__, "decode": {}, "preprocess": {}}


def expect(name, arr, **info):
    """Stores what a decoder must produce for `name` as C x H x W (float32 values, unscaled)."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    np.save(os.path.join(DEC, name + ".npy"), arr.astype(np.float32))
    manifest["decode"][name] = dict(info, shape=list(arr.shape))


def decode_fixtures():
    os.makedirs(DEC, exist_ok=True)
    H, W = 24, 40
    u8 = rng.integers(0, 256, (H, W), dtype=np.uint8)
    u16 = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    # Smooth-ish 16-bit content so that compression has something to do, full range kept.
    yy, xx = np.mgrid[0:H, 0:W]
    u16s = ((np.sin(yy / 3.0) + np.cos(xx / 5.0) + 2) * 16000 + rng.integers(0, 50, (H, W))).astype(np.uint16)

    tifffile.imwrite(os.path.join(DEC, "u8_strip.tif"), u8, rowsperstrip=5)
    expect("u8_strip.tif", u8, bits=8)
    tifffile.imwrite(os.path.join(DEC, "u16_strip.tif"), u16, rowsperstrip=7)
    expect("u16_strip.tif", u16, bits=16)
    tifffile.imwrite(os.path.join(DEC, "u16_bigendian.tif"), u16, byteorder=">")
    expect("u16_bigendian.tif", u16, bits=16)
    tifffile.imwrite(os.path.join(DEC, "u16_deflate.tif"), u16s, compression="zlib", predictor=True)
    expect("u16_deflate.tif", u16s, bits=16)
    Image.fromarray(u16s).save(os.path.join(DEC, "u16_lzw.tif"), compression="tiff_lzw")
    expect("u16_lzw.tif", u16s, bits=16)
    Image.fromarray(u8).save(os.path.join(DEC, "u8_packbits.tif"), compression="packbits")
    expect("u8_packbits.tif", u8, bits=8)
    tifffile.imwrite(os.path.join(DEC, "u16_tiled.tif"), u16s, tile=(16, 16))  # 24x40 -> partial edge tiles
    expect("u16_tiled.tif", u16s, bits=16)
    tifffile.imwrite(os.path.join(DEC, "u16_tiled_deflate.tif"), u16s, tile=(16, 32), compression="zlib")
    expect("u16_tiled_deflate.tif", u16s, bits=16)
    f32 = rng.standard_normal((H, W)).astype(np.float32)
    tifffile.imwrite(os.path.join(DEC, "f32.tif"), f32)
    expect("f32.tif", f32, bits=32)
    i16 = rng.integers(-32768, 32768, (H, W), dtype=np.int16)
    tifffile.imwrite(os.path.join(DEC, "i16.tif"), i16)
    expect("i16.tif", i16, bits=16)
    # Multi-page: 3 pages of 16-bit -> 3 channels (plain TIFF, not OME).
    pages = rng.integers(0, 65536, (3, H, W), dtype=np.uint16)
    with tifffile.TiffWriter(os.path.join(DEC, "u16_multipage.tif")) as tw:
        for p in pages:
            tw.write(p, contiguous=False)
    expect("u16_multipage.tif", pages, bits=16)
    # A full-resolution page followed by a reduced-resolution one (NewSubfileType = 1, a thumbnail as
    # microscope software writes): the thumbnail is not a channel.
    with tifffile.TiffWriter(os.path.join(DEC, "u16_with_thumbnail.tif")) as tw:
        tw.write(u16s, contiguous=False)
        tw.write(u16s[::2, ::2].copy(), subfiletype=1, contiguous=False)
    expect("u16_with_thumbnail.tif", u16s, bits=16)
    # Multi-sample: RGB interleaved and planar-separate.
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    tifffile.imwrite(os.path.join(DEC, "rgb_contig.tif"), rgb, photometric="rgb")
    expect("rgb_contig.tif", rgb.transpose(2, 0, 1), bits=8)
    tifffile.imwrite(os.path.join(DEC, "rgb_separate.tif"), rgb.transpose(2, 0, 1), photometric="rgb",
                     planarconfig="separate")
    expect("rgb_separate.tif", rgb.transpose(2, 0, 1), bits=8)
    # OME-TIFF: Z=2 x C=3 stored Z-major (pages z0c0 z0c1 z0c2 z1c0 ...) -> the decoder returns Z=0's channels
    # in OME channel order with their names.
    zc = rng.integers(0, 65536, (2, 3, H, W), dtype=np.uint16)
    tifffile.imwrite(os.path.join(DEC, "ome_zcyx.ome.tif"), zc, ome=True,
                     metadata={"axes": "ZCYX", "Channel": {"Name": ["DNA", "AGP", "Mito"]}})
    expect("ome_zcyx.ome.tif", zc[0], bits=16, channel_names=["DNA", "AGP", "Mito"])
    # OME with C outermost: pages c0z0 c0z1 c1z0 ... -> channel c is page 2c.
    cz = rng.integers(0, 65536, (3, 2, H, W), dtype=np.uint16)
    tifffile.imwrite(os.path.join(DEC, "ome_czyx.ome.tif"), cz, ome=True,
                     metadata={"axes": "CZYX", "Channel": {"Name": ["ER", "RNA", "DNA"]}})
    expect("ome_czyx.ome.tif", cz[:, 0], bits=16, channel_names=["ER", "RNA", "DNA"])

    # PNG 8/16-bit, grey and RGB, and RGBA (alpha dropped).
    Image.fromarray(u8).save(os.path.join(DEC, "grey8.png"))
    expect("grey8.png", u8, bits=8)
    Image.fromarray(u16).save(os.path.join(DEC, "grey16.png"))
    expect("grey16.png", u16, bits=16)
    Image.fromarray(rgb).save(os.path.join(DEC, "rgb8.png"))
    expect("rgb8.png", rgb.transpose(2, 0, 1), bits=8)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (H, W, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba).save(os.path.join(DEC, "rgba8.png"))
    expect("rgba8.png", rgb.transpose(2, 0, 1), bits=8)
    # JPEG (more cases in jpeg_fixtures.py; tabula decodes with libjpeg-turbo as Pillow does, the test is exact).
    smooth = np.stack([((np.sin(yy / 4.0 + k) + 1) * 100 + xx).clip(0, 255) for k in range(3)], axis=2).astype(np.uint8)
    Image.fromarray(smooth).save(os.path.join(DEC, "rgb.jpg"), quality=95)
    expect("rgb.jpg", np.asarray(Image.open(os.path.join(DEC, "rgb.jpg"))).transpose(2, 0, 1), bits=8, tolerance=3)
    # JPEG 2000 (lossless, as RxRx3-core's 8-bit .jp2 are decoded exactly).
    Image.fromarray(u8).save(os.path.join(DEC, "grey8.jp2"), irreversible=False)
    expect("grey8.jp2", u8, bits=8)
    Image.fromarray(u16s).save(os.path.join(DEC, "grey16.jp2"), irreversible=False)
    expect("grey16.jp2", np.asarray(Image.open(os.path.join(DEC, "grey16.jp2"))), bits=16)
    Image.fromarray(u8).save(os.path.join(DEC, "grey8.j2k"), irreversible=False)
    expect("grey8.j2k", u8, bits=8)


def sample_grid(t):
    """What the C++ test compares for large outputs: every 4th row/column, plus float64 sum and sum of |x|."""
    a = t.numpy()
    return a[:, ::4, ::4].copy(), float(a.astype(np.float64).sum()), float(np.abs(a.astype(np.float64)).sum())


def preprocess_fixtures():
    os.makedirs(PRE, exist_ok=True)
    # An 8-bit RGB image as a real photo would arrive; float input = u8 / 255 (ToTensor), exact in both.
    img = rng.integers(0, 256, (3, 283, 341), dtype=np.uint8)
    # Spatial structure so that resampling differences would show (pure noise averages out).
    yy, xx = np.mgrid[0:283, 0:341]
    img = ((img.astype(np.float64) * 0.3 + 90 * (1 + np.sin(xx / 7.0 + yy / 11.0)))).clip(0, 255).astype(np.uint8)
    np.save(os.path.join(PRE, "input_u8.npy"), img)
    x = torch.from_numpy(img).float().div(255)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    crop_pct = 0.9
    chains = {
        # torchvision ResNet weights' eval transform.
        "resnet_bilinear256_crop224": T.Compose([T.Resize(256, IM.BILINEAR, antialias=True), T.CenterCrop(224),
                                                 T.Normalize(mean, std)]),
        # DINOv2 eval.
        "dinov2_bicubic256_crop224": T.Compose([T.Resize(256, IM.BICUBIC, antialias=True), T.CenterCrop(224),
                                                T.Normalize(mean, std)]),
        # timm eval, crop_pct 0.9, bicubic: Resize(floor(224 / 0.9) = 248) -> CenterCrop(224).
        "timm_crop_pct0.9_bicubic": T.Compose([T.Resize(math.floor(224 / crop_pct), IM.BICUBIC, antialias=True),
                                               T.CenterCrop(224), T.Normalize(mean, std)]),
        # Resize 224 bilinear antialias (shorter side), no crop.
        "bilinear224_aa": T.Compose([T.Resize(224, IM.BILINEAR, antialias=True)]),
        # Without antialias (the legacy resize some pipelines use), both modes.
        "bilinear224_noaa": T.Compose([T.Resize(224, IM.BILINEAR, antialias=False)]),
        "bicubic224_noaa": T.Compose([T.Resize(224, IM.BICUBIC, antialias=False)]),
        # Exact size, non-uniform scale.
        "bicubic_exact_200x150_aa": T.Compose([T.Resize((200, 150), IM.BICUBIC, antialias=True)]),
    }
    for name, tf in chains.items():
        out = tf(x)
        grid, s, sa = sample_grid(out)
        np.save(os.path.join(PRE, name + ".npy"), grid)
        manifest["preprocess"][name] = {"shape": list(out.shape), "sum": s, "abs_sum": sa, "transform": repr(tf)}
    # Upsampling and small sizes, stored whole: a 3x13x17 float image to 29x23 (aa and not; aa upsampling uses
    # the plain kernel support), and to 5x7 (strong downscale).
    small = torch.from_numpy(rng.standard_normal((3, 13, 17)).astype(np.float32))
    np.save(os.path.join(PRE, "small_input.npy"), small.numpy())
    for mode, im in (("bilinear", IM.BILINEAR), ("bicubic", IM.BICUBIC)):
        for aa in (True, False):
            for (h, w) in ((29, 23), (5, 7), (13, 40)):
                out = T.Resize((h, w), im, antialias=aa)(small)
                name = f"small_{mode}_{h}x{w}_{'aa' if aa else 'noaa'}"
                np.save(os.path.join(PRE, name + ".npy"), out.numpy())
                manifest["preprocess"][name] = {"shape": list(out.shape)}
    # CenterCrop with odd margins (round half to even) and with padding (crop larger than the image).
    for (h, w) in ((8, 9), (20, 11)):
        out = T.CenterCrop((h, w))(small)
        np.save(os.path.join(PRE, f"small_crop_{h}x{w}.npy"), out.numpy())
    # 16-bit fields: u16 / 65535 as float, and numpy.percentile (linear) per channel.
    u16 = rng.integers(0, 4096, (2, 31, 29), dtype=np.uint16)
    u16[1, 0, 0] = 65535
    np.save(os.path.join(PRE, "u16_input.npy"), u16)
    np.save(os.path.join(PRE, "u16_unit.npy"), torch.from_numpy(u16.astype(np.int32)).float().div(65535).numpy())
    pct = {str(q): [float(np.percentile(u16[c].astype(np.float32), q)) for c in range(2)] for q in (0.1, 1, 50, 99, 99.9)}
    manifest["preprocess"]["u16_percentiles"] = pct
    # numpy.percentile oracle for the C++ test: u16 channels (many ties) and a float channel (after
    # illumination correction values are not integers), several q.
    flt = (rng.standard_normal((37, 41)) * 300 + 1000).astype(np.float32)
    np.save(os.path.join(PRE, "float_channel.npy"), flt)
    with open(os.path.join(PRE, "percentiles.csv"), "w") as f:
        f.write("array,channel,q,value\n")
        for q in (0, 0.1, 1, 2.5, 50, 97.5, 99, 99.9, 100):
            for c in range(2):
                f.write("u16_input,%d,%r,%.17g\n" % (c, q, np.percentile(u16[c].astype(np.float32), q)))
            f.write("float_channel,0,%r,%.17g\n" % (q, np.percentile(flt, q)))
    lo = np.percentile(u16.astype(np.float32), 1, axis=(1, 2), keepdims=True)
    hi = np.percentile(u16.astype(np.float32), 99, axis=(1, 2), keepdims=True)
    np.save(os.path.join(PRE, "u16_percentile_1_99.npy"), np.clip((u16 - lo) / (hi - lo), 0, 1).astype(np.float32))
    # Reflect padding as numpy.pad(mode="reflect") for single-cell crops at the border.
    padded = np.pad(small.numpy(), ((0, 0), (6, 6), (6, 6)), mode="reflect")
    np.save(os.path.join(PRE, "small_reflect_pad6.npy"), padded)


if __name__ == "__main__":
    decode_fixtures()
    preprocess_fixtures()
    # The C++ tests read this CSV (no JSON parser needed): name, C, H, W, sum, sum of |x| of large outputs.
    with open(os.path.join(PRE, "summary.csv"), "w") as f:
        f.write("name,c,h,w,sum,abs_sum\n")
        for name, m in manifest["preprocess"].items():
            if "sum" in m:
                f.write("%s,%d,%d,%d,%.17g,%.17g\n" % (name, *m["shape"], m["sum"], m["abs_sum"]))
    with open(os.path.join(ROOT, "fixtures.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"wrote {ROOT} ({total / 1e6:.2f} MB)", file=sys.stderr)
