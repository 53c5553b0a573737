#!/usr/bin/env python3
"""Fixtures for the channel-agnostic ViT (OpenPhenom / CA-MAE) and DINOv3 (RoPE), built with the authors' code.

CA-ViT: Recursion's github.com/recursionpharma/maes_microscopy (`vit.py`, `mae_modules.py`; matched at commit
b3e68bb) on timm 1.0.31: a timm VisionTransformer with ParallelScalingBlock, qkv_bias=False, qk_norm=True,
LayerScale 1e-4, class token, global_pool='avg' with fc_norm=None (so timm builds `fc_norm` and leaves `norm` an
Identity), `sincos_positional_encoding_vit`, then `MAEEncoder(channel_agnostic=True)` (the 1-channel patch conv
shared by every channel, fixed 2D sin-cos positions repeated per channel). The published checkpoint is the
Hugging Face `MAEModel` (OpenPhenom's huggingface_mae.py, not in the GitHub repository): its constructor is
mirrored below module by module (encoder, CAMAEDecoder, encoder_decoder_proj, decoder_pred, decoder
pos_embeddings) so the state_dict has the published keys, decoder included. Its `save_pretrained` writes
`torch.save({"state_dict": sd})` into a file *named* model.safetensors; both that pickle and a real safetensors
file of the same dict are written. `predict` (their embedding rule) is replayed: self-standardise
(uint8 / 255, InstanceNorm2d without affine, eps 1e-5), `forward_features` (no final norm: `norm` is Identity),
mean of the patch tokens, or per-channel means (`return_channelwise_embeddings`).

DINOv3: github.com/facebookresearch/dinov3 (`DinoVisionTransformer`, hub `_make_dinov3_vit` settings: RoPE base
100, normalize_coords='separate', rescale_coords=2 (training only), fp32 RoPE, LayerScale 1e-5, norm
'layernormbf16' (LayerNorm eps 1e-5), 4 storage tokens, mask_k_bias=True), in eval mode; init with
`init_weights()` as the hub constructor does with pretrained=False. The same weights are converted to
transformers' `DINOv3ViTModel` (q/k/v split, k bias dropped as the mask zeroes it) and saved with
`save_pretrained`; both forwards are compared here (<= 1e-5 relative) before the hub taps are stored.

For each model and seed: `torch.manual_seed(seed)` + the constructor; the init state_dict is stored whole
(<id>_s<seed>.init.safetensors, for the init replay); then the tensors init leaves trivial (norm affine, biases,
LayerScale, tokens) get deterministic index-based values (perturb), and the perturbed weights are written in the
published layouts. Forward cases: inputs from models_fixtures.hash_input (replayed in C++), taps captured with
forward hooks (last call wins), stored whole below 2048 values and subsampled above (models_fixtures.sample_stride).

Writes tests/fixtures/newvit/:
  cases.tsv        case, model id, seed, input shape, taps
  taps.tsv         case, tap, full shape, sample stride, max|x| of the full tap
  <case>.<tap>.npy float32 (sampled) tap values
  <id>_s<seed>.init.safetensors          the init state_dict (CA-ViT: the encoder's timm ViT keys)
  <id>_s<seed>.{model.safetensors.pt,model.safetensors}   CA-ViT, HF MAEModel layout (pickle / safetensors)
  <id>_s<seed>.{hub.pth,hf.safetensors}                   DINOv3, hub .pth / transformers layout
  ops.*.npy        single-op cases: 2D sin-cos table, RoPE sin/cos tables, rope_apply
  named.tsv        full-size configs: per-tensor sha256 of the init state_dict
  params.tsv       parameter counts of every named arch (built on the meta device)

Usage:
  /work/venv/bin/python weights_tools/reference/newvit_fixtures.py --maes /path/to/maes_microscopy-checkout \
      --dinov3 /path/to/dinov3-checkout [--out tests/fixtures/newvit] [--no-named]
(--maes: the checkout itself; it has no __init__.py and uses relative imports, so it is imported as the package
`maes_microscopy`. --dinov3: the folder holding the `dinov3` package; matched at commit 6876159.)
Versions matched: torch 2.15.0, timm 1.0.31, transformers 5.25.0.
"""
import argparse
import hashlib
import importlib.machinery
import importlib.util
import math
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models_fixtures import hash_input, sample_stride  # noqa: E402

