#!/usr/bin/env python3
"""Writes tests/fixtures/cards/: one fidelity fixture per model card (models/cards/cards.cpp).

For each card the model is built with the authors' own code path -- timm.create_model with the card's kwargs,
transformers' ViTModel / Dinov2Model, the DINOv2 hub's DinoVisionTransformer -- in a narrower, shallower variant of
the same geometry (the `override` below, which tabula receives as `--model CARD:override`), with every parameter and
buffer drawn at random (LayerScale gammas and norm weights near 1, so that every block matters), and saved in the
published checkpoint's format and key names (timm/hub: torch.save of the state_dict; Hugging Face: model.safetensors
with transformers 4's names, as published). The authors' eval transform (torchvision transforms on PIL images as
their model cards and HEST write it; kaiko's transforms.v2 on uint8 tensors) runs on real 8-bit photographs
(scikit-image's IHC and retina images, cropped), and the authors' embedding rule and two block outputs are stored.
Also: timm pretrained tags' eval transforms (tags/tags.json) and two whole pipelines with seed-0 weights
(tags/pipelines.json).

Run from the repository root:
    /work/venv/bin/python weights_tools/reference/card_fixtures.py --dinov2 /path/to/dinov2-checkout
(the folder holding the `dinov2` package, facebookresearch/dinov2 at b8931f7; only the dinov2-* cards need it).
resnet50-hest is narrowed with timm's channels= (stage widths), which keeps the file small with layer4 included.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
from functools import partial

import numpy as np
import PIL
import skimage
import timm
import torch
import torchvision
import transformers
from PIL import Image
from torchvision import transforms as T

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "cards")
SK = os.path.join(os.path.dirname(skimage.__file__), "data")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HOPTIMUS = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))


def write_images():
    """tiles/: 224 x 224 patches (cards without Resize: HEST's patches); rects/: 256 x 288 crops (Resize(224) gives
    224 x 252, whole 14-pixel patches); rects16/: 256 x 293 (224 x 256, whole 16-pixel patches). Resize without a
    crop keeps the aspect ratio, so a batch needs one orientation."""
    ihc = Image.open(os.path.join(SK, "ihc.png")).convert("RGB")
    retina = Image.open(os.path.join(SK, "retina.jpg")).convert("RGB")
    sets = {"tiles": [ihc.crop((140, 200, 364, 424)), retina.crop((560, 480, 784, 704))],
            "rects": [ihc.crop((30, 40, 286, 328)), retina.crop((500, 420, 756, 708))],
            "rects16": [ihc.crop((200, 100, 456, 393)), retina.crop((640, 560, 896, 853))]}
    for name, ims in sets.items():
        d = os.path.join(ROOT, "images", name)
        os.makedirs(d, exist_ok=True)
        for i, im in enumerate(ims):
            im.save(os.path.join(d, f"{chr(ord('a') + i)}.png"))
        with open(os.path.join(ROOT, "images", name + ".csv"), "w") as fh:  # a manifest tabula reads
            fh.write("id,image\n" + "".join(f"{chr(ord('a') + i)},{name}/{chr(ord('a') + i)}.png\n"
                                            for i in range(len(ims))))
    return sets


def randomise(model, seed):
    """Every parameter and buffer at random, LayerScale and norm weights near 1 (blocks must matter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if not p.is_floating_point():
                continue
            r = torch.randn(p.shape, generator=g)
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("gamma", "lambda1") or (leaf == "weight" and p.dim() == 1):
                p.copy_(1.0 + 0.2 * r)
            elif leaf == "running_var":
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif leaf in ("bias", "running_mean") or p.dim() == 1:
                p.copy_(0.1 * r)
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(r / max(1.0, fan_in) ** 0.5)
    return model.eval()


def tap_hooks(modules):
    out = {}

    def hook(name):
        def f(_, __, o):
            out[name] = (o[0] if isinstance(o, tuple) else o).detach().clone()
        return f
    for name, m in modules.items():
        m.register_forward_hook(hook(name))
    return out


def timm_card(timm_name, kwargs, shrink):
    def build(seed):
        torch.manual_seed(seed)
        m = timm.create_model(timm_name, pretrained=False, **kwargs, **shrink)
        return randomise(m, seed)
    return build


def timm_twin(timm_name, kwargs, shrink):
    """The untrained model the authors' constructor gives after torch.manual_seed(seed) (what --seed reproduces)."""
    def build(seed):
        torch.manual_seed(seed)
        return timm.create_model(timm_name, pretrained=False, **kwargs, **shrink).eval()
    return build


def cls_rule(out):
    return out


def cls_mean_rule(skip):
    def f(out):
        return torch.cat([out[:, 0], out[:, skip:].mean(1)], dim=-1)
    return f


SWIGLU = dict(mlp_layer=timm.layers.SwiGLUPacked, act_layer=torch.nn.SiLU)
SHRINK = dict(embed_dim=48, depth=2, num_heads=4)
TAB_SHRINK = "dim=48,depth=2,heads=4"


def timm_cards():
    uni = dict(img_size=224, patch_size=16, init_values=1e-5, num_classes=0, dynamic_img_size=True)
    uni2 = dict(img_size=224, patch_size=14, init_values=1e-5, mlp_ratio=2.66667 * 2, num_classes=0,
                no_embed_class=True, reg_tokens=8, dynamic_img_size=True, **SWIGLU)
    hopt = dict(img_size=224, init_values=1e-5, num_classes=0, dynamic_img_size=False)
    virchow = dict(img_size=224, init_values=1e-5, num_classes=0, mlp_ratio=5.3375, global_pool="",
                   dynamic_img_size=True, **SWIGLU)
    giga = dict(img_size=224, in_chans=3, patch_size=16, init_values=1e-5, mlp_ratio=5.33334, num_classes=0)
    h0 = dict(img_size=224, num_classes=0, global_pool="", **SWIGLU)
    resize = lambda size, interp: [T.Resize(size, interpolation=T.InterpolationMode(interp))]
    return [
        # card, timm name, kwargs, transform (before ToTensor), normalisation, images, rule, weight file
        ("uni", "vit_large_patch16_224", uni, resize(224, "bilinear"), IMAGENET, "rects16", cls_rule),
        ("uni2-h", "vit_giant_patch14_224", uni2, resize(224, "bilinear") + [T.CenterCrop(224)], IMAGENET, "rects",
         cls_rule),
        ("h-optimus-0", "vit_giant_patch14_reg4_dinov2", hopt, [], HOPTIMUS, "tiles", cls_rule),
        ("h-optimus-1", "vit_giant_patch14_reg4_dinov2", hopt, [], HOPTIMUS, "tiles", cls_rule),
        ("virchow", "vit_huge_patch14_224", virchow, resize(224, "bicubic") + [T.CenterCrop(224)], IMAGENET, "rects",
         cls_mean_rule(1)),
        ("virchow2", "vit_huge_patch14_224", dict(virchow, reg_tokens=4), resize(224, "bicubic") + [T.CenterCrop(224)],
         IMAGENET, "rects", cls_mean_rule(5)),
        ("prov-gigapath", "vit_giant_patch14_dinov2", giga, resize(256, "bicubic") + [T.CenterCrop(224)], IMAGENET,
         "rects", cls_rule),
        # H0-mini: timm's eval transform for its pretrained_cfg (224, crop_pct 1.0, bicubic) is Resize + CenterCrop
        ("h0-mini", "vit_base_patch14_reg4_dinov2", h0, resize(224, "bicubic") + [T.CenterCrop(224)], HOPTIMUS,
         "rects", cls_mean_rule(5)),
    ]


def save_torch(model, path):
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, path)


