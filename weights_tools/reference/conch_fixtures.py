#!/usr/bin/env python3
"""Fixtures for the CONCH v1 vision tower (models/conch.cpp), built with the authors' own code.

The code: github.com/mahmoodlab/CONCH (conch/open_clip_custom; matched at commit 141cc09), installed from its public
source without dependencies (`pip install --no-deps <checkout>`; the weights are gated, the code is not), on timm
1.0.31 (its trunk is timm's VisionTransformer). The published model is `create_model_from_pretrained(
'conch_ViT-B-16', 'hf_hub:MahmoodLab/conch')`: a CoCa whose `visual` is `_build_vision_tower(512, vision_cfg, 768)`.

Tiny variant of the same geometry (what tabula gets as `conch:dim=32,depth=2,heads=4,embed_dim=24,caption_dim=32`):
448-pixel input, patch 16 (785 tokens), a 32-wide 2-block trunk, a contrastive pooler narrower than
the trunk (so nn.MultiheadAttention keeps separate q/k/v_proj_weight, as the published 512-wide pooler over 768-wide
tokens does) and a captioning pooler as wide as the trunk (packed in_proj_weight, as published), 256 caption
queries, 8 pooler heads (VisualModel's default: _build_vision_tower does not pass the config's attn_pooler_heads on,
so every CONCH pooler has 8 heads whatever the config says).

Writes tests/fixtures/conch/:
  <id>_s<seed>.init.safetensors   torch.manual_seed(seed); _build_vision_tower(...) state_dict, `visual.` prefixed
                                  (the untrained twin tabula replays), seeds 0 and 1
  <id>_s<seed>.pytorch_model.bin  a whole tiny CoCa (text tower and multimodal decoder included), every tensor
                                  random (card_fixtures.randomise), torch.save(state_dict) as published
  cases.tsv / taps.tsv / <case>.<tap>.npy   forward taps of that CoCa: encode_image(proj_contrast=False,
                                  normalize=False) (the README's feature-extraction call) with hooks on the trunk,
                                  the contrastive pooler and ln_contrast; encode_image(proj_contrast=True,
                                  normalize=False); visual(x)'s captioning tokens. Batch 1 and 3 at 448, 224 and a
                                  224 x 320 rectangle (dynamic_img_size: the pos-embed resampled by timm).
                                  Pooler taps are stored batch-first, as tabula shows them (MultiheadAttention's
                                  output permuted from [Lq, B, d]; ln_q's [Lq, d] repeated per image).
  named.tsv                       full-size conch_ViT-B-16 vision tower: per-tensor sha256 of the init, seeds 0, 1
  params.tsv                      its sum(p.numel() for p in parameters()) under both of tabula's names
  twin_s0_tiles.npy               the full-size untrained twin end to end: torch.manual_seed(0);
                                  _build_vision_tower(conch_ViT-B-16), CONCH's transform on the cards' `tiles`
                                  photographs, encode_image(proj_contrast=False, normalize=False) -> [2, 512]
and tests/fixtures/cards/conch/ (the model-cards fidelity fixture, card_fixtures.run_card): the tiny CoCa saved as
pytorch_model.bin, CONCH's own eval transform (transform.image_transform(448, OPENAI mean/std): Resize(448,
bicubic) on the PIL image, CenterCrop(448), ToTensor, Normalize) on the `tiles` photographs, the embedding
encode_image(proj_contrast=False, normalize=False) and the trunk's blocks 0 and 1.

Usage (from the repository root): /work/venv/bin/python weights_tools/reference/conch_fixtures.py [--no-named]
Versions matched: torch 2.15.0, timm 1.0.31.
"""
import argparse
import copy
import hashlib
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from models_fixtures import hash_input, sample_stride  # noqa: E402

OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "conch")
ARCH = "conch:dim=32,depth=2,heads=4,embed_dim=24,caption_dim=32"
OVERRIDE = ARCH.split(":", 1)[1]
VISION = dict(image_size=448, patch_size=16, layers=2, width=32, num_heads=4, mlp_ratio=4,
              attentional_pool_caption=True, attentional_pool_contrast=True, attn_pooler_heads=8,
              n_queries_contrast=1, n_queries_caption=256, output_tokens=True)
EMBED, EMBED_CAPTION = 24, 32
# a tiny text tower and decoder: only so the checkpoint has the published CoCa's other keys
TEXT = dict(context_length=16, vocab_size=64, width=16, heads=2, layers=1, embed_cls=True, output_tokens=True)
MULTIMODAL = dict(context_length=16, vocab_size=64, width=16, heads=2, layers=1)
SEEDS = [0, 1]
INPUTS = [(1, 448, 448), (3, 448, 448), (1, 224, 224), (3, 224, 224), (1, 224, 320)]
TRUNK_TAPS = ["visual.trunk.patch_embed", "visual.trunk.blocks.0.attn.qkv", "visual.trunk.blocks.0",
              "visual.trunk.blocks.1", "visual.trunk.norm", "visual.trunk"]
