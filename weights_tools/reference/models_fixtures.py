#!/usr/bin/env python3
"""Fixtures for tabula's model forwards (tests/models/test_forward.cpp): torch outputs of chosen taps.

Each case: `torch.manual_seed(seed)` + the reference constructor (torchvision ResNet, timm VisionTransformer,
DINOv2 hub DinoVisionTransformer), then a deterministic *perturbation* of the parameters that init leaves trivial
(BatchNorm statistics/affine, LayerNorm affine, biases, LayerScale, class/register tokens), so every op is
exercised. The perturbation uses values exactly representable in float32 and is replayed by the C++ test
(perturb() there). Inputs come from an integer hash of the element index (hash_input, replayed in C++), so no input arrays are
stored; taps above 2048 values are stored subsampled (every stride-th flat value, see taps.tsv).
Outputs are taken with forward hooks on the named modules (last call wins, as tabula's taps); attention maps
(`blocks.N.attn.softmax`) are recomputed from the qkv output: softmax(q * scale @ k^T).

Writes tests/fixtures/models/:
  cases.tsv                     id, arch, seed, input shape, sum|w| of the perturbed state_dict, taps
  taps.tsv                      case, tap, full shape, sample stride, max|x| of the full tap
  <id>.<tap>.npy                float32 values of each tap ('__out__' = the model's forward output)
  named_modules_<arch>.tsv      every named module of a full-size model with its output shape at the default size
  params.tsv                    parameter counts of named archs (tabula's registry must agree)

Usage: /work/venv/bin/python weights_tools/reference/models_fixtures.py --dinov2 /path/to/dinov2-checkout
       [--only cases|named_modules|params ...]
(the folder holding the `dinov2` package, facebookresearch/dinov2; matched at commit b8931f7).
Versions matched: torch 2.15, torchvision 0.29.2, timm 1.0.31.
"""
import argparse
import os
import sys
from functools import partial

import numpy as np
import torch

# (id, arch as tabula parses it, seed, input shape, taps)
RESNET_TAPS = ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu", "layer1",
               "layer2.0.downsample", "layer2.0.downsample.0", "layer3", "layer4.0", "avgpool", "fc"]
BOTTLENECK_TAPS = RESNET_TAPS + ["layer2.0.conv2", "layer2.0.bn3", "layer3.0.conv3"]
VIT_TAPS = ["patch_embed", "patch_embed.proj", "pos_drop", "norm_pre", "blocks.0.norm1", "blocks.0.attn.qkv",
            "blocks.0.attn.softmax", "blocks.0.attn", "blocks.0.ls1", "blocks.0.norm2", "blocks.0.mlp.fc1",
            "blocks.0.mlp.act", "blocks.0.mlp", "blocks.0", "blocks.1.attn.softmax", "blocks.1", "norm", "fc_norm",
            "head"]
HUB_TAPS = ["patch_embed", "blocks.0.norm1", "blocks.0.attn.qkv", "blocks.0.attn.softmax", "blocks.0.attn",
            "blocks.0.ls1", "blocks.0.mlp.fc1", "blocks.0", "blocks.1", "norm", "x_norm_clstoken",
            "x_norm_patchtokens"]