# CA-ViT tiny configs: (id, tabula arch, constructor kwargs, max_in_chans, decoder kwargs)
CA_TINY = [
    ("ca_vit_tiny", "ca_vit:dim=32,depth=2,heads=4,patch=8,img=32,max_chans=11",
     dict(embed_dim=32, depth=2, num_heads=4, patch_size=8, img_size=32), 11,
     dict(depth=1, embed_dim=16, num_heads=2, num_modalities=6)),
]
# DINOv3 tiny configs: (id, tabula arch, DinoVisionTransformer kwargs on top of the hub settings)
DINOV3_TINY = [
    ("dinov3_tiny", "dinov3:dim=32,depth=2,heads=2,patch=8,img=32",
     dict(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32, ffn_ratio=4, ffn_layer="mlp")),
    ("dinov3_tiny_swiglu", "dinov3:dim=32,depth=2,heads=2,patch=8,img=32,ffn_ratio=6,ffn=swiglu",
     dict(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32, ffn_ratio=6, ffn_layer="swiglu")),
]
SEEDS = [0, 1]
CA_INPUTS = [(1, 1), (3, 3), (5, 1), (6, 3)]  # (channels, batch)
DINO_INPUTS = [(1, 32, 32), (3, 32, 48), (1, 48, 24)]  # (batch, H, W)
CA_TAPS = ["input_norm", "patch_embed", "pos_drop", "blocks.0.in_proj", "blocks.0", "blocks.1", "fc_norm",
           "predict", "predict_channelwise"]
DINO_TAPS = ["patch_embed", "blocks.0.attn.qkv", "blocks.0.attn", "blocks.0.ls1", "blocks.0.mlp", "blocks.0",
             "blocks.1", "norm", "x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens"]


def import_maes(path):
    spec = importlib.machinery.ModuleSpec("maes_microscopy", None, is_package=True)
    spec.submodule_search_locations = [os.path.abspath(path)]
    sys.modules["maes_microscopy"] = importlib.util.module_from_spec(spec)
    import maes_microscopy.mae_modules as mae_modules
    import maes_microscopy.vit as maes_vit
    return mae_modules, maes_vit


def ca_backbone(kw):
    """vit.py's vit_*_patch16_256 defaults with global_pool='avg' (as MAEModel builds it), at a chosen size."""
    import timm.models.vision_transformer as vit
    return vit.VisionTransformer(in_chans=6, num_classes=0, fc_norm=None, class_token=True, drop_path_rate=0.1,
                                 init_values=0.0001, block_fn=vit.ParallelScalingBlock, qkv_bias=False,
                                 qk_norm=True, global_pool="avg", **kw)


class MAEModelLayout(nn.Module):
    """OpenPhenom's MAEModel.__init__ module tree (huggingface_mae.py), built from the authors' modules, so the
    state_dict has the published keys in the published order. Only the modules holding state are kept."""

    def __init__(self, mae_modules, maes_vit, backbone, max_in_chans, dec):
        super().__init__()
        self.encoder = mae_modules.MAEEncoder(vit_backbone=maes_vit.sincos_positional_encoding_vit(backbone),
                                              max_in_chans=max_in_chans, channel_agnostic=True)
        grid = self.encoder.vit_backbone.patch_embed.grid_size[0]
        self.decoder = mae_modules.CAMAEDecoder(depth=dec["depth"], embed_dim=dec["embed_dim"], mlp_ratio=4,
                                                norm_layer=nn.LayerNorm, num_heads=dec["num_heads"],
                                                num_modalities=dec["num_modalities"], qkv_bias=True,
                                                tokens_per_modality=grid * grid)
        patch = int(self.encoder.vit_backbone.patch_embed.patch_size[0])
        self.encoder_decoder_proj = nn.Linear(self.encoder.embed_dim, self.decoder.embed_dim, bias=True)
        self.decoder_pred = nn.Linear(self.decoder.embed_dim, patch ** 2, bias=True)
        self.decoder.pos_embeddings = maes_vit.generate_2d_sincos_pos_embeddings(
            self.decoder.embed_dim, length=grid, use_class_token=True, num_modality=dec["num_modalities"])
        self.tokens_per_channel = grid * grid

    def input_norm(self, imgs):  # Normalizer() then InstanceNorm2d(None, affine=False, track_running_stats=False)
        return nn.functional.instance_norm(imgs.float() / 255.0, eps=1e-5)

    def predict(self, imgs, channelwise):  # MAEModel.predict
        imgs = self.input_norm(imgs)
        X = self.encoder.vit_backbone.forward_features(imgs)
        if channelwise:
            N, _, d = X.shape
            C = imgs.shape[1]
            return X[:, 1:, :].view(N, C, self.tokens_per_channel, d).mean(dim=2).view(N, C * d).contiguous()
        return X[:, 1:, :].mean(dim=1)