CONTRAST_TAPS = ["visual.attn_pool_contrast.ln_k", "visual.attn_pool_contrast.ln_q", "visual.attn_pool_contrast.attn",
                 "visual.attn_pool_contrast", "visual.ln_contrast"]
CAPTION_TAPS = ["visual.attn_pool_caption.ln_q", "visual.attn_pool_caption.attn", "visual.attn_pool_caption",
                "visual.ln_caption"]


def vision_tower(vision, embed, embed_caption):
    from conch.open_clip_custom.coca_model import _build_vision_tower
    return _build_vision_tower(embed_dim=embed, vision_cfg=dict(vision), embed_dim_caption=embed_caption)


def tiny_coca():
    from conch.open_clip_custom.coca_model import CoCa
    return CoCa(embed_dim=EMBED, embed_dim_caption=EMBED_CAPTION, multimodal_cfg=dict(MULTIMODAL),
                text_cfg=dict(TEXT), vision_cfg=dict(VISION)).eval()


def save_st(path, sd):
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, path)


def hooks(model, names, got):
    mods = dict(model.named_modules())
    handles = []
    for n in names:
        def hook(_m, _i, o, n=n):
            got[n] = (o[0] if isinstance(o, (list, tuple)) else o).detach().clone()
        handles.append(mods[n].register_forward_hook(hook))
    return handles


def batch_first(name, t, batch):
    """The pooler taps as tabula shows them (see the docstring)."""
    if name.endswith(".attn"):
        return t.permute(1, 0, 2)
    if name.endswith(".ln_q"):
        return t.unsqueeze(0).expand(batch, -1, -1)
    return t


def forward_taps(model, x):
    got = {}
    hs = hooks(model, TRUNK_TAPS + CONTRAST_TAPS, got)
    with torch.no_grad():
        emb = model.encode_image(x, proj_contrast=False, normalize=False)
    for h in hs:
        h.remove()
    taps = {n: batch_first(n, got[n], x.shape[0]) for n in TRUNK_TAPS + CONTRAST_TAPS}
    taps["encode_image"] = emb
    got = {}
    hs = hooks(model, CAPTION_TAPS, got)
    with torch.no_grad():
        taps["encode_image_proj"] = model.encode_image(x, proj_contrast=True, normalize=False)
        _, tokens = model.visual(x)
    for h in hs:
        h.remove()
    taps.update({n: batch_first(n, got[n], x.shape[0]) for n in CAPTION_TAPS})
    assert torch.equal(tokens, taps["visual.ln_caption"])
    return taps


def fixtures(out):
    from card_fixtures import randomise
    cases, tap_rows = [], []
    for seed in SEEDS:
        torch.manual_seed(seed)
        v = vision_tower(VISION, EMBED, EMBED_CAPTION)
        save_st(os.path.join(out, f"conch_tiny_s{seed}.init.safetensors"),
                {"visual." + k: t for k, t in v.state_dict().items()})
        torch.manual_seed(seed)
        model = randomise(tiny_coca(), 500 + seed)
        torch.save({k: t.contiguous() for k, t in model.state_dict().items()},
                   os.path.join(out, f"conch_tiny_s{seed}.pytorch_model.bin"))
        for batch, H, W in INPUTS:
            shape = [batch, 3, H, W]
            cid = f"conch_tiny_s{seed}_b{batch}_{H}x{W}"
            taps = forward_taps(model, hash_input(shape, seed * 10 + H + W))
            for name, t in taps.items():
                flat = t.detach().float().reshape(-1)
                st = sample_stride(flat.numel())
                np.save(os.path.join(out, f"{cid}.{name}.npy"), flat[::st].numpy())
                tap_rows.append(f"{cid}\t{name}\t{','.join(map(str, t.shape))}\t{st}\t{float(flat.abs().max())!r}")
            cases.append(f"{cid}\tconch_tiny\t{seed}\t{','.join(map(str, shape))}\t{','.join(taps)}")
    return cases, tap_rows