TINY = "dim=64,depth=2,heads=4,patch=8,img=32"
CASES = [
    ("resnet_basic_b3", "resnet:layers=1,1,1,1,block=basic,classes=10", 0, [3, 3, 64, 64], RESNET_TAPS),
    ("resnet_basic_b1", "resnet:layers=1,1,1,1,block=basic,classes=10", 0, [1, 3, 64, 64], ["fc"]),
    ("resnet_bottleneck", "resnet:layers=1,2,1,1,groups=2,width=32,classes=4", 3, [2, 3, 48, 40], BOTTLENECK_TAPS),
    ("vit_b3", f"vit:{TINY},classes=10", 1, [3, 3, 32, 32], VIT_TAPS),
    ("vit_b1", f"vit:{TINY},classes=10", 1, [1, 3, 32, 32], ["blocks.0.attn.softmax", "head"]),
    ("vit_reg_noembed", f"vit:{TINY},classes=0,reg=4,no_embed_class=1,init_values=1e-5,qkv_bias=0", 2, [2, 3, 32, 32],
     VIT_TAPS),
    ("vit_avg_fcnorm", f"vit:{TINY},classes=5,global_pool=avg,init_values=0.1,mlp_ratio=2", 3, [3, 3, 32, 32], VIT_TAPS),
    ("vit_nocls_max", f"vit:{TINY},classes=3,class_token=0,global_pool=max,pre_norm=1", 4, [2, 3, 32, 32], VIT_TAPS),
    ("vit_dynamic_rect", f"vit:{TINY},classes=7,reg=1,global_pool=avgmax,dynamic_img_size=1", 5, [2, 3, 40, 24],
     VIT_TAPS),
    ("vit_dynamic_rect_noembed", f"vit:{TINY},classes=0,reg=2,no_embed_class=1,global_pool=avg,dynamic_img_size=1", 6,
     [1, 3, 16, 48], VIT_TAPS),
    ("vit_nopool_nofinalnorm", f"vit:{TINY},classes=6,global_pool=,final_norm=0,mlp_ratio=2.5", 9, [2, 3, 32, 32],
     VIT_TAPS),
    ("resnet_wide_zero_init", "resnet:layers=1,1,1,1,width=128,classes=5,zero_init_residual=1", 10, [1, 3, 32, 32],
     ["layer1.0.conv2", "layer1.0.bn3", "layer4", "fc"]),
    ("dinov2_no_layerscale", f"vit:flavor=dinov2,{TINY}", 11, [2, 3, 40, 40], HUB_TAPS),
    ("dinov2_native", f"vit:flavor=dinov2,{TINY},init_values=1.0", 7, [3, 3, 32, 32], HUB_TAPS),
    ("dinov2_interp", f"vit:flavor=dinov2,{TINY},init_values=1.0", 7, [2, 3, 48, 48], HUB_TAPS),
    ("dinov2_interp_rect", f"vit:flavor=dinov2,{TINY},init_values=1e-5,reg=4", 8, [1, 3, 40, 24], HUB_TAPS),
    # Named hub models at small sizes: interpolation from the 37x37 grid (offset kludge; antialias for _reg).
    ("dinov2_vits14_small", "dinov2_vits14", 0, [1, 3, 70, 70], ["patch_embed", "blocks.0", "norm", "x_norm_clstoken"]),
    ("dinov2_vits14_reg_rect", "dinov2_vits14_reg", 1, [2, 3, 56, 42], ["blocks.0", "x_norm_patchtokens", "x_norm_clstoken"]),
    # qk_norm, the gated MLPs (timm SwiGLUPacked / SwiGLU), the attention-pool head (global_pool=map), act keys.
    ("vit_qknorm_packed_b3", f"vit:{TINY},classes=5,qk_norm=1,mlp=swiglu_packed", 12, [3, 3, 32, 32],
     ["blocks.0.attn.q_norm", "blocks.0.attn.k_norm", "blocks.0.attn.softmax", "blocks.0.attn", "blocks.0.mlp.fc1",
      "blocks.0.mlp.act", "blocks.0.mlp.drop1", "blocks.0.mlp", "blocks.1", "head"]),
    ("vit_swiglu_map_rect", f"vit:{TINY},classes=4,reg=1,mlp=swiglu,global_pool=map,dynamic_img_size=1", 13,
     [1, 3, 24, 40], ["blocks.0.mlp.fc1_g", "blocks.0.mlp.fc1_x", "blocks.0.mlp.act", "blocks.0.mlp", "blocks.1", "norm",
                      "attn_pool.q", "attn_pool.kv", "attn_pool.proj", "attn_pool.mlp", "attn_pool", "head"]),
    ("vit_map_gelu_tanh_nocls", f"vit:{TINY},classes=0,class_token=0,global_pool=map,act=gelu_tanh,init_values=0.5", 14,
     [2, 3, 32, 32], ["blocks.0.mlp.act", "blocks.1", "attn_pool.mlp.fc1", "attn_pool.mlp.act", "attn_pool", "head"]),
    # CLIP towers: pre_norm (no patch-embed bias) and LayerNorm eps 1e-5 everywhere; inputs scaled small so eps matters.
    ("vit_clip_like", f"vit:{TINY},classes=3,pre_norm=1,norm_eps=1e-5", 17, [2, 3, 32, 32],
     ["norm_pre", "blocks.0.norm1", "blocks.0", "blocks.1", "norm", "head"]),
    ("vit_clip_quickgelu", f"vit:{TINY},classes=3,pre_norm=1,norm_eps=1e-5,act=quick_gelu", 19, [2, 3, 32, 32],
     ["blocks.0.mlp.fc1", "blocks.0.mlp.act", "blocks.0", "blocks.1", "head"]),
    # timm's ViT-g/14 DINOv2 layout at a tiny width (SwiGLUPacked, mlp_ratio 2.66667 * 2, 4 registers outside the
    # pos-embed, LayerScale) run at 224 with dynamic_img_size: resample_abs_pos_embed 37x37 -> 16x16 (antialias).
    ("vit_g_like_reg4_224", "vit:dim=32,depth=1,heads=2,patch=14,img=518,classes=0,init_values=1e-5,reg=4,"
                            "no_embed_class=1,mlp=swiglu_packed,mlp_ratio=5.33334,dynamic_img_size=1", 18,
     [1, 3, 224, 224], ["pos_drop", "blocks.0.mlp.fc1", "blocks.0.mlp.act", "blocks.0", "norm", "head"]),
    # DINOv2 geometry (patch 14, 518 px: a 37x37 pos-embed grid) at a tiny width, with SwiGLUFFNFused (ViT-g's FFN,
    # hidden int(128 * 2 / 3) = 85 rounded up to 88): native 518, interpolated to 224 (batch 3), and the _reg
    # models' antialiased, offset-free interpolation on a rectangular input.
    ("dinov2_g_native_518", "vit:flavor=dinov2,dim=32,depth=2,heads=2,patch=14,img=518,init_values=1.0,mlp=swiglufused",
     15, [1, 3, 518, 518], ["patch_embed", "blocks.0.attn.softmax", "blocks.0.mlp.w12", "blocks.0.mlp", "blocks.1",
                            "x_norm_clstoken", "x_norm_patchtokens"]),
    ("dinov2_g_interp_224", "vit:flavor=dinov2,dim=32,depth=2,heads=2,patch=14,img=518,init_values=1.0,mlp=swiglufused",
     15, [3, 3, 224, 224], ["patch_embed", "blocks.0.mlp.w12", "blocks.0", "blocks.1", "x_norm_clstoken",
                            "x_norm_patchtokens"]),
    ("dinov2_g_reg_rect", "vit:flavor=dinov2,dim=32,depth=1,heads=2,patch=14,img=518,reg=4,init_values=1.0,"
                          "mlp=swiglufused,interpolate_antialias=1,interpolate_offset=0", 16, [1, 3, 224, 168],
     ["blocks.0", "x_norm_clstoken", "x_norm_patchtokens"]),
]
# Full-size checks (tests named Long*: run by `ctest -L long`): pooled outputs only.
LONG_CASES = [
    ("long_resnet50", "resnet50", 0, [1, 3, 224, 224], ["avgpool", "layer1.0.bn1"]),
    ("long_vit_base", "vit_base_patch16_224", 0, [1, 3, 224, 224], ["blocks.11.attn.softmax", "blocks.5", "head"]),
    ("long_dinov2_vits14_518", "dinov2_vits14", 0, [1, 3, 518, 518], ["x_norm_clstoken"]),
    ("long_dinov2_vits14_224", "dinov2_vits14", 0, [2, 3, 224, 224], ["x_norm_clstoken"]),
    ("long_dinov2_vits14_reg_224", "dinov2_vits14_reg", 0, [1, 3, 224, 224], ["x_norm_clstoken"]),
    ("long_siglip_base", "vit_base_patch16_siglip_224", 0, [2, 3, 224, 224], ["blocks.11", "attn_pool.kv", "attn_pool"]),
]
NAMED_MODULES = {"vit_base_patch16_224": 224, "resnet50": 224, "dinov2_vits14_reg": 518,  # arch: default size
                 "vit_giant_patch14_reg4_dinov2": 518, "dinov2_vitg14": 518, "vit_base_patch16_siglip_224": 224}
