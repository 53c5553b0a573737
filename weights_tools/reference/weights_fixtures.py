#!/usr/bin/env python3
"""Writes the weights_tools test fixtures into tests/fixtures/weights/ (run from the repository root):

    /work/venv/bin/python weights_tools/reference/weights_fixtures.py

Every file is written by the real tool (torch.save, safetensors.torch.save_file, timm, transformers) from
tiny configurations, and expected.json records, per file and tensor, the dtype, shape and SHA-256 of the
tensor's C-contiguous little-endian bytes as torch sees them after torch.load / safetensors.load_file.
Layout fixtures record what the oracle (timm's own checkpoint_filter_fn, or a forward-pass equality check
between the Hugging Face model and timm) says the converted state dict must be.
Malicious pickles are proven dangerous here (plain pickle.loads creates the marker file) so that the C++
test that shows tabula refusing them can fail.
"""
import collections
import hashlib
import io
import json
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import timm
import safetensors.torch
import transformers
from timm.models.vision_transformer import checkpoint_filter_fn

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "weights"
MARKER = "/tmp/tabula-weights-pwned-marker"
EXPECTED = {"versions": {"torch": torch.__version__, "timm": timm.__version__, "transformers": transformers.__version__,
                         "safetensors": getattr(safetensors, "__version__", "?")},
            "marker": MARKER, "files": {}, "layouts": {}}

DT = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.float64: "f64", torch.int64: "i64",
      torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8", torch.bool: "bool"}


def tensor_sha(t: torch.Tensor) -> str:
    t = t.detach().contiguous()
    b = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return hashlib.sha256(b).hexdigest()


def describe(sd) -> dict:
    return {k: {"dtype": DT[v.dtype], "shape": list(v.shape), "sha256": tensor_sha(v)} for k, v in sd.items()}


def record(name: str, expect_sd, **extra):
    EXPECTED["files"][name] = {"tensors": describe(expect_sd), "order": list(expect_sd.keys()), **extra}


def small_model_sd(seed: int, dtype=torch.float32):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    m.to(dtype)
    # a BN with non-trivial running stats
    m[1].running_mean.uniform_(-1, 1)
    m[1].running_var.uniform_(0.5, 2)
    m[1].num_batches_tracked.fill_(7)
    return collections.OrderedDict((k, v.clone()) for k, v in m.state_dict().items())


def save_torch(name: str, obj):
    torch.save(obj, OUT / name)


def load_back(name: str):
    return torch.load(OUT / name, weights_only=True)


# ---- safetensors -----------------------------------------------------------------------------------------

def safetensors_files():
    torch.manual_seed(0)
    base = collections.OrderedDict()
    base["encoder.weight"] = torch.randn(5, 7)
    base["encoder.bias"] = torch.randn(5)
    base["scalar"] = torch.tensor(3.25)
    base["empty"] = torch.zeros(0, 4)
    base["steps"] = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    base["specials"] = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e-8, 65504.0, 70000.0, 1.0 / 3])
    for dt, tag in [(torch.float32, "f32"), (torch.float16, "f16"), (torch.bfloat16, "bf16")]:
        sd = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in base.items()}
        name = f"st_{tag}.safetensors"
        safetensors.torch.save_file(sd, str(OUT / name), metadata={"format": "pt"})
        back = safetensors.torch.load_file(str(OUT / name))
        record(name, back, metadata={"format": "pt"})
    # torch's own f32 -> f16/bf16 rounding, to check tabula's conversion bit for bit.
    f32 = safetensors.torch.load_file(str(OUT / "st_f32.safetensors"))
    EXPECTED["conversions"] = {
        "st_f32.safetensors": {
            "f16": describe({k: v.half() for k, v in f32.items() if v.is_floating_point()}),
            "bf16": describe({k: v.bfloat16() for k, v in f32.items() if v.is_floating_point()}),
        }
    }
    # several metadata entries and a non-ASCII name
    sd = {"π.weight": torch.randn(2, 2), "b": torch.randn(3).half()}
    safetensors.torch.save_file(sd, str(OUT / "st_meta.safetensors"), metadata={"a": "1", "note": 'quote " and \\ '})
    record("st_meta.safetensors", safetensors.torch.load_file(str(OUT / "st_meta.safetensors")),
           metadata={"a": "1", "note": 'quote " and \\ '})


