#!/usr/bin/env python3
"""Reads the embedding.h5ad that `tabula embed --format h5ad` wrote with anndata itself and checks it against the
folder's own files: X == the last layer's .npy, obsm[layer] == the other layers, obs == index.csv as
pandas.read_csv(keep_default_na=False) reads it (same dtypes: integer columns such as n_aggregated are int64), var
names carry the layer and, for per-channel runs, the channel ("avgpool.DNA.0"), uns["run"]["layers"] is the list of
layer names, uns["run"]["arch"] and uns["run_json"] == run.json. Exit status 1 on any difference.

Usage: /path/to/venv/bin/python bench/h5ad_anndata_check.py EMBED_DIR [EMBED_DIR ...]   (needs anndata, numpy, pandas)
"""
import json
import sys

import anndata as ad
import numpy as np
import pandas as pd

bad = 0
for d in sys.argv[1:]:
    a = ad.read_h5ad(f"{d}/embedding.h5ad")
    run = json.load(open(f"{d}/run.json"))
    names = [l["name"] for l in run["layers"]]
    checks = {"X": a.X.dtype == np.float32 and np.array_equal(a.X, np.load(f"{d}/{names[-1]}.npy"))}
    for l in names[:-1]:
        checks[f"obsm[{l}]"] = np.array_equal(a.obsm[l], np.load(f"{d}/{l}.npy"))
    idx = pd.read_csv(f"{d}/index.csv", keep_default_na=False)
    checks["obs"] = list(a.obs.columns) == list(idx.columns) and (a.obs.astype(str).values == idx.astype(str).values).all()
    checks["obs_dtypes"] = all((a.obs[c].dtype.kind in "iuf") == (idx[c].dtype.kind in "iuf") for c in idx.columns)
    inputs = run.get("inputs", [])
    dim = a.X.shape[1]
    if len(inputs) > 1:
        want_var = [f"{names[-1]}.{ch}.{j}" for ch in inputs for j in range(dim // len(inputs))]
    else:
        feats = next((l.get("features") for l in run["layers"] if l["name"] == names[-1]), None)
        want_var = feats if feats else [f"{names[-1]}.{j}" for j in range(dim)]
    checks["var_names"] = list(a.var_names) == want_var
    checks["uns.layers"] = list(a.uns["run"]["layers"]) == names
    checks["obs_names"] = list(a.obs_names) == [str(i) for i in range(len(idx))]
    checks["uns.run"] = a.uns["run"]["arch"] == run["arch"] and json.loads(a.uns["run_json"]) == run
    print(d, a.shape, " ".join(f"{k}={'ok' if v else 'DIFF'}" for k, v in checks.items()))
    bad += not all(checks.values())
sys.exit(1 if bad else 0)