def dinov3_hub_kwargs(kw):
    base = dict(in_chans=3, pos_embed_rope_base=100, pos_embed_rope_normalize_coords="separate",
                pos_embed_rope_rescale_coords=2, pos_embed_rope_dtype="fp32", qkv_bias=True, drop_path_rate=0.0,
                layerscale_init=1.0e-05, norm_layer="layernormbf16", ffn_bias=True, proj_bias=True,
                n_storage_tokens=4, mask_k_bias=True)
    base.update(kw)
    return base


def build_dinov3(kw):
    from dinov3.models.vision_transformer import DinoVisionTransformer
    model = DinoVisionTransformer(**dinov3_hub_kwargs(kw))
    model.init_weights()  # what hub _make_dinov3_vit does with pretrained=False
    return model


def hf_dinov3(hub, kw):
    """The same weights as transformers' DINOv3ViTModel (its convert script's key mapping)."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel
    D, swiglu = kw["embed_dim"], kw["ffn_layer"] == "swiglu"
    hidden = int(D * kw["ffn_ratio"])
    if swiglu:
        d = int(hidden * 2 / 3)
        hidden = d + (-d % 8)
    cfg = DINOv3ViTConfig(patch_size=kw["patch_size"], hidden_size=D, intermediate_size=hidden,
                          num_hidden_layers=kw["depth"], num_attention_heads=kw["num_heads"],
                          image_size=kw["img_size"], layer_norm_eps=1e-5, rope_theta=100.0, layerscale_value=1e-5,
                          num_register_tokens=4, use_gated_mlp=swiglu, hidden_act="silu" if swiglu else "gelu",
                          key_bias=False, pos_embed_rescale=2.0)
    sd = hub.state_dict()
    out = {"embeddings.cls_token": sd["cls_token"], "embeddings.mask_token": sd["mask_token"][None],
           "embeddings.register_tokens": sd["storage_tokens"],
           "embeddings.patch_embeddings.weight": sd["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.bias": sd["patch_embed.proj.bias"],
           "norm.weight": sd["norm.weight"], "norm.bias": sd["norm.bias"]}
    mlp = {"fc1": "up_proj", "fc2": "down_proj", "w1": "gate_proj", "w2": "up_proj", "w3": "down_proj"}
    for i in range(kw["depth"]):
        p, q = f"blocks.{i}.", f"model.layer.{i}."
        w, b = sd[p + "attn.qkv.weight"].chunk(3), sd[p + "attn.qkv.bias"].chunk(3)
        out.update({q + "attention.q_proj.weight": w[0], q + "attention.k_proj.weight": w[1],
                    q + "attention.v_proj.weight": w[2], q + "attention.q_proj.bias": b[0],
                    q + "attention.v_proj.bias": b[2],
                    q + "attention.o_proj.weight": sd[p + "attn.proj.weight"],
                    q + "attention.o_proj.bias": sd[p + "attn.proj.bias"],
                    q + "layer_scale1.lambda1": sd[p + "ls1.gamma"], q + "layer_scale2.lambda1": sd[p + "ls2.gamma"]})
        for n in ("norm1", "norm2"):
            for t in ("weight", "bias"):
                out[f"{q}{n}.{t}"] = sd[f"{p}{n}.{t}"]
        for src, dst in mlp.items():
            for t in ("weight", "bias"):
                if f"{p}mlp.{src}.{t}" in sd:
                    out[f"{q}mlp.{dst}.{t}"] = sd[f"{p}mlp.{src}.{t}"]
    model = DINOv3ViTModel(cfg).eval()
    missing, unexpected = model.load_state_dict(out, strict=False)
    assert not unexpected and all("inv_freq" in m for m in missing), (missing, unexpected)
    return model


def perturb(module, skip=("pos_embed", "pos_embeddings", "bias_mask", "periods")):
    """Exactly representable index-based values for every float tensor of <= 1 dim and the tokens, so norms,
    biases, LayerScale and tokens are exercised (init leaves them 1, 0, 1e-4/1e-5, ~0)."""
    sd = module.state_dict()
    with torch.no_grad():
        for k, (name, t) in enumerate(sd.items()):
            leaf = name.rsplit(".", 1)[-1]
            if t.dtype != torch.float32 or leaf in skip:
                continue
            i = torch.arange(t.numel(), dtype=torch.int64)
            if leaf in ("cls_token", "storage_tokens", "mask_token", "reg_token"):
                v = ((i * 3 + k) % 13 - 6).double() / 16
            elif leaf in ("gamma",) or (t.dim() == 1 and leaf == "weight"):
                v = 0.75 + ((i * 3 + k) % 5).double() / 8
            elif leaf in ("bias", "mlp_bias"):
                v = ((i + 2 * k) % 7 - 3).double() / 16
            else:
                continue
            t.copy_(v.float().reshape(t.shape))
    module.load_state_dict(sd)


def save_st(path, sd):
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, path)


class Recorder:
    def __init__(self, out):
        self.out, self.cases, self.taps = out, [], []

    def case(self, cid, mid, seed, shape, taps):
        for name, t in taps.items():
            v = t.detach().float().reshape(-1)
            st = sample_stride(v.numel())
            np.save(os.path.join(self.out, f"{cid}.{name}.npy"), v[::st].numpy())
            self.taps.append(f"{cid}\t{name}\t{','.join(map(str, t.shape))}\t{st}\t{float(v.abs().max())!r}")
        self.cases.append(f"{cid}\t{mid}\t{seed}\t{','.join(map(str, shape))}\t{','.join(taps)}")

    def write(self, versions):
        with open(os.path.join(self.out, "cases.tsv"), "w") as f:
            f.write(f"# made by\t{versions}\n# case\tmodel id\tseed\tinput shape\ttaps\n" + "\n".join(self.cases) + "\n")
        with open(os.path.join(self.out, "taps.tsv"), "w") as f:
            f.write("# case\ttap\tshape\tstride\tmax_abs\n" + "\n".join(self.taps) + "\n")


def hooked(model, names):
    got, handles = {}, []
    mods = dict(model.named_modules())
    for n in names:
        if n in mods:
            def hook(_m, _i, o, n=n):
                got[n] = o[0] if isinstance(o, (list, tuple)) else o
            handles.append(mods[n].register_forward_hook(hook))
    return got, handles


def ca_cases(rec, mae_modules, maes_vit):
    for mid, arch, kw, max_chans, dec in CA_TINY:
        for seed in SEEDS:
            torch.manual_seed(seed)
            model = MAEModelLayout(mae_modules, maes_vit, ca_backbone(kw), max_chans, dec).eval()
            vb = model.encoder.vit_backbone
            torch.manual_seed(seed)  # the encoder alone: MAEModel builds it first, so its init is the same
            alone = mae_modules.MAEEncoder(maes_vit.sincos_positional_encoding_vit(ca_backbone(kw)),
                                           max_in_chans=max_chans, channel_agnostic=True).vit_backbone
            for (k, a), (k2, b) in zip(vb.state_dict().items(), alone.state_dict().items()):
                assert k == k2 and torch.equal(a, b), k
            save_st(os.path.join(rec.out, f"{mid}_s{seed}.init.safetensors"), vb.state_dict())
            perturb(model)
            sd = model.state_dict()
            torch.save({"state_dict": sd}, os.path.join(rec.out, f"{mid}_s{seed}.model.safetensors.pt"))
            save_st(os.path.join(rec.out, f"{mid}_s{seed}.model.safetensors"), sd)
            img = kw["img_size"]
            for chans, batch in CA_INPUTS:
                shape = [batch, chans, img, img]
                cid = f"{mid}_s{seed}_c{chans}_b{batch}"
                # uint8 pixel values (the convention the model was trained on)
                x = torch.floor((hash_input(shape, seed * 10 + chans) + 1) * 128).clamp(0, 255)
                got, hs = hooked(vb, CA_TAPS)
                with torch.no_grad():
                    xn = model.input_norm(x)
                    feats = vb.forward_features(xn)
                    taps = {"input_norm": xn}
                    taps.update({t: got[t] for t in CA_TAPS if t in got})
                    taps["forward_features"] = feats
                    taps["fc_norm"] = vb.forward_head(feats)  # MAEEncoder.forward: pool avg + fc_norm
                    taps["predict"] = model.predict(x, False)
                    taps["predict_channelwise"] = model.predict(x, True)
                for h in hs:
                    h.remove()
                rec.case(cid, mid, seed, shape, taps)


def dinov3_cases(rec):
    for mid, arch, kw in DINOV3_TINY:
        for seed in SEEDS:
            torch.manual_seed(seed)
            hub = build_dinov3(kw).eval()
            save_st(os.path.join(rec.out, f"{mid}_s{seed}.init.safetensors"), hub.state_dict())
            perturb(hub)
            torch.save(hub.state_dict(), os.path.join(rec.out, f"{mid}_s{seed}.hub.pth"))
            hf = hf_dinov3(hub, kw)
            save_st(os.path.join(rec.out, f"{mid}_s{seed}.hf.safetensors"), hf.state_dict())
            for batch, H, W in DINO_INPUTS:
                shape = [batch, 3, H, W]
                cid = f"{mid}_s{seed}_b{batch}_{H}x{W}"
                x = hash_input(shape, seed * 10 + H + W)
                got, hs = hooked(hub, DINO_TAPS)
                with torch.no_grad():
                    o = hub.forward_features(x)
                    h = hf(pixel_values=x).last_hidden_state
                for hd in hs:
                    hd.remove()
                ref = torch.cat([o["x_norm_clstoken"][:, None], o["x_storage_tokens"], o["x_norm_patchtokens"]], 1)
                rel = float((h - ref).abs().max() / ref.abs().max())
                assert rel <= 1e-5, (cid, rel)
                taps = {t: got[t] for t in DINO_TAPS if t in got}
                taps.update({k: o[k] for k in ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens")})
                rec.case(cid, mid, seed, shape, taps)


def op_cases(out, maes_vit):
    """Single ops: the 2D sin-cos table (vit.py), DINOv3's RoPE tables and rope_apply (layers/attention.py)."""
    from dinov3.layers.attention import rope_apply
    from dinov3.layers.rope_position_encoding import RopePositionEmbedding
    rows = []
    for dim, length, mods, cls in [(32, 4, 3, True), (384, 16, 1, True), (64, 3, 2, False)]:
        t = maes_vit.generate_2d_sincos_pos_embeddings(dim, length, use_class_token=cls, num_modality=mods).detach()
        name = f"sincos_d{dim}_l{length}_m{mods}_c{int(cls)}"
        np.save(os.path.join(out, f"ops.{name}.npy"), t.reshape(-1).numpy())
        rows.append(f"{name}\t{','.join(map(str, t.shape))}")
    for dim, heads, H, W, norm, base in [(32, 2, 4, 4, "separate", 100.0), (64, 4, 4, 6, "separate", 100.0),
                                         (64, 2, 3, 5, "max", 100.0), (48, 3, 5, 2, "min", 10000.0),
                                         (96, 2, 3, 4, "separate", None)]:
        periods = dict(base=base) if base else dict(base=None, min_period=0.5, max_period=40.0)
        rope = RopePositionEmbedding(dim, num_heads=heads, normalize_coords=norm, rescale_coords=2.0,
                                     dtype=torch.float32, **periods).eval()
        sin, cos = rope(H=H, W=W)
        name = f"rope_d{dim}_h{heads}_{H}x{W}_{norm}_" + (f"b{int(base)}" if base else "p0.5-40")
        np.save(os.path.join(out, f"ops.{name}.sin.npy"), sin.reshape(-1).numpy())
        np.save(os.path.join(out, f"ops.{name}.cos.npy"), cos.reshape(-1).numpy())
        rows.append(f"{name}\t{','.join(map(str, sin.shape))}")
        prefix, hd = 5, dim // heads
        q = hash_input([2, heads, prefix + H * W, hd], 77)
        y = torch.cat([q[:, :, :prefix], rope_apply(q[:, :, prefix:], sin, cos)], dim=-2)
        np.save(os.path.join(out, f"ops.{name}.apply.npy"), y.reshape(-1).numpy())
        rows.append(f"{name}.apply\t{','.join(map(str, q.shape))}\tprefix={prefix}\tinput=hash_input(seed 77)")
    with open(os.path.join(out, "ops.tsv"), "w") as f:
        f.write("# op case\tshape\tnotes\n" + "\n".join(rows) + "\n")