# ---- torch.save checkpoints ------------------------------------------------------------------------------

def torch_files():
    sd = small_model_sd(1)
    save_torch("pt_plain.pth", sd)
    record("pt_plain.pth", load_back("pt_plain.pth"))

    save_torch("pt_f16.pth", small_model_sd(2, torch.float16))
    record("pt_f16.pth", load_back("pt_f16.pth"))
    save_torch("pt_bf16.pth", small_model_sd(3, torch.bfloat16))
    record("pt_bf16.pth", load_back("pt_bf16.pth"))

    # DataParallel / DDP prefix
    save_torch("pt_module_prefix.pth", collections.OrderedDict(("module." + k, v) for k, v in sd.items()))
    record("pt_module_prefix.pth", sd, stripped=["module."])

    # DINO-style: {'student': {'module.backbone.*', 'module.head.*'}, 'teacher': {'backbone.*', 'head.*'}, ...}
    teacher = small_model_sd(4)
    student = small_model_sd(5)
    ck = {
        "student": collections.OrderedDict([("module.backbone." + k, v) for k, v in student.items()] +
                                           [("module.head.last_layer.weight", torch.randn(2, 3))]),
        "teacher": collections.OrderedDict([("backbone." + k, v) for k, v in teacher.items()] +
                                           [("head.last_layer.weight", torch.randn(2, 3))]),
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4)}},
                      "param_groups": [{"lr": 0.1, "params": [0], "betas": (0.9, 0.999), "name": None}]},
        "epoch": 3,
        "dino_loss": {"center": torch.randn(1, 2)},
    }
    save_torch("pt_dino_teacher.pth", ck)
    record("pt_dino_teacher.pth", teacher, selected="teacher", stripped=["backbone."],
           dropped=["head.last_layer.weight"])
    EXPECTED["files"]["pt_dino_teacher.pth"]["student"] = describe(student)

    # DINOv2 training checkpoint: {'model': {'student.backbone.*', 'teacher.backbone.*', 'teacher.dino_head.*'}}
    t2 = small_model_sd(6)
    model = collections.OrderedDict([("student.backbone." + k, v + 1) for k, v in t2.items() if v.is_floating_point()] +
                                    [("teacher.backbone." + k, v) for k, v in t2.items()] +
                                    [("teacher.dino_head.mlp.0.weight", torch.randn(3, 2))])
    save_torch("pt_dinov2_train.pth", {"model": model, "iteration": 1249})
    record("pt_dinov2_train.pth", t2, selected="model", stripped=["teacher.", "backbone."])

    # HEST-style / Lightning-style: {'state_dict': {'model.<name>': ...}, 'epoch': ..., 'hyper_parameters': {...}}
    hest = small_model_sd(8)
    save_torch("pt_state_dict_key.pth", {"epoch": 12, "state_dict": collections.OrderedDict(("module." + k, v) for k, v in hest.items()),
                                         "hyper_parameters": {"lr": 1e-3, "arch": "resnet"}})
    record("pt_state_dict_key.pth", hest, selected="state_dict", stripped=["module."])

    # a non-contiguous view: torch.save keeps the whole storage plus the view's strides
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    nc = {"transposed": base.t(), "sliced": base[:, 1::2], "plain": torch.randn(3)}
    assert not nc["transposed"].is_contiguous() and not nc["sliced"].is_contiguous()
    save_torch("pt_noncontig.pth", nc)
    record("pt_noncontig.pth", load_back("pt_noncontig.pth"))

    # several tensors sharing one storage (tied weights, views)
    a = torch.randn(12)
    shared = collections.OrderedDict([("a", a), ("b", a[4:8]), ("c", a.view(3, 4)[1]), ("tied", a)])
    save_torch("pt_shared.pth", shared)
    record("pt_shared.pth", load_back("pt_shared.pth"))

    # nn.Parameter values (torch._utils._rebuild_parameter) and a model saved as named parameters
    torch.manual_seed(7)
    lin = torch.nn.Linear(3, 2)
    save_torch("pt_params.pth", dict(lin.named_parameters()))
    record("pt_params.pth", {k: v.detach() for k, v in load_back("pt_params.pth").items()})

    # pre-1.6 format: tabula refuses it with a message
    torch.save({"w": torch.zeros(2)}, OUT / "pt_legacy.pth", _use_new_zipfile_serialization=False)


