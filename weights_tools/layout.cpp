// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex> (std::function in _State, a known false
// positive) when built with sanitizers; it is not about this file's code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "weights_tools/layout.h"

#include <cstring>
#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>

#include "engine/file_pages.h"

namespace tabula::weights {

std::string_view layout_name(Layout l) {
  switch (l) {
    case Layout::torchvision_resnet: return "torchvision-resnet";
    case Layout::timm_vit: return "timm-vit";
    case Layout::dinov2_hub: return "dinov2-hub";
    case Layout::hf_dinov2: return "hf-dinov2";
    case Layout::hf_vit: return "hf-vit";
    case Layout::timm_swin: return "timm-swin";
    case Layout::swin_timm05: return "swin-timm0.5";
    case Layout::timm_convnext: return "timm-convnext";
    case Layout::original_convnext: return "original-convnext";
    case Layout::conch_coca: return "conch-coca";
    case Layout::recursion_mae: return "recursion-mae";
    case Layout::unknown: return "unknown";
  }
  return "?";
}

Layout layout_from_name(const std::string& s) {
  std::string names;
  for (int i = 0; i < static_cast<int>(Layout::unknown); ++i) {
    const Layout l = static_cast<Layout>(i);
    if (s == layout_name(l)) return l;
    names += (i ? ", " : "") + std::string(layout_name(l));
  }
  throw std::runtime_error("unknown layout '" + s + "' (" + names + ")");
}

bool owned_by_model(Layout l) {
  return l == Layout::timm_swin || l == Layout::swin_timm05 || l == Layout::timm_convnext ||
         l == Layout::original_convnext || l == Layout::conch_coca || l == Layout::recursion_mae;
}

std::vector<ShapedName> shaped_names(const StateDict& sd) {
  std::vector<ShapedName> out;
  for (const WeightTensor& t : sd.tensors) out.push_back({t.name, t.shape});
  return out;
}

static bool has_key(const std::vector<ShapedName>& keys, const std::string& k) {
  for (const ShapedName& s : keys)
    if (s.name == k) return true;
  return false;
}

static const ShapedName* find_matching(const std::vector<ShapedName>& keys, const std::regex& re) {
  for (const ShapedName& s : keys)
    if (std::regex_search(s.name, re)) return &s;
  return nullptr;
}

LayoutGuess detect_layout(const std::vector<ShapedName>& keys_in) {
  LayoutGuess g;
  std::vector<ShapedName> keys = keys_in;
  // Hugging Face *ForImageClassification files put the backbone under "dinov2." / "vit.".
  for (const char* p : {"dinov2.", "vit."}) {
    size_t n = 0;
    for (const ShapedName& s : keys) n += s.name.rfind(p, 0) == 0;
    if (n > 0 && has_key(keys, std::string(p) + "embeddings.cls_token")) {
      g.strip_prefix = p;
      std::vector<ShapedName> kept;
      for (const ShapedName& s : keys)
        if (s.name.rfind(p, 0) == 0) kept.push_back({s.name.substr(std::strlen(p)), s.shape});
      keys = std::move(kept);
      break;
    }
  }
  // The layouts their models map (owned_by_model), recognised first: Swin's `layers.N.` would otherwise read as
  // transformers' block prefix. The original Swin keeps a stage's patch merging at its end (models/swin.cpp tells
  // the two apart by the same key).
  static const std::regex swin_block(R"(^layers\.\d+\.blocks\.\d+\.)");
  static const std::regex timm_convnext_block(R"(^stages\.\d+\.blocks\.\d+\.conv_dw\.weight$)");
  auto found = [&g](Layout l, const std::string& evidence) {
    g.layout = l;
    g.evidence = evidence;
    return g;
  };
  if (const ShapedName* s = find_matching(keys, swin_block))
    return has_key(keys, "layers.0.downsample.reduction.weight")
               ? found(Layout::swin_timm05, "layers.0.downsample.reduction.weight")
               : found(Layout::timm_swin, s->name);
  if (has_key(keys, "downsample_layers.0.0.weight"))
    return found(Layout::original_convnext, "downsample_layers.0.0.weight");
  if (const ShapedName* s = find_matching(keys, timm_convnext_block)) return found(Layout::timm_convnext, s->name);
  // CONCH: the whole CoCa model, model.visual's state_dict, or either saved from DataParallel
  for (const char* k : {"visual.trunk.cls_token", "trunk.cls_token", "module.visual.trunk.cls_token"})
    if (has_key(keys, k)) return found(Layout::conch_coca, k);
  if (has_key(keys, "encoder.vit_backbone.cls_token"))
    return found(Layout::recursion_mae, "encoder.vit_backbone.cls_token");
  static const std::regex hf_block(R"(^(encoder\.layer|layers)\.\d+\.)");
  static const std::regex hf_dinov2_mark(R"(\.(layer_scale1\.lambda1|norm1\.weight|mlp\.weights_in\.weight)$)");
  static const std::regex hub_chunked(R"(^blocks\.\d+\.\d+\.)");
  static const std::regex hub_swiglu(R"(^blocks\.\d+\.mlp\.w12\.)");
  if (has_key(keys, "embeddings.patch_embeddings.projection.weight") || find_matching(keys, hf_block)) {
    if (const ShapedName* s = find_matching(keys, hf_dinov2_mark)) {
      g.layout = Layout::hf_dinov2;
      g.evidence = s->name;
    } else {
      g.layout = Layout::hf_vit;
      g.evidence = has_key(keys, "embeddings.patch_embeddings.projection.weight") ? "embeddings.patch_embeddings.projection.weight"
                                                                                  : find_matching(keys, hf_block)->name;
    }
    return g;
  }
  // DINOv3's hub files (storage tokens, RoPE periods) keep their own names: models/dinov3.cpp reads them.
  for (const char* k : {"storage_tokens", "rope_embed.periods"})
    if (has_key(keys, k)) return g;
  for (const char* k : {"mask_token", "register_tokens"}) {
    if (has_key(keys, k)) {
      g.layout = Layout::dinov2_hub;
      g.evidence = k;
      return g;
    }
  }
  if (const ShapedName* s = find_matching(keys, hub_chunked)) {
    g.layout = Layout::dinov2_hub;
    g.evidence = s->name;
    return g;
  }
  if (const ShapedName* s = find_matching(keys, hub_swiglu)) {
    g.layout = Layout::dinov2_hub;
    g.evidence = s->name;
    return g;
  }
  for (const char* k : {"patch_embed.proj.weight", "cls_token", "pos_embed"}) {
    if (has_key(keys, k)) {
      g.layout = Layout::timm_vit;
      g.evidence = k;
      return g;
    }
  }
  if (has_key(keys, "conv1.weight") && has_key(keys, "bn1.weight") && has_key(keys, "layer1.0.conv1.weight")) {
    g.layout = Layout::torchvision_resnet;
    g.evidence = "layer1.0.conv1.weight";
    return g;
  }
  return g;
}

// ---- rename rules ---------------------------------------------------------------------------------------

namespace {

enum class Act { rename, drop, part };

struct Rule {
  const char* pattern;
  const char* format;  // std::regex format ($1, $2 ...); for Act::part the name of the packed output
  Act act;
  const char* why = "";
  int part_group = 0;  // Act::part: capture group naming the piece (query/key/value, gate/up)
};

// Hugging Face Dinov2Model / Dinov2WithRegistersModel / ViTModel -> timm. Both naming generations: the files
// on the Hub (written by transformers 4 and by save_pretrained) and transformers 5 in-memory module names.
const std::vector<Rule>& hf_rules() {
  static const std::vector<Rule> r = {
      {R"(^embeddings\.cls_token$)", "cls_token", Act::rename},
      {R"(^embeddings\.mask_token$)", "", Act::drop, "DINOv2 mask token (used in training only)"},
      {R"(^embeddings\.register_tokens$)", "reg_token", Act::rename},
      {R"(^embeddings\.position_embeddings$)", "pos_embed", Act::rename},
      {R"(^embeddings\.patch_embeddings\.projection\.(weight|bias)$)", "patch_embed.proj.$1", Act::rename},
      {R"(^(?:encoder\.layer|layers)\.(\d+)\.(?:norm1|layernorm_before)\.(weight|bias)$)", "blocks.$1.norm1.$2", Act::rename},
      {R"(^(?:encoder\.layer|layers)\.(\d+)\.(?:norm2|layernorm_after)\.(weight|bias)$)", "blocks.$1.norm2.$2", Act::rename},
      {R"(^(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:attention\.)?(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)$)",
       "blocks.$1.attn.qkv.$3", Act::part, "", 2},
      {R"(^(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:output\.dense|o_proj)\.(weight|bias)$)", "blocks.$1.attn.proj.$2", Act::rename},
      {R"(^(?:encoder\.layer|layers)\.(\d+)\.(?:intermediate\.dense|mlp\.fc1|mlp\.weights_in)\.(weight|bias)$)", "blocks.$1.mlp.fc1.$2", Act::rename},
      {R"(^(?:encoder\.layer|layers)\.(\d+)\.mlp\.(gate_proj|up_proj)\.(weight|bias)$)", "blocks.$1.mlp.fc1.$3", Act::part, "", 2},
      {R"(^(?:encoder\.layer|layers)\.(\d+)\.(?:output\.dense|mlp\.fc2|mlp\.weights_out|mlp\.down_proj)\.(weight|bias)$)", "blocks.$1.mlp.fc2.$2", Act::rename},
      {R"(^(?:encoder\.layer|layers)\.(\d+)\.layer_scale([12])\.lambda1$)", "blocks.$1.ls$2.gamma", Act::rename},
      {R"(^layernorm\.(weight|bias)$)", "norm.$1", Act::rename},
      {R"(^pooler\.)", "", Act::drop, "Hugging Face ViT pooler (no timm equivalent)"},
      {R"(^classifier\.)", "", Act::drop, "Hugging Face classification head"},
  };
  return r;
}

// DINOv2 torch.hub (facebookresearch/dinov2) -> timm; rules apply in sequence (unchunking first).
const std::vector<Rule>& hub_rules() {
  static const std::vector<Rule> r = {
      {R"(^mask_token$)", "", Act::drop, "DINOv2 mask token (used in training only)"},
      {R"(^register_tokens$)", "reg_token", Act::rename},
      {R"(^blocks\.\d+\.(\d+)\.(.+)$)", "blocks.$1.$2", Act::rename},  // BlockChunk: indices are global
      {R"(^blocks\.(\d+)\.mlp\.w12\.(weight|bias)$)", "blocks.$1.mlp.fc1.$2", Act::rename},
      {R"(^blocks\.(\d+)\.mlp\.w3\.(weight|bias)$)", "blocks.$1.mlp.fc2.$2", Act::rename},
  };
  return r;
}

int part_index(const std::string& piece) {
  if (piece == "query" || piece == "q_proj" || piece == "gate_proj") return 0;
  if (piece == "key" || piece == "k_proj" || piece == "up_proj") return 1;
  return 2;  // value / v_proj
}

struct Compiled {
  std::regex re;
  const Rule* rule;
};

std::vector<Compiled> compile(const std::vector<Rule>& rules) {
  std::vector<Compiled> c;
  for (const Rule& r : rules) c.push_back({std::regex(r.pattern), &r});
  return c;
}

// Compiled once (function-local statics: thread-safe initialisation).
const std::vector<Compiled>& compiled(const std::vector<Rule>& rules) {
  static const std::vector<Compiled> hf = compile(hf_rules());
  static const std::vector<Compiled> hub = compile(hub_rules());
  return &rules == &hf_rules() ? hf : hub;
}

}  // namespace

LayoutPlan plan_layout(const std::vector<ShapedName>& keys_in, Layout from) {
  LayoutPlan plan;
  LayoutGuess g = detect_layout(keys_in);
  plan.from = from == Layout::unknown ? g.layout : from;
  plan.strip_prefix = g.strip_prefix;
  std::vector<ShapedName> keys;
  for (const ShapedName& s : keys_in) {
    if (!g.strip_prefix.empty()) {
      if (s.name.rfind(g.strip_prefix, 0) != 0) {
        plan.dropped.push_back({s.name, "outside the backbone prefix '" + g.strip_prefix + "'"});
        continue;
      }
      keys.push_back({s.name.substr(g.strip_prefix.size()), s.shape});
    } else {
      keys.push_back(s);
    }
  }
  const std::vector<Rule>* rules = nullptr;
  if (plan.from == Layout::hf_dinov2 || plan.from == Layout::hf_vit) rules = &hf_rules();
  if (plan.from == Layout::dinov2_hub) rules = &hub_rules();

  // Packed outputs (qkv, SwiGLU fc1) collect their pieces here, in first-seen order of the output.
  std::map<std::string, std::vector<const ShapedName*>> packs;
  std::map<std::string, size_t> pack_slot;  // output name -> index into plan.ops
  for (const ShapedName& s : keys) {
    std::string name = s.name;
    bool dropped = false;
    if (rules) {
      for (const Compiled& c : compiled(*rules)) {
        std::smatch m;
        if (!std::regex_search(name, m, c.re)) continue;
        if (c.rule->act == Act::drop) {
          plan.dropped.push_back({plan.strip_prefix + s.name, c.rule->why});
          dropped = true;
          break;
        }
        std::string out = m.format(c.rule->format);
        if (c.rule->act == Act::part) {
          auto& parts = packs[out];
          const std::string piece = m[static_cast<size_t>(c.rule->part_group)];
          const size_t pieces = piece == "gate_proj" || piece == "up_proj" ? 2 : 3;
          if (parts.empty()) parts.resize(pieces, nullptr);
          parts[static_cast<size_t>(part_index(piece))] = &s;
          if (!pack_slot.count(out)) {
            pack_slot[out] = plan.ops.size();
            plan.ops.push_back({MapOp::Kind::concat0, out, {}, {}});
          }
          dropped = true;  // emitted through the pack
          break;
        }
        name = out;
        if (rules == &hf_rules()) break;  // HF rules are exclusive; hub rules chain (unchunk, then w12/w3)
      }
    }
    if (!dropped) plan.ops.push_back({MapOp::Kind::rename, name, {s.name}, s.shape});
  }
  for (auto& [out, parts] : packs) {
    MapOp& op = plan.ops[pack_slot[out]];
    bool complete = true;
    for (const ShapedName* p : parts) complete &= p != nullptr;
    if (!complete) {
      plan.problems.push_back(out + ": only some of its pieces are present (" + std::to_string(parts.size()) +
                              " expected)");
      continue;
    }
    int64_t rows = 0;
    for (const ShapedName* p : parts) {
      op.in.push_back(p->name);
      if (p->shape.empty()) {
        plan.problems.push_back(p->name + ": a scalar cannot be concatenated into " + out);
        continue;
      }
      if (p->shape.size() != parts[0]->shape.size() ||
          !std::equal(p->shape.begin() + 1, p->shape.end(), parts[0]->shape.begin() + 1))
        plan.problems.push_back(out + ": pieces " + parts[0]->name + " and " + p->name + " have different shapes");
      rows += p->shape[0];
    }
    op.shape = parts[0]->shape;
    if (!op.shape.empty()) op.shape[0] = rows;
  }
  // Drop the packs that could not be completed (reported in problems).
  std::vector<MapOp> ops;
  for (MapOp& op : plan.ops)
    if (op.kind != MapOp::Kind::concat0 || !op.in.empty()) ops.push_back(std::move(op));
  plan.ops = std::move(ops);

  // Registers: DINOv2 puts the CLS position inside pos_embed, timm's register models do not.
  if (plan.from == Layout::dinov2_hub || plan.from == Layout::hf_dinov2) {
    MapOp *cls = nullptr, *pos = nullptr;
    bool reg = false;
    for (MapOp& op : plan.ops) {
      if (op.out == "cls_token") cls = &op;
      if (op.out == "pos_embed") pos = &op;
      if (op.out == "reg_token") reg = true;
    }
    if (reg && cls && pos) {
      if (pos->shape.size() != 3 || pos->shape[1] < 1 || cls->shape.size() != 3 || cls->shape[1] != 1 ||
          cls->shape[2] != pos->shape[2]) {
        plan.problems.push_back("register conversion needs cls_token [1, 1, D] and pos_embed [1, 1+N, D]");
      } else {
        std::string cls_src = cls->in[0], pos_src = pos->in[0];
        cls->kind = MapOp::Kind::cls_plus_pos0;
        cls->in = {cls_src, pos_src};
        pos->kind = MapOp::Kind::pos_without_cls;
        pos->shape[1] -= 1;
      }
    }
  }
  std::set<std::string> outs;
  for (const MapOp& op : plan.ops)
    if (!outs.insert(op.out).second) plan.problems.push_back("two source tensors map to '" + op.out + "'");
  return plan;
}

StateDict apply_plan(const StateDict& sd, const LayoutPlan& plan) {
  if (!plan.problems.empty()) {
    std::string msg = "cannot map the " + std::string(layout_name(plan.from)) + " layout:";
    for (const std::string& p : plan.problems) msg += "\n  " + p;
    throw std::runtime_error(msg);
  }
  StateDict out;
  out.metadata = sd.metadata;
  auto src = [&](const std::string& n) -> const WeightTensor& { return sd.at(n); };
  for (const MapOp& op : plan.ops) {
    switch (op.kind) {
      case MapOp::Kind::rename: {
        WeightTensor t = src(op.in[0]);
        t.name = op.out;
        out.tensors.push_back(std::move(t));
        break;
      }
      case MapOp::Kind::concat0: {
        const WeightTensor& first = src(op.in[0]);
        std::vector<uint8_t> bytes;
        for (const std::string& n : op.in) {
          const WeightTensor& p = src(n);
          if (p.dtype != first.dtype)
            throw std::runtime_error(op.out + ": pieces " + first.name + " (" + std::string(dtype_name(first.dtype)) +
                                     ") and " + p.name + " (" + std::string(dtype_name(p.dtype)) + ") differ in dtype");
          bytes.insert(bytes.end(), p.data, p.data + p.nbytes());
        }
        out.tensors.push_back(make_owned_tensor(op.out, first.dtype, op.shape, std::move(bytes)));
        for (const std::string& n : op.in)  // the pieces are not read again: only the joined copy is kept
          if (src(n).mapped) release_mapped_range(src(n).data, src(n).nbytes());
        break;
      }
      case MapOp::Kind::cls_plus_pos0: {
        // timm: cls_token + pos_embed[:, 0], computed as torch does for the tensor's dtype
        // (half types: widened to f32, added, rounded back).
        const WeightTensor& cls = src(op.in[0]);
        const WeightTensor& pos = src(op.in[1]);
        if (cls.dtype != pos.dtype) throw std::runtime_error("cls_token and pos_embed differ in dtype");
        std::vector<float> c = cls.to_f32(), p = pos.to_f32();
        size_t d = c.size();
        for (size_t i = 0; i < d; ++i) c[i] += p[i];
        WeightTensor t = make_f32_tensor(op.out, op.shape, c);
        out.tensors.push_back(cls.dtype == DType::f32 ? t : t.to_dtype(cls.dtype));
        out.tensors.back().name = op.out;
        break;
      }
      case MapOp::Kind::pos_without_cls: {
        const WeightTensor& pos = src(op.in[0]);
        size_t row = static_cast<size_t>(pos.shape[2]) * dtype_size(pos.dtype);
        WeightTensor t = pos;  // a view one row further into the same storage: no copy
        t.name = op.out;
        t.shape = op.shape;
        t.data = pos.data + row;
        if (reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype) != 0)
          t = make_owned_tensor(op.out, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes()));
        out.tensors.push_back(std::move(t));
        break;
      }
    }
  }
  return out;
}

