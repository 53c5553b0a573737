#!/usr/bin/env python3
"""Fixtures for tabula's PyTorch-identical random init (tests/models/test_init.cpp).

For each (arch, seed): `torch.manual_seed(seed)` then the reference constructor (torchvision, timm, or the
DINOv2 hub code), and per state_dict tensor: name, shape, dtype, SHA-256 of the raw little-endian bytes, the
float64 sum and sum of |x|, and a few values (exact float32 bit patterns). For the small key=value configs
of timm ViTs the whole state_dict is also written, flattened, to <id>_s<seed>.f32.npy so the tests can compare every value
(timm's erfinv-based trunc_normal_ is only matched within 2 ULP).

Usage (writes tests/fixtures/init/):
    pip install --no-deps --target /tmp/timm-1.0.22 timm==1.0.22   # for the legacy_init fixtures
    /work/venv/bin/python weights_tools/reference/init_fixtures.py --dinov2 /path/to/dinov2-checkout \
        --timm-legacy /tmp/timm-1.0.22

The DINOv2 hub models are built from a checkout of github.com/facebookresearch/dinov2 (the folder holding the
`dinov2` package; matched: commit b8931f7, 2025-08-14), with pretrained=False (no network).
Versions matched: torch 2.15.0, torchvision 0.29.2, timm 1.0.31 (and timm 1.0.22 for `legacy_init=1`).
"""
import argparse
import hashlib
import math
import os
import sys
from functools import partial

import numpy as np
import torch

