#!/usr/bin/env python3
"""Writes tests/fixtures/cards/hf_init/: the untrained weights of transformers' ViTModel (the phikon card) and
Dinov2Model (phikon-v2) for a seed -- torch.manual_seed(seed) then the class's constructor, whose post_init() runs
_init_weights -- narrowed, under tabula's names (`tabula init ARCH --seed S` writes the same names), plus a check
that a plain-torch replay of the order models/vit_hf_init.cpp follows gives the same tensors.

Run from the repository root:  /work/venv/bin/python weights_tools/reference/hf_init_fixtures.py
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file
from torch.nn import init

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "cards", "hf_init")


def tabula_names(sd, depth):
    """transformers 5's names -> tabula's (timm / DINOv2 hub): q/k/v concatenated into attn.qkv."""
    out = {}
    for k, v in sd.items():
        k = k.replace("embeddings.patch_embeddings.projection.", "patch_embed.proj.")
        k = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
             "embeddings.mask_token": "mask_token", "layernorm.weight": "norm.weight",
             "layernorm.bias": "norm.bias"}.get(k, k)
        k = k.replace("encoder.layer.", "blocks.").replace("layers.", "blocks.")
        k = k.replace(".layernorm_before.", ".norm1.").replace(".layernorm_after.", ".norm2.")
        k = k.replace(".attention.o_proj.", ".attn.proj.")
        k = k.replace(".layer_scale1.lambda1", ".ls1.gamma").replace(".layer_scale2.lambda1", ".ls2.gamma")
        out[k] = v.contiguous()
    for i in range(depth):
        for leaf in ("weight", "bias"):
            parts = [out.pop(f"blocks.{i}.attention.{p}_proj.{leaf}") for p in "qkv"]
            out[f"blocks.{i}.attn.qkv.{leaf}"] = torch.cat(parts, 0).contiguous()
    return out


def replay(kind, D, L, P, N, H):
    """The order models/vit_hf_init.cpp replays, in plain torch (constructors, then post_init's draws)."""
    e = torch.empty
    out = {}
    if kind == "vit":
        torch.randn(1, 1, D)
    torch.nn.Conv2d(3, D, P, P)
    torch.randn(1, N + 1, D)
    for _ in range(L):
        for _ in range(4):
            torch.nn.Linear(D, D)
        torch.nn.Linear(D, H)
        torch.nn.Linear(H, D)

    def lin(name, o, i):
        w = e(o, i)
        init.normal_(w, 0, 0.02)
        if kind == "dinov2":
            init.trunc_normal_(w, std=0.02)
        out[name] = w

    def layers():
        for i in range(L):
            for p in "qkv":
                lin(f"blocks.{i}.{p}", D, D)
            out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([out.pop(f"blocks.{i}.{p}") for p in "qkv"], 0)
            lin(f"blocks.{i}.attn.proj.weight", D, D)
            lin(f"blocks.{i}.mlp.fc1.weight", H, D)
            lin(f"blocks.{i}.mlp.fc2.weight", D, H)

    def embeddings():
        w = e(D, 3, P, P)
        init.normal_(w, 0, 0.02)
        if kind == "dinov2":
            init.trunc_normal_(w, std=0.02)
        out["patch_embed.proj.weight"] = w
        out["pos_embed"] = init.trunc_normal_(e(1, N + 1, D), std=0.02)
        out["cls_token"] = init.trunc_normal_(e(1, 1, D), std=0.02)
    if kind == "dinov2":
        layers()
        embeddings()
    else:
        embeddings()
        layers()
    return out


def main():
    os.makedirs(ROOT, exist_ok=True)
    cases = []
    # (card, class, dim, heads, patch, seed): dim 40 makes the randn / normal_ sizes non-multiples of 16 (torch's
    # normal_ redraws the last 16 values then)
    for card, kind, D, heads, P, seed in [("phikon", "vit", 48, 4, 16, 0), ("phikon", "vit", 40, 4, 32, 5),
                                          ("phikon-v2", "dinov2", 48, 4, 16, 0),
                                          ("phikon-v2", "dinov2", 40, 4, 32, 5)]:
        L, IMG = 2, 224
        N = (IMG // P) ** 2
        if kind == "vit":
            cfg = transformers.ViTConfig(hidden_size=D, num_hidden_layers=L, num_attention_heads=heads,
                                         intermediate_size=4 * D, image_size=IMG, patch_size=P, layer_norm_eps=1e-12,
                                         qkv_bias=True)
            build = lambda: transformers.ViTModel(cfg, add_pooling_layer=False)
        else:
            cfg = transformers.Dinov2Config(hidden_size=D, num_hidden_layers=L, num_attention_heads=heads, mlp_ratio=4,
                                            image_size=IMG, patch_size=P, layerscale_value=1e-5)
            build = lambda: transformers.Dinov2Model(cfg)
        torch.manual_seed(seed)
        sd = tabula_names(build().state_dict(), L)
        torch.manual_seed(seed)
        mine = replay(kind, D, L, P, N, 4 * D)
        for k, v in mine.items():
            assert torch.equal(v, sd[k]), (card, k)
        override = f"dim={D},depth={L},heads={heads},patch={P}"
        name = f"{card}_d{D}_s{seed}.safetensors"
        save_file(sd, os.path.join(ROOT, name), metadata={"format": "pt"})
        cases.append(dict(card=card, override=override, seed=seed, file=name, hf_class=type(build()).__name__))
        print(name, len(sd), "tensors;", len(mine), "drawn, replay equal")
    with open(os.path.join(ROOT, "cases.json"), "w") as fh:
        json.dump(dict(cases=cases, transformers=transformers.__version__, torch=torch.__version__), fh, indent=1)


if __name__ == "__main__":
    main()