PARAM_ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2",
               "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
               "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_large_patch16_224",
               "vit_small_patch8_224", "vit_base_patch8_224", "vit_small_patch32_224", "vit_base_patch32_224",
               "vit_large_patch32_224", "vit_large_patch14_224", "vit_huge_patch14_224", "vit_small_patch14_dinov2",
               "vit_base_patch14_dinov2", "vit_large_patch14_dinov2", "vit_small_patch14_reg4_dinov2",
               "vit_base_patch14_reg4_dinov2", "vit_large_patch14_reg4_dinov2", "dinov2_vits14", "dinov2_vitb14",
               "dinov2_vitl14", "dinov2_vits14_reg", "dinov2_vitb14_reg", "dinov2_vitl14_reg",
               "vit_giant_patch14_dinov2", "vit_giant_patch14_reg4_dinov2", "dinov2_vitg14", "dinov2_vitg14_reg",
               "vit_tiny_patch16_384", "vit_small_patch16_384", "vit_base_patch16_384", "vit_large_patch16_384",
               "vit_base_patch16_gap_224", "vit_huge_patch14_gap_224", "vit_giant_patch14_224",
               "vit_base_patch16_siglip_224", "vit_base_patch16_siglip_gap_224", "vit_base_patch16_224_miil"] + \
              [f"vit_{s}_patch16_siglip_{g}{i}" for s in ("base", "large") for g in ("", "gap_") for i in (256, 384, 512)] + \
              ["vit_base_patch16_plus_240", "vit_base_patch16_clip_224", "vit_large_patch14_clip_224",
               "vit_huge_patch14_clip_224", "vit_huge_patch14_clip_378", "vit_base_patch16_clip_quickgelu_224", "vit_large_patch14_clip_quickgelu_224",
               "vit_large_patch14_clip_quickgelu_336", "vit_huge_patch14_clip_quickgelu_224",
               "vit_huge_patch14_clip_quickgelu_378"]