# ---- malicious pickles -----------------------------------------------------------------------------------

def zip_with_pickle(name: str, payload: bytes):
    """A zip laid out as torch.save lays it out, with a hand-made data.pkl."""
    with zipfile.ZipFile(OUT / name, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def prove_dangerous(payload: bytes):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    try:
        pickle.loads(payload)
    except Exception:
        pass
    assert os.path.exists(MARKER), "fixture pickle did not run its payload under plain pickle"
    os.remove(MARKER)


def malicious_files():
    # 1) os.system via GLOBAL + REDUCE, protocol 2 opcodes written by hand
    cmd = f"touch {MARKER}".encode()
    p = b"\x80\x02" + b"cos\nsystem\n" + b"X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."
    prove_dangerous(p)
    zip_with_pickle("evil_os_system.pth", p)
    # 2) builtins.eval as protocol 2 writes it (__builtin__)
    src = f"open('{MARKER}', 'w').close()".encode()
    p = b"\x80\x02" + b"c__builtin__\neval\n" + b"X" + struct.pack("<I", len(src)) + src + b"\x85R."
    prove_dangerous(p)
    zip_with_pickle("evil_eval.pth", p)
    # 3) a REDUCE of an unlisted global that looks harmless in a state dict: subprocess.call
    p = (b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01csubprocess\ncall\n]q\x02(X\x05\x00\x00\x00touchX" +
         struct.pack("<I", len(MARKER)) + MARKER.encode() + b"e\x85Rs.")
    prove_dangerous(p)
    zip_with_pickle("evil_subprocess.pth", p)
    # 4) a real torch.save checkpoint whose state dict smuggles an object reducing to os.system
    buf = io.BytesIO()
    torch.save({"weight": torch.ones(2), "evil": Evil()}, OUT / "evil_in_state_dict.pth")
    with zipfile.ZipFile(OUT / "evil_in_state_dict.pth") as z:
        data_pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
        pk = z.read(data_pkl)
    assert b"posix\nsystem" in pk or b"os\nsystem" in pk
    # 5) STACK_GLOBAL (protocol 4) is an opcode torch's weights_only unpickler refuses as well
    p = pickle.dumps(collections.OrderedDict(a=1), protocol=4)
    zip_with_pickle("evil_stack_global.pth", p)
    del buf


class _FakeStorage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class _FakeTensor:
    """Pickles exactly as torch.save pickles a tensor, with whatever (lying) view and storage we ask for."""
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def torch_like_zip(name: str, obj, records: dict):
    buf = io.BytesIO()
    _TorchLikePickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(OUT / name, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for k, v in records.items():
            z.writestr(f"archive/data/{k}", v)


def zip64_checkpoint():
    """pt_plain.pth re-packed with ZIP64 records (as torch.save writes files over 4 GiB): zipfile's limits are
    lowered so that every size and offset goes through the ZIP64 extra fields and end-of-directory records."""
    with zipfile.ZipFile(OUT / "pt_plain.pth") as src:
        records = [(i.filename, src.read(i.filename)) for i in src.infolist()]
    saved = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 16, 2
    try:
        with zipfile.ZipFile(OUT / "pt_plain_zip64.pth", "w", compression=zipfile.ZIP_STORED) as z:
            for name, data in records:
                z.writestr(name, data)
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved
    raw = bytearray((OUT / "pt_plain_zip64.pth").read_bytes())
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw, "no ZIP64 end records written"
    # saturate the classic end record, as a writer must for > 65535 entries or > 4 GiB: readers then have to
    # take count, size and offset from the ZIP64 end record
    e = raw.rfind(b"PK\x05\x06")
    raw[e + 8:e + 20] = struct.pack("<HHII", 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    (OUT / "pt_plain_zip64.pth").write_bytes(bytes(raw))
    back = torch.load(OUT / "pt_plain_zip64.pth", weights_only=True)
    record("pt_plain_zip64.pth", back)


def lying_checkpoints():
    four = struct.pack("<4f", 1, 2, 3, 4)
    # the control: a well-formed file of this construction loads in torch
    torch_like_zip("ok_handmade.pth", {"w": _FakeTensor(_FakeStorage("0", 4), 1, (3,), (1,))}, {"0": four})
    assert torch.equal(torch.load(OUT / "ok_handmade.pth", weights_only=True)["w"], torch.tensor([2.0, 3, 4]))
    torch_like_zip("bad_storage_size.pth", {"w": _FakeTensor(_FakeStorage("0", 1000), 0, (4,), (1,))}, {"0": four})
    torch_like_zip("bad_view.pth", {"w": _FakeTensor(_FakeStorage("0", 4), 0, (100,), (1,))}, {"0": four})
    torch_like_zip("bad_view_offset.pth", {"w": _FakeTensor(_FakeStorage("0", 4), 2, (2, 2), (2, 1))}, {"0": four})
    torch_like_zip("missing_record.pth", {"w": _FakeTensor(_FakeStorage("7", 4), 0, (4,), (1,))}, {"0": four})


# ---- layouts ----------------------------------------------------------------------------------------------

def keys_shapes(sd):
    return [[k, list(v.shape)] for k, v in sd.items()]


def layout_files():
    # timm tiny ViT (canonical layout for ViTs)
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                            depth=2, num_heads=2, num_classes=0)
    vit_sd = collections.OrderedDict((k, v.clone()) for k, v in vit.state_dict().items())
    safetensors.torch.save_file(vit_sd, str(OUT / "timm_vit.safetensors"))
    record("timm_vit.safetensors", vit_sd)
    EXPECTED["layouts"]["timm_vit.safetensors"] = {"layout": "timm-vit", "expect": "timm_vit.safetensors"}
    # the same weights loaded by timm into a model for 48 px images: its loader resamples pos_embed 4x4 -> 6x6
    vit48 = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=48, patch_size=8, embed_dim=32,
                              depth=2, num_heads=2, num_classes=0)
    f48 = checkpoint_filter_fn(collections.OrderedDict((k, v.clone()) for k, v in vit_sd.items()), vit48)
    vit48.load_state_dict(f48, strict=True)
    safetensors.torch.save_file({"pos_embed": vit48.pos_embed.detach().clone()}, str(OUT / "timm_vit_img48_pos_embed.safetensors"))

    # DINOv2 hub layout (torch.hub dinov2_*): written from the hub's parameter names, converted by timm's own
    # checkpoint_filter_fn into the timm model -> the expected canonical dict.
    D, depth, R, grid = 32, 2, 4, 2
    torch.manual_seed(1)
    hub = collections.OrderedDict()
    hub["cls_token"] = torch.randn(1, 1, D)
    hub["pos_embed"] = torch.randn(1, 1 + grid * grid, D)
    hub["register_tokens"] = torch.randn(1, R, D)
    hub["mask_token"] = torch.zeros(1, D)
    hub["patch_embed.proj.weight"] = torch.randn(D, 1, 14, 14)  # one input channel, MLP ratio 2: small fixture
    hub["patch_embed.proj.bias"] = torch.randn(D)
    for i in range(depth):
        p = f"blocks.{i}."
        for n, shape in [("norm1.weight", [D]), ("norm1.bias", [D]), ("attn.qkv.weight", [3 * D, D]),
                         ("attn.qkv.bias", [3 * D]), ("attn.proj.weight", [D, D]), ("attn.proj.bias", [D]),
                         ("ls1.gamma", [D]), ("norm2.weight", [D]), ("norm2.bias", [D]),
                         ("mlp.fc1.weight", [2 * D, D]), ("mlp.fc1.bias", [2 * D]), ("mlp.fc2.weight", [D, 2 * D]),
                         ("mlp.fc2.bias", [D]), ("ls2.gamma", [D])]:
            hub[p + n] = torch.randn(*shape)
    hub["norm.weight"] = torch.randn(D)
    hub["norm.bias"] = torch.randn(D)
    timm_reg = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=14 * grid, embed_dim=D,
                                 depth=depth, num_heads=2, num_classes=0, in_chans=1, mlp_ratio=2)
    expect = checkpoint_filter_fn(collections.OrderedDict((k, v.clone()) for k, v in hub.items()), timm_reg)
    missing, unexpected = timm_reg.load_state_dict(expect, strict=True), None
    expect = collections.OrderedDict((k, expect[k]) for k in timm_reg.state_dict().keys())
    save_torch("hub_dinov2_reg.pth", hub)
    record("hub_dinov2_reg.pth", hub)
    safetensors.torch.save_file(expect, str(OUT / "hub_dinov2_reg.expected.safetensors"))
    record("hub_dinov2_reg.expected.safetensors", expect)
    EXPECTED["layouts"]["hub_dinov2_reg.pth"] = {"layout": "dinov2-hub", "expect": "hub_dinov2_reg.expected.safetensors"}

    # the same hub weights as a training checkpoint with chunked blocks (block_chunks=2: blocks.<chunk>.<i>)
    chunked = collections.OrderedDict()
    for k, v in hub.items():
        if k.startswith("blocks."):
            i = int(k.split(".")[1])
            k = f"blocks.{i // 1}.{i}." + k.split(".", 2)[2]
        chunked["teacher.backbone." + k] = v
    save_torch("hub_dinov2_reg_chunked.pth", {"model": chunked})
    EXPECTED["layouts"]["hub_dinov2_reg_chunked.pth"] = {"layout": "dinov2-hub",
                                                         "expect": "hub_dinov2_reg.expected.safetensors"}

    # the register conversion in half types: timm adds cls_token + pos_embed[:, 0] in the tensors' own dtype
    from timm.models.vision_transformer import _convert_dinov2
    for dt, tag in [(torch.float16, "f16"), (torch.bfloat16, "bf16")]:
        torch.manual_seed(5)
        toks = collections.OrderedDict([("cls_token", torch.randn(1, 1, 8).to(dt)),
                                        ("pos_embed", torch.randn(1, 1 + 4, 8).to(dt)),
                                        ("register_tokens", torch.randn(1, 2, 8).to(dt)),
                                        ("mask_token", torch.zeros(1, 8, dtype=dt))])
        save_torch(f"hub_reg_tokens_{tag}.pth", toks)
        conv = _convert_dinov2(collections.OrderedDict((k, v.clone()) for k, v in toks.items()), None)
        safetensors.torch.save_file(conv, str(OUT / f"hub_reg_tokens_{tag}.expected.safetensors"))
        record(f"hub_reg_tokens_{tag}.expected.safetensors", conv)
        EXPECTED["layouts"][f"hub_reg_tokens_{tag}.pth"] = {"layout": "dinov2-hub",
                                                          "expect": f"hub_reg_tokens_{tag}.expected.safetensors"}

    # Hugging Face Dinov2Model, tiny config; the mapping to timm is proven by equal forward outputs.
    torch.manual_seed(2)
    cfg = transformers.Dinov2Config(hidden_size=D, num_hidden_layers=depth, num_attention_heads=2, mlp_ratio=4,
                                    patch_size=8, image_size=32, layerscale_value=0.5)
    hf = transformers.Dinov2Model(cfg).eval()
    with torch.no_grad():
        for n, prm in hf.named_parameters():
            prm.copy_(torch.randn_like(prm) * 0.2)
    hf_sd = collections.OrderedDict((k, v.clone()) for k, v in hf.state_dict().items())
    hf.save_pretrained(OUT / "hf_dinov2_tmp", safe_serialization=True)
    os.replace(OUT / "hf_dinov2_tmp" / "model.safetensors", OUT / "hf_dinov2.safetensors")
    for f in (OUT / "hf_dinov2_tmp").iterdir():
        f.unlink()
    (OUT / "hf_dinov2_tmp").rmdir()
    save_torch("hf_dinov2.bin", hf_sd)
    record("hf_dinov2.safetensors", safetensors.torch.load_file(str(OUT / "hf_dinov2.safetensors")))
    tv = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=32, patch_size=8, embed_dim=D,
                           depth=depth, num_heads=2, num_classes=0)
    mapped = hf_to_timm(hf_sd)
    tv.load_state_dict(mapped, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = hf(pixel_values=x).last_hidden_state
        b = tv.forward_features(x)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    mapped = collections.OrderedDict((k, mapped[k]) for k in tv.state_dict().keys())
    safetensors.torch.save_file(mapped, str(OUT / "hf_dinov2.expected.safetensors"))
    record("hf_dinov2.expected.safetensors", mapped)
    EXPECTED["layouts"]["hf_dinov2.safetensors"] = {"layout": "hf-dinov2", "expect": "hf_dinov2.expected.safetensors"}
    EXPECTED["layouts"]["hf_dinov2.bin"] = {"layout": "hf-dinov2", "expect": "hf_dinov2.expected.safetensors"}
    legacy = hf_to_timm(safetensors.torch.load_file(str(OUT / "hf_dinov2.safetensors")))
    assert all(torch.equal(legacy[k], mapped[k]) for k in mapped) and len(legacy) == len(mapped)

    # Hugging Face Dinov2WithRegistersModel: its position_embeddings include the CLS position like the hub's,
    # so the same register conversion applies; proven by equal outputs of the timm register model.
    torch.manual_seed(4)
    rcfg = transformers.Dinov2WithRegistersConfig(hidden_size=D, num_hidden_layers=depth, num_attention_heads=2,
                                                  mlp_ratio=2, patch_size=8, image_size=32, num_register_tokens=2,
                                                  layerscale_value=0.5)
    hr = transformers.Dinov2WithRegistersModel(rcfg).eval()
    with torch.no_grad():
        for n, prm in hr.named_parameters():
            prm.copy_(torch.randn_like(prm) * 0.2)
    hr.save_pretrained(OUT / "hf_reg_tmp", safe_serialization=True)
    os.replace(OUT / "hf_reg_tmp" / "model.safetensors", OUT / "hf_dinov2_reg.safetensors")
    for f in (OUT / "hf_reg_tmp").iterdir():
        f.unlink()
    (OUT / "hf_reg_tmp").rmdir()
    hr_sd = safetensors.torch.load_file(str(OUT / "hf_dinov2_reg.safetensors"))
    record("hf_dinov2_reg.safetensors", hr_sd)
    mr = hf_to_timm({k: v for k, v in hr_sd.items() if k != "embeddings.register_tokens"})
    mr["reg_token"] = hr_sd["embeddings.register_tokens"]
    mr["cls_token"] = mr["cls_token"] + mr["pos_embed"][:, 0]
    mr["pos_embed"] = mr["pos_embed"][:, 1:]
    tr = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=32, patch_size=8, embed_dim=D,
                           depth=depth, num_heads=2, reg_tokens=2, num_classes=0, mlp_ratio=2)
    tr.load_state_dict(mr, strict=True)
    with torch.no_grad():
        a = hr(pixel_values=x).last_hidden_state
        b = tr.forward_features(x)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    mr = collections.OrderedDict((k, mr[k]) for k in tr.state_dict().keys())
    safetensors.torch.save_file(mr, str(OUT / "hf_dinov2_reg.expected.safetensors"))
    record("hf_dinov2_reg.expected.safetensors", mr)
    EXPECTED["layouts"]["hf_dinov2_reg.safetensors"] = {"layout": "hf-dinov2",
                                                        "expect": "hf_dinov2_reg.expected.safetensors"}

    # Hugging Face ViTModel (with its pooler, which timm does not have)
    torch.manual_seed(3)
    vcfg = transformers.ViTConfig(hidden_size=D, num_hidden_layers=depth, num_attention_heads=2, intermediate_size=64,
                                  image_size=32, patch_size=8, layer_norm_eps=1e-6, qkv_bias=True)
    hv = transformers.ViTModel(vcfg).eval()
    with torch.no_grad():
        for n, prm in hv.named_parameters():
            prm.copy_(torch.randn_like(prm) * 0.2)
    hv_sd = collections.OrderedDict((k, v.clone()) for k, v in hv.state_dict().items())
    hv.save_pretrained(OUT / "hf_vit_tmp", safe_serialization=True)
    os.replace(OUT / "hf_vit_tmp" / "model.safetensors", OUT / "hf_vit.safetensors")
    for f in (OUT / "hf_vit_tmp").iterdir():
        f.unlink()
    (OUT / "hf_vit_tmp").rmdir()
    save_torch("hf_vit.bin", hv_sd)
    record("hf_vit.safetensors", safetensors.torch.load_file(str(OUT / "hf_vit.safetensors")))
    tvv = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=D,
                            depth=depth, num_heads=2, mlp_ratio=2, num_classes=0)
    mv = hf_to_timm(hv_sd)
    unused = [k for k in hv_sd if k.startswith("pooler.")]
    tvv.load_state_dict(mv, strict=True)
    with torch.no_grad():
        a = hv(pixel_values=x).last_hidden_state
        b = tvv.forward_features(x)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    mv = collections.OrderedDict((k, mv[k]) for k in tvv.state_dict().keys())
    safetensors.torch.save_file(mv, str(OUT / "hf_vit.expected.safetensors"))
    record("hf_vit.expected.safetensors", mv)
    for f in ("hf_vit.safetensors", "hf_vit.bin"):
        EXPECTED["layouts"][f] = {"layout": "hf-vit", "expect": "hf_vit.expected.safetensors", "unused": unused}
    # the files on the Hub use the older names; the mapping must give the same tensors from both
    legacy = hf_to_timm(safetensors.torch.load_file(str(OUT / "hf_vit.safetensors")))
    assert all(torch.equal(legacy[k], mv[k]) for k in mv) and len(legacy) == len(mv)

    # real key lists (names + shapes only) of full-size models, built on the meta device
    with torch.device("meta"):
        lists = {
            "torchvision_resnet50": __import__("torchvision").models.resnet50().state_dict(),
            "timm_vit_base_patch16_224": timm.create_model("vit_base_patch16_224", num_classes=1000).state_dict(),
            "timm_vit_base_patch14_reg4_dinov2": timm.create_model("vit_base_patch14_reg4_dinov2", num_classes=0).state_dict(),
            "hf_dinov2_base": transformers.Dinov2Model(transformers.Dinov2Config(
                hidden_size=768, num_hidden_layers=12, num_attention_heads=12, patch_size=14, image_size=518)).state_dict(),
            "hf_vit_base": transformers.ViTModel(transformers.ViTConfig()).state_dict(),
            "hf_dinov2_reg_base": transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(
                hidden_size=768, num_hidden_layers=12, num_attention_heads=12, patch_size=14, image_size=518)).state_dict(),
        }
    with open(OUT / "key_lists.json", "w") as f:
        json.dump({k: keys_shapes(v) for k, v in lists.items()}, f, indent=0)


