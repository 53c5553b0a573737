#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "tests/weights/weights_test_util.h"
#include "weights_tools/checkpoint.h"

using namespace tabula;
using namespace tabula::weights;
using tabula::test::expected_json;
using tabula::test::wfix;
using namespace std::string_literals;

namespace {

const json::Value& expected_file(const std::string& f) { return *expected_json().find("files")->find(f); }

std::vector<std::string> strings(const json::Value* v) {
  std::vector<std::string> out;
  if (v)
    for (const json::Value& s : v->as_array()) out.push_back(s.as_string());
  return out;
}

std::string load_error(const std::string& path, const std::string& key = "") {
  try {
    LoadOptions o;
    o.key = key;
    load_checkpoint(path, o);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(TorchCheckpoint, ReadsTorchSaveFilesBitForBit) {
  for (const char* f : {"pt_plain.pth", "pt_f16.pth", "pt_bf16.pth", "pt_noncontig.pth", "pt_shared.pth",
                        "pt_params.pth", "hub_dinov2_reg.pth", "pt_plain_zip64.pth", "ok_handmade.pth"}) {
    if (!expected_json().find("files")->find(f)) continue;  // ok_handmade is checked below
    Checkpoint ck = load_checkpoint(wfix(f));
    EXPECT_EQ(ck.format, FileFormat::torch_zip) << f;
    tabula::test::expect_tensors_match(ck.sd, *expected_file(f).find("tensors"), f);
    // state dict order is the file's order
    EXPECT_EQ(ck.sd.names(), strings(expected_file(f).find("order"))) << f;
  }
  Checkpoint ok = load_checkpoint(wfix("ok_handmade.pth"));
  EXPECT_EQ(ok.sd.at("w").to_f32(), (std::vector<float>{2, 3, 4}));
}

TEST(TorchCheckpoint, ContiguousTensorsAreViewsIntoTheMapping) {
  Checkpoint ck = load_checkpoint(wfix("pt_plain.pth"));
  EXPECT_EQ(ck.copied_tensors, 0u);
  for (const WeightTensor& t : ck.sd.tensors) {
    EXPECT_TRUE(t.mapped) << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u) << "torch aligns records to 64 bytes: " << t.name;
  }
  // a scalar (BatchNorm's num_batches_tracked, i64, shape [])
  const WeightTensor& nbt = ck.sd.at("1.num_batches_tracked");
  EXPECT_TRUE(nbt.shape.empty());
  EXPECT_EQ(nbt.dtype, DType::i64);
  int64_t v;
  std::memcpy(&v, nbt.data, 8);
  EXPECT_EQ(v, 7);
}

TEST(TorchCheckpoint, NonContiguousViewsAreGatheredAndSharedStoragesAlias) {
  Checkpoint nc = load_checkpoint(wfix("pt_noncontig.pth"));
  EXPECT_EQ(nc.copied_tensors, 2u);
  EXPECT_FALSE(nc.sd.at("transposed").mapped);
  EXPECT_FALSE(nc.sd.at("sliced").mapped);
  EXPECT_TRUE(nc.sd.at("plain").mapped);
  EXPECT_EQ(nc.sd.at("transposed").shape, (std::vector<int64_t>{6, 4}));

  Checkpoint sh = load_checkpoint(wfix("pt_shared.pth"));
  EXPECT_EQ(sh.copied_tensors, 0u);
  const WeightTensor &a = sh.sd.at("a"), &b = sh.sd.at("b"), &c = sh.sd.at("c"), &tied = sh.sd.at("tied");
  EXPECT_EQ(tied.data, a.data);   // one storage, not two copies
  EXPECT_EQ(b.data, a.data + 16);  // a[4:8]
  EXPECT_EQ(c.data, a.data + 16);  // a.view(3, 4)[1]
}

TEST(TorchCheckpoint, StripsModulePrefix) {
  Checkpoint ck = load_checkpoint(wfix("pt_module_prefix.pth"));
  const json::Value& e = expected_file("pt_module_prefix.pth");
  tabula::test::expect_tensors_match(ck.sd, *e.find("tensors"), "module prefix");
  EXPECT_EQ(ck.stripped, strings(e.find("stripped")));
}

TEST(TorchCheckpoint, StateDictUnderAKeyIsFound) {
  Checkpoint ck = load_checkpoint(wfix("pt_state_dict_key.pth"));
  const json::Value& e = expected_file("pt_state_dict_key.pth");
  tabula::test::expect_tensors_match(ck.sd, *e.find("tensors"), "state_dict key");
  EXPECT_EQ(ck.selected, "state_dict");
  EXPECT_EQ(ck.stripped, strings(e.find("stripped")));
  EXPECT_EQ(ck.top_level_keys, (std::vector<std::string>{"epoch", "state_dict", "hyper_parameters"}));
}

TEST(TorchCheckpoint, DinoCheckpointUsesTheTeacherBackbone) {
  Checkpoint ck = load_checkpoint(wfix("pt_dino_teacher.pth"));
  const json::Value& e = expected_file("pt_dino_teacher.pth");
  tabula::test::expect_tensors_match(ck.sd, *e.find("tensors"), "teacher");
  EXPECT_EQ(ck.selected, "teacher");
  EXPECT_EQ(ck.stripped, strings(e.find("stripped")));
  EXPECT_EQ(ck.dropped, strings(e.find("dropped")));
  EXPECT_EQ(ck.top_level_keys, (std::vector<std::string>{"student", "teacher", "optimizer", "epoch", "dino_loss"}));
  // --key student: DDP's module. and the backbone. prefix are both removed
  LoadOptions o;
  o.key = "student";
  Checkpoint st = load_checkpoint(wfix("pt_dino_teacher.pth"), o);
  tabula::test::expect_tensors_match(st.sd, *e.find("student"), "student");
  EXPECT_EQ(st.stripped, (std::vector<std::string>{"module.", "backbone."}));
}

TEST(TorchCheckpoint, Dinov2TrainingCheckpointAndKeyPaths) {
  Checkpoint ck = load_checkpoint(wfix("pt_dinov2_train.pth"));
  const json::Value& e = expected_file("pt_dinov2_train.pth");
  tabula::test::expect_tensors_match(ck.sd, *e.find("tensors"), "dinov2 train");
  EXPECT_EQ(ck.selected, "model");
  EXPECT_EQ(ck.stripped, strings(e.find("stripped")));
  EXPECT_TRUE(std::find(ck.dropped.begin(), ck.dropped.end(), "teacher.dino_head.mlp.0.weight") != ck.dropped.end());
  // a key path may end in a name prefix: model/student keeps student.* (then backbone. is stripped)
  LoadOptions o;
  o.key = "model/student";
  Checkpoint st = load_checkpoint(wfix("pt_dinov2_train.pth"), o);
  EXPECT_EQ(st.sd.tensors.size(), 8u);  // the student has no integer buffers in this fixture
  EXPECT_TRUE(st.sd.contains("0.weight"));
  std::vector<float> s = st.sd.at("0.bias").to_f32(), t = ck.sd.at("0.bias").to_f32();
  for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s[i], t[i] + 1) << i;  // the fixture's student = teacher + 1
}

TEST(TorchCheckpoint, BadKeysAndUnsupportedFormatsAreClearErrors) {
  std::string e = load_error(wfix("pt_dino_teacher.pth"), "nope");
  EXPECT_TRUE(contains(e, "--key 'nope': no entry 'nope' (entries: student, teacher, optimizer, epoch, dino_loss)")) << e;
  e = load_error(wfix("pt_dino_teacher.pth"), "epoch");
  EXPECT_TRUE(contains(e, "holds a int 3, not a state dict")) << e;
  e = load_error(wfix("pt_legacy.pth"));
  EXPECT_TRUE(contains(e, "legacy (pre-1.6, non-zip) torch.save format is not supported")) << e;
  e = load_error(wfix("expected.json"));
  EXPECT_TRUE(contains(e, "not a safetensors file or a torch.save zip checkpoint")) << e;
  e = load_error(wfix("does_not_exist.pth"));
  EXPECT_TRUE(contains(e, "does_not_exist.pth: cannot open")) << e;
}

TEST(TorchCheckpoint, LyingCheckpointsAreRefused) {
  EXPECT_TRUE(contains(load_error(wfix("bad_storage_size.pth")), "declares 1000 f32 elements but its record holds 16 bytes"));
  EXPECT_TRUE(contains(load_error(wfix("bad_view.pth")), "reaching element 99) runs past its storage '0' of 4 elements"));
  EXPECT_TRUE(contains(load_error(wfix("bad_view_offset.pth")), "runs past its storage"));
  EXPECT_TRUE(contains(load_error(wfix("missing_record.pth")), "storage record 'archive/data/7' is missing"));
}

TEST(TorchCheckpoint, TruncatedAndCorruptZipsAreRefused) {
  auto full = tabula::test::slurp_bytes(wfix("pt_plain.pth"));
  std::string p = (tabula::test::input_dir() / "cut.pth").string();
  for (size_t cut : {size_t(3), size_t(30), size_t(200), full.size() / 2, full.size() - 30, full.size() - 1}) {
    tabula::test::write_bytes(p, std::vector<uint8_t>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
    std::string e = load_error(p);
    EXPECT_TRUE(contains(e, "cut.pth")) << "cut at " << cut << ": " << e;
  }
  // Flip bytes all over the file: every outcome is a clean error or a successful load, never a crash.
  for (size_t pos = 0; pos < full.size(); pos += 97) {
    auto bad = full;
    bad[pos] ^= 0x5a;
    tabula::test::write_bytes(p, bad);
    try {
      Checkpoint ck = load_checkpoint(p);
      for (const WeightTensor& t : ck.sd.tensors) (void)t.to_f32();
    } catch (const std::exception& e) {
      EXPECT_TRUE(contains(e.what(), "cut.pth")) << e.what();
    }
  }
}

TEST(TorchCheckpoint, MaliciousPicklesAreRefusedAndNothingRuns) {
  const std::string marker = expected_json().find("marker")->as_string();
  std::filesystem::remove(marker);
  struct Case {
    const char* file;
    const char* expect;
  };
  for (const Case& c : {Case{"evil_os_system.pth", "refusing global 'os.system'"},
                        Case{"evil_eval.pth", "refusing global 'builtins.eval'"},
                        Case{"evil_subprocess.pth", "refusing global 'subprocess.call'"},
                        Case{"evil_in_state_dict.pth", "refusing global 'posix.system'"},
                        Case{"evil_stack_global.pth", "unsupported pickle opcode 0x95"}}) {
    std::string e = load_error(wfix(c.file));
    EXPECT_TRUE(contains(e, c.expect)) << c.file << ": " << e;
    EXPECT_FALSE(std::filesystem::exists(marker)) << c.file << " ran its payload";
    auto r = tabula::test::run_tabula(std::string("weights inspect '") + wfix(c.file) + "'");
    EXPECT_EQ(r.exit_code, 1) << c.file;
    EXPECT_TRUE(contains(r.err, c.expect)) << r.err;
    EXPECT_FALSE(std::filesystem::exists(marker)) << c.file << " ran its payload through the CLI";
  }
}

TEST(TorchCheckpoint, UnpicklerRefusesHandWrittenAbuse) {
  auto run = [](const std::string& bytes) -> std::string {
    try {
      pickle::unpickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "p",
                       [](DType, const std::string&, const std::string&, int64_t) -> std::shared_ptr<pickle::StorageRef> {
                         return nullptr;
                       });
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_TRUE(contains(run("\x80\x02}q\x00"s), "truncated pickle")) << run("\x80\x02}q\x00"s);
  EXPECT_TRUE(contains(run("\x80\x02h\x05."), "memo key 5 was never stored"));
  EXPECT_TRUE(contains(run("\x80\x02" "ccollections\nCounter\n)R."), "allowed by torch.load(weights_only=True) but tabula does not support it"));
  EXPECT_TRUE(contains(run("\x80\x02" "ctorch\nComplexFloatStorage\n."), "allowed by torch.load(weights_only=True) but tabula does not support it"));
  EXPECT_TRUE(contains(run("\x80\x02" "ctorch\nfloat32\n)R."), "REDUCE of global torch.float32, which is not an allowed callable"));
  EXPECT_TRUE(contains(run("\x80\x02X\x03\x00\x00\x00" "abc)R."s), "REDUCE of str 'abc'"));
  EXPECT_TRUE(contains(run("\x80\x02(X\x07\x00\x00\x00storageK\x01tQ."s), "malformed storage reference"));
  EXPECT_TRUE(contains(run("\x80\x02(X\x03\x00\x00\x00" "fooK\x01tQ."s), "is not a storage reference"));
  EXPECT_TRUE(contains(run("\x80\x02" "c__builtin__\ngetattr\n."), "refusing global 'builtins.getattr'"));
  EXPECT_TRUE(contains(run("\x80\x02K\x01K\x02."), "STOP with a stack of 2"));
  EXPECT_TRUE(contains(run("\x80\x02" "a."), "pop from an empty stack"));
  EXPECT_TRUE(contains(run("\x80\x02]K\x01\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09."), "does not fit in 64 bits"));
  EXPECT_TRUE(contains(run("\x80\x02X\xff\xff\xff\x7f"), "runs past the end"));
  EXPECT_TRUE(contains(run("\x80\x02i"), "unsupported pickle opcode 0x69 ('i')"));  // INST
  // a list that contains itself is fine to unpickle and does not hang the loader
  EXPECT_EQ(run("\x80\x02]q\x00h\x00" "a."s), "");
}
