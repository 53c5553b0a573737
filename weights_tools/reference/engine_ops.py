"""Writes tests/fixtures/engine/*.npy: inputs and torch outputs for the reference ops (tabula::ref), so the
specification itself is proven against torch. Case names and parameters are mirrored in
tests/engine/test_ops_torch.cpp; change both together.

Regenerate:  /work/venv/bin/python weights_tools/reference/engine_ops.py
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "engine")


def save(name, **arrays):
    for key, value in arrays.items():
        arr = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
        np.save(os.path.join(OUT, f"{name}.{key}.npy"), arr.astype(np.float32))


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    def rnd(*shape, scale=1.0):
        return (torch.rand(*shape, generator=g) * 2 - 1) * scale

    # ---- interpolate ----
    x = rnd(1, 2, 13, 11)
    save("interp_bicubic_aa_down", x=x, y=F.interpolate(x, size=(5, 7), mode="bicubic", antialias=True, align_corners=False))
    save("interp_bilinear_aa_down", x=x, y=F.interpolate(x, size=(6, 4), mode="bilinear", antialias=True, align_corners=False))
    save("interp_bilinear_down", x=x, y=F.interpolate(x, size=(6, 4), mode="bilinear", antialias=False, align_corners=False))
    xs = rnd(1, 2, 5, 6)
    save("interp_bicubic_aa_up", x=xs, y=F.interpolate(xs, size=(9, 13), mode="bicubic", antialias=True, align_corners=False))
    save("interp_bicubic_up", x=xs, y=F.interpolate(xs, size=(9, 13), mode="bicubic", antialias=False, align_corners=False))
    save("interp_bilinear_align_corners", x=xs, y=F.interpolate(xs, size=(9, 13), mode="bilinear", align_corners=True))
    save("interp_bicubic_align_corners", x=xs, y=F.interpolate(xs, size=(4, 10), mode="bicubic", align_corners=True))
    # DINOv2 hub's pos-embed resampling: scale_factor (w + 0.1) / M, bicubic, no antialias
    pe = rnd(1, 3, 8, 8)
    s = (7 + 0.1) / 8
    save("interp_bicubic_scale_factor", x=pe, y=F.interpolate(pe, scale_factor=(s, s), mode="bicubic", antialias=False))
    save("interp_bilinear_scale_factor", x=pe, y=F.interpolate(pe, scale_factor=(1.7, 0.6), mode="bilinear"))
    save("interp_nearest", x=xs, y=F.interpolate(xs, size=(7, 4), mode="nearest"))

    # ---- conv2d: groups + dilation + stride + padding, bias ----
    x = rnd(2, 6, 11, 9)
    w = rnd(9, 2, 3, 3)
    b = rnd(9)
    save("conv_groups_dilation", x=x, w=w, b=b, y=F.conv2d(x, w, b, stride=(2, 1), padding=(2, 1), dilation=(2, 3), groups=3))

    # ---- batch norm (eval) ----
    x = rnd(2, 5, 4, 3)
    m, v, gm, bt = rnd(5), torch.rand(5, generator=g) + 0.1, rnd(5), rnd(5)
    save("batch_norm", x=x, mean=m, var=v, w=gm, b=bt, y=F.batch_norm(x, m, v, gm, bt, training=False, eps=1e-5))

    # ---- layer norm, softmax, activations ----
    x = rnd(2, 7, 19, scale=3.0) + 5.0
    w, b = rnd(19), rnd(19)
    save("layer_norm", x=x, w=w, b=b, y=F.layer_norm(x, (19,), w, b, eps=1e-6))
    save("softmax_dim1", x=x, y=F.softmax(x, dim=1))
    xa = rnd(3, 41, scale=6.0)
    save("gelu", x=xa, y=F.gelu(xa))
    save("gelu_tanh", x=xa, y=F.gelu(xa, approximate="tanh"))
    save("silu", x=xa, y=F.silu(xa))

    # ---- pools ----
    x = rnd(1, 3, 10, 9)
    save("max_pool_ceil", x=x, y=F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True))
    save("max_pool_dilation", x=x, y=F.max_pool2d(x, (2, 3), stride=(2, 1), padding=(1, 1), dilation=(2, 1)))
    save("avg_pool_ceil_nopad", x=x, y=F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False))
    save("avg_pool_ceil_pad", x=x, y=F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True))
    save("adaptive_avg", x=x, y=F.adaptive_avg_pool2d(x, (3, 4)))
    save("adaptive_max", x=x, y=F.adaptive_max_pool2d(x, (4, 3)))

    # ---- attention: 261 tokens (224 px, patch 14, 4 registers + cls) ----
    q, k, v = rnd(1, 2, 261, 16), rnd(1, 2, 261, 16), rnd(1, 2, 261, 16)
    save("sdpa", q=q, k=k, v=v, y=F.scaled_dot_product_attention(q, k, v))

    # ---- added later (drawn after the cases above, so their arrays are unchanged) ----
    xs2 = rnd(1, 2, 5, 6)
    save("interp_nearest_scale", x=xs2, y=F.interpolate(xs2, scale_factor=(1.5, 0.7), mode="nearest"))
    x2 = rnd(1, 2, 13, 11)
    save("interp_bicubic_aa_scale", x=x2,
         y=F.interpolate(x2, scale_factor=(0.45, 0.6), mode="bicubic", antialias=True))
    # BN folded into the preceding conv, as torch.nn.utils.fusion.fuse_conv_bn_weights does at load time
    from torch.nn.utils.fusion import fuse_conv_bn_weights
    cw, cb = rnd(6, 4, 3, 3), rnd(6)
    bm, bv, bw, bb = rnd(6), torch.rand(6, generator=g) + 0.05, rnd(6), rnd(6)
    fw, fb = fuse_conv_bn_weights(cw, cb, bm, bv, 1e-5, bw, bb)
    save("fold_bn", w=cw, b=cb, mean=bm, var=bv, bn_w=bw, bn_b=bb, fw=fw, fb=fb)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
