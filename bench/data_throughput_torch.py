#!/usr/bin/env python3
"""Python baseline for `LongDataThroughput` (tests/eval/test_data_synth.cpp): the same work with the tools a
Python pipeline would use — tifffile decode of 5 single-channel 16-bit TIFFs, illumination division,
numpy.percentile (1, 99) scaling per channel, torchvision Resize(256, bilinear, antialias) + CenterCrop(224) +
Normalize on each channel replicated to 3 — on a `tabula synth cellpainting` folder, 2 worker threads.

    tabula synth cellpainting --batches 1 --plates 1 --sites 1 --size 1080 --out /tmp/cp1080
    /work/venv/bin/python bench/data_throughput_torch.py /tmp/cp1080 [threads]
"""
import csv
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tifffile
import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode as IM

root = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
torch.set_num_threads(1)  # parallelism comes from the worker threads, as in tabula's prefetcher
rows = list(csv.DictReader(open(os.path.join(root, "load_data.csv"))))
chans = ["DNA", "ER", "RNA", "AGP", "Mito"]
tf = T.Compose([T.Resize(256, IM.BILINEAR, antialias=True), T.CenterCrop(224),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
illum = {}


def one(r):
    out = []
    for c in chans:
        x = tifffile.imread(os.path.join(root, r["PathName_Orig" + c], r["FileName_Orig" + c])).astype(np.float32)
        ip = os.path.join(root, r["PathName_Illum" + c], r["FileName_Illum" + c])
        if ip not in illum:
            illum[ip] = np.load(ip)
        x /= illum[ip]
        lo, hi = np.percentile(x, [1, 99])
        x = np.clip((x - lo) / (hi - lo), 0, 1)
        t = torch.from_numpy(x)[None].expand(3, -1, -1)
        out.append(tf(t))
    return len(out)


t0 = time.perf_counter()
with ThreadPoolExecutor(threads) as ex:
    n_inputs = sum(ex.map(one, rows))
dt = time.perf_counter() - t0
print(f"python (tifffile + numpy + torchvision {torch.__version__}), {threads} threads: {len(rows)} fields -> "
      f"{n_inputs} inputs in {dt:.2f} s: {len(rows) / dt:.2f} fields/s, {n_inputs / dt:.1f} inputs/s")