std::vector<WeightTensor> split_qkv(const WeightTensor& qkv) {
  if (qkv.shape.empty() || qkv.shape[0] % 3 != 0)
    throw std::runtime_error(qkv.name + ": shape " + qkv.shape_string() + " cannot be split into q, k, v");
  std::vector<WeightTensor> out;
  std::vector<int64_t> shape = qkv.shape;
  shape[0] /= 3;
  size_t bytes = qkv.nbytes() / 3;
  for (int i = 0; i < 3; ++i) {
    WeightTensor t = qkv;
    t.name = qkv.name + "[" + std::string(1, "qkv"[i]) + "]";
    t.shape = shape;
    t.data = qkv.data + bytes * static_cast<size_t>(i);
    out.push_back(std::move(t));
  }
  return out;
}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

KeyCheck check_keys(const std::vector<ShapedName>& provided, const std::vector<ShapedName>& expected) {
  KeyCheck c;
  std::map<std::string, const ShapedName*> have, want;
  for (const ShapedName& s : provided) have[s.name] = &s;
  for (const ShapedName& s : expected) want[s.name] = &s;
  for (const ShapedName& s : expected) {
    auto it = have.find(s.name);
    if (it == have.end()) c.missing.push_back(s.name);
    else if (it->second->shape != s.shape)
      c.shape_mismatches.push_back(s.name + ": file " + shape_str(it->second->shape) + " vs model " + shape_str(s.shape));
  }
  for (const ShapedName& s : provided)
    if (!want.count(s.name)) c.unused.push_back(s.name);
  return c;
}

std::string KeyCheck::summary(size_t max_names) const {
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    if (v.empty()) return std::string();
    std::string s = std::to_string(v.size()) + " " + what + ": ";
    for (size_t i = 0; i < v.size() && i < max_names; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > max_names) s += ", ...";
    return s + "\n";
  };
  std::string s = list("missing keys", missing) + list("unused keys", unused) + list("shape mismatches", shape_mismatches);
  return s.empty() ? "all keys match\n" : s;
}

void require_loadable(const KeyCheck& check, bool allow_missing) {
  if (!check.shape_mismatches.empty() || (!check.missing.empty() && !allow_missing))
    throw std::runtime_error("weights do not fit the model:\n" + check.summary() +
                             (check.shape_mismatches.empty() ? "(use --allow-missing to run with missing keys)" : ""));
}

}  // namespace tabula::weights
