"""Fixtures for HEST's ridge probe as HEST runs it (tests/eval/test_metrics_hest.cpp), written by HEST's own code.

    /work/venv/bin/python weights_tools/reference/hest_fixtures.py --hest /path/to/HEST-checkout

HEST (github.com/mahmoodlab/HEST, src/hest/bench/benchmark.py predict_single_split) fits
Pipeline([StandardScaler(), PCA(n_components=latent_dim, random_state=seed)]) on the training split (latent_dim 256,
seed 1 by default) and calls trainer.train_test_reg (Ridge(solver='lsqr', alpha=100 / (D * G), fit_intercept=False))
on the result. scikit-learn's PCA(svd_solver="auto") runs a randomized SVD (numpy RandomState(seed)) once the
training split has more than 500 rows (and fewer than 10x as many rows as features, <= 1000 features). This script
imports train_test_reg from the checkout given (trainer.py only: HEST's package __init__ pulls in its whole
dependency tree), and runs the two pipeline lines of predict_single_split itself.

Writes tests/fixtures/metrics/hest/: numpy's legacy RandomState stream, sklearn PCA(randomized) outputs on small
matrices (both orientations of randomized_svd), and the HEST pipeline on a 4-patient dataset with 540 training rows
per fold; and tests/fixtures/metrics/regress/: a smaller case (exact PCA regime) with k-NN regression and scipy's
lsqr. Versions (HEST commit, scikit-learn, numpy, scipy) go to hest/versions.json.
"""
import argparse
import importlib.util
import json
import os
import subprocess

import numpy as np
import pandas as pd

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics", "hest")


def save(name, obj):
    path = os.path.join(OUT, name)
    if isinstance(obj, pd.DataFrame):
        obj.to_csv(path, index=False)
    else:
        np.save(path, obj)


