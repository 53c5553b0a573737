#!/usr/bin/env python3
"""Writes tests/fixtures/data/pillow/: Pillow's own Image.resize outputs on real photographs (scikit-image's bundled
IHC, retina and cell images, cropped small), for every resampling filter torchvision/timm can ask for, at up- and
downscales (strong ones too, where Pillow's support widens), one-dimension changes and odd ratios; plus torchvision
eval chains applied to the PIL images (Resize -> CenterCrop -> ToTensor -> Normalize), the way timm/torchvision
users run them; and torch's own uint8 resampling (transforms.v2 on uint8 tensors) at the same sizes.

Run from the repository root:  /work/venv/bin/python weights_tools/reference/pillow_fixtures.py
Inputs and outputs are PNG (lossless uint8); cases.csv lists every resize, chains.csv every chain.
"""
import csv
import json
import os

import numpy as np
import PIL
import skimage
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode as IM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "data", "pillow")
SK = os.path.join(os.path.dirname(skimage.__file__), "data")
FILTERS = {"box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR, "hamming": Image.Resampling.HAMMING,
           "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def inputs():
    ihc = Image.open(os.path.join(SK, "ihc.png")).convert("RGB")
    retina = Image.open(os.path.join(SK, "retina.jpg")).convert("RGB")
    cell = Image.open(os.path.join(SK, "cell.png")).convert("L")
    return {
        "ihc": ihc.crop((50, 100, 178, 196)),          # 128 x 96 RGB
        "retina": retina.crop((600, 500, 720, 590)),   # 120 x 90 RGB
        "cell": cell.crop((120, 60, 220, 140)),        # 100 x 80 L
        "ihc_big": ihc.crop((10, 20, 310, 280)),       # 300 x 260 RGB, for strong downscales
    }


SIZES = {  # (width, height)
    # (118, 75) and (118, 76): either side of Pillow 13's vertical-pass-first rule (21 > 2 * 10, 20 = 2 * 10).
    "ihc": [(64, 48), (37, 53), (201, 150), (128, 61), (77, 96), (129, 97), (13, 9), (118, 75), (118, 76)],
    "retina": [(60, 45), (233, 171), (120, 40), (47, 90)],
    "cell": [(50, 40), (31, 23), (173, 139), (100, 79)],
    "ihc_big": [(56, 48), (64, 55), (23, 31), (299, 17)],
}


def main():
    os.makedirs(ROOT, exist_ok=True)
    ims = inputs()
    for name, im in ims.items():
        im.save(os.path.join(ROOT, f"{name}.png"))
    rows = []
    for name, im in ims.items():
        for (w, h) in SIZES[name]:
            for fname, f in FILTERS.items():
                out = im.resize((w, h), f)
                fn = f"{name}_{fname}_{w}x{h}.png"
                out.save(os.path.join(ROOT, fn))
                rows.append([name, fname, w, h, fn])
    with open(os.path.join(ROOT, "cases.csv"), "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["input", "filter", "width", "height", "output"])
        wr.writerows(rows)

    # torch's own uint8 resampling (torchvision.transforms.v2 Resize on a uint8 tensor, antialias=True): bilinear and
    # bicubic, the sizes above for the RGB inputs.
    from torchvision.transforms import v2
    trows = []
    for name in ("ihc", "retina", "ihc_big"):
        t = v2.ToImage()(ims[name])
        for (w, h) in SIZES[name]:
            for interp in ("bilinear", "bicubic"):
                o = v2.functional.resize(t, [h, w], interpolation=IM(interp), antialias=True)
                fn = f"torch_{name}_{interp}_{w}x{h}.png"
                Image.fromarray(o.permute(1, 2, 0).numpy()).save(os.path.join(ROOT, fn))
                trows.append([name, interp, w, h, fn])
    with open(os.path.join(ROOT, "torch_cases.csv"), "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["input", "filter", "width", "height", "output"])
        wr.writerows(trows)

    # Eval chains on PIL images, as torchvision/timm users run them; float32 CHW outputs.
    imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    chains = [
        ("ihc", "bicubic", 72, 64, imagenet),
        ("ihc", "bilinear", 70, 64, ([0.5] * 3, [0.5] * 3)),
        ("retina", "bicubic", 64, 64, ([0.707223, 0.578729, 0.703617], [0.211883, 0.230117, 0.177517])),
        ("ihc_big", "lanczos", 60, 56, imagenet),
    ]
    crows = []
    for name, interp, resize, crop, (mean, std) in chains:
        tf = T.Compose([T.Resize(resize, interpolation=IM(interp)), T.CenterCrop(crop), T.ToTensor(),
                        T.Normalize(mean, std)])
        x = tf(ims[name]).numpy().astype(np.float32)
        fn = f"chain_{name}_{interp}_{resize}_{crop}.npy"
        np.save(os.path.join(ROOT, fn), x)
        crows.append([name, interp, resize, crop, " ".join(map(repr, mean)), " ".join(map(repr, std)), fn])
    with open(os.path.join(ROOT, "chains.csv"), "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["input", "interp", "resize", "crop", "mean", "std", "output"])
        wr.writerows(crows)
    with open(os.path.join(ROOT, "versions.json"), "w") as fh:
        json.dump({"pillow": PIL.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                   "scikit-image": skimage.__version__}, fh, indent=1)
    print(len(rows), "resizes,", len(crows), "chains")


if __name__ == "__main__":
    main()
