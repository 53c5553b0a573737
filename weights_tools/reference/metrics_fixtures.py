"""Fixtures for tests/eval/test_metrics*.cpp, written by the real tools.

Run from the repository root with the reference venv:
    /work/venv/bin/python weights_tools/reference/metrics_fixtures.py --dinov2 /path/to/dinov2-checkout [CASE ...]
(the kNN case imports DINOv2's KnnModule from the checkout; matched: commit b8931f7; it also needs torchmetrics and
omegaconf, which dinov2.eval imports.)
Writes tests/fixtures/metrics/<case>/... (small .npy/.csv/.json files). Versions are recorded in versions.json.
Every reference number comes from the field's own code, called here: copairs, pycytominer (normalize), EFAAR's
efaar_benchmarking (PyPI 1.0: aggregate, known_relationship_benchmark, centerscale/TVN, embed_by_pca), DINOv2's kNN
module body, scikit-learn and scipy. HEST's pipeline has its own script, hest_fixtures.py (it imports HEST's code
from a checkout). The versions used are recorded in tests/fixtures/metrics/versions.json.
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import pandas as pd

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics")


def save_case(name, **files):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for fname, obj in files.items():
        path = os.path.join(d, fname.replace("__", "."))
        if isinstance(obj, pd.DataFrame):
            obj.to_csv(path, index=False)
        elif isinstance(obj, np.ndarray):
            np.save(path, obj)
        else:
            with open(path, "w") as f:
                json.dump(obj, f, indent=1, sort_keys=True)


# ---------------------------------------------------------------------------------------------------- copairs mAP
def copairs_case(name, feats, meta, pos_sameby, pos_diffby, neg_sameby, neg_diffby, null_size=200, seed=0):
    from copairs.map import average_precision, mean_average_precision

    ap = average_precision(meta, feats, pos_sameby, pos_diffby, neg_sameby, neg_diffby, progress_bar=False)
    cache = tempfile.mkdtemp()
    try:
        m = mean_average_precision(ap, pos_sameby, null_size=null_size, threshold=0.05, seed=seed,
                                   progress_bar=False, cache_dir=cache)
        # The null vectors copairs used (read back from its cache), so the test can check the p-value formula.
        kept = ap.query("~average_precision.isna() and n_pos_pairs > 0")
        confs = np.unique(kept[["n_pos_pairs", "n_total_pairs"]].values, axis=0)
        nulls = np.stack([np.load(os.path.join(cache, f"seed{seed}", f"ns{null_size}", f"n{t}_k{k}.npy"))
                          for k, t in confs]).astype(np.float32)
    finally:
        shutil.rmtree(cache)
    m = m.drop(columns=["indices"])
    params = pd.DataFrame(dict(key=["pos_sameby", "pos_diffby", "neg_sameby", "neg_diffby", "null_size", "seed"],
                               value=[",".join(pos_sameby), ",".join(pos_diffby), ",".join(neg_sameby),
                                      ",".join(neg_diffby), str(null_size), str(seed)]))
    save_case(name, features__npy=feats.astype(np.float32), meta__csv=meta, ap__csv=ap, map__csv=m,
              null_confs__npy=confs.astype(np.int64), nulls__npy=nulls, params__csv=params)


def jump_meta(rng, n_cpd, reps, n_plates, dmso_per_plate):
    rows = []
    for c in range(n_cpd):
        plates = rng.choice(n_plates, size=reps, replace=reps > n_plates)
        for p in plates:
            rows.append(dict(Metadata_JCP2022=f"JCP{c:04d}", Metadata_Plate=f"P{p}", Metadata_negcon=False))
    for p in range(n_plates):
        for _ in range(dmso_per_plate):
            rows.append(dict(Metadata_JCP2022="DMSO", Metadata_Plate=f"P{p}", Metadata_negcon=True))
    meta = pd.DataFrame(rows).sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    # JUMP's phenotypic-activity preset: each DMSO well is its own reference (never a positive of another DMSO).
    from copairs.matching import assign_reference_index
    meta = assign_reference_index(meta, "Metadata_negcon", reference_col="Metadata_Reference_Index")
    return meta


def map_fixtures():
    rng = np.random.default_rng(7)
    jump = dict(pos_sameby=["Metadata_JCP2022", "Metadata_Reference_Index"], pos_diffby=[],
                neg_sameby=["Metadata_Plate"], neg_diffby=["Metadata_negcon", "Metadata_Reference_Index"])
    # 1. JUMP preset on random features with a planted signal for some compounds.
    meta = jump_meta(rng, n_cpd=30, reps=4, n_plates=4, dmso_per_plate=6)
    feats = rng.normal(size=(len(meta), 16))
    codes = meta["Metadata_JCP2022"].astype("category").cat.codes.values
    centers = rng.normal(size=(codes.max() + 1, 16))
    strength = (codes % 3) * 0.7
    feats += centers[codes] * strength[:, None]
    copairs_case("map_jump", feats.astype(np.float32), meta, **jump)
    # 2. Ties: tiny integer features, many identical rows, so positives tie with negatives at many ranks.
    meta = jump_meta(rng, n_cpd=12, reps=3, n_plates=2, dmso_per_plate=5)
    feats = rng.integers(0, 2, size=(len(meta), 3)).astype(np.float32)
    feats[feats.sum(1) == 0, 0] = 1  # no zero rows (cosine undefined)
    copairs_case("map_ties", feats, meta, **jump)
    # 3. No sameby for negatives (dense path), a pos_diffby column, and numeric metadata.
    n = 48
    meta = pd.DataFrame(dict(cpd=rng.integers(0, 8, n), batch=rng.integers(0, 3, n), well=np.arange(n)))
    feats = rng.normal(size=(n, 6)).astype(np.float32)
    feats[:, 0] += meta["cpd"].values * 0.5
    copairs_case("map_dense", feats, meta, pos_sameby=["cpd"], pos_diffby=["batch"], neg_sameby=[],
                 neg_diffby=["cpd"])
    # 4. Overlapping rules: pairs that are both positive and negative count twice (with ties from rounding).
    meta = pd.DataFrame(dict(g=rng.integers(0, 4, 30), plate=rng.integers(0, 2, 30)))
    feats = np.round(rng.normal(size=(30, 2)), 1).astype(np.float32)
    feats[np.abs(feats).sum(1) == 0, 0] = 1
    copairs_case("map_overlap", feats, meta, pos_sameby=["g"], pos_diffby=[], neg_sameby=["plate"], neg_diffby=[])


# ---------------------------------------------------------------------------------------------- EFAAR recall
def map_null_fixtures():
    """numpy's Generator(PCG64) stream and copairs' null, for the bit-exact replay in eval/metrics/map.cpp."""
    from copairs.compute import random_ap
    rows = []
    for seed in [0, 1, 8095, 2**40 + 5]:
        for k, v in enumerate(np.random.PCG64(seed).random_raw(6)):
            rows.append(dict(what="raw64", seed=seed, k=k, value=str(int(v))))
    for seed in [0, 1, 12345]:
        for k, v in enumerate(np.random.default_rng(seed).integers(8096, size=24)):
            rows.append(dict(what="integers8096", seed=seed, k=k, value=str(int(v))))
    # (n_pos, n_total, seed): single positive, < 8 terms, 8..128 terms (8 accumulators), > 128 (recursive halves).
    cases = [(1, 2, 3), (4, 36, 7), (5, 5, 0), (9, 50, 11), (17, 40, 8095), (130, 300, 5), (300, 700, 1)]
    nulls = np.stack([random_ap(64, k, m, seed) for k, m, seed in cases]).astype(np.float32)
    # copairs' cosine (x / np.linalg.norm, then np.sum(x * y)) for lengths on every path of numpy's pairwise sum.
    from copairs.compute import pairwise_cosine
    crng = np.random.default_rng(3)
    cos = {}
    for d in [5, 8, 100, 130, 300, 768]:
        x = crng.normal(size=(8, d)).astype(np.float32)
        y = crng.normal(size=(8, d)).astype(np.float32)
        cos[f"cos_{d}_x__npy"], cos[f"cos_{d}_y__npy"] = x, y
        cos[f"cos_{d}_sim__npy"] = pairwise_cosine(x, y).astype(np.float32)
        cos[f"cos_{d}_dot__npy"] = np.sum(x * y, axis=1).astype(np.float32)
    save_case("map_null", **cos)
    save_case("map_null", stream__csv=pd.DataFrame(rows),
              cases__csv=pd.DataFrame(cases, columns=["n_pos", "n_total", "seed"]), random_ap__npy=nulls)


def recall_fixtures():
    """EFAAR_benchmarking 1.0's own aggregate + known_relationship_benchmark (compute_recall, filter_relationships,
    sklearn's cosine_similarity) on a relationship file it reads from a benchmark folder."""
    from sklearn.utils import Bunch
    efaar, benchmarking = import_efaar()
    rng = np.random.default_rng(11)
    n_genes, reps, d = 90, 3, 16
    genes = [f"G{g:03d}" for g in range(n_genes)]
    # Complexes of 3 genes share a direction, so annotated pairs inside a complex are retrievable.
    centers = rng.normal(size=(n_genes // 3, d))
    rows, feats = [], []
    for g in range(n_genes):
        for r in range(reps):
            rows.append(dict(gene=genes[g], plate=f"P{r}"))
            feats.append(centers[g // 3] * (1.0 if g % 2 else 0.2) + rng.normal(size=d))
    meta = pd.DataFrame(rows)
    feats = np.asarray(feats, dtype=np.float32)
    rels = []
    for c in range(n_genes // 3):
        a, b, e = genes[3 * c], genes[3 * c + 1], genes[3 * c + 2]
        rels += [(a, b), (b, e), (e, a)]
    for _ in range(60):
        i, j = rng.integers(0, n_genes, 2)
        rels.append((genes[i], genes[j]))
    rels += [(genes[1], genes[0]), (genes[5], genes[5]), ("NOTINMAP", genes[3])]  # reversed dup, self, unknown
    rel_df = pd.DataFrame(rels, columns=["entity1", "entity2"])
    # The last pair is given high-first: EFAAR sorts it and names it recall_0.2_0.8.
    thr = [(0.05, 0.95), (0.1, 0.9), (0.8, 0.2)]
    bench_dir = tempfile.mkdtemp()
    res = []
    try:
        rel_df.to_csv(os.path.join(bench_dir, "relationships.txt"), index=False)
        for method in ["mean", "median"]:
            agg = efaar.aggregate(feats, meta, "gene", method=method)
            save_case("recall", **{f"agg_{method}__npy": agg.features.values.astype(np.float32)})
            m = benchmarking.known_relationship_benchmark(Bunch(features=agg.features, metadata=agg.metadata), "gene",
                                                          benchmark_sources=["relationships"], recall_thr_pairs=thr,
                                                          min_req_entity_cnt=1, benchmark_data_dir=bench_dir)
            res.append(m.assign(aggregate=method))
    finally:
        shutil.rmtree(bench_dir)
    save_case("recall", features__npy=feats, meta__csv=meta, relationships__csv=rel_df,
              expected__csv=pd.concat(res, ignore_index=True))

# ------------------------------------------------------------------------------------------------------ kNN
def dinov2_knn_probas(train, train_labels, test, ks, T, num_classes):
    """dinov2/eval/knn.py's own KnnModule (a checkout passed with --dinov2) in one process: a one-rank gloo group
    serves its broadcast/gather; features L2-normalised as its ModelWithNormalize does."""
    import torch
    import torch.distributed as dist
    from torch.nn.functional import normalize
    from dinov2.eval.knn import KnnModule
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
    train = normalize(torch.from_numpy(train), dim=1, p=2)
    test = normalize(torch.from_numpy(test), dim=1, p=2)
    knn = KnnModule(train, torch.from_numpy(train_labels), ks, T, torch.device("cpu"), num_classes=num_classes)
    with torch.no_grad():
        return {k: v.numpy() for k, v in knn(test).items()}


def knn_fixtures():
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.metrics import top_k_accuracy_score
    rng = np.random.default_rng(21)
    n, d, n_classes = 320, 24, 7
    classes = np.array([f"c{i}" for i in rng.permutation(n_classes)])
    y = rng.integers(0, n_classes, n)
    centers = rng.normal(size=(n_classes, d))
    x = (centers[y] * 0.6 + rng.normal(size=(n, d))).astype(np.float32)
    split = np.where(rng.random(n) < 0.7, "train", "test")
    meta = pd.DataFrame(dict(label=classes[y], split=split, plate=rng.integers(0, 4, n)))
    codes = np.searchsorted(np.sort(classes), classes[y])  # sorted-label class codes (LabelEncoder order)
    tr, te = split == "train", split == "test"
    ks = [10, 20, 50]
    probas = dinov2_knn_probas(x[tr], codes[tr], x[te], ks, 0.07, n_classes)
    rows = []
    preds = {}
    for k in ks:
        p = probas[k]
        preds[f"dinov2_k{k}"] = p.argmax(1)
        top5 = np.argsort(-p, axis=1, kind="stable")[:, :5]
        rows.append(dict(method="dinov2", k=k, top1=float((p.argmax(1) == codes[te]).mean()),
                         top5=float((top5 == codes[te][:, None]).any(1).mean())))
    clf = KNeighborsClassifier().fit(x[tr], codes[tr])
    pred = clf.predict(x[te])
    preds["sklearn_k5"] = pred
    rows.append(dict(method="sklearn", k=5, top1=float((pred == codes[te]).mean()),
                     top5=float(top_k_accuracy_score(codes[te], clf.predict_proba(x[te]), k=5,
                                                     labels=np.arange(n_classes)))))
    save_case("knn", features__npy=x, meta__csv=meta, expected__csv=pd.DataFrame(rows),
              predictions__csv=pd.DataFrame(preds))

# ------------------------------------------------------------------------------------------------------ CKA
def np_linear_cka(x, y):
    x = x.astype(np.float64) - x.astype(np.float64).mean(0)
    y = y.astype(np.float64) - y.astype(np.float64).mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def np_hsic1(k, l):
    """Unbiased HSIC (Song et al. 2012, eq. 5) as used by Nguyen et al.'s minibatch CKA."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    ones = np.ones(n)
    return (np.trace(k @ l) + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (ones @ k @ l @ ones)) / (n * (n - 3))


def np_minibatch_cka(x, y, batch):
    x, y = x.astype(np.float64), y.astype(np.float64)
    kl = kk = ll = 0.0
    for b in range(0, len(x), batch):
        xb, yb = x[b:b + batch], y[b:b + batch]
        if len(xb) < 4:
            break
        k, l = xb @ xb.T, yb @ yb.T
        kl += np_hsic1(k, l); kk += np_hsic1(k, k); ll += np_hsic1(l, l)
    return kl / np.sqrt(kk * ll)


def cka_fixtures():
    from scipy.stats import pearsonr, spearmanr
    rng = np.random.default_rng(31)
    n = 150
    x = rng.normal(size=(n, 20)).astype(np.float32)
    y = (x @ rng.normal(size=(20, 12)) + 0.5 * rng.normal(size=(n, 12))).astype(np.float32)
    z = rng.normal(size=(n, 9)).astype(np.float32) + 3.0
    rows = []
    for a, b, name in [(x, y, "x_y"), (x, z, "x_z"), (y, z, "y_z"), (x, x, "x_x")]:
        rows.append(dict(pair=name, linear=np_linear_cka(a, b), unbiased=np_minibatch_cka(a, b, n),
                         minibatch_32=np_minibatch_cka(a, b, 32)))
    s1 = np.round(rng.normal(size=60), 1)  # rounded: ties for Spearman's average ranks
    s2 = np.round(s1 + rng.normal(size=60), 1)
    corr = pd.DataFrame([dict(pearson=pearsonr(s1, s2)[0], spearman=spearmanr(s1, s2)[0])])
    save_case("cka", x__npy=x, y__npy=y, z__npy=z, expected__csv=pd.DataFrame(rows), corr__csv=corr,
              scores__csv=pd.DataFrame(dict(a=s1, b=s2)))

# ----------------------------------------------------------------------------------------------- normalisation
def import_efaar():
    """efaar_benchmarking 1.0 (PyPI) as published. Its modules import scvi-tools (efaar.embed_by_scvi_anndata) and
    geomloss (benchmarking's signal metrics) at the top; neither is used by the functions called here, so they are
    replaced by empty modules when absent instead of installing their (large) dependency trees."""
    import types
    for name in ["scvi", "scvi.model", "geomloss"]:
        try:
            __import__(name)
        except ImportError:
            mod = types.ModuleType(name)
            mod.SCVI = mod.SamplesLoss = None
            sys.modules[name] = mod
    import efaar_benchmarking.benchmarking as benchmarking
    import efaar_benchmarking.efaar as efaar
    return efaar, benchmarking


def pycytominer_per_group(x, meta, group_col, samples, **kwargs):
    """pycytominer.normalize run on each group (plate) separately, as JUMP's pipelines do per plate; features are
    handed over as float64 (the exact values of the float32 inputs), the precision tabula computes in."""
    from pycytominer import normalize
    cols = [f"f{j}" for j in range(x.shape[1])]
    out = np.empty(x.shape, dtype=np.float64)
    for g in sorted(meta[group_col].unique()):
        rows = (meta[group_col] == g).values
        df = pd.concat([meta[rows].reset_index(drop=True).add_prefix("Metadata_"),
                        pd.DataFrame(x[rows].astype(np.float64), columns=cols)], axis=1)
        res = normalize(df, features=cols, meta_features=[c for c in df.columns if c.startswith("Metadata_")],
                        samples=samples, **kwargs)
        out[rows] = res[[c for c in res.columns if not c.startswith("Metadata_")]].values
    return out


def norm_case(name, x, meta):
    from scipy.stats import median_abs_deviation
    efaar, _ = import_efaar()
    samples = "Metadata_pert == 'DMSO'"
    out = {}
    out["standardize"] = pycytominer_per_group(x, meta, "plate", samples, method="standardize")
    out["mad"] = pycytominer_per_group(x, meta, "plate", samples, method="mad_robustize")
    for m in ["PCA", "ZCA", "PCA-cor", "ZCA-cor"]:
        out["spherize_" + m.lower()] = pycytominer_per_group(x, meta, "plate", samples, method="spherize",
                                                             spherize_method=m)
    # Not pycytominer methods: scipy's own MAD scalings, applied as RobustMAD applies its MAD.
    for key, scale in [("mad_normal", "normal"), ("mad_raw", 1.0)]:
        y = np.empty(x.shape, dtype=np.float64)
        for p in sorted(meta["plate"].unique()):
            rows = (meta["plate"] == p).values
            ctrl = x[rows & (meta["pert"] == "DMSO").values].astype(np.float64)
            y[rows] = (x[rows] - np.median(ctrl, axis=0)) / (median_abs_deviation(ctrl, scale=scale) + 1e-18)
        out[key] = y
    x64 = x.astype(np.float64)
    out["tvn"] = efaar.tvn_on_controls(x64, meta, "pert", "DMSO", "plate")
    out["centerscale"] = efaar.centerscale_on_controls(x64, meta, "pert", "DMSO", "plate")
    out["pca_centerscale"] = efaar.embed_by_pca(x64, meta, 4, "plate")
    from sklearn.decomposition import PCA
    ctrl = (meta["pert"] == "DMSO").values
    out["pca_controls"] = PCA(3).fit(x64[ctrl]).transform(x64)
    save_case(name, features__npy=x, meta__csv=meta, **{f"{k}__npy": v.astype(np.float32) for k, v in out.items()})


def norm_fixtures():
    rng = np.random.default_rng(51)
    n, d = 120, 6
    plate = np.repeat(["P1", "P2"], n // 2)
    pert = np.where(rng.random(n) < 0.3, "DMSO", [f"c{i}" for i in rng.integers(0, 10, n)])
    mix = rng.normal(size=(d, d))
    x = (rng.normal(size=(n, d)) @ mix + (plate == "P2")[:, None] * 2.0).astype(np.float32)
    x[::7] *= 30  # outliers far from the controls: |z| of tens, where a MAD factor's relative error shows
    norm_case("norm", x, pd.DataFrame(dict(plate=plate, pert=pert)))
    # Fewer controls than features in each plate (n <= d): pycytominer's rank branch of Spherize.
    n, d = 40, 12
    plate = np.repeat(["P1", "P2"], n // 2)
    pert = np.tile(np.where(np.arange(n // 2) < 8, "DMSO", "cpd"), 2)
    x = (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 1.0).astype(np.float32)
    norm_case("norm_wide", x, pd.DataFrame(dict(plate=plate, pert=pert)))

# ----------------------------------------------------------------------------------------------- linear probe
def linear_fixtures():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(61)
    n, d, k = 300, 10, 4
    y = rng.integers(0, k, n)
    x = (rng.normal(size=(k, d))[y] * 0.8 + rng.normal(size=(n, d)) * 1.5 + 3.0).astype(np.float32)
    split = rng.choice(["train", "val", "test"], size=n, p=[0.6, 0.2, 0.2])
    labels = np.array([f"k{i}" for i in range(k)])[y]
    # sklearn fits float32 input in float32 (its L-BFGS then stops on float32 noise); the features are float32 on
    # disk, the fits here run on their exact float64 values, which is what tabula computes in.
    x64 = x.astype(np.float64)
    lr = LogisticRegression(C=0.5, max_iter=100000, tol=1e-12).fit(x64[split == "train"], y[split == "train"])
    proba = lr.predict_proba(x64[split == "test"])
    # The probe protocol: z-score on train, sweep C on val, refit on train+val (z-scored on it), score test.
    cs = [1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1000, 10000]
    tr, va, te = split == "train", split == "val", split == "test"
    sc = StandardScaler().fit(x64[tr])
    val_acc = [LogisticRegression(C=c, max_iter=100000, tol=1e-12).fit(sc.transform(x64[tr]), y[tr])
               .score(sc.transform(x64[va]), y[va]) for c in cs]
    best = cs[int(np.argmax(val_acc))]
    trva = tr | va
    sc = StandardScaler().fit(x64[trva])
    final = LogisticRegression(C=best, max_iter=100000, tol=1e-12).fit(sc.transform(x64[trva]), y[trva])
    test_acc = final.score(sc.transform(x64[te]), y[te])
    save_case("linear", features__npy=x, meta__csv=pd.DataFrame(dict(label=labels, split=split)),
              proba_c05__npy=proba, sweep__csv=pd.DataFrame(dict(c=cs, val_top1=val_acc)),
              probe__csv=pd.DataFrame(dict(best_c=[best], test_top1=[test_acc])),
              test_pred__npy=final.predict(sc.transform(x64[te])).astype(np.int64))


# ---- main
if __name__ == "__main__":
    import copairs, sklearn
    os.makedirs(OUT, exist_ok=True)
    args = sys.argv[1:]
    if "--dinov2" in args:  # a checkout of github.com/facebookresearch/dinov2, for the kNN fixture
        i = args.index("--dinov2")
        sys.path.insert(0, args[i + 1])
        del args[i:i + 2]
    which = args or ["map", "recall", "knn", "cka", "norm", "linear"]
    for w in which:
        globals()[f"{w}_fixtures"]()
    from importlib.metadata import version
    import scipy
    versions = dict(copairs=version("copairs"), sklearn=sklearn.__version__, numpy=np.__version__,
                    pandas=pd.__version__, scipy=scipy.__version__, pycytominer=version("pycytominer"),
                    efaar_benchmarking=version("efaar-benchmarking"))
    with open(os.path.join(OUT, "versions.json"), "w") as f:
        json.dump(versions, f, indent=1, sort_keys=True)