def hash_input(shape, seed):
    """Per-element integer hash -> uniform in [-1, 1) with 24-bit values: exact in float32, replayed in C++."""
    n = int(np.prod(shape))
    m = np.uint64(0xFFFFFFFF)
    s = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(seed * 40503 + 12345)) & m
    s = ((s ^ (s >> np.uint64(15))) * np.uint64(2246822519)) & m
    s = ((s ^ (s >> np.uint64(13))) * np.uint64(3266489917)) & m
    s = s ^ (s >> np.uint64(16))
    v = (s >> np.uint64(8)).astype(np.float64) / float(1 << 23) - 1.0
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def sample_stride(numel):
    """Taps above 2048 values are stored as every stride-th value (odd stride, so it walks across channels)."""
    if numel <= 2048:
        return 1
    st = numel // 2048 + 1
    return st if st % 2 else st + 1


def perturb(model):
    """Exactly representable, index-based values for the tensors init leaves trivial (see the C++ twin)."""
    sd = model.state_dict()
    with torch.no_grad():
        for k, (name, t) in enumerate(sd.items()):
            if t.dtype != torch.float32:
                continue
            i = torch.arange(t.numel(), dtype=torch.int64)
            v = None
            if name.endswith("running_var"):
                v = 0.5 + ((i * 5 + k) % 9).double() / 8
            elif name.endswith("running_mean"):
                v = ((i * 7 + 3 * k) % 11 - 5).double() / 32
            elif name.endswith("gamma") or (t.dim() == 1 and name.endswith(".weight")):
                v = 0.75 + ((i * 3 + k) % 5).double() / 8
            elif name.endswith(".bias"):
                v = ((i + 2 * k) % 7 - 3).double() / 16
            elif name in ("cls_token", "reg_token", "register_tokens", "mask_token"):
                v = ((i * 3 + k) % 13 - 6).double() / 16
            if v is not None:
                t.copy_(v.float().reshape(t.shape))
    model.load_state_dict(sd)
    return float(sum(t.double().abs().sum() for t in model.state_dict().values() if t.dtype == torch.float32))