def named_rows(mae_modules, maes_vit):
    """Full-size configs: parameter count and per-tensor sha256 of the init (summaries only: too big to store)."""
    from dinov3.hub import backbones
    rows = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        vb = mae_modules.MAEEncoder(maes_vit.sincos_positional_encoding_vit(maes_vit.vit_small_patch16_256(
            global_pool="avg")), max_in_chans=11, channel_agnostic=True).vit_backbone
        named = [("ca_vit_small_patch16_256", vb)]
        for name in ("dinov3_vits16", "dinov3_vitb16"):
            torch.manual_seed(seed)
            named.append((name, getattr(backbones, name)(pretrained=False)))
        for name, m in named:
            for k, t in m.state_dict().items():
                raw = t.detach().contiguous().numpy().tobytes()
                rows.append(f"{name}\t{seed}\t{k}\t{','.join(map(str, t.shape))}\t{hashlib.sha256(raw).hexdigest()}")
    return rows


def named_params(mae_modules, maes_vit):
    """sum(p.numel() for p in parameters()) of every named arch tabula registers, built on the meta device."""
    from dinov3.hub import backbones
    ca = {"ca_vit_small_patch16_256": maes_vit.vit_small_patch16_256,
          "ca_vit_base_patch16_256": maes_vit.vit_base_patch16_256,
          "ca_vit_large_patch16_256": maes_vit.vit_large_patch16_256}
    rows = []
    with torch.device("meta"):
        for name, ctor in ca.items():
            vb = mae_modules.MAEEncoder(maes_vit.sincos_positional_encoding_vit(ctor(global_pool="avg")),
                                        max_in_chans=11, channel_agnostic=True).vit_backbone
            rows.append(f"{name}\t{sum(p.numel() for p in vb.parameters())}")
        for name in ("dinov3_vits16", "dinov3_vits16plus", "dinov3_vitb16", "dinov3_vitl16", "dinov3_vith16plus",
                     "dinov3_vit7b16"):
            m = getattr(backbones, name)(pretrained=False)
            rows.append(f"{name}\t{sum(p.numel() for p in m.parameters())}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maes", required=True, help="a recursionpharma/maes_microscopy checkout")
    ap.add_argument("--dinov3", required=True, help="folder holding the dinov3 package")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures",
                                                  "newvit"))
    ap.add_argument("--no-named", action="store_true", help="skip the full-size init summaries")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    sys.path.insert(0, a.dinov3)
    mae_modules, maes_vit = import_maes(a.maes)
    import timm
    import transformers
    torch.set_num_threads(1)
    versions = f"torch {torch.__version__}, timm {timm.__version__}, transformers {transformers.__version__}, " \
               f"cpu capability {torch.backends.cpu.get_cpu_capability()}"
    rec = Recorder(a.out)
    ca_cases(rec, mae_modules, maes_vit)
    dinov3_cases(rec)
    rec.write(versions)
    op_cases(a.out, maes_vit)
    with open(os.path.join(a.out, "params.tsv"), "w") as f:
        f.write(f"# arch\tsum(p.numel() for p in parameters())\t{versions}\n")
        f.write("\n".join(named_params(mae_modules, maes_vit)) + "\n")
    if not a.no_named:
        with open(os.path.join(a.out, "named.tsv"), "w") as f:
            f.write(f"# made by\t{versions}\n# arch\tseed\tname\tshape\tsha256\n")
            f.write("\n".join(named_rows(mae_modules, maes_vit)) + "\n")


if __name__ == "__main__":
    main()