NAMED = [  # (arch, seeds)
    ("resnet18", [0, 1]),
    ("resnet50", [0, 1]),
    ("vit_small_patch16_224", [0, 1]),
    ("vit_base_patch16_224", [0, 1]),
    ("vit_small_patch14_reg4_dinov2", [0, 1]),
    ("dinov2_vits14", [0, 1]),
    ("dinov2_vits14_reg", [0, 1]),
]
# Small key=value configs (same syntax as tabula's parse_arch), also dumped in full.
SMALL = [  # (fixture id, arch, seeds)
    ("resnet_basic", "resnet:layers=1,1,1,1,block=basic,classes=10,zero_init_residual=1", [0, 7]),
    ("resnet_wide", "resnet:layers=1,2,1,1,width=128,classes=5", [3]),
    ("resnet_groups", "resnet:layers=1,1,1,1,groups=2,width=32,classes=4,zero_init_residual=1", [4]),
    ("vit_tiny", "vit:dim=32,depth=2,heads=4,patch=8,img=32,classes=10", [0, 1]),
    ("vit_reg_ls", "vit:dim=32,depth=2,heads=4,patch=8,img=32,classes=10,reg=2,no_embed_class=1,init_values=0.1,"
                   "qkv_bias=0,global_pool=avg", [2]),
    ("vit_dim8", "vit:dim=8,depth=1,heads=2,patch=8,img=16,classes=3,reg=1", [5]),
    ("vit_nocls", "vit:dim=32,depth=1,heads=2,patch=4,img=8,class_token=0,global_pool=avg,classes=0,pre_norm=1", [6]),
    ("dinov2_tiny", "vit:flavor=dinov2,dim=32,depth=2,heads=4,patch=8,img=32,init_values=1.0", [0]),
    ("dinov2_tiny_reg", "vit:flavor=dinov2,dim=32,depth=2,heads=4,patch=8,img=32,init_values=1.0,reg=4", [1]),
    ("dinov2_dim8", "vit:flavor=dinov2,dim=8,depth=1,heads=2,patch=4,img=8,init_values=1e-5", [2]),
    # timm weight_init modes (xavier / lecun via trunc_normal_tf_ / moco's split qkv / head bias -log(classes))
    ("vit_jax", "vit:dim=16,depth=2,heads=2,patch=8,img=32,classes=10,weight_init=jax", [0]),
    ("vit_jax_nlhb", "vit:dim=16,depth=1,heads=2,patch=4,img=8,classes=7,weight_init=jax_nlhb,reg=1,init_values=0.5", [1]),
    ("vit_jax_dim8", "vit:dim=8,depth=1,heads=2,patch=8,img=16,classes=3,weight_init=jax", [3]),
    ("vit_moco", "vit:dim=16,depth=2,heads=2,patch=8,img=32,classes=10,weight_init=moco", [2]),
    # 5-channel microscopy inputs (Cell Painting): only the patch embedding's shape and fan-in change.
    ("vit_chans5", "vit:dim=16,depth=1,heads=2,patch=4,img=8,chans=5,classes=3", [0]),
    ("dinov2_chans5", "vit:flavor=dinov2,dim=16,depth=1,heads=2,patch=4,img=8,chans=5,init_values=1.0,reg=4", [0]),
    # qk_norm, the gated MLPs (GluMlp / SwiGLU init_weights: gate bias 1, gate weight normal_(1e-6)) and the
    # attention-pool head (AttentionPoolLatent draws its latent in the constructor and again in init_weights),
    # in every weight_init mode; DINOv2's SwiGLUFFNFused (hidden int(80 * 2 / 3) = 53 rounded up to 56).
    ("vit_qknorm_packed", "vit:dim=16,depth=2,heads=2,patch=8,img=16,classes=5,qk_norm=1,mlp=swiglu_packed", [0]),
    ("vit_swiglu_ls", "vit:dim=16,depth=2,heads=2,patch=8,img=16,classes=3,mlp=swiglu,init_values=0.1,reg=1", [2]),
    ("vit_map", "vit:dim=16,depth=1,heads=2,patch=8,img=16,classes=4,global_pool=map,class_token=0,qk_norm=1", [3]),
    ("vit_map_jax", "vit:dim=16,depth=1,heads=2,patch=8,img=16,classes=4,global_pool=map,mlp=swiglu_packed,"
                    "weight_init=jax", [4]),
    ("vit_swiglu_moco", "vit:dim=16,depth=1,heads=2,patch=8,img=16,classes=4,mlp=swiglu,global_pool=map,"
                        "weight_init=moco", [5]),
    ("vit_packed_jax_nlhb", "vit:dim=8,depth=1,heads=2,patch=8,img=16,classes=3,mlp=swiglu_packed,act=gelu,"
                            "weight_init=jax_nlhb", [6]),
    ("dinov2_swiglufused", "vit:flavor=dinov2,dim=20,depth=2,heads=2,patch=4,img=8,init_values=1.0,mlp=swiglufused",
     [0, 1]),
    ("dinov2_swiglufused_reg", "vit:flavor=dinov2,dim=16,depth=1,heads=2,patch=4,img=8,mlp=swiglufused,reg=4", [2]),
]


# timm <= 1.0.22 (before commit b5ffe5bd), built by a second interpreter with --timm-legacy on its path.
LEGACY = [
    ("vit_small_patch16_224_legacy", "vit_small_patch16_224:legacy_init=1", [0]),
    ("vit_tiny_legacy", "vit:dim=16,depth=2,heads=2,patch=8,img=32,classes=10,legacy_init=1", [0]),
    ("vit_dim4_legacy", "vit:dim=4,depth=1,heads=2,patch=8,img=8,classes=2,legacy_init=1", [3]),  # randn < 16 values
]


def parse_kv(spec):
    head, _, rest = spec.partition(":")
    kv, last = {}, None
    for piece in rest.split(","):
        if "=" in piece:
            last, v = piece.split("=", 1)
            kv[last] = v
        else:
            kv[last] += "," + piece
    return head, kv


def as_bool(v):
    return v in ("1", "true", "True")


def timm_mlp_args(kv):
    """tabula's qk_norm / mlp / act keys as timm arguments (act defaults to SiLU for the SwiGLU MLPs, as tabula)."""
    from timm.layers import SwiGLU, SwiGLUPacked, Mlp
    mlp = kv.get("mlp", "mlp")
    return dict(qk_norm=as_bool(kv.get("qk_norm", "0")),
                mlp_layer={"mlp": Mlp, "swiglu_packed": SwiGLUPacked, "swiglu": SwiGLU}[mlp],
                act_layer=kv.get("act", "gelu" if mlp == "mlp" else "silu"))