def parse_kv(spec):
    head, _, rest = spec.partition(":")
    kv, last = {}, None
    for piece in rest.split(",") if rest else []:
        if "=" in piece:
            last, v = piece.split("=", 1)
            kv[last] = v
        else:
            kv[last] += "," + piece
    return head, kv


def as_bool(v):
    return v in ("1", "true", "True")


def timm_mlp_args(kv):
    """tabula's qk_norm / mlp / act / fc_norm keys as timm VisionTransformer arguments (the act default follows
    tabula: SiLU for the SwiGLU MLPs; timm's own default would be GELU, so the fixtures always pass it)."""
    from timm.layers import SwiGLU, SwiGLUPacked, Mlp
    mlp = kv.get("mlp", "mlp")
    act = kv.get("act", "gelu" if mlp == "mlp" else "silu")
    args = dict(qk_norm=as_bool(kv.get("qk_norm", "0")),
                mlp_layer={"mlp": Mlp, "swiglu_packed": SwiGLUPacked, "swiglu": SwiGLU}[mlp], act_layer=act)
    if kv.get("fc_norm", "auto") not in ("auto", "none", "None"):
        args["fc_norm"] = as_bool(kv["fc_norm"])
    if "norm_eps" in kv:
        from timm.layers import LayerNorm
        args["norm_layer"] = partial(LayerNorm, eps=float(kv["norm_eps"]))
    return args


def build(spec):
    head, kv = parse_kv(spec)
    if head == "resnet":
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
        block = BasicBlock if kv.get("block", "bottleneck") == "basic" else Bottleneck
        return ResNet(block, [int(x) for x in kv.get("layers", "3,4,6,3").split(",")],
                      num_classes=int(kv.get("classes", 1000)), groups=int(kv.get("groups", 1)),
                      zero_init_residual=as_bool(kv.get("zero_init_residual", "0")),
                      width_per_group=int(kv.get("width", 64)))
    if head == "vit" and kv.get("flavor") == "dinov2":
        from dinov2.layers import MemEffAttention, NestedTensorBlock
        from dinov2.models import vision_transformer as vits
        return vits.DinoVisionTransformer(
            img_size=int(kv["img"]), patch_size=int(kv["patch"]), embed_dim=int(kv["dim"]), depth=int(kv["depth"]),
            num_heads=int(kv["heads"]), init_values=float(kv["init_values"]) if "init_values" in kv else None,
            num_register_tokens=int(kv.get("reg", 0)), block_chunks=0, ffn_layer=kv.get("mlp", "mlp"),
            interpolate_antialias=as_bool(kv.get("interpolate_antialias", "0")),
            interpolate_offset=float(kv.get("interpolate_offset", 0.1)),
            block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention))
    if head == "vit":
        from timm.models.vision_transformer import VisionTransformer
        args = dict(img_size=int(kv["img"]), patch_size=int(kv["patch"]), embed_dim=int(kv["dim"]),
                    depth=int(kv["depth"]), num_heads=int(kv["heads"]), num_classes=int(kv.get("classes", 1000)),
                    mlp_ratio=float(kv.get("mlp_ratio", 4)), qkv_bias=as_bool(kv.get("qkv_bias", "1")),
                    class_token=as_bool(kv.get("class_token", "1")),
                    no_embed_class=as_bool(kv.get("no_embed_class", "0")), reg_tokens=int(kv.get("reg", 0)),
                    global_pool=kv.get("global_pool", "token"), pre_norm=as_bool(kv.get("pre_norm", "0")),
                    final_norm=as_bool(kv.get("final_norm", "1")),
                    dynamic_img_size=as_bool(kv.get("dynamic_img_size", "0")), **timm_mlp_args(kv))
        if "init_values" in kv:
            args["init_values"] = float(kv["init_values"])
        return VisionTransformer(**args)
    if head.startswith("dinov2_"):
        from dinov2.hub import backbones
        return getattr(backbones, head)(pretrained=False)
    if head.startswith("vit_"):
        import timm
        return timm.create_model(head, pretrained=False)
    import torchvision
    return torchvision.models.get_model(head, weights=None)


