"""tabula eval map / recall against copairs 0.5.5 / EFAAR on synthetic JUMP-like data, in the same run.

    /work/venv/bin/python bench/eval_vs_copairs.py --tabula build/tabula [--groups 20000] [--dims 768]
        [--null-size 10000] [--recall-n 20000] [--work /tmp/tabula-bench] [--results bench/RESULTS_metrics.md]

mAP: G compounds x 5 replicates spread over 384-well plates (352 compound wells + 32 DMSO wells per plate), the JUMP
phenotypic-activity preset (positives: same compound; negatives: DMSO on the same plate, each DMSO its own
reference). Both tools read the same features.npy / index.csv; copairs runs in its own process (its cache folder
fresh, so the null is computed, not read back). Reported: wall time of the metric (copairs: average_precision +
mean_average_precision after loading; tabula: the whole `tabula eval map` process including loading and writing),
peak RSS of each process, and the largest per-profile |AP difference|.
Recall: an N x D map, 50,000 random annotated pairs; EFAAR's known_relationship_benchmark steps (sklearn
cosine_similarity, upper-triangle null, compute_recall) against `tabula eval recall --aggregate none`.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

COPAIRS_RUN = r'''
import json, resource, sys, time, tempfile
import numpy as np, pandas as pd
from copairs.map import average_precision, mean_average_precision
work, null_size = sys.argv[1], int(sys.argv[2])
feats = np.load(f"{work}/features.npy")
meta = pd.read_csv(f"{work}/index.csv")
rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0 = cpu()
t0 = time.perf_counter()
ap = average_precision(meta, feats, ["Metadata_JCP2022", "Metadata_Reference_Index"], [], ["Metadata_Plate"],
                       ["Metadata_negcon", "Metadata_Reference_Index"], progress_bar=False)
t1 = time.perf_counter()
m = mean_average_precision(ap, ["Metadata_JCP2022", "Metadata_Reference_Index"], null_size=null_size, threshold=0.05,
                           seed=0, progress_bar=False, cache_dir=tempfile.mkdtemp())
t2 = time.perf_counter()
np.save(f"{work}/copairs_ap.npy", ap["average_precision"].to_numpy(np.float64))
np.save(f"{work}/copairs_counts.npy", ap[["n_pos_pairs", "n_total_pairs"]].to_numpy(np.int64))
m.to_csv(f"{work}/copairs_map.csv", index=False)
json.dump(dict(ap_s=t1 - t0, map_s=t2 - t1, cpu_s=cpu() - c0, peak_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               loaded_rss_kb=rss_loaded, n_groups=len(m), mean_map=float(m.mean_average_precision.mean())),
          open(f"{work}/copairs.json", "w"))
'''

EFAAR_RUN = r'''
import json, resource, sys, time
import numpy as np, pandas as pd
from sklearn.metrics.pairwise import cosine_similarity
sys.path.insert(0, sys.argv[2])
from metrics_fixtures import efaar_compute_recall, efaar_filter_relationships
work = sys.argv[1]
x = np.load(f"{work}/map.npy")
genes = pd.read_csv(f"{work}/map_index.csv")["gene"]
rels = pd.read_csv(f"{work}/rels.csv")
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0 = cpu()
t0 = time.perf_counter()
features = pd.DataFrame(x).set_index(genes).rename_axis(index=None)
cossim_matrix = pd.DataFrame(cosine_similarity(features, features), index=features.index, columns=features.index)
cossim_values = cossim_matrix.values[np.triu_indices(cossim_matrix.shape[0], k=1)]
r = efaar_filter_relationships(rels.copy())
r = r[r.entity1.isin(features.index) & r.entity2.isin(features.index)]
query = np.array([cossim_matrix.loc[e1, e2] for e1, e2 in r.itertuples(index=False)])
res = efaar_compute_recall(cossim_values, query, [(0.05, 0.95), (0.1, 0.9)])
t1 = time.perf_counter()
res = {k: float(v) for k, v in res.items()}
res.update(seconds=t1 - t0, cpu_seconds=cpu() - c0, peak_rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
json.dump(res, open(f"{work}/efaar.json", "w"))
'''


def run_timed(cmd, echo_stderr=False):
    """Runs cmd under /usr/bin/time -v; returns (wall seconds, peak RSS kB, CPU seconds (user + system))."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    lines = p.stderr.splitlines()
    if echo_stderr:
        print("\n".join(l for l in lines if l.startswith("  ") and " s " in l), flush=True)
    field = lambda name: float([l for l in lines if name in l][0].split()[-1])
    return wall, int(field("Maximum resident set size")), field("User time (seconds)") + field("System time (seconds)")


