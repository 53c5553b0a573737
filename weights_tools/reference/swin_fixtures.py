#!/usr/bin/env python3
"""Fixtures for timm's SwinTransformer and CTransPath (Swin + ConvStem), built with timm itself.

Swin: timm.models.swin_transformer.SwinTransformer (timm 1.0.31), eval mode, weight_init='' (the constructor's
init_weights: named_apply(init_weights_vit_timm) children first, Linear trunc_normal_(.02) + zero bias; each
WindowAttention draws its relative_position_bias_table with trunc_normal_(.02) at the end of its constructor).

CTransPath: HEST's ctranspath() (github mahmoodlab/HEST, src/hest/bench/cpath_model_zoo/ctranspath/ctran.py, the
same ConvStem as TransPath's ctran.py): `swin_tiny_patch4_window7_224` with embed_layer=ConvStem, head replaced by
nn.Identity, on timm_ctp (a timm 0.5.4 fork). ConvStem is written below from that source; it takes timm 1.0's
embed_layer arguments (strict_img_size, output_fmt) and returns NHWC, as timm 1.0's PatchEmbed does (0.5.4 flattened
to [B, L, C] instead: the same values in the same order). num_classes=0 gives the pooled features HEST's Identity
head gives under timm 0.5.4's forward_features (norm, avgpool, flatten). The published checkpoint
(`ctranspath.pth`, {'model': state_dict}) has the 0.5.4 names: downsample at the *end* of a stage
(layers.N.downsample = timm 1.0's layers.N+1.downsample), persistent relative_position_index (int64) and attn_mask
buffers, and the classifier `head.weight/bias` that HEST's strict=False load leaves unused; the random weights are
written in that layout (<id>_s<seed>.ctranspath.pth) besides timm 1.0's (<id>_s<seed>.timm.safetensors).

For each tiny config and seed: torch.manual_seed(seed) + the constructor; the init state_dict is stored whole
(<id>_s<seed>.init.safetensors); then norm affines, biases, BatchNorm statistics and the bias tables get
deterministic index-based values (perturb) so every part is exercised, and the forward taps are recorded with
forward hooks on inputs from models_fixtures.hash_input (replayed in C++): batch 1 and 3, the config's own size and
another one (a model built for that size: padding to whole windows, odd PatchMerging), and a timm
dynamic_img_size=True model run at a rectangular size its windows were not built for. Taps above 512 values are
subsampled (stride below).

Writes tests/fixtures/swin/:
  cases.tsv        case, weights id, seed, input shape, tabula arch
  taps.tsv         case, tap, full shape, sample stride, max|x| of the full tap
  <case>.<tap>.npy float32 (sampled) tap values
  <id>_i<img>_s<seed>.init.safetensors / .timm.safetensors / .ctranspath.pth
  named.tsv        full-size configs: per-tensor sha256 of the init state_dict (two seeds)
  params.tsv       parameter counts of every named arch (meta device)
  pretrained_cfgs.tsv   timm's default pretrained_cfg of every named Swin (the eval transform)
and tests/fixtures/cards/ctranspath/ (the card's fidelity fixture, card_fixtures.py's format; see card_fixture).

Usage: /work/venv/bin/python weights_tools/reference/swin_fixtures.py [--out tests/fixtures/swin]
Versions matched: torch 2.15.0, timm 1.0.31.
"""
import argparse
import hashlib
import json
import os
import re
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models_fixtures import hash_input  # noqa: E402