def build_kv(spec, dinov2_mod):
    head, kv = parse_kv(spec)
    if head == "resnet":
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
        block = BasicBlock if kv.get("block", "bottleneck") == "basic" else Bottleneck
        return ResNet(block, [int(x) for x in kv.get("layers", "3,4,6,3").split(",")],
                      num_classes=int(kv.get("classes", 1000)),
                      zero_init_residual=as_bool(kv.get("zero_init_residual", "0")),
                      groups=int(kv.get("groups", 1)), width_per_group=int(kv.get("width", 64)))
    assert head == "vit"
    if kv.get("flavor") == "dinov2":
        vits = dinov2_mod
        from dinov2.layers import MemEffAttention, NestedTensorBlock
        return vits.DinoVisionTransformer(
            img_size=int(kv["img"]), patch_size=int(kv["patch"]), in_chans=int(kv.get("chans", 3)), embed_dim=int(kv["dim"]),
            depth=int(kv["depth"]), num_heads=int(kv["heads"]), mlp_ratio=float(kv.get("mlp_ratio", 4)),
            qkv_bias=as_bool(kv.get("qkv_bias", "1")),
            init_values=float(kv["init_values"]) if "init_values" in kv else None,
            num_register_tokens=int(kv.get("reg", 0)), ffn_layer=kv.get("mlp", "mlp"),
            block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention), block_chunks=0)  # as the hub
    from timm.models.vision_transformer import VisionTransformer
    args = dict(img_size=int(kv["img"]), patch_size=int(kv["patch"]), in_chans=int(kv.get("chans", 3)),
                embed_dim=int(kv["dim"]), depth=int(kv["depth"]),
                num_heads=int(kv["heads"]), num_classes=int(kv.get("classes", 1000)),
                mlp_ratio=float(kv.get("mlp_ratio", 4)), qkv_bias=as_bool(kv.get("qkv_bias", "1")),
                class_token=as_bool(kv.get("class_token", "1")), no_embed_class=as_bool(kv.get("no_embed_class", "0")),
                reg_tokens=int(kv.get("reg", 0)), global_pool=kv.get("global_pool", "token"),
                pre_norm=as_bool(kv.get("pre_norm", "0")), weight_init=kv.get("weight_init", ""),
                **timm_mlp_args(kv))
    if "init_values" in kv:
        args["init_values"] = float(kv["init_values"])
    return VisionTransformer(**args)


def build_named(name):
    name = name.split(":")[0]  # "vit_small_patch16_224:legacy_init=1": the timm on sys.path decides
    if name.startswith("dinov2_"):
        from dinov2.hub import backbones
        return getattr(backbones, name)(pretrained=False)
    if name.startswith("vit_"):
        import timm
        return timm.create_model(name, pretrained=False)
    import torchvision
    return torchvision.models.get_model(name, weights=None)