def capture(model, x, taps):
    """Outputs of the named modules (forward hooks, last call wins) plus tabula's extra taps."""
    mods = dict(model.named_modules())
    out, handles = {}, []
    hub = hasattr(model, "interpolate_pos_encoding")

    def keep(name):
        def hook(_m, _i, o):
            out[name] = o.detach().clone()
        return hook

    for t in taps:
        if t.endswith(".attn.softmax"):
            blk = t[: -len(".attn.softmax")]
            attn = mods[blk + ".attn"]

            def qkv_hook(_m, _i, o, name=t, attn=attn):
                B, N, _ = o.shape
                H = attn.num_heads
                qkv = o.reshape(B, N, 3, H, -1).permute(2, 0, 3, 1, 4)
                q, k = qkv[0], qkv[1]
                if hasattr(attn, "q_norm"):  # timm Attention: q_norm / k_norm (Identity unless qk_norm)
                    q, k = attn.q_norm(q), attn.k_norm(k)
                out[name] = torch.softmax((q * attn.scale) @ k.transpose(-2, -1), dim=-1).detach().clone()
            handles.append(mods[blk + ".attn.qkv"].register_forward_hook(qkv_hook))
        elif t in ("x_norm_clstoken", "x_norm_patchtokens"):
            continue
        else:
            handles.append(mods[t].register_forward_hook(keep(t)))
    with torch.no_grad():
        y = model(x)
        if hub and any(t.startswith("x_norm_") for t in taps):
            f = model.forward_features(x)
            for t in ("x_norm_clstoken", "x_norm_patchtokens"):
                out[t] = f[t].detach().clone()
    for h in handles:
        h.remove()
    out["__out__"] = y.detach().clone()
    return out


