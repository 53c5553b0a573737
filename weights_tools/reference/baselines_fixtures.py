#!/usr/bin/env python3
"""Fixtures for the `nuclei` baseline's building blocks, from the tools CellProfiler-style pipelines use:
scipy.ndimage.gaussian_filter (mode='reflect', truncate=4), skimage.filters.threshold_otsu (256 bins) and
scipy.ndimage.distance_transform_edt, on a small synthetic nuclear image. Also the region properties skimage
reports for each labelled object of an unambiguous image (separated discs and ellipses).

Writes tests/fixtures/baselines/*.npy. Run: /path/to/venv/bin/python weights_tools/reference/baselines_fixtures.py
Needs numpy, scipy, scikit-image (never at tabula run time).
"""
import os

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "baselines")
os.makedirs(OUT, exist_ok=True)

rng = np.random.default_rng(0)
H, W = 96, 80
yy, xx = np.mgrid[0:H, 0:W]
img = np.zeros((H, W), np.float64)
objects = [(20, 18, 7, 7), (22, 55, 9, 5), (60, 20, 6, 6), (65, 58, 10, 6), (45, 38, 5, 5)]  # cy, cx, ry, rx
for cy, cx, ry, rx in objects:
    img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = 0.8
img += rng.normal(0, 0.05, img.shape)
img = img.astype(np.float32)
np.save(os.path.join(OUT, "plane.npy"), img)

blur = ndi.gaussian_filter(img.astype(np.float64), sigma=2.0, mode="reflect", truncate=4.0).astype(np.float32)
np.save(os.path.join(OUT, "blur_sigma2.npy"), blur)
thr = filters.threshold_otsu(blur, nbins=256)
mask = blur > thr
edt = ndi.distance_transform_edt(mask).astype(np.float32)
np.save(os.path.join(OUT, "edt.npy"), edt)

# Region properties on the clean (noise-free) objects: area, perimeter-free moments, axes, eccentricity.
clean = np.zeros((H, W), np.int32)
for i, (cy, cx, ry, rx) in enumerate(objects):
    clean[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = i + 1
props = []
for r in measure.regionprops(clean):
    props.append([r.label, r.area, r.centroid[0], r.centroid[1], r.axis_major_length, r.axis_minor_length,
                  r.eccentricity])
np.save(os.path.join(OUT, "clean_labels.npy"), clean)
np.save(os.path.join(OUT, "clean_props.npy"), np.array(props, np.float64))
np.save(os.path.join(OUT, "otsu.npy"), np.array([thr, mask.sum()], np.float64))  # threshold, foreground pixels
print("otsu", thr, "objects", len(props))
