#!/usr/bin/env python3
"""Fixtures for timm's ConvNeXt and the DINOv3 ConvNeXt layout (tests/models/test_convnext.cpp).

timm 1.0.31 `timm.models.convnext.ConvNeXt`, built with `torch.manual_seed(seed)` + the constructor (its
`named_apply(_init_weights)`: timm trunc_normal_(std .02) on Conv2d / Linear weights, zero biases, LayerScale
gamma 1e-6), eval mode. For each tiny config (key=value arch as tabula parses it) and seed: the init state_dict is
stored whole (<id>_s<seed>.init.safetensors); then the tensors init leaves trivial (LayerNorm affine, biases,
gamma) get deterministic index-based values (newvit_fixtures.perturb), and the perturbed weights are written as
timm's model.safetensors and pytorch_model.bin (torch.save of the state_dict). The non-conv_mlp config is also
written in DINOv3's layout (facebookresearch/dinov3 `dinov3/models/convnext.py` ConvNeXt; downsample_layers,
stages.N.M.dwconv / pwconv1 / pwconv2, norm and its alias norms.3): its forward_features on the same weights is
compared with timm's (x_norm_clstoken = timm's head.flatten with classes=0, <= 1e-5 relative) before storing.
Forward cases: inputs from models_fixtures.hash_input (replayed in C++), batch 1 and 3, at 224 x 224 and
96 x 128; taps captured with forward hooks (last call wins), stored whole below 2048 values and subsampled above
(models_fixtures.sample_stride). named.tsv: per-tensor sha256 of the full-size init (convnext_atto,
convnext_tiny, two seeds); params.tsv: parameter counts of the named archs (meta device).

Writes tests/fixtures/convnext/:
  cases.tsv, taps.tsv, <case>.<tap>.npy       as newvit_fixtures.py
  <id>_s<seed>.init.safetensors                the init state_dict
  <id>_s<seed>.model.safetensors, <id>_s0.pytorch_model.bin   perturbed weights, timm layout
  <id>_s1.dinov3.pth                           the same weights, DINOv3 layout (conv_mlp=False configs)
  named_modules_<arch>.tsv                     every module's output shape (convnext_atto, convnext_tiny)
  named.tsv, params.tsv, pretrained_cfgs.tsv (timm's default tag of each named arch: its eval transform)

Usage: /work/venv/bin/python weights_tools/reference/convnext_fixtures.py --dinov3 /path/to/dinov3-checkout
       [--out tests/fixtures/convnext]
(--dinov3: the folder holding the `dinov3` package; matched at commit 6876159.)
Versions matched: torch 2.15.0, timm 1.0.31.
"""
import argparse
import hashlib
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models_fixtures import hash_input  # noqa: E402
from newvit_fixtures import Recorder, hooked, perturb, save_st  # noqa: E402

# (id, tabula arch, timm ConvNeXt kwargs)
TINY = [
    ("cnx_cl", "convnext:dims=16,24,32,48,depths=1,2,1,1,classes=10,head_init_scale=0.5",
     dict(dims=(16, 24, 32, 48), depths=(1, 2, 1, 1), num_classes=10, head_init_scale=0.5)),
    ("cnx_convmlp", "convnext:dims=8,16,24,32,depths=1,1,2,1,conv_mlp=1,classes=0,kernel=5",
     dict(dims=(8, 16, 24, 32), depths=(1, 1, 2, 1), conv_mlp=True, num_classes=0, kernel_sizes=5)),
]
SEEDS = [0, 1]
INPUTS = [(1, 224, 224), (3, 224, 224), (1, 96, 128), (3, 96, 128)]  # (batch, H, W)
TAPS = ["stem.0", "stem", "stages.0.blocks.0.conv_dw", "stages.0.blocks.0.norm", "stages.0.blocks.0.mlp.fc1",
        "stages.0.blocks.0.mlp.act", "stages.0.blocks.0.mlp", "stages.0.blocks.0.drop_path", "stages.0.blocks.0",
        "stages.1.downsample.0", "stages.1.downsample", "stages.1.blocks.1", "stages.1", "stages.2", "stages.3",
        "head.global_pool", "head.norm", "head.flatten", "head.fc"]


def timm_convnext(kw):
    from timm.models.convnext import ConvNeXt
    return ConvNeXt(**kw)


def dinov3_layout(sd):
    """timm names -> the original / DINOv3 ConvNeXt names (the inverse of timm's checkpoint_filter_fn)."""
    import re
    out = {}
    for k, v in sd.items():
        if k.startswith("head.fc."):
            continue
        n = k.replace("stem.", "downsample_layers.0.")
        n = re.sub(r"stages\.([0-9]+)\.downsample\.([0-9]+)\.", r"downsample_layers.\1.\2.", n)
        n = re.sub(r"stages\.([0-9]+)\.blocks\.([0-9]+)\.", r"stages.\1.\2.", n)
        n = n.replace("conv_dw", "dwconv").replace("mlp.fc1", "pwconv1").replace("mlp.fc2", "pwconv2")
        n = n.replace("head.norm.", "norm.")
        out[n] = v
    out["norms.3.weight"], out["norms.3.bias"] = out["norm.weight"], out["norm.bias"]
    return out