def sample_indices(n):
    if n <= 16:
        return list(range(n))
    idx = set(range(4)) | {i * n // 8 + 1 for i in range(8)} | {n - 1}
    return sorted(i for i in idx if i < n)


def describe(model):
    lines = []
    for name, t in model.state_dict().items():
        t = t.detach().contiguous().cpu()
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        flat = t.reshape(-1)
        if t.dtype == torch.float32:
            dt = "f32"
            bits = flat.numpy().view(np.uint32)
            vals = ",".join(f"{i}:{bits[i]:08x}" for i in sample_indices(flat.numel()))
            s = float(flat.double().sum())
            sa = float(flat.double().abs().sum())
        elif t.dtype == torch.int64:
            dt, vals, s, sa = "i64", "", float(flat.sum()), float(flat.abs().sum())
        else:
            raise SystemExit(f"{name}: unexpected dtype {t.dtype}")
        shape = ",".join(str(d) for d in t.shape)
        lines.append(f"{name}\t{shape}\t{dt}\t{hashlib.sha256(raw).hexdigest()}\t{s!r}\t{sa!r}\t{vals}")
    return lines


def distribution_cases():
    """Single torch calls, one line each: id, seed, shape, sha256, all values (n <= 64) or a sample.
    The C++ test runs the same call for each id (tests/models/test_init.cpp, DistributionCase)."""
    from timm.layers import trunc_normal_ as timm_trunc_normal_
    nn_init = torch.nn.init
    cases = []

    def case(cid, seed, shape, fn):
        torch.manual_seed(seed)
        t = fn(torch.empty(shape))
        cases.append((cid, seed, t))

    def seq(cid, seed, sizes):  # several normal_ calls in a row: the scalar path's cached sample carries over
        torch.manual_seed(seed)
        cases.append((cid, seed, torch.cat([torch.empty(n).normal_(0.25, 2.0) for n in sizes])))

    case("uniform_01", 0, [1000], lambda t: t.uniform_())
    case("uniform_ab", 1, [100], lambda t: t.uniform_(-0.3, 0.7))
    for n in (1, 2, 5, 15, 16, 17, 31, 33, 1000, 4099):
        case(f"normal_{n}", n, [n], lambda t: t.normal_(0.5, 3.0))
    seq("normal_seq", 11, [3, 5, 16, 1, 2, 20, 7])
    case("kaiming_uniform_conv", 2, [64, 3, 7, 7], lambda t: nn_init.kaiming_uniform_(t, a=math.sqrt(5)))
    case("kaiming_normal_fan_out", 3, [128, 64, 3, 3], lambda t: nn_init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"))
    case("kaiming_normal_fan_in", 4, [10, 20], lambda t: nn_init.kaiming_normal_(t))
    case("xavier_uniform", 5, [50, 30], lambda t: nn_init.xavier_uniform_(t))
    case("xavier_normal", 6, [50, 30, 2], lambda t: nn_init.xavier_normal_(t, gain=0.5))
    case("torch_trunc_normal_std1", 7, [5000], lambda t: nn_init.trunc_normal_(t, std=1.0))
    case("torch_trunc_normal_narrow", 8, [3000], lambda t: nn_init.trunc_normal_(t, mean=0.5, std=2.0, a=-1.0, b=3.0))
    case("timm_trunc_normal", 9, [2000], lambda t: timm_trunc_normal_(t, std=0.02))
    case("erfinv", 0, [4001], lambda t: t.uniform_(-1, 1).erfinv_())
    from timm.layers import lecun_normal_
    case("lecun_normal", 10, [24, 5, 4, 4], lambda t: (lecun_normal_(t), t)[1])  # returns None
    lines = []
    for cid, seed, t in cases:
        flat = t.reshape(-1)
        bits = flat.numpy().view(np.uint32)
        # Every value where tabula is within 2 ULP rather than exact (erfinv), so the test can check each one.
        every = flat.numel() <= 64 or cid in ("timm_trunc_normal", "erfinv", "lecun_normal")
        idx = range(flat.numel()) if every else sample_indices(flat.numel())
        vals = ",".join(f"{i}:{bits[i]:08x}" for i in idx)
        shape = ",".join(str(d) for d in t.shape)
        lines.append(f"{cid}\t{seed}\t{shape}\t{hashlib.sha256(flat.numpy().tobytes()).hexdigest()}\t{vals}")
    return lines


def write_fixtures(entries, out, dinov2_vits, versions):
    index = []
    for fid, spec, seeds in entries:
        small = spec.startswith(("vit:", "resnet:"))
        # Full values only where tabula is not bit-exact by design: timm's erfinv-based trunc_normal_.
        full = small and spec.startswith("vit:") and "flavor=dinov2" not in spec
        for seed in seeds:
            torch.manual_seed(seed)
            model = build_kv(spec, dinov2_vits) if small else build_named(spec)
            nparams = sum(p.numel() for p in model.parameters())
            fname = f"{fid}_s{seed}.tsv"
            lines = describe(model)
            with open(os.path.join(out, fname), "w") as f:
                f.write(f"# arch\t{spec}\n# seed\t{seed}\n# params\t{nparams}\n# made by\t{versions}\n")
                f.write("# name\tshape\tdtype\tsha256\tsum\tsum_abs\tindex:float32 bits,...\n")
                f.write("\n".join(lines) + "\n")
            if full:
                flat = [t.detach().reshape(-1).float() for t in model.state_dict().values() if t.dtype == torch.float32]
                np.save(os.path.join(out, f"{fid}_s{seed}.f32.npy"), torch.cat(flat).numpy())
            index.append(f"{spec}\t{seed}\t{fname}\t{'full' if full else '-'}")
            print(fname, nparams, file=sys.stderr, flush=True)
    return index


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dinov2", required=True, help="folder holding the dinov2 package (a facebookresearch/dinov2 checkout)")
    ap.add_argument("--timm-legacy", help="a folder with timm 1.0.22 installed (pip install --no-deps --target DIR "
                                          "timm==1.0.22): also write the legacy_init fixtures")
    ap.add_argument("--legacy-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="+", metavar="ID",
                    help="rewrite only these fixture ids (NAMED / SMALL) and merge their rows into the existing "
                         "index.tsv (no distributions.tsv, no legacy run)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "init"))
    a = ap.parse_args()
    sys.path.insert(0, a.dinov2)
    import warnings
    warnings.filterwarnings("ignore", message="xFormers is not available")
    from dinov2.models import vision_transformer as dinov2_vits
    import timm
    import torchvision
    torch.set_default_dtype(torch.float32)
    os.makedirs(a.out, exist_ok=True)
    versions = f"torch {torch.__version__} torchvision {torchvision.__version__} timm {timm.__version__} " \
               f"cpu_capability {torch.backends.cpu.get_cpu_capability()}"
    if a.legacy_worker:
        assert timm.__version__ == "1.0.22", timm.__version__
        print("\n".join(write_fixtures(LEGACY, a.out, dinov2_vits, versions)))
        return
    if a.only:
        chosen = [(n, n, s) for n, s in NAMED if n in a.only] + [e for e in SMALL if e[0] in a.only]
        unknown = set(a.only) - {e[0] for e in chosen}
        if unknown:
            raise SystemExit(f"unknown fixture ids: {sorted(unknown)}")
        new_rows = write_fixtures(chosen, a.out, dinov2_vits, versions)
        path = os.path.join(a.out, "index.tsv")
        with open(path) as f:
            lines = f.read().splitlines()
        header = [l for l in lines if l.startswith("#")]
        rows = [l for l in lines if l and not l.startswith("#")]
        new_files = {r.split("\t")[2] for r in new_rows}
        rows = [r for r in rows if r.split("\t")[2] not in new_files] + new_rows
        with open(path + ".tmp", "w") as f:
            f.write("\n".join(header + rows) + "\n")
        os.replace(path + ".tmp", path)
        return
    cases = distribution_cases()  # computed before the file is opened: a failure leaves the old file intact
    with open(os.path.join(a.out, "distributions.tsv"), "w") as f:
        f.write(f"# made by\t{versions}\n# id\tseed\tshape\tsha256\tindex:float32 bits,...\n")
        f.write("\n".join(cases) + "\n")
    index = write_fixtures([(n, n, s) for n, s in NAMED] + SMALL, a.out, dinov2_vits, versions)
    if a.timm_legacy:
        import subprocess
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([a.timm_legacy, os.environ.get("PYTHONPATH", "")]))
        res = subprocess.run([sys.executable, __file__, "--legacy-worker", "--dinov2", a.dinov2, "--out", a.out],
                             env=env, check=True, stdout=subprocess.PIPE, text=True)
        index += res.stdout.strip().splitlines()
    with open(os.path.join(a.out, "index.tsv"), "w") as f:
        f.write("# arch\tseed\tfile\tfull values (<file without .tsv>.f32.npy)\n" + "\n".join(index) + "\n")


if __name__ == "__main__":
    main()