def named_rows():
    """The published config's vision tower: per-tensor sha256 of the init (too big to store whole)."""
    import conch.open_clip_custom as occ
    cfg_path = os.path.join(os.path.dirname(occ.__file__), "model_configs", "conch_ViT-B-16.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    rows = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        v = vision_tower(cfg["vision_cfg"], cfg["embed_dim"], cfg["embed_dim_caption"])
        for k, t in v.state_dict().items():
            raw = t.detach().contiguous().numpy().tobytes()
            rows.append(f"conch_vit_b16\t{seed}\tvisual.{k}\t{','.join(map(str, t.shape))}\t"
                        f"{hashlib.sha256(raw).hexdigest()}")
    return rows


def params_rows():
    """sum(p.numel() for p in visual.parameters()) of the published config, built on the meta device."""
    import conch.open_clip_custom as occ
    with open(os.path.join(os.path.dirname(occ.__file__), "model_configs", "conch_ViT-B-16.json")) as f:
        cfg = json.load(f)
    with torch.device("meta"):
        v = vision_tower(cfg["vision_cfg"], cfg["embed_dim"], cfg["embed_dim_caption"])
    n = sum(p.numel() for p in v.parameters())
    return [f"conch_vit_b16\t{n}", f"conch_ViT-B-16\t{n}"]


def twin_embedding(out):
    """`tabula embed --model conch --seed 0` on the tiles, as PyTorch computes it."""
    import card_fixtures as cf
    import conch.open_clip_custom as occ
    from PIL import Image
    from conch.open_clip_custom.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from conch.open_clip_custom.transform import image_transform
    with open(os.path.join(os.path.dirname(occ.__file__), "model_configs", "conch_ViT-B-16.json")) as f:
        cfg = json.load(f)
    torch.manual_seed(0)
    v = vision_tower(cfg["vision_cfg"], cfg["embed_dim"], cfg["embed_dim_caption"]).eval()
    tf = image_transform(448, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
    tiles = os.path.join(cf.ROOT, "images", "tiles")
    x = torch.stack([tf(Image.open(os.path.join(tiles, f)).convert("RGB")) for f in ("a.png", "b.png")])
    with torch.no_grad():
        emb = v.forward_no_head(x, normalize=False)  # what CoCa.encode_image(proj_contrast=False) calls
    np.save(os.path.join(out, "twin_s0_tiles.npy"), emb.numpy().astype(np.float32))


class EncodeImage(torch.nn.Module):
    """encode_image(x, proj_contrast=False, normalize=False) as a module (what card_fixtures.run_card calls)."""

    def __init__(self, coca):
        super().__init__()
        self.coca = coca

    def forward(self, x):
        return self.coca.encode_image(x, proj_contrast=False, normalize=False)


def card_fixture():
    import card_fixtures as cf
    from PIL import Image
    from conch.open_clip_custom.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from conch.open_clip_custom.transform import image_transform
    tiles = os.path.join(cf.ROOT, "images", "tiles")
    cf.IMAGE_SETS["tiles"] = [Image.open(os.path.join(tiles, f)).convert("RGB") for f in ("a.png", "b.png")]

    def build(seed):
        torch.manual_seed(seed)
        return EncodeImage(cf.randomise(tiny_coca(), seed))

    def save(m, d):
        torch.save({k: t.contiguous() for k, t in m.coca.state_dict().items()}, os.path.join(d, "pytorch_model.bin"))
        return "pytorch_model.bin"

    tf = image_transform(448, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
    cf.run_card("conch", build, tf, None, cf.IMAGE_SETS["tiles"], lambda out: out,
                lambda m: {"visual.trunk.blocks.0": m.coca.visual.trunk.blocks[0],
                           "visual.trunk.blocks.1": m.coca.visual.trunk.blocks[1]},
                save, OVERRIDE, 401, ["visual.trunk.blocks.0", "visual.trunk.blocks.1"], "none",
                "visual.ln_contrast", "none")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--no-named", action="store_true", help="skip the full-size init hashes")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import timm
    torch.set_num_threads(1)
    versions = f"torch {torch.__version__}, timm {timm.__version__}, mahmoodlab/CONCH 141cc09, " \
               f"cpu capability {torch.backends.cpu.get_cpu_capability()}"
    cases, taps = fixtures(a.out)
    with open(os.path.join(a.out, "cases.tsv"), "w") as f:
        f.write(f"# made by\t{versions}\n# case\tmodel id\tseed\tinput shape\ttaps\n" + "\n".join(cases) + "\n")
    with open(os.path.join(a.out, "taps.tsv"), "w") as f:
        f.write("# case\ttap\tshape\tstride\tmax_abs\n" + "\n".join(taps) + "\n")
    with open(os.path.join(a.out, "params.tsv"), "w") as f:
        f.write(f"# arch\tsum(p.numel() for p in parameters())\t{versions}\n" + "\n".join(params_rows()) + "\n")
    if not a.no_named:
        with open(os.path.join(a.out, "named.tsv"), "w") as f:
            f.write(f"# made by\t{versions}\n# arch\tseed\tname\tshape\tsha256\n" + "\n".join(named_rows()) + "\n")
    twin_embedding(a.out)
    card_fixture()


if __name__ == "__main__":
    main()