class ConvStem(nn.Module):
    """HEST ctranspath/ctran.py ConvStem (TransPath's), with timm 1.0's embed_layer interface (NHWC output)."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, embed_dim=768, norm_layer=None, flatten=True,
                 strict_img_size=True, output_fmt="NHWC", **_):
        super().__init__()
        assert patch_size == 4
        assert embed_dim % 8 == 0
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.img_size = img_size
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        stem = []
        input_dim, output_dim = 3, embed_dim // 8
        for _l in range(2):
            stem.append(nn.Conv2d(input_dim, output_dim, kernel_size=3, stride=2, padding=1, bias=False))
            stem.append(nn.BatchNorm2d(output_dim))
            stem.append(nn.ReLU(inplace=True))
            input_dim = output_dim
            output_dim *= 2
        stem.append(nn.Conv2d(input_dim, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*stem)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x):
        x = self.proj(x)
        x = x.permute(0, 2, 3, 1)  # timm 1.0: NHWC (0.5.4: flatten(2).transpose(1, 2), the same order)
        return self.norm(x)


# (id, timm kwargs, tabula arch, convstem)
TINY = [
    ("swin_tiny", dict(embed_dim=8, depths=(2, 2, 2), num_heads=(2, 2, 4), window_size=4, num_classes=10),
     "swin:dim=8,depths=2,2,2,heads=2,2,4,window=4,classes=10", False),
    ("ctp_tiny", dict(embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4, num_classes=0),
     "swin:dim=16,depths=2,2,heads=2,4,window=4,classes=0,embed_layer=convstem", True),
]
SEEDS = [0, 1]
DEFAULT_IMG, OTHER_IMG = 32, 40
# (img the model is built for, dynamic_img_size, batch, H, W)
INPUTS = [(DEFAULT_IMG, False, 1, 32, 32), (DEFAULT_IMG, False, 3, 32, 32), (OTHER_IMG, False, 1, 40, 40),
          (OTHER_IMG, False, 3, 40, 40), (DEFAULT_IMG, True, 3, 48, 28)]
TAPS = ["patch_embed.proj", "patch_embed.norm", "patch_embed", "layers.0.blocks.0.norm1", "layers.0.blocks.0.attn",
        "layers.0.blocks.1.attn.qkv", "layers.0.blocks.1.attn.softmax", "layers.0.blocks.1.attn",
        "layers.0.blocks.1.mlp.fc1", "layers.0.blocks.1.mlp", "layers.0.blocks.1", "layers.0",
        "layers.1.downsample.norm", "layers.1.downsample", "layers.1.blocks.1", "layers.1", "layers.2", "norm",
        "head.global_pool", "head"]


def build(kw, convstem, img, dynamic):
    from timm.models.swin_transformer import SwinTransformer
    extra = dict(embed_layer=ConvStem) if convstem else {}
    return SwinTransformer(img_size=img, dynamic_img_size=dynamic, **kw, **extra).eval()


def perturb(module):
    """Exactly representable index-based values: LayerNorm/BatchNorm affines and statistics, biases, and the
    relative position tables (init leaves them 1, 0 or ~N(0, .02))."""
    sd = module.state_dict()
    with torch.no_grad():
        for k, (name, t) in enumerate(sd.items()):
            leaf = name.rsplit(".", 1)[-1]
            if t.dtype != torch.float32:
                continue
            i = torch.arange(t.numel(), dtype=torch.int64)
            if leaf == "relative_position_bias_table":
                v = ((i * 7 + k) % 11 - 5).double() / 8
            elif leaf == "running_var":
                v = 0.5 + ((i * 3 + k) % 7).double() / 8
            elif (t.dim() == 1 and leaf == "weight"):
                v = 0.75 + ((i * 3 + k) % 5).double() / 8
            elif leaf in ("bias", "running_mean"):
                v = ((i + 2 * k) % 7 - 3).double() / 16
            else:
                continue
            t.copy_(v.float().reshape(t.shape))
    module.load_state_dict(sd)


def ctranspath_layout(model):
    """timm 1.0's state_dict in the timm 0.5.4 / original Swin names of ctranspath.pth (TransPath's own loader sets
    head = nn.Identity() and then load_state_dict(td['model'], strict=True): no head keys, the buffers present)."""
    from timm.models.swin_transformer import get_relative_position_index
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
        out[k] = v
        if k.endswith("attn.relative_position_bias_table"):
            blk = model.get_submodule(k[: -len(".attn.relative_position_bias_table")])
            out[k.replace("bias_table", "index")] = get_relative_position_index(*blk.attn.window_size)
    for name, blk in model.named_modules():
        if type(blk).__name__ == "SwinTransformerBlock" and blk.attn_mask is not None:
            out[name + ".attn_mask"] = blk.attn_mask.clone()

    def order(key):  # 0.5.4 order: each stage's blocks, then its downsample
        m = re.match(r"layers\.(\d+)\.(blocks|downsample)", key)
        if key.startswith("patch_embed"):
            return (0, 0, 0)
        return (1, int(m.group(1)), 0 if m.group(2) == "blocks" else 1) if m else (2, 0, 0)
    return dict(sorted(out.items(), key=lambda kv: order(kv[0])))


def card_fixture(root):
    """tests/fixtures/cards/ctranspath/ in card_fixtures.py's format (read by tests/cli/test_cli_cards.cpp): the card's
    geometry narrowed (`override`), random weights in ctranspath.pth's layout, HEST's transform (ToTensor, ImageNet
    Normalize, no resize) on the 224-pixel `tiles` images, HEST's embedding (model(x), head = Identity: [B, 768] at
    full width) and two stage outputs as timm_ctp holds them ([B, L, C], flattened per image)."""
    from PIL import Image
    from torchvision import transforms as T
    d = os.path.join(root, "ctranspath")
    os.makedirs(d, exist_ok=True)
    override = "dim=8"  # (a card override takes single values) heads 3, 6, 12, 24 on 8, 16, 32, 64: head_dim 2
    torch.manual_seed(3)
    import timm
    model = timm.create_model("swin_tiny_patch4_window7_224", embed_layer=ConvStem, num_classes=0,
                              embed_dim=8).eval()
    perturb(model)
    torch.save({"model": ctranspath_layout(model)}, os.path.join(d, "ctranspath.pth"))
    tf = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    images = [Image.open(os.path.join(root, "images", "tiles", f)).convert("RGB") for f in ("a.png", "b.png")]
    x = torch.stack([tf(im) for im in images])
    taps = ["layers.0", "layers.1.downsample"]
    got, hs = hooked(model, taps)
    with torch.no_grad():
        emb = model(x)
    for h in hs:
        h.remove()
    flat = x.numpy().astype(np.float32)
    np.save(os.path.join(d, "input_every29.npy"), flat.reshape(-1)[::29].copy())
    np.save(os.path.join(d, "embedding.npy"), emb.numpy().astype(np.float32))
    for i, k in enumerate(sorted(taps)):
        np.save(os.path.join(d, f"tap{i}.npy"), got[k].reshape(got[k].shape[0], -1).numpy().astype(np.float32))
    meta = dict(card="ctranspath", override=override, images="tiles", weights="ctranspath.pth",
                input_shape=list(flat.shape), input_sha256=hashlib.sha256(flat.tobytes()).hexdigest(),
                embedding_layer="head", embedding_pool="none", taps=sorted(taps), tap_pool="none")
    with open(os.path.join(d, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)


def save_st(path, sd):
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, path)


def hooked(model, names):
    got, handles = {}, []
    mods = dict(model.named_modules())
    for n in names:
        if n in mods:
            def hook(_m, _i, o, n=n):
                got[n] = o[0] if isinstance(o, (list, tuple)) else o
            handles.append(mods[n].register_forward_hook(hook))
    return got, handles


def stride(numel):
    """At most ~512 stored values per tap (odd stride, so it walks across channels); the tests read it back."""
    if numel <= 512:
        return 1
    st = numel // 512 + 1
    return st if st % 2 else st + 1


def tiny_cases(out):
    """Weights per (config, img, seed): a model built for another img has other window sizes (and bias tables)
    where a stage is no larger than the window."""
    cases, taps = [], []
    for mid, kw, arch, convstem in TINY:
        for seed in SEEDS:
            for img in (DEFAULT_IMG, OTHER_IMG):
                wid = f"{mid}_i{img}_s{seed}"
                torch.manual_seed(seed)
                model = build(kw, convstem, img, False)
                if img == DEFAULT_IMG:
                    save_st(os.path.join(out, f"{wid}.init.safetensors"), model.state_dict())
                perturb(model)
                sd = model.state_dict()
                save_st(os.path.join(out, f"{wid}.timm.safetensors"), sd)
                if convstem:
                    torch.save({"model": ctranspath_layout(model)}, os.path.join(out, f"{wid}.ctranspath.pth"))
                for m_img, dynamic, batch, H, W in INPUTS:
                    if m_img != img:
                        continue
                    m = build(kw, convstem, img, dynamic)
                    m.load_state_dict(sd)
                    shape = [batch, 3, H, W]
                    cid = f"{mid}_s{seed}_b{batch}_{H}x{W}" + ("_dyn" if dynamic else "")
                    x = hash_input(shape, seed * 10 + H + W)
                    got, hs = hooked(m, TAPS)
                    with torch.no_grad():
                        y = m(x)
                    for h in hs:
                        h.remove()
                    got["head"] = y
                    for name in TAPS:
                        if name not in got:
                            continue
                        v = got[name].detach().float().reshape(-1)
                        st = stride(v.numel())
                        np.save(os.path.join(out, f"{cid}.{name}.npy"), v[::st].numpy())
                        taps.append(f"{cid}\t{name}\t{','.join(map(str, got[name].shape))}\t{st}\t"
                                    f"{float(v.abs().max())!r}")
                    tab = f"{arch},img={img}"
                    cases.append(f"{cid}\t{wid}\t{seed}\t{','.join(map(str, shape))}\t{tab}")
    return cases, taps


NAMED = ["swin_tiny_patch4_window7_224", "ctranspath"]
SWIN_NAMES = ["swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "swin_base_patch4_window7_224",
              "swin_base_patch4_window12_384", "swin_large_patch4_window7_224", "swin_large_patch4_window12_384"]


def named_model(name):
    import timm
    if name == "ctranspath":
        return timm.create_model("swin_tiny_patch4_window7_224", embed_layer=ConvStem, num_classes=0)
    return timm.create_model(name)


def named_rows():
    rows = []
    for seed in SEEDS:
        for name in NAMED:
            torch.manual_seed(seed)
            m = named_model(name)
            for k, t in m.state_dict().items():
                raw = t.detach().contiguous().numpy().tobytes()
                rows.append(f"{name}\t{seed}\t{k}\t{','.join(map(str, t.shape))}\t{hashlib.sha256(raw).hexdigest()}")
    return rows


def named_params():
    import timm
    rows = []
    with torch.device("meta"):
        for name in SWIN_NAMES:
            m = timm.create_model(name)
            rows.append(f"{name}\t{sum(p.numel() for p in m.parameters())}")
        m = named_model("ctranspath")
        rows.append(f"ctranspath\t{sum(p.numel() for p in m.parameters())}")
    return rows


def pretrained_rows():
    """timm's default pretrained_cfg (first tag) of every named Swin: the eval transform `tabula embed` uses."""
    import timm
    rows = []
    for arch in SWIN_NAMES:
        c = timm.models.get_pretrained_cfg(arch)
        assert c.crop_mode == "center" and c.input_size[1] == c.input_size[2], arch
        rows.append(f"{arch}\t{c.tag}\t{c.input_size[1]}\t{c.crop_pct!r}\t{c.interpolation}\t"
                    f"{','.join(repr(float(v)) for v in c.mean)}\t{','.join(repr(float(v)) for v in c.std)}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "swin"))
    ap.add_argument("--cards", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "cards"),
                    help="the card fixtures' folder (its images/ are card_fixtures.py's); ctranspath/ is written there")
    a = ap.parse_args()
    card_fixture(a.cards)
    os.makedirs(a.out, exist_ok=True)
    import timm
    torch.set_num_threads(1)
    versions = f"torch {torch.__version__}, timm {timm.__version__}, " \
               f"cpu capability {torch.backends.cpu.get_cpu_capability()}"
    cases, taps = tiny_cases(a.out)
    with open(os.path.join(a.out, "cases.tsv"), "w") as f:
        f.write(f"# made by\t{versions}\n# case\tmodel id\tseed\tinput shape\ttabula arch\n" + "\n".join(cases) + "\n")
    with open(os.path.join(a.out, "taps.tsv"), "w") as f:
        f.write("# case\ttap\tshape\tstride\tmax_abs\n" + "\n".join(taps) + "\n")
    with open(os.path.join(a.out, "params.tsv"), "w") as f:
        f.write(f"# arch\tsum(p.numel() for p in parameters())\t{versions}\n" + "\n".join(named_params()) + "\n")
    with open(os.path.join(a.out, "pretrained_cfgs.tsv"), "w") as f:
        f.write(f"# arch\ttag\tinput size\tcrop_pct\tinterpolation\tmean\tstd\t{versions}\n")
        f.write("\n".join(pretrained_rows()) + "\n")
    with open(os.path.join(a.out, "named.tsv"), "w") as f:
        f.write(f"# made by\t{versions}\n# arch\tseed\tname\tshape\tsha256\n" + "\n".join(named_rows()) + "\n")


if __name__ == "__main__":
    main()