def run_card(name, build, geometric, norm, images, rule, taps_of, save, override, seed, tab_taps, tap_pool,
             embed_layer, embed_pool, twin=None, twin_seed=7):
    d = os.path.join(ROOT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    model = build(seed)
    weights = save(model, d)
    tf = geometric if callable(geometric) else T.Compose(geometric + [T.ToTensor(), T.Normalize(*norm)])
    x = torch.stack([tf(im) for im in images])
    taps = tap_hooks(taps_of(model))
    with torch.no_grad():
        emb = rule(model(x)).float()
    flat = x.numpy().astype(np.float32)
    np.save(os.path.join(d, "input_every29.npy"), flat.reshape(-1)[::29].copy())
    np.save(os.path.join(d, "embedding.npy"), emb.numpy().astype(np.float32))
    for i, k in enumerate(sorted(taps)):
        t = taps[k]
        if tap_pool == "avg":
            t = t.mean(dim=(2, 3))
        np.save(os.path.join(d, f"tap{i}.npy"), t.reshape(t.shape[0], -1).numpy().astype(np.float32))
    meta = dict(card=name, override=override, images=images_name(images), weights=weights,
                input_shape=list(flat.shape), input_sha256=hashlib.sha256(flat.tobytes()).hexdigest(),
                embedding_layer=embed_layer, embedding_pool=embed_pool, taps=tab_taps, tap_pool=tap_pool)
    with open(os.path.join(d, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    if twin is not None:  # the untrained twin's embedding of the same input
        with torch.no_grad():
            t = rule(twin(twin_seed)(x)).float().numpy()
        np.save(os.path.join(d, f"twin_s{twin_seed}_embedding.npy"), t)
        with open(os.path.join(d, "twin.json"), "w") as fh:
            json.dump(dict(seed=twin_seed, override=override, embedding=f"twin_s{twin_seed}_embedding.npy"), fh)
    print(name, "embedding", tuple(emb.shape), "weights", os.path.getsize(os.path.join(d, weights)), "bytes")


IMAGE_SETS = {}


def images_name(images):
    return next(k for k, v in IMAGE_SETS.items() if v is images)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dinov2", help="folder holding the dinov2 package (facebookresearch/dinov2)")
    ap.add_argument("--hibou", help="folder holding the hibou package (github.com/HistAI/hibou at c453bbe)")
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    IMAGE_SETS.update(write_images())
    want = lambda n: not a.only or n in a.only
    seed = 100
    for name, timm_name, kwargs, geo, norm, imgs, rule in timm_cards():
        seed += 1
        if not want(name):
            continue
        last = "norm" if rule is not cls_rule else "head"
        pool = "cls+mean" if rule is not cls_rule else "none"
        run_card(name, timm_card(timm_name, kwargs, SHRINK), geo, norm, IMAGE_SETS[imgs], rule,
                 lambda m: {"blocks.0": m.blocks[0], "blocks.1": m.blocks[1]},
                 lambda m, d: (save_torch(m, os.path.join(d, "pytorch_model.bin")), "pytorch_model.bin")[1],
                 TAB_SHRINK, seed, ["blocks.0", "blocks.1"], "none", last, pool,
                 twin=timm_twin(timm_name, kwargs, SHRINK))

    # kaiko.ai hub backbones: torchvision.transforms.v2 on a uint8 tensor (their README's preprocessing).
    from torchvision.transforms import v2

    def kaiko_transform(im):
        return v2.Compose([v2.ToImage(), v2.Resize(size=224), v2.CenterCrop(size=224),
                           v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))])(im)
    for i, (tag, timm_name) in enumerate([("vits16", "vit_small_patch16_224"), ("vits8", "vit_small_patch8_224"),
                                          ("vitb16", "vit_base_patch16_224"), ("vitb8", "vit_base_patch8_224")]):
        name = "kaiko-" + tag
        if not want(name):
            continue
        run_card(name, timm_card(timm_name, dict(dynamic_img_size=True, num_classes=0), SHRINK), kaiko_transform,
                 None, IMAGE_SETS["rects"], cls_rule, lambda m: {"blocks.0": m.blocks[0], "blocks.1": m.blocks[1]},
                 lambda m, d, tag=tag: (save_torch(m, os.path.join(d, tag + ".pth")), tag + ".pth")[1],
                 TAB_SHRINK, 150 + i, ["blocks.0", "blocks.1"], "none", "head", "none",
                 twin=timm_twin(timm_name, dict(dynamic_img_size=True, num_classes=0), SHRINK))

    # kaiko.ai vitl14: hubconf.py builds timm's vit_large_patch14_reg4_dinov2 (eva: dynamic_img_size=True) and loads
    # the DINOv2-hub-format checkpoint through timm's _convert_dinov2. The fixture is written in the hub format (the
    # CLS row of pos_embed split off the class token, register_tokens, mask_token) and loaded back exactly so.
    if want("kaiko-vitl14"):
        from timm.models import vision_transformer as tvit

        def kaiko_l(seed):
            torch.manual_seed(seed)
            m = randomise(timm.create_model("vit_large_patch14_reg4_dinov2", pretrained=False, dynamic_img_size=True,
                                            **SHRINK), seed)
            sd = {k: v.clone() for k, v in m.state_dict().items()}
            g = torch.Generator().manual_seed(seed + 1)
            row = 0.1 * torch.randn(1, 1, sd["cls_token"].shape[-1], generator=g)
            hub = {"cls_token": sd.pop("cls_token") - row, "register_tokens": sd.pop("reg_token"),
                   "pos_embed": torch.cat([row, sd.pop("pos_embed")], 1),
                   "mask_token": torch.zeros(1, row.shape[-1])}
            hub.update(sd)
            m.load_state_dict(tvit._convert_dinov2({k: v.clone() for k, v in hub.items()}, m), strict=True)
            m.hub_state_dict = hub
            return m.eval()

        def save_hub(m, d):
            torch.save({k: v.contiguous() for k, v in m.hub_state_dict.items()}, os.path.join(d, "vitl14.pth"))
            return "vitl14.pth"
        run_card("kaiko-vitl14", kaiko_l, kaiko_transform, None, IMAGE_SETS["rects"], cls_rule,
                 lambda m: {"blocks.0": m.blocks[0], "blocks.1": m.blocks[1]}, save_hub, TAB_SHRINK, 155,
                 ["blocks.0", "blocks.1"], "none", "head", "none",
                 twin=timm_twin("vit_large_patch14_reg4_dinov2", dict(dynamic_img_size=True), SHRINK))

    # Hugging Face: Phikon (ViTModel, no pooler) and Phikon-v2 (Dinov2Model); last_hidden_state[:, 0] (HEST).
    from safetensors.torch import save_file

    def published_name(k):
        """transformers 5's parameter names -> the names in the published model.safetensors (transformers 4)."""
        import re
        k = re.sub(r"^layers\.(\d+)\.", r"encoder.layer.\1.", k)  # ViTModel
        k = re.sub(r"\.attention\.([qkv])_proj\.",
                   lambda mm: ".attention.attention." + {"q": "query", "k": "key", "v": "value"}[mm.group(1)] + ".", k)
        k = k.replace(".attention.o_proj.", ".attention.output.dense.")
        if ".layernorm_before." in k or ".layernorm_after." in k or re.match(r"^encoder\.layer\.\d+\.mlp\.", k) and \
                "layernorm_" in "".join(names):
            k = k.replace(".mlp.fc1.", ".intermediate.dense.").replace(".mlp.fc2.", ".output.dense.")
        return k

    names = []

    def hf_save(m, d):
        names[:] = list(m.state_dict().keys())
        sd = {published_name(k): v.contiguous() for k, v in m.state_dict().items()}
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        return "model.safetensors"

    def hf_build(cls, cfg, **kw):
        def build(seed):
            torch.manual_seed(seed)
            return randomise(cls(cfg, **kw), seed)
        return build

    hf_rule = lambda out: out.last_hidden_state[:, 0]
    if want("phikon"):
        cfg = transformers.ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192,
                                     image_size=224, patch_size=16, layer_norm_eps=1e-12, qkv_bias=True)
        run_card("phikon", hf_build(transformers.ViTModel, cfg, add_pooling_layer=False), [], IMAGENET,
                 IMAGE_SETS["tiles"], hf_rule, lambda m: {"blocks.0": m.layers[0], "blocks.1": m.layers[1]},
                 hf_save, TAB_SHRINK, 201, ["blocks.0", "blocks.1"], "none", "head", "none")
    if want("phikon-v2"):
        cfg = transformers.Dinov2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4,
                                        image_size=224, patch_size=16, layerscale_value=1e-5)
        run_card("phikon-v2", hf_build(transformers.Dinov2Model, cfg), [], IMAGENET, IMAGE_SETS["tiles"], hf_rule,
                 lambda m: {"blocks.0": m.encoder.layer[0], "blocks.1": m.encoder.layer[1]}, hf_save, TAB_SHRINK, 202,
                 ["blocks.0", "blocks.1"], "none", "x_norm_clstoken", "none")

    # DINOv2 hub backbones (dinov2/hub/backbones.py _make_dinov2_model), DinoVisionTransformer built directly to
    # shrink it: same img_size 518, patch 14, init_values, ffn_layer, registers and interpolation settings.
    if a.dinov2:
        sys.path.insert(0, a.dinov2)
        from dinov2.layers import MemEffAttention
        from dinov2.layers import NestedTensorBlock as Block
        from dinov2.models.vision_transformer import DinoVisionTransformer
        dino_tf = [T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224)]
        for i, (size, dim, heads) in enumerate([("s", 48, 4), ("b", 48, 6), ("l", 48, 8), ("g", 48, 4)]):
            for reg in (False, True):
                name = f"dinov2-vit{size}14" + ("-reg" if reg else "")
                if not want(name):
                    continue
                kw = dict(img_size=518, patch_size=14, embed_dim=dim, depth=2, num_heads=heads, mlp_ratio=4,
                          block_fn=partial(Block, attn_class=MemEffAttention), init_values=1.0,
                          ffn_layer="swiglufused" if size == "g" else "mlp", block_chunks=0,
                          num_register_tokens=4 if reg else 0, interpolate_antialias=reg,
                          interpolate_offset=0.0 if reg else 0.1)

                def build(seed, kw=kw):
                    torch.manual_seed(seed)
                    return randomise(DinoVisionTransformer(**kw), seed)
                run_card(name, build, dino_tf, IMAGENET, IMAGE_SETS["rects"], cls_rule,
                         lambda m: {"blocks.0": m.blocks[0], "blocks.1": m.blocks[1]},
                         lambda m, d: (save_torch(m, os.path.join(d, "weights.pth")), "weights.pth")[1],
                         f"dim={dim},depth=2,heads={heads}", 300 + i * 2 + reg, ["blocks.0", "blocks.1"], "none",
                         "head", "none")
    # resnet50-hest: HEST's ResNet50InferenceEncoder, timm.create_model("resnet50.tv_in1k", features_only=True,
    # out_indices=[3], num_classes=0) -> layer3 -> AdaptiveAvgPool2d(1), on HEST's eval transform (ToTensor,
    # Normalize(ImageNet); 224-pixel patches). Narrowed with timm's channels=(8, 16, 32, 64) (same depths, strides and
    # expansion; the stem stays 64 wide); the weight file is the whole network in torchvision's layout, as
    # resnet50-0676ba61.pth (layer4 and a 10-class fc included), of which HEST's model loads up to layer3. Also the
    # untrained twin: the embedding of the features model timm builds after torch.manual_seed(3).
    if want("resnet50-hest"):
        narrow = dict(channels=(8, 16, 32, 64))
        hest_kw = dict(features_only=True, out_indices=[3], num_classes=0, **narrow)

        def hest_build(seed):
            torch.manual_seed(seed)
            full = randomise(timm.create_model("resnet50", pretrained=False, num_classes=10, **narrow), seed)
            m = timm.create_model("resnet50.tv_in1k", pretrained=False, **hest_kw)
            sd = full.state_dict()
            m.load_state_dict({k: sd[k] for k in m.state_dict()}, strict=True)
            m.__dict__["full"] = full  # kept beside the model, not registered as a submodule
            return m.eval()

        def hest_rule(out):
            return torch.nn.AdaptiveAvgPool2d(1)(out[0]).squeeze(-1).squeeze(-1)
        run_card("resnet50-hest", hest_build, [], IMAGENET, IMAGE_SETS["tiles"], hest_rule,
                 lambda m: {"layer1": m.layer1, "layer2": m.layer2},
                 lambda m, d: (save_torch(m.full, os.path.join(d, "resnet50.pth")), "resnet50.pth")[1],
                 "channels=8,16,32,64", 160, ["layer1", "layer2"], "avg", "layer3", "avg")
        torch.manual_seed(3)
        twin = timm.create_model("resnet50.tv_in1k", pretrained=False, **hest_kw).eval()
        x = torch.stack([T.Compose([T.ToTensor(), T.Normalize(*IMAGENET)])(im) for im in IMAGE_SETS["tiles"]])
        with torch.no_grad():
            np.save(os.path.join(ROOT, "resnet50-hest", "twin_s3_embedding.npy"), hest_rule(twin(x)).numpy())
        with open(os.path.join(ROOT, "resnet50-hest", "twin.json"), "w") as fh:
            json.dump(dict(seed=3, override="channels=8,16,32,64", embedding="twin_s3_embedding.npy"), fh)

    # Hibou-B/L: HistAI's own DinoVisionTransformer (github.com/HistAI/hibou, hibou/models) with build_model()'s
    # settings, narrowed; their example.ipynb's transform; model(x) = head(x_norm_clstoken). Saved as the state_dict
    # build_model() loads (hibou-b.pth).
    if a.hibou:
        # hibou/__init__.py also imports the CellViT head (OpenCV); only hibou/models is needed
        sys.path.insert(0, os.path.join(a.hibou, "hibou"))
        from models import vision_transformer as hvit
        hibou_tf = [T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop((224, 224))]
        hibou_norm = ((0.7068, 0.5755, 0.7220), (0.1950, 0.2316, 0.1816))
        for i, (size, heads) in enumerate([("b", 4), ("l", 6)]):
            name = "hibou-" + size
            if not want(name):
                continue
            kw = dict(img_size=224, patch_size=14, init_values=1e-5, ffn_layer="swiglufused", block_chunks=0,
                      qkv_bias=True, proj_bias=True, ffn_bias=True, num_register_tokens=4, interpolate_offset=0,
                      interpolate_antialias=True, embed_dim=48, depth=2, num_heads=heads, mlp_ratio=4,
                      block_fn=partial(hvit.Block, attn_class=hvit.MemEffAttention))

            def build(seed, kw=kw):
                torch.manual_seed(seed)
                return randomise(hvit.DinoVisionTransformer(**kw), seed)

            def twin(seed, kw=kw):
                torch.manual_seed(seed)
                return hvit.DinoVisionTransformer(**kw).eval()
            run_card(name, build, hibou_tf, hibou_norm, IMAGE_SETS["rects"], cls_rule,
                     lambda m: {"blocks.0": m.blocks[0], "blocks.1": m.blocks[1]},
                     lambda m, d, n=name: (save_torch(m, os.path.join(d, n + ".pth")), n + ".pth")[1],
                     f"dim=48,depth=2,heads={heads}", 400 + i, ["blocks.0", "blocks.1"], "none", "head", "none",
                     twin=twin)
    # timm names with pretrained tags: the tag's own eval transform (resolve_data_config + create_transform).
    tags = {}
    for tag in ["vit_small_patch16_224.augreg_in21k_ft_in1k", "resnet50.a1_in1k", "vit_base_patch14_dinov2.lvd142m",
                "vit_base_patch16_224_miil.in21k"]:
        m = timm.create_model(tag, pretrained=False)
        tf = timm.data.create_transform(**timm.data.resolve_data_config({}, model=m))
        x = torch.stack([tf(im) for im in IMAGE_SETS["rects"]]).numpy().astype(np.float32)
        tags[tag] = dict(shape=list(x.shape), sha256=hashlib.sha256(x.tobytes()).hexdigest(), transform=repr(tf))
    # Whole pipelines as their users run them on PIL images, with the untrained weights torch builds for seed 0 (which
    # `tabula embed --seed 0` reproduces): torchvision's resnet18 with ResNet18_Weights' transforms(), pooled by
    # avgpool; timm's tagged ViT-S/16 with its create_transform, forward_features' CLS token after the norm.
    torch.manual_seed(0)
    r18 = torchvision.models.resnet18().eval()
    tf = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    feats = tap_hooks({"avgpool": r18.avgpool})
    with torch.no_grad():
        r18(torch.stack([tf(im) for im in IMAGE_SETS["rects"]]))
    pipelines = {"resnet18": dict(layer="avgpool", values=feats["avgpool"].flatten(1).numpy().tolist(),
                                  transform=repr(tf))}
    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch16_224.augreg_in21k_ft_in1k", pretrained=False).eval()
    tf = timm.data.create_transform(**timm.data.resolve_data_config({}, model=vit))
    with torch.no_grad():
        cls = vit.forward_features(torch.stack([tf(im) for im in IMAGE_SETS["rects"]]))[:, 0]
    pipelines["vit_small_patch16_224.augreg_in21k_ft_in1k"] = dict(layer="norm", values=cls.numpy().tolist(),
                                                                   transform=repr(tf))
    os.makedirs(os.path.join(ROOT, "tags"), exist_ok=True)
    with open(os.path.join(ROOT, "tags", "pipelines.json"), "w") as fh:
        json.dump(pipelines, fh)
    with open(os.path.join(ROOT, "tags", "tags.json"), "w") as fh:
        json.dump(tags, fh, indent=1)
    with open(os.path.join(ROOT, "versions.json"), "w") as fh:
        json.dump({"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
                   "transformers": transformers.__version__, "pillow": PIL.__version__,
                   "dinov2": "facebookresearch/dinov2 b8931f7", "hibou": "HistAI/hibou c453bbe"}, fh, indent=1)


if __name__ == "__main__":
    main()