def hf_to_timm(sd):
    """The Hugging Face -> timm renaming for Dinov2Model and ViTModel, written independently of the C++ one.
    Accepts both generations of names: the files on the Hub / save_pretrained (encoder.layer.N.attention.attention.
    query, intermediate.dense, ...) and transformers 5's in-memory modules (q_proj, o_proj, mlp.fc1, layers.N)."""
    import re
    out = collections.OrderedDict()
    qkv = collections.defaultdict(dict)
    block_rules = [("norm1.", "norm1."), ("norm2.", "norm2."), ("layernorm_before.", "norm1."),
                   ("layernorm_after.", "norm2."), ("attention.output.dense.", "attn.proj."),
                   ("attention.o_proj.", "attn.proj."), ("intermediate.dense.", "mlp.fc1."), ("output.dense.", "mlp.fc2."),
                   ("mlp.fc1.", "mlp.fc1."), ("mlp.fc2.", "mlp.fc2."), ("layer_scale1.lambda1", "ls1.gamma"),
                   ("layer_scale2.lambda1", "ls2.gamma")]
    for k, v in sd.items():
        if k.startswith("pooler.") or k == "embeddings.mask_token":
            continue
        if k == "embeddings.cls_token":
            out["cls_token"] = v
        elif k == "embeddings.position_embeddings":
            out["pos_embed"] = v
        elif k.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embed.proj." + k.split(".")[-1]] = v
        elif k.startswith("layernorm."):
            out["norm." + k.split(".")[-1]] = v
        else:
            m = re.match(r"(?:encoder\.layer|layers)\.(\d+)\.(.*)", k)
            if not m:
                raise KeyError(k)
            i, rest = m.group(1), m.group(2)
            m2 = re.match(r"attention\.(?:attention\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)", rest)
            if m2:
                which = m2.group(1) or {"q": "query", "k": "key", "v": "value"}[m2.group(2)]
                qkv[(i, m2.group(3))][which] = v
                continue
            for a, b in block_rules:
                if rest.startswith(a):
                    out[f"blocks.{i}." + b + rest[len(a):]] = v
                    break
            else:
                raise KeyError(k)
    for (i, w), parts in qkv.items():
        out[f"blocks.{i}.attn.qkv.{w}"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
    return out


def pos_embed_files():
    """timm.layers.resample_abs_pos_embed (bicubic, antialias, size-based) on small grids, up and down."""
    from timm.layers import resample_abs_pos_embed
    torch.manual_seed(11)
    out = collections.OrderedDict()
    cases = [("up_4_to_6", 4, (6, 6), 1), ("down_6_to_3", 6, (3, 3), 1), ("down_37_to_16", 37, (16, 16), 1),
             ("rect_5_to_7x3", 5, (7, 3), 1), ("noprefix_8_to_5", 8, (5, 5), 0), ("reg_5_to_9", 5, (9, 9), 5)]
    for name, old, new, prefix in cases:
        x = torch.randn(1, prefix + old * old, 6)
        y = resample_abs_pos_embed(x, list(new), num_prefix_tokens=prefix)
        out[name + ".in"] = x
        out[name + ".out"] = y.contiguous()
    meta = {n: f"{o} {nw[0]} {nw[1]} {p}" for n, o, nw, p in cases}
    # torch's 1-D antialiased bicubic weights, read back by interpolating one-hot rows: w[i, o]
    for i, o in [(4, 6), (6, 3), (37, 16), (5, 7), (8, 5), (5, 9), (16, 37)]:
        eye = torch.eye(i).reshape(1, i, 1, i)
        out[f"aa_weights.{i}_{o}"] = F.interpolate(eye, size=(1, o), mode="bicubic", antialias=True)[0, :, 0, :].contiguous()
        meta[f"aa_weights.{i}_{o}"] = "weights"
    safetensors.torch.save_file(out, str(OUT / "pos_embed_resample.safetensors"), metadata=meta)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.iterdir():
        if f.is_file():
            f.unlink()
    safetensors_files()
    torch_files()
    malicious_files()
    lying_checkpoints()
    zip64_checkpoint()
    layout_files()
    pos_embed_files()
    with open(OUT / "expected.json", "w") as f:
        json.dump(EXPECTED, f, indent=1, ensure_ascii=False)
    total = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes into {OUT}")
    assert total < 2_000_000


if __name__ == "__main__":
    sys.exit(main())