def named_module_shapes(model, shape, device="cpu"):
    shapes = {}

    def keep(name):
        def hook(_m, _i, o):
            if isinstance(o, torch.Tensor):
                shapes[name] = ",".join(str(d) for d in o.shape)
        return hook

    names = [n for n, _ in model.named_modules() if n]
    mods = dict(model.named_modules())
    hs = [mods[n].register_forward_hook(keep(n)) for n in names]
    with torch.no_grad():
        model(torch.zeros(shape, device=device))
    for h in hs:
        h.remove()
    return [(n, shapes.get(n, "-")) for n in names]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dinov2", required=True, help="folder holding the dinov2 package")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "models"))
    ap.add_argument("--only", choices=["cases", "named_modules", "params", "pretrained"], action="append",
                    help="write only these parts (default: all)")
    ap.add_argument("--cases", nargs="+", metavar="ID",
                    help="with --only cases: run only these case ids and merge their rows into the existing "
                         "cases.tsv / taps.tsv (other cases' files are left as they are)")
    a = ap.parse_args()
    parts = set(a.only or ["cases", "named_modules", "params", "pretrained"])
    sys.path.insert(0, a.dinov2)
    import warnings
    warnings.filterwarnings("ignore")
    import timm
    import torchvision
    torch.set_num_threads(2)
    os.makedirs(a.out, exist_ok=True)
    versions = f"torch {torch.__version__} torchvision {torchvision.__version__} timm {timm.__version__}"
    rows, tap_rows = [], []
    todo = CASES + LONG_CASES if "cases" in parts else []
    if a.cases:
        unknown = set(a.cases) - {c[0] for c in todo}
        if unknown:
            raise SystemExit(f"unknown case ids: {sorted(unknown)}")
        todo = [c for c in todo if c[0] in a.cases]
    for cid, spec, seed, shape, taps in todo:
        torch.manual_seed(seed)
        model = build(spec).eval()
        wsum = perturb(model)
        x = hash_input(shape, seed)
        outs = capture(model, x, taps)
        for t in taps + ["__out__"]:
            v = outs[t].float().reshape(-1)
            st = sample_stride(v.numel())
            np.save(os.path.join(a.out, f"{cid}.{t}.npy"), v[::st].numpy())
            tap_rows.append(f"{cid}\t{t}\t{','.join(map(str, outs[t].shape))}\t{st}\t{float(v.abs().max())!r}")
        rows.append(f"{cid}\t{spec}\t{seed}\t{','.join(map(str, shape))}\t{wsum!r}\t{','.join(taps)}")
        print(cid, flush=True)
    if "cases" in parts and a.cases:  # merge: replace the rows of these cases, keep the others in CASES order
        order = [c[0] for c in CASES + LONG_CASES]

        def merge(name, new_rows):
            with open(os.path.join(a.out, name)) as f:
                lines = f.read().splitlines()
            header = [l for l in lines if l.startswith("#")]
            old = [l for l in lines if l and not l.startswith("#") and l.split("\t")[0] not in a.cases]
            rows_all = sorted(old + new_rows, key=lambda l: order.index(l.split("\t")[0]))  # stable within a case
            with open(os.path.join(a.out, name + ".tmp"), "w") as f:
                f.write("\n".join(header + rows_all) + "\n")
            os.replace(os.path.join(a.out, name + ".tmp"), os.path.join(a.out, name))
        merge("cases.tsv", rows)
        merge("taps.tsv", tap_rows)
    elif "cases" in parts:
        with open(os.path.join(a.out, "cases.tsv"), "w") as f:
            f.write(f"# made by\t{versions}\n# id\tarch\tseed\tinput shape (hash_input values)\tsum|w| after perturb\ttaps\n")
            f.write("\n".join(rows) + "\n")
        with open(os.path.join(a.out, "taps.tsv"), "w") as f:
            f.write("# case\ttap\tshape\tstride (the .npy holds flat values 0, stride, 2*stride, ...)\tmax|x| of the full tap\n")
            f.write("\n".join(tap_rows) + "\n")
    for arch, size in (NAMED_MODULES.items() if "named_modules" in parts else []):
        with torch.device("meta"):  # shapes only: ViT-g never allocates its 1.1e9 parameters
            model = build(arch).eval()
        with open(os.path.join(a.out, f"named_modules_{arch}.tsv"), "w") as f:
            f.write(f"# {arch}: named_modules() at [1, 3, {size}, {size}] ('-': module not called)\t{versions}\n")
            for n, s in named_module_shapes(model, [1, 3, size, size], "meta"):
                f.write(f"{n}\t{s}\n")
    if "pretrained" in parts:  # timm's default pretrained_cfg (first tag) of every timm name: the eval transform
        with open(os.path.join(a.out, "pretrained_cfgs.tsv"), "w") as f:
            f.write(f"# arch\ttag\tinput size\tcrop_pct\tinterpolation\tmean\tstd\t{versions}\n")
            for arch in [n for n in PARAM_ARCHS if n.startswith("vit_")]:
                c = timm.models.get_pretrained_cfg(arch)
                assert c.crop_mode == "center" and c.input_size[1] == c.input_size[2], arch
                f.write(f"{arch}\t{c.tag}\t{c.input_size[1]}\t{c.crop_pct!r}\t{c.interpolation}\t"
                        f"{','.join(repr(float(v)) for v in c.mean)}\t{','.join(repr(float(v)) for v in c.std)}\n")
    if "params" in parts:
        with open(os.path.join(a.out, "params.tsv"), "w") as f:
            f.write(f"# arch\tsum(p.numel() for p in parameters())\t{versions}\n")
            for arch in PARAM_ARCHS:
                with torch.device("meta"):
                    model = build(arch)
                f.write(f"{arch}\t{sum(p.numel() for p in model.parameters())}\n")
                del model


if __name__ == "__main__":
    main()