def make_map_data(work, groups, reps, dims, seed=0):
    rng = np.random.default_rng(seed)
    per_plate, dmso = 352, 32
    n_cpd = groups * reps
    n_plates = -(-n_cpd // per_plate)
    cpd = np.repeat(np.arange(groups), reps)
    rng.shuffle(cpd)
    plate_of_cpd = np.arange(n_cpd) // per_plate
    n = n_cpd + n_plates * dmso
    meta = pd.DataFrame(dict(
        Metadata_JCP2022=np.concatenate([np.char.add("JCP", cpd.astype(str)), np.full(n_plates * dmso, "DMSO")]),
        Metadata_Plate=np.concatenate([plate_of_cpd, np.repeat(np.arange(n_plates), dmso)]),
        Metadata_negcon=np.concatenate([np.zeros(n_cpd, bool), np.ones(n_plates * dmso, bool)])))
    meta["Metadata_Reference_Index"] = np.where(meta.Metadata_negcon, np.arange(n), -1)
    # Features in chunks (float32) with a compound signal for a third of the compounds.
    x = np.lib.format.open_memmap(f"{work}/features.npy", mode="w+", dtype=np.float32, shape=(n, dims))
    centers_seed = rng.integers(1 << 30)
    for b in range(0, n, 20000):
        e = min(n, b + 20000)
        blk = rng.normal(size=(e - b, dims)).astype(np.float32)
        ids = np.arange(b, e)
        is_cpd = ids < n_cpd
        c = cpd[ids[is_cpd]]
        strong = (c % 3) == 0
        crng = [np.random.default_rng([centers_seed, int(k)]).normal(size=dims).astype(np.float32) for k in c[strong]]
        if crng:
            blk[np.where(is_cpd)[0][strong]] += 0.5 * np.stack(crng)
        x[b:e] = blk
    x.flush()
    del x
    meta.to_csv(f"{work}/index.csv", index=False)
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tabula", default="build/tabula")
    ap.add_argument("--groups", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dims", type=int, default=768)
    ap.add_argument("--null-size", type=int, default=10000)
    ap.add_argument("--recall-n", type=int, default=20000)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "tabula-bench-metrics"))
    ap.add_argument("--results", default="")
    ap.add_argument("--skip-copairs", action="store_true")
    ap.add_argument("--skip-efaar", action="store_true")
    ap.add_argument("--skip-recall", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="tabula eval map runs (the median is reported)")
    ap.add_argument("--timings", action="store_true", help="print tabula's per-stage times and memory")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    out = {}

    out["loadavg"] = {"start": os.getloadavg()}
    n = make_map_data(args.work, args.groups, args.reps, args.dims)
    print(f"mAP data: {n} profiles x {args.dims}, {args.groups} compounds x {args.reps}", flush=True)
    runs = [run_timed([args.tabula, "eval", "map", "--features", f"{args.work}/features.npy", "--meta",
                              f"{args.work}/index.csv", "--pos-sameby", "Metadata_JCP2022,Metadata_Reference_Index",
                              "--neg-sameby", "Metadata_Plate", "--neg-diffby",
                              "Metadata_negcon,Metadata_Reference_Index", "--null-size", str(args.null_size),
                              "--out", f"{args.work}/tabula_map"] + (["--timings"] if args.timings else []),
                             echo_stderr=args.timings) for _ in range(args.repeats)]
    # The median run (by wall time) of --repeats runs; all runs listed.
    wall, rss, cpu = sorted(runs)[len(runs) // 2]
    out["tabula_map"] = dict(seconds=wall, cpu_seconds=cpu, peak_rss_mb=rss / 1024,
                             runs=[dict(seconds=w, cpu_seconds=c, peak_rss_mb=r / 1024) for w, r, c in runs])
    out["loadavg"]["after_tabula_map"] = os.getloadavg()
    print("tabula", out["tabula_map"], flush=True)
    if not args.skip_copairs:
        p = subprocess.run([sys.executable, "-c", COPAIRS_RUN, args.work, str(args.null_size)], capture_output=True,
                           text=True)
        if p.returncode != 0:
            sys.exit(p.stderr[-3000:])
        out["loadavg"]["after_copairs_map"] = os.getloadavg()
        c = json.load(open(f"{args.work}/copairs.json"))
        out["copairs_map"] = dict(seconds=c["ap_s"] + c["map_s"], cpu_seconds=c["cpu_s"], ap_seconds=c["ap_s"],
                                  map_seconds=c["map_s"],
                                  peak_rss_mb=c["peak_rss_kb"] / 1024, loaded_rss_mb=c["loaded_rss_kb"] / 1024)
        # round_trip: pandas' default float parser is not correctly rounded (1e-17 errors that are not the tools').
        t = pd.read_csv(f"{args.work}/tabula_map/average_precision.csv", float_precision="round_trip")
        ca = np.load(f"{args.work}/copairs_ap.npy")
        cc = np.load(f"{args.work}/copairs_counts.npy")
        both = ~np.isnan(ca)
        out["ap_max_abs_diff"] = float(np.nanmax(np.abs(t["average_precision"].to_numpy()[both] - ca[both])))
        out["ap_identical"] = bool((t["average_precision"].to_numpy()[both] == ca[both]).all())
        out["ap_nan_pattern_equal"] = bool((np.isnan(t["average_precision"].to_numpy()) == ~both).all())
        out["counts_equal"] = bool((t[["n_pos_pairs", "n_total_pairs"]].to_numpy() == cc).all())
        # p-values: copairs ran with a fresh cache, so tabula's default null (--null-rng copairs) is the same one.
        keys = ["Metadata_JCP2022", "Metadata_Reference_Index"]
        tm = pd.read_csv(f"{args.work}/tabula_map/mean_average_precision.csv", float_precision="round_trip")
        cm = pd.read_csv(f"{args.work}/copairs_map.csv", float_precision="round_trip")
        both_m = cm.merge(tm, on=keys, suffixes=("_c", "_t"), validate="one_to_one")
        out["n_groups"] = [len(cm), len(tm), len(both_m)]
        out["map_max_abs_diff"] = float(np.abs(both_m.mean_average_precision_c - both_m.mean_average_precision_t).max())
        out["map_identical"] = bool((both_m.mean_average_precision_c == both_m.mean_average_precision_t).all())
        out["p_value_max_abs_diff"] = float(np.abs(both_m.p_value_c - both_m.p_value_t).max())
        out["p_values_identical"] = bool((both_m.p_value_c == both_m.p_value_t).all())
        out["corrected_p_max_abs_diff"] = float(np.abs(both_m.corrected_p_value_c - both_m.corrected_p_value_t).max())
        out["speedup"] = out["copairs_map"]["seconds"] / out["tabula_map"]["seconds"]
        out["cpu_speedup"] = out["copairs_map"]["cpu_seconds"] / out["tabula_map"]["cpu_seconds"]
        out["memory_ratio"] = out["tabula_map"]["peak_rss_mb"] / out["copairs_map"]["peak_rss_mb"]
        print("copairs", out["copairs_map"], "max|dAP|", out["ap_max_abs_diff"], flush=True)

    # Recall on an N x N map.
    if args.skip_recall:
        print(json.dumps(out, indent=1))
        if args.results:
            with open(args.results, "a") as f:
                f.write(f"\n```json\n{json.dumps(dict(args=vars(args), results=out), indent=1)}\n```\n")
        return
    rng = np.random.default_rng(1)
    rn = args.recall_n
    genes = np.array([f"G{i:06d}" for i in range(rn)])
    np.save(f"{args.work}/map.npy", rng.normal(size=(rn, args.dims)).astype(np.float32))
    pd.DataFrame(dict(gene=genes)).to_csv(f"{args.work}/map_index.csv", index=False)
    pairs = rng.integers(0, rn, size=(50000, 2))
    pd.DataFrame(dict(entity1=genes[pairs[:, 0]], entity2=genes[pairs[:, 1]])).to_csv(f"{args.work}/rels.csv",
                                                                                      index=False)
    wall, rss, cpu = run_timed([args.tabula, "eval", "recall", "--features", f"{args.work}/map.npy", "--meta",
                              f"{args.work}/map_index.csv", "--pert-col", "gene", "--aggregate", "none",
                              "--relationships", f"{args.work}/rels.csv", "--out", f"{args.work}/tabula_recall"])
    rec = pd.read_csv(f"{args.work}/tabula_recall/recall.csv")
    out["tabula_recall"] = dict(n=rn, seconds=wall, cpu_seconds=cpu, peak_rss_mb=rss / 1024,
                                recall_0_05_0_95=float(rec["recall_0.05_0.95"][0]),
                                recall_0_1_0_9=float(rec["recall_0.1_0.9"][0]))
    print("tabula recall", out["tabula_recall"], flush=True)
    if not args.skip_efaar:
        p = subprocess.run([sys.executable, "-c", EFAAR_RUN, args.work,
                            os.path.join(here, "..", "weights_tools", "reference")], capture_output=True, text=True)
        if p.returncode != 0:
            print("EFAAR run failed:", p.stderr[-2000:], flush=True)
        else:
            e = json.load(open(f"{args.work}/efaar.json"))
            out["efaar_recall"] = dict(seconds=e["seconds"], cpu_seconds=e["cpu_seconds"], peak_rss_mb=e["peak_rss_kb"] / 1024,
                                       recall_0_05_0_95=e["recall_0.05_0.95"], recall_0_1_0_9=e["recall_0.1_0.9"])
            print("efaar recall", out["efaar_recall"], flush=True)
    print(json.dumps(out, indent=1))
    if args.results:
        with open(args.results, "a") as f:
            f.write(f"\n```json\n{json.dumps(dict(args=vars(args), results=out), indent=1)}\n```\n")


if __name__ == "__main__":
    main()