def cases(rec):
    from dinov3.models.convnext import ConvNeXt as Dinov3ConvNeXt
    for mid, arch, kw in TINY:
        for seed in SEEDS:
            torch.manual_seed(seed)
            model = timm_convnext(kw).eval()
            save_st(os.path.join(rec.out, f"{mid}_s{seed}.init.safetensors"), model.state_dict())
            perturb(model)
            sd = model.state_dict()
            save_st(os.path.join(rec.out, f"{mid}_s{seed}.model.safetensors"), sd)
            if seed == 0:  # the pickle layout once per config (the same tensors as the safetensors file)
                torch.save(sd, os.path.join(rec.out, f"{mid}_s{seed}.pytorch_model.bin"))
            dino = None
            if not kw.get("conv_mlp"):
                dino = Dinov3ConvNeXt(depths=list(kw["depths"]), dims=list(kw["dims"])).eval()
                dsd = dinov3_layout(sd)
                dino.load_state_dict(dsd, strict=True)
                if seed == 1:
                    torch.save(dino.state_dict(), os.path.join(rec.out, f"{mid}_s{seed}.dinov3.pth"))
            # seed 1 gets the two batch-3 inputs only (the init differs; the ops are the same)
            for batch, H, W in INPUTS if seed == 0 else INPUTS[1::2]:
                shape = [batch, kw.get("in_chans", 3), H, W]
                cid = f"{mid}_s{seed}_b{batch}_{H}x{W}"
                x = hash_input(shape, seed * 10 + H + W)
                got, hs = hooked(model, TAPS)
                with torch.no_grad():
                    out = model(x)
                for h in hs:
                    h.remove()
                taps = {t: got[t] for t in TAPS if t in got}
                taps["head"] = out
                if dino is not None:
                    with torch.no_grad():
                        ref = dino.forward_features(x)["x_norm_clstoken"]
                        feats = model.forward_head(model.forward_features(x), pre_logits=True)
                    rel = float((ref - feats).abs().max() / ref.abs().max())
                    assert rel <= 1e-5, (cid, rel)
                    taps["x_norm_clstoken"] = ref
                rec.case(cid, mid, seed, shape, taps)


def named_rows():
    import timm
    rows = []
    for seed in SEEDS:
        for name in ("convnext_atto", "convnext_tiny"):
            torch.manual_seed(seed)
            m = timm.create_model(name, pretrained=False)
            for k, t in m.state_dict().items():
                raw = t.detach().contiguous().numpy().tobytes()
                rows.append(f"{name}\t{seed}\t{k}\t{','.join(map(str, t.shape))}\t{hashlib.sha256(raw).hexdigest()}")
    return rows


def named_module_rows(name):
    """Every named module of a full-size model with its output shape at [1, 3, 224, 224] (last call wins)."""
    import timm
    model = timm.create_model(name, pretrained=False).eval()
    shapes, hs = {}, []
    for n, m in model.named_modules():
        if n:
            hs.append(m.register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape))))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for h in hs:
        h.remove()
    return [f"{n}\t{','.join(map(str, shapes[n])) if n in shapes else '-'}" for n, _ in model.named_modules() if n]


def named_params():
    import timm
    rows = []
    with torch.device("meta"):
        for size in ("atto", "femto", "pico", "nano", "tiny", "small", "base", "large"):
            m = timm.create_model(f"convnext_{size}", pretrained=False)
            rows.append(f"convnext_{size}\t{sum(p.numel() for p in m.parameters())}")
        from dinov3.models.convnext import ConvNeXt as Dinov3ConvNeXt, convnext_sizes
        for size in ("tiny", "small", "base", "large"):
            m = Dinov3ConvNeXt(**convnext_sizes[size])
            # norms.3 is `norm` again: parameters() counts it once
            rows.append(f"dinov3_convnext_{size}\t{sum(p.numel() for p in m.parameters())}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dinov3", required=True, help="folder holding the dinov3 package")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures",
                                                  "convnext"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    sys.path.insert(0, a.dinov3)
    import timm
    torch.set_num_threads(1)
    versions = f"torch {torch.__version__}, timm {timm.__version__}, " \
               f"cpu capability {torch.backends.cpu.get_cpu_capability()}"
    rec = Recorder(a.out)
    cases(rec)
    rec.write(versions)
    with open(os.path.join(a.out, "params.tsv"), "w") as f:
        f.write(f"# arch\tsum(p.numel() for p in parameters())\t{versions}\n" + "\n".join(named_params()) + "\n")
    for name in ("convnext_atto", "convnext_tiny"):
        with open(os.path.join(a.out, f"named_modules_{name}.tsv"), "w") as f:
            f.write(f"# {name}: named_modules() at [1, 3, 224, 224] ('-': module not called)\t{versions}\n")
            f.write("\n".join(named_module_rows(name)) + "\n")
    with open(os.path.join(a.out, "pretrained_cfgs.tsv"), "w") as f:  # the default tag's eval transform
        f.write(f"# arch\ttag\tinput size\tcrop_pct\tinterpolation\tmean\tstd\t{versions}\n")
        for size in ("atto", "femto", "pico", "nano", "tiny", "small", "base", "large"):
            c = timm.models.get_pretrained_cfg(f"convnext_{size}")
            assert c.crop_mode == "center" and c.input_size[1] == c.input_size[2], size
            f.write(f"convnext_{size}\t{c.tag}\t{c.input_size[1]}\t{c.crop_pct!r}\t{c.interpolation}\t"
                    f"{','.join(repr(float(v)) for v in c.mean)}\t{','.join(repr(float(v)) for v in c.std)}\n")
    with open(os.path.join(a.out, "named.tsv"), "w") as f:
        f.write(f"# made by\t{versions}\n# arch\tseed\tname\tshape\tsha256\n" + "\n".join(named_rows()) + "\n")


if __name__ == "__main__":
    main()
