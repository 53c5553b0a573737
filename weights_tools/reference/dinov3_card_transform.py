#!/usr/bin/env python3
"""Writes tests/fixtures/newvit/dinov3_card_transform.{json,npy}: the DINOv3 cards' eval transform on real 8-bit
photographs, for `tabula preprocess --model dinov3-*` (tests/cli/test_cli_cards.cpp).

The transform is DINOv3's make_classification_eval_transform() at its defaults, as its k-NN and linear evaluations
use it (github.com/facebookresearch/dinov3, dinov3/data/transforms.py): torchvision.transforms.v2 on the PIL image
-- ToImage (uint8 tensor), Resize(256, BICUBIC) (antialiased on uint8), CenterCrop(224), ToDtype(float32,
scale=True), Normalize(ImageNet mean, std). The images are tests/fixtures/cards/images/rects (scikit-image's
photographs, cropped; written by card_fixtures.py). Stored: the sha256 of the float32 [N, 3, 224, 224] tensor and
every 29th value.

Run from the repository root:  /work/venv/bin/python weights_tools/reference/dinov3_card_transform.py
"""
import csv
import hashlib
import json
import os

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.transforms import v2

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, "..", "..", "tests", "fixtures", "cards", "images")
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "newvit")

transform = v2.Compose([
    v2.ToImage(),
    v2.Resize(256, interpolation=v2.InterpolationMode.BICUBIC),
    v2.CenterCrop(224),
    v2.ToDtype(torch.float32, scale=True),
    v2.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
])

with open(os.path.join(IMAGES, "rects.csv")) as f:
    paths = [row["image"] for row in csv.DictReader(f)]
x = torch.stack([transform(Image.open(os.path.join(IMAGES, p)).convert("RGB")) for p in paths]).contiguous()
data = x.numpy().astype("<f4")
np.save(os.path.join(OUT, "dinov3_card_transform.every29.npy"), data.reshape(-1)[::29].copy())
meta = {
    "images": "rects",
    "input_shape": list(data.shape),
    "input_sha256": hashlib.sha256(data.tobytes()).hexdigest(),
    "made_by": f"torch {torch.__version__}, torchvision {torchvision.__version__}",
}
with open(os.path.join(OUT, "dinov3_card_transform.json"), "w") as f:
    json.dump(meta, f, indent=1)
print(meta)
