#!/usr/bin/env python3
"""Writes tests/fixtures/data/rxrx3_core/: a tiny dataset in RxRx3-core's layout, as its documentation describes it
(github.com/recursionpharma/rxrx-datasets, rxrx3-core/README.md): metadata_rxrx3_core.csv with the documented
columns (well_id, experiment_name, plate, address, gene, treatment, SMILES, concentration, perturbation_type,
cell_type; rows in the style of the README's parser-testing examples, quoted SMILES with commas included) and 8-bit
JPEG 2000 images named <address>_s1_<channel>.jp2 for channels 1-6, one site per well, stored under
images/<experiment_name>/Plate<plate>/ (the Hugging Face keys, <experiment>/Plate<n>/<address>_s1_<ch>, as files).
Images are encoded by Pillow (OpenJPEG) and the samples Pillow decodes them to are saved per well as
<well_id>.npy (6 x H x W float32). Two wells are lossless, one is lossy (irreversible 9/7 wavelet, like the
compressed release), so the test checks tabula's OpenJPEG path decodes exactly what Pillow's does.

Run from the repository root:  /work/venv/bin/python weights_tools/reference/rxrx3_fixtures.py
"""
import csv
import os

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "data", "rxrx3_core")
rng = np.random.default_rng(3)

ROWS = [
    # well_id, experiment_name, plate, address, gene, treatment, SMILES, concentration, perturbation_type, cell_type
    ["gene-079_8_H29", "gene-079", "8", "H29", "RPLP2", "RPLP2_guide_4", "", "", "CRISPR", "HUVEC"],
    ["compound-001_19_AD20", "compound-001", "19", "AD20", "", "Dequalinium",
     "CC1=[N+](CCCCCCCCCC[N+]2=C(C)C=C(N)C3=CC=CC=C23)C2=CC=CC=C2C(N)=C1 |c:1,13,21,29,31,35,t:16,19,23,27|",
     "0.25", "COMPOUND", "HUVEC"],
    ["compound-001_11_U08", "compound-001", "11", "U08", "", "EMPTY_control", "", "", "COMPOUND", "HUVEC"],
]
HEADER = ["well_id", "experiment_name", "plate", "address", "gene", "treatment", "SMILES", "concentration",
          "perturbation_type", "cell_type"]


def main():
    os.makedirs(ROOT, exist_ok=True)
    with open(os.path.join(ROOT, "metadata_rxrx3_core.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(ROWS)
    H, W = 12, 16
    yy, xx = np.mgrid[0:H, 0:W]
    for k, row in enumerate(ROWS):
        well_id, exp, plate, addr = row[:4]
        d = os.path.join(ROOT, "images", exp, "Plate" + plate)
        os.makedirs(d, exist_ok=True)
        planes = []
        for ch in range(1, 7):
            base = (np.sin(yy / (2.0 + ch) + k) * np.cos(xx / (3.0 + k)) + 1) * 90 + 10 * ch
            img = (base + rng.integers(0, 20, (H, W))).clip(0, 255).astype(np.uint8)
            path = os.path.join(d, f"{addr}_s1_{ch}.jp2")
            lossy = k == 2
            Image.fromarray(img).save(path, irreversible=lossy, quality_mode="rates", quality_layers=[8] if lossy else None)
            planes.append(np.asarray(Image.open(path)).astype(np.float32))
        np.save(os.path.join(ROOT, well_id + ".npy"), np.stack(planes))


if __name__ == "__main__":
    main()
