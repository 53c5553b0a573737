#!/usr/bin/env python3
"""Fixtures for `tabula embed`'s outputs: the .h5ad anndata writes for a small embedding folder, and the
well-level means numpy/pandas give for it.

Writes tests/fixtures/embed/h5ad/: an embedding folder as `tabula embed` leaves it (index.csv, layer1.npy,
avgpool.npy, run.json), `reference.h5ad` written by anndata.AnnData(...).write_h5ad (X = the last layer of
run.json, obsm = the others, obs = index.csv read as strings with row ids "0".."n-1", uns["run"] = json.load of
run.json with the documented mapping, uns["run_json"] = its text), and the well means:
`well_<layer>.npy` = numpy's float32 x[rows].mean(axis=0) per (Metadata_Plate, Metadata_Well), pandas groupby order, `well_index.csv`.
Run: /path/to/venv/bin/python weights_tools/reference/embed_fixtures.py   (needs numpy, pandas, anndata, h5py)
"""
import json
import os

import anndata as ad
import numpy as np
import pandas as pd

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "embed", "h5ad")
os.makedirs(OUT, exist_ok=True)

rng = np.random.default_rng(0)
plates = ["P2", "P1"]
rows = []
for p in plates:
    for w in ["B03", "A01", "A02"]:
        for s in (1, 2, 3):
            rows.append({"Metadata_Plate": p, "Metadata_Well": w, "Metadata_Site": str(s),
                         "Metadata_JCP2022": "JCP2022_033924" if w == "A01" else f"JCP2022_{w}",
                         "Metadata_note": f"µ-{p}{w}{s}",  # unique per row: stays a string-array; UTF-8
                         "path": f"images/{p}/{w}_s{s}.tiff"})
index = pd.DataFrame(rows)
index.to_csv(os.path.join(OUT, "index.csv"), index=False)
n = len(index)
layers = {"layer1": rng.normal(size=(n, 3)).astype(np.float32),
          "avgpool": rng.normal(size=(n, 5)).astype(np.float32)}
for name, x in layers.items():
    np.save(os.path.join(OUT, name + ".npy"), x)
run = {"tabula": {"version": "0.1.0", "git": "abc123"}, "arch": "resnet50",
       "weights": {"kind": "untrained", "seed": 0, "init": "torch.manual_seed(seed)"},
       "data": {"path": "/data/load_data.csv", "kind": "jump", "rows": n},
       "scale": 0.5, "flags": [1, 2, 3], "ratios": [0.25, 1.5], "names": ["a", "b"], "fast": True,
       "missing": None, "layers": [{"name": "layer1", "dim": 3}, {"name": "avgpool", "dim": 5}]}
run_text = json.dumps(run, separators=(",", ":"))
with open(os.path.join(OUT, "run.json"), "w") as f:
    f.write(run_text + "\n")


def to_uns(v):
    """run.json -> what tabula writes into uns/run (see embed/h5ad.h)."""
    if isinstance(v, dict):
        return {k: to_uns(x) for k, x in v.items() if x is not None}
    if isinstance(v, bool):
        return np.bool_(v)
    if isinstance(v, int):
        return np.int64(v)
    if isinstance(v, float):
        return np.float64(v)
    if isinstance(v, list):
        if v and all(isinstance(x, str) for x in v):
            return np.array(v, dtype=object)
        if v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return np.array(v, dtype=np.int64)
        if v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            return np.array(v, dtype=np.float64)
        return {str(i): to_uns(x) for i, x in enumerate(v) if x is not None}
    return v


obs = pd.read_csv(os.path.join(OUT, "index.csv"), dtype=str, keep_default_na=False)
obs.index = pd.Index([str(i) for i in range(n)])
names = [l["name"] for l in run["layers"]]
a = ad.AnnData(X=layers[names[-1]], obs=obs)
for l in names[:-1]:
    a.obsm[l] = layers[l]
a.uns["run"] = to_uns(run)
a.uns["run_json"] = run_text
a.write_h5ad(os.path.join(OUT, "reference.h5ad"))

# Well means as numpy computes them: x[rows].mean(axis=0) on float32 (a float32 sum over rows, then one division),
# groups in pandas groupby(sort=True) order.
by = ["Metadata_Plate", "Metadata_Well"]
groups = index.groupby(by, sort=True).indices  # key -> row positions, keys sorted
for name, x in layers.items():
    np.save(os.path.join(OUT, "well_" + name + ".npy"),
            np.stack([x[np.asarray(rows)].mean(axis=0) for rows in groups.values()]).astype(np.float32))
keys = index.groupby(by, sort=True).size().reset_index()
keys.columns = by + ["n_aggregated"]
keys.to_csv(os.path.join(OUT, "well_index.csv"), index=False)
print("wrote", OUT)
