#!/usr/bin/env python3
"""tabula vs PyTorch on one GPU, in one run: images/s, latency, peak GPU memory and % of the measured bf16 peak.

Run on a CUDA machine where torch + timm are installed and tabula was built with the CUDA backend:

    python bench/gpu_compare.py --tabula build/tabula --out bench/RESULTS_gpu.md [--no-compile] [--iters 30]

For every (arch, batch, precision) in ARCHS x --batches (default 1,64,256) x --precisions (default fp32,tf32,bf16):
  torch eager    timm model, eval, channels_last, torch.backends.cuda.matmul/cudnn.allow_tf32 set per precision,
                 bf16 via torch.autocast (fp32 accumulate), timm's fused attention = F.scaled_dot_product_attention;
  torch.compile  the same module through torch.compile(mode=--compile-mode, default "max-autotune-no-cudagraphs";
                 "default" skips inductor's autotuning when time is short) (skip with --no-compile);
  tabula         `TABULA bench ARCH --batch B --device cuda:N --precision P --iters I` in a subprocess, eagerly
                 and with --graph (the forward captured once as a CUDA graph and replayed).

What the script reads from `tabula bench` (cli/cmd_bench.cpp, models/bench.cpp BenchResult::key_values):
  stdout lines of the form `key: value` (any order, extra lines ignored), at least
      images/s: 1234.5
  and, when available,
      latency_ms: 51.9          (median wall time of one batch, after warm-up, synchronised)
      peak_gpu_mem_mb: 812.0    (the caching allocator's peak bytes in use, cuda::allocator_stats)
  A non-zero exit status or a missing `images/s` line is recorded as an error for that row, never as a number.

Model FLOPs come from torch.utils.flop_counter on one eager fp32 forward at batch 1 (2 FLOPs per MAC), so
% of peak = FLOPs/image x images/s / measured bf16 dense matmul peak (an 8192^3 torch.matmul in bf16). The
same FLOP count is used for every implementation and precision, so the percentages compare like with like.
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import time

# (name in the table and --archs, timm name, input size, tabula arch): timm builds the DINOv2 ViT-L at
# img_size=224 (pos-embed on a 16x16 grid); tabula's timm name takes the same key (its default is timm's 518).
ARCHS = [
    ("resnet50", "resnet50.tv_in1k", 224, "resnet50"),
    ("vit_base_patch16_224", "vit_base_patch16_224", 224, "vit_base_patch16_224"),
    ("vit_large_patch14_dinov2", "vit_large_patch14_dinov2", 224, "vit_large_patch14_dinov2:img=224"),
]


def cuda_time(fn, iters, warmup=5):
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bf16_peak_tflops():
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = cuda_time(lambda: torch.matmul(a, b), iters=20)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def model_flops(timm_name, size):
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    m = timm.create_model(timm_name, pretrained=False, img_size=size) if "vit" in timm_name else timm.create_model(timm_name, pretrained=False)
    m.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(torch.randn(1, 3, size, size))
    return fc.get_total_flops()


def set_precision_flags(precision):
    import torch

    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def torch_row(timm_name, size, batch, precision, compile_, iters, compile_mode="max-autotune-no-cudagraphs"):
    import timm
    import torch

    set_precision_flags(precision)
    kwargs = {"img_size": size} if "vit" in timm_name else {}
    m = timm.create_model(timm_name, pretrained=False, **kwargs).cuda().eval().to(memory_format=torch.channels_last)
    if compile_:
        m = torch.compile(m, mode=compile_mode)
    x = torch.randn(batch, 3, size, size, device="cuda").to(memory_format=torch.channels_last)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def step():
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            m(x)

    step()  # compile / cudnn autotune outside the measurement
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    ms = cuda_time(step, iters)
    peak = torch.cuda.max_memory_allocated() / 2**20
    del m, x
    torch.cuda.empty_cache()
    return {"images_s": batch / (ms * 1e-3), "latency_ms": ms, "peak_gpu_mem_mb": peak}


def tabula_row(binary, arch, size, batch, precision, device, iters, graph=False, timeout=600):
    # --size: the same input size as the torch row (timm's DINOv2 names default to 518 px, the table uses 224)
    cmd = [binary, "bench", arch, "--batch", str(batch), "--size", str(size), "--device", device, "--precision",
           precision, "--iters", str(iters)] + (["--graph"] if graph else [])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{' '.join(cmd)}: {e}"}
    if p.returncode != 0:
        return {"error": f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-300:]}"}
    row = {}
    for key, name in (("images/s", "images_s"), ("latency_ms", "latency_ms"), ("peak_gpu_mem_mb", "peak_gpu_mem_mb")):
        mt = re.search(rf"^\s*{re.escape(key)}\s*[:=]\s*([0-9.eE+-]+)", p.stdout, re.M)
        if mt:
            row[name] = float(mt.group(1))
    if "images_s" not in row:
        return {"error": f"{' '.join(cmd)}: no 'images/s: N' line in its output"}
    if "latency_ms" not in row:
        row["latency_ms"] = batch / row["images_s"] * 1e3
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tabula", default="build/tabula", help="path of the tabula binary")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--archs", default=",".join(a[0] for a in ARCHS))
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--compile-mode", default="max-autotune-no-cudagraphs", help="torch.compile mode")
    ap.add_argument("--tabula-timeout", type=float, default=600, help="seconds one tabula bench run may take")
    ap.add_argument("--out", default=None, help="markdown file to write (also prints it); JSON goes next to it")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_compare.py: no CUDA device visible to torch")
    torch.cuda.set_device(int(args.device.split(":")[1]) if ":" in args.device else 0)
    gpu = torch.cuda.get_device_name()
    peak = bf16_peak_tflops()
    rows = []
    for arch, timm_name, size, tabula_arch in ARCHS:
        if arch not in args.archs.split(","):
            continue
        flops = model_flops(timm_name, size)
        for batch in map(int, args.batches.split(",")):
            for precision in args.precisions.split(","):
                impls = [("torch eager", lambda: torch_row(timm_name, size, batch, precision, False, args.iters))]
                if not args.no_compile:
                    impls.append((f"torch.compile ({args.compile_mode})",
                                  lambda: torch_row(timm_name, size, batch, precision, True, args.iters, args.compile_mode)))
                impls.append(("tabula", lambda: tabula_row(args.tabula, tabula_arch, size, batch, precision, args.device,
                                                           args.iters, timeout=args.tabula_timeout)))
                impls.append(("tabula graph", lambda: tabula_row(args.tabula, tabula_arch, size, batch, precision, args.device,
                                                                 args.iters, graph=True, timeout=args.tabula_timeout)))
                for impl, run in impls:
                    t0 = time.time()
                    try:
                        r = run()
                    except Exception as e:  # an OOM at batch 256 fp32 is a result, not a crash of the whole run
                        r = {"error": f"{type(e).__name__}: {e}"}
                        torch.cuda.empty_cache()
                    r.update(arch=arch, batch=batch, precision=precision, impl=impl, seconds=round(time.time() - t0, 1))
                    if "images_s" in r:
                        r["pct_bf16_peak"] = 100 * flops * r["images_s"] / (peak * 1e12)
                    rows.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)

    lines = [f"GPU: {gpu}; torch {torch.__version__}; measured bf16 matmul peak {peak:.0f} TFLOP/s "
             f"(8192^3); {args.iters} timed iterations, median.", "",
             "| arch | batch | precision | impl | images/s | latency ms | peak GPU MiB | % bf16 peak |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arch']} | {r['batch']} | {r['precision']} | {r['impl']} | error: {r['error'][:80]} | | | |")
        else:
            mem = f"{r['peak_gpu_mem_mb']:.0f}" if "peak_gpu_mem_mb" in r else "n/a"
            lines.append(f"| {r['arch']} | {r['batch']} | {r['precision']} | {r['impl']} | {r['images_s']:.1f} | "
                         f"{r['latency_ms']:.2f} | {mem} | {r['pct_bf16_peak']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        with open(re.sub(r"\.md$", "", args.out) + ".json", "w") as f:
            json.dump({"gpu": gpu, "bf16_peak_tflops": peak, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