def load_train_test_reg(hest_root):
    path = os.path.join(hest_root, "src", "hest", "bench", "trainer.py")
    spec = importlib.util.spec_from_file_location("hest_trainer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.train_test_reg


def random_state_fixtures():
    rows = []
    for seed in [0, 1, 12345]:
        rs = np.random.RandomState(seed)
        rows.append(rs.normal(size=21))  # odd: the cached second value of a pair is used, then a fresh pair
    save("random_state_normal.npy", np.stack(rows))
    save("random_state_sample.npy", np.random.RandomState(1).random_sample(8))


def pca_fixtures():
    """sklearn PCA(k, random_state=seed).fit_transform / transform / components_ where svd_solver="auto" picks
    "randomized", for tall (no transpose) and wide (transposed) fit matrices and both n_iter="auto" values."""
    from sklearn.decomposition import PCA
    rng = np.random.default_rng(71)
    cases = []
    # forced_k25: svd_solver="randomized" asked for explicitly where k + n_oversamples exceeds the columns.
    for name, (n, d), k, seed, solver in [("tall_k20", (510, 60), 20, 1, "auto"), ("tall_k5", (510, 60), 5, 1, "auto"),
                                          ("wide_k12", (60, 510), 12, 7, "auto"),
                                          ("forced_k25", (80, 30), 25, 3, "randomized")]:
        # A decaying spectrum, so the leading components are well separated and round-off stays round-off.
        x = rng.normal(size=(n + 40, d)) @ np.diag(np.linspace(3, 0.1, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
        fit, test = x[:n], x[n:]
        pca = PCA(n_components=k, random_state=seed, svd_solver=solver)
        scores = pca.fit_transform(fit)
        save(f"pca_{name}_x.npy", x)
        save(f"pca_{name}_fit_scores.npy", scores)
        save(f"pca_{name}_test_scores.npy", pca.transform(test))
        save(f"pca_{name}_components.npy", pca.components_)
        cases.append(dict(name=name, n_fit=n, n_test=40, d=d, k=k, seed=seed, svd_solver=solver,
                          solver=pca._fit_svd_solver))
    save("pca_cases.csv", pd.DataFrame(cases))


def hest_pipeline_fixtures(train_test_reg):
    import torch
    from scipy.stats import pearsonr
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import StandardScaler  # HEST's own import path for StandardScaler
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    rng = np.random.default_rng(81)
    n_pat, per, d, g, latent_dim, seed = 4, 180, 384, 50, 256, 1
    patient = np.repeat([f"pat{i}" for i in range(n_pat)], per)
    n = n_pat * per
    x = (rng.normal(size=(n, d)) @ np.diag(np.linspace(2, 0.2, d)) @ rng.normal(size=(d, d)) / np.sqrt(d))
    x[:, :8] += np.arange(n_pat).repeat(per)[:, None] * 0.3  # patient batch effect
    x = x.astype(np.float32)
    w = rng.normal(size=(d, g)) * 0.15
    counts = rng.poisson(np.exp(np.clip(x @ w, -3, 3)) * 3)
    y = np.log1p(counts).astype(np.float64)
    genes = [f"g{t}" for t in range(g)]
    rows, solvers = [], []

    for pat in sorted(set(patient)):
        te, tr = patient == pat, patient != pat
        for method, svd_solver, as_published in [("hest", "auto", False), ("hest_exact_pca", "full", False),
                                                 ("hest_f32", "auto", True)]:
            pipe = Pipeline([('scaler', StandardScaler()),
                             ('PCA', PCA(n_components=latent_dim, random_state=seed, svd_solver=svd_solver))])
            if as_published:
                # predict_single_split exactly: float32 embeddings, torch.Tensor (float32) into the ridge.
                X_train, X_test = torch.Tensor(pipe.fit_transform(x[tr])), torch.Tensor(pipe.transform(x[te]))
            else:
                # The same lines on the float64 values of the embeddings, without the float32 cast: tabula's precision.
                X_train, X_test = pipe.fit_transform(x[tr].astype(np.float64)), pipe.transform(x[te].astype(np.float64))
            if method == "hest":
                solvers.append(dict(fold=pat, n_train=int(tr.sum()), solver=pipe.named_steps["PCA"]._fit_svd_solver))
            res, dump = train_test_reg(X_train, X_test, y[tr], y[te], random_state=seed, genes=genes, method="ridge")
            r = [p["pearson_corr"] for p in res["pearson_corrs"]]
            rows.append(dict(method=method, fold=pat, **{f"t{t}": r[t] for t in range(g)}))
            if method == "hest":
                # The converged ridge on the same PCA scores: no early stopping, the tightest comparison.
                alpha = 100 / (X_train.shape[1] * g)
                pred = Ridge(solver="cholesky", alpha=alpha, fit_intercept=False).fit(X_train, y[tr]).predict(X_test)
                r = [pearsonr(y[te][:, t], pred[:, t])[0] for t in range(g)]
                rows.append(dict(method="hest_cholesky", fold=pat, **{f"t{t}": r[t] for t in range(g)}))
    save("features.npy", x)
    save("targets.npy", y)
    save("meta.csv", pd.DataFrame(dict(patient=patient)))
    save("expected.csv", pd.DataFrame(rows))
    save("solvers.csv", pd.DataFrame(solvers))


def regress_fixtures(train_test_reg):
    """tests/fixtures/metrics/regress/: a smaller HEST case (270 training rows: PCA's exact solver), with k-NN
    regression (sklearn KNeighborsRegressor) and scipy's lsqr on a small problem for the LSQR transcription."""
    import torch
    from scipy.sparse.linalg import lsqr
    from scipy.stats import pearsonr
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    out = os.path.join(OUT, "..", "regress")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(41)
    n_pat, per, d, g, seed = 4, 90, 260, 50, 1
    n = n_pat * per
    patient = np.repeat([f"pat{i}" for i in range(n_pat)], per)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, :8] += (np.arange(n_pat).repeat(per)[:, None] * 0.3)  # patient batch effect
    w = rng.normal(size=(d, g)) * 0.08
    counts = rng.poisson(np.exp(np.clip(x @ w, -3, 3)) * 3)
    y = np.log1p(counts).astype(np.float64)
    genes = [f"g{t}" for t in range(g)]
    rows = []

    def pearsons(method, fold, r):
        rows.append(dict(method=method, fold=fold, **{f"t{t}": r[t] for t in range(g)}))

    for pat in sorted(set(patient)):
        te, tr = patient == pat, patient != pat
        for method, as_published in [("ridge_hest_f32", True), ("ridge", False)]:
            pipe = Pipeline([('scaler', StandardScaler()), ('PCA', PCA(n_components=256, random_state=seed))])
            if as_published:
                X_train, X_test = torch.Tensor(pipe.fit_transform(x[tr])), torch.Tensor(pipe.transform(x[te]))
            else:
                X_train, X_test = pipe.fit_transform(x[tr].astype(np.float64)), pipe.transform(x[te].astype(np.float64))
            res, _ = train_test_reg(X_train, X_test, y[tr], y[te], random_state=seed, genes=genes, method="ridge")
            pearsons(method, pat, [p["pearson_corr"] for p in res["pearson_corrs"]])
        # Converged ridge (same alpha, no intercept) on the float64 scores: well defined to round-off.
        alpha = 100 / (X_train.shape[1] * g)
        pred = Ridge(solver="cholesky", alpha=alpha, fit_intercept=False).fit(X_train, y[tr]).predict(X_test)
        pearsons("ridge_exact", pat, [pearsonr(y[te][:, t], pred[:, t])[0] for t in range(g)])
        for k in (1, 5):
            pred = KNeighborsRegressor(n_neighbors=k).fit(x[tr], y[tr]).predict(x[te])
            pearsons(f"knn{k}", pat, [pearsonr(y[te][:, t], pred[:, t])[0] for t in range(g)])
    # scipy's lsqr on a small well-conditioned problem: the transcription checked to round-off, iterations included.
    a_small = rng.normal(size=(40, 7))
    b_small = rng.normal(size=40)
    sol = lsqr(a_small, b_small, damp=0.3, atol=1e-6, btol=1e-6, iter_lim=100)
    np.save(os.path.join(out, "lsqr_a.npy"), a_small)
    np.save(os.path.join(out, "lsqr_b.npy"), b_small)
    np.save(os.path.join(out, "lsqr_x.npy"), sol[0])
    pd.DataFrame(dict(damp=[0.3], tol=[1e-6], itn=[sol[2]])).to_csv(os.path.join(out, "lsqr.csv"), index=False)
    np.save(os.path.join(out, "features.npy"), x)
    np.save(os.path.join(out, "targets.npy"), y)
    pd.DataFrame(dict(patient=patient)).to_csv(os.path.join(out, "meta.csv"), index=False)
    pd.DataFrame(rows).to_csv(os.path.join(out, "expected.csv"), index=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hest", required=True, help="a checkout of github.com/mahmoodlab/HEST")
    ap.add_argument("--hest-commit", default="", help="the checkout's commit, when it is not a git work tree")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    commit = args.hest_commit
    if not commit:
        commit = subprocess.run(["git", "-C", args.hest, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    random_state_fixtures()
    pca_fixtures()
    train_test_reg = load_train_test_reg(args.hest)
    hest_pipeline_fixtures(train_test_reg)
    regress_fixtures(train_test_reg)
    import scipy
    import sklearn
    with open(os.path.join(OUT, "versions.json"), "w") as f:
        json.dump(dict(hest_commit=commit.strip(), sklearn=sklearn.__version__, numpy=np.__version__,
                       scipy=scipy.__version__), f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
