#include "weights_tools/convert.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "util/sha256.h"
#include "weights_tools/pos_embed.h"
#include "weights_tools/safetensors.h"

namespace tabula::weights {

static std::string join(const std::vector<std::string>& v, size_t max = 8) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max) s += ", ... (" + std::to_string(v.size()) + " in all)";
  return s;
}

static std::string with_commas(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

static void describe_source(std::ostringstream& o, const Checkpoint& ck) {
  if (!ck.top_level_keys.empty()) o << "top-level keys: " << join(ck.top_level_keys, 20) << "\n";
  if (!ck.selected.empty()) o << "state dict: '" << ck.selected << "' (choose another with --key)\n";
  if (!ck.stripped.empty()) o << "prefixes stripped: " << join(ck.stripped) << "\n";
  if (!ck.dropped.empty()) o << "left out (outside the chosen prefix): " << join(ck.dropped) << "\n";
  if (!ck.skipped.empty()) o << "non-tensor entries skipped: " << join(ck.skipped) << "\n";
}

std::string inspect_weights(const std::string& path, const InspectOptions& opts) {
  LoadOptions lo;
  lo.key = opts.key;
  Checkpoint ck = load_checkpoint(path, lo);
  std::ostringstream o;
  o << "file: " << path << "\n";
  o << "format: " << format_name(ck.format) << "\n";
  o << "size: " << with_commas(static_cast<int64_t>(std::filesystem::file_size(path))) << " bytes\n";
  if (opts.hash) o << "sha256: " << sha256_file(path) << "\n";
  describe_source(o, ck);
  LayoutGuess g = detect_layout(shaped_names(ck.sd));
  o << "layout: " << layout_name(g.layout);
  if (!g.evidence.empty()) o << " (from '" << g.strip_prefix << g.evidence << "')";
  o << "\n";
  o << "tensors: " << ck.sd.tensors.size() << "\n";
  o << "parameters: " << with_commas(ck.sd.total_params()) << " (" << with_commas(static_cast<int64_t>(ck.sd.total_bytes()))
    << " bytes)\n";
  std::map<std::string, std::pair<size_t, int64_t>> by_dtype;
  for (const WeightTensor& t : ck.sd.tensors) {
    auto& e = by_dtype[std::string(dtype_name(t.dtype))];
    e.first += 1;
    e.second += t.numel();
  }
  o << "dtypes:";
  for (const auto& [d, e] : by_dtype) o << " " << d << " (" << e.first << " tensors, " << with_commas(e.second) << " values)";
  o << "\n";
  if (ck.copied_tensors) o << "tensors copied on load (non-contiguous or unaligned views): " << ck.copied_tensors << "\n";
  if (!ck.sd.metadata.empty()) {
    o << "metadata:";
    for (const auto& [k, v] : ck.sd.metadata) o << " " << k << "=" << v;
    o << "\n";
  }
  if (opts.list_tensors)
    for (const WeightTensor& t : ck.sd.tensors)
      o << "  " << t.name << "  " << dtype_name(t.dtype) << " " << t.shape_string() << "\n";
  return o.str();
}

// The tensors the arch expects in its state_dict order, then the others in theirs (a model's mapping returns them
// sorted by name).
static StateDict in_expected_order(StateDict sd, const std::vector<ShapedName>& expected) {
  std::map<std::string, size_t> rank;
  for (const ShapedName& e : expected) rank.emplace(e.name, rank.size());
  auto rank_of = [&](const WeightTensor& t) {
    auto it = rank.find(t.name);
    return it == rank.end() ? rank.size() : it->second;
  };
  std::stable_sort(sd.tensors.begin(), sd.tensors.end(),
                   [&](const WeightTensor& a, const WeightTensor& b) { return rank_of(a) < rank_of(b); });
  return sd;
}

ConvertResult convert_weights(const ConvertOptions& opts) {
  ConvertResult r;
  LoadOptions lo;
  lo.key = opts.key;
  r.source = load_checkpoint(opts.in, lo);
  std::ostringstream o;
  o << "read " << opts.in << " (" << format_name(r.source.format) << ", " << r.source.sd.tensors.size() << " tensors)\n";
  describe_source(o, r.source);

  r.plan = plan_layout(shaped_names(r.source.sd), opts.layout);
  if (r.plan.from == Layout::unknown) {
    std::string names;
    for (int i = 0; i < static_cast<int>(Layout::unknown); ++i)
      names += (i ? ", " : "") + std::string(layout_name(static_cast<Layout>(i)));
    throw std::runtime_error(opts.in + ": the parameter names match no known layout (" + names +
                             "); first names: " + join(r.source.sd.names()));
  }
  StateDict sd = apply_plan(r.source.sd, r.plan);
  if (owned_by_model(r.plan.from)) {
    if (!opts.arch_names)
      throw std::runtime_error(opts.in + ": " + std::string(layout_name(r.plan.from)) +
                               " names are mapped by their model, and none was given");
    StateDict mapped = in_expected_order(opts.arch_names(sd), opts.expected);
    o << "layout: " << layout_name(r.plan.from) << " -> arch " << opts.arch << "'s names (its model's mapping)\n";
    // Renamed tensors keep their bytes: a source tensor whose bytes no output holds was left out by the mapping.
    std::set<const uint8_t*> used;
    for (const WeightTensor& t : mapped.tensors) used.insert(t.data);
    std::vector<std::string> left;
    for (const WeightTensor& t : sd.tensors)
      if (!used.count(t.data)) left.push_back(t.name);
    if (!left.empty())
      o << "left out by the model (derived buffers, other towers, training only): " << join(left) << "\n";
    sd = std::move(mapped);
  } else {
    o << "layout: " << layout_name(r.plan.from) << " -> " << layout_name(opts.arch_layout) << " names\n";
  }
  // The names carry no config, and ViTConfig's LayerNorm eps is not timm's: a run with timm's 1e-6 is ~1e-4 off.
  if (r.plan.from == Layout::hf_vit)
    o << "note: a Hugging Face ViTModel normalises with config.layer_norm_eps (1e-12 unless its config.json says "
         "otherwise); run this file with norm_eps=1e-12 in the arch (timm's default is 1e-6)\n";
  for (const auto& [name, why] : r.plan.dropped) o << "dropped " << name << ": " << why << "\n";

  const bool resnet_arch = opts.arch_layout == Layout::torchvision_resnet;
  const bool resnet_file = r.plan.from == Layout::torchvision_resnet;
  if (resnet_arch != resnet_file)
    throw std::runtime_error(opts.in + ": " + std::string(layout_name(r.plan.from)) + " weights cannot be used for arch '" +
                             opts.arch + "'");

  const std::vector<ShapedName>& expected = opts.expected;
  r.check = check_keys(shaped_names(sd), expected);
  // A file of one of these families for another arch's model shares a few generic names (norm.weight) at most.
  const size_t fitting = expected.size() - r.check.missing.size() - r.check.shape_mismatches.size();
  if (owned_by_model(r.plan.from) && 2 * fitting < expected.size())
    throw std::runtime_error(opts.in + ": " + std::string(layout_name(r.plan.from)) +
                             " weights cannot be used for arch '" + opts.arch + "' (only " +
                             std::to_string(fitting) + " of its " + std::to_string(expected.size()) +
                             " keys are in the file with its shapes)");
  // A pos_embed for another image size differs only in its token count: resample its grid as timm's
  // loader does (checkpoint_filter_fn -> resample_abs_pos_embed), keeping the prefix tokens.
  WeightTensor* pos = sd.find("pos_embed");
  for (const ShapedName& e : expected) {
    if (e.name != "pos_embed" || !pos || pos->shape == e.shape) continue;
    if (pos->shape.size() != 3 || e.shape.size() != 3 || pos->shape[0] != 1 || pos->shape[2] != e.shape[2]) continue;
    const int64_t tokens = e.shape[1];
    const int64_t grid = static_cast<int64_t>(std::sqrt(static_cast<double>(tokens)));
    const int64_t prefix = tokens - grid * grid;
    const int64_t old_grid = static_cast<int64_t>(std::sqrt(static_cast<double>(pos->shape[1] - prefix)));
    if (pos->shape[1] - prefix <= 0 || old_grid * old_grid != pos->shape[1] - prefix)
      throw std::runtime_error("pos_embed " + pos->shape_string() + " cannot be resampled to arch '" + opts.arch +
                               "' (" + std::to_string(prefix) + " prefix tokens leave no square grid)");
    *pos = resample_abs_pos_embed(*pos, grid, grid, prefix);
    r.resampled_pos_embed = true;
    o << "pos_embed resampled from " << old_grid << "x" << old_grid << " to " << grid << "x" << grid
      << " patches (timm resample_abs_pos_embed: bicubic, antialias; " << prefix << " prefix tokens kept)\n";
    r.check = check_keys(shaped_names(sd), expected);
  }
  try {
    require_loadable(r.check, opts.allow_missing);
  } catch (const std::runtime_error& e) {  // say which file and which arch, as every other load error does
    throw std::runtime_error(opts.in + ": arch '" + opts.arch + "': " + e.what());
  }
  std::set<std::string> unused(r.check.unused.begin(), r.check.unused.end());
  std::vector<WeightTensor> kept;
  for (WeightTensor& t : sd.tensors) {
    if (unused.count(t.name)) r.dropped_unused.push_back(t.name);
    else kept.push_back(std::move(t));
  }
  sd.tensors = std::move(kept);
  o << "arch " << opts.arch << ": " << expected.size() - r.check.missing.size() << " of " << expected.size()
    << " expected keys present\n";
  if (!r.check.missing.empty()) o << "missing (allowed by --allow-missing): " << join(r.check.missing) << "\n";
  if (!r.dropped_unused.empty()) o << "not used by " << opts.arch << " (left out): " << join(r.dropped_unused) << "\n";

  if (opts.dtype) {
    for (WeightTensor& t : sd.tensors)
      if (t.dtype == DType::f32 || t.dtype == DType::f16 || t.dtype == DType::bf16 || t.dtype == DType::f64)
        t = t.to_dtype(*opts.dtype);
  }
  sd.metadata.clear();
  sd.metadata["format"] = "pt";  // what safetensors.torch / transformers expect
  sd.metadata["tabula.arch"] = opts.arch;
  sd.metadata["tabula.source"] = std::filesystem::path(opts.in).filename().string();
  sd.metadata["tabula.source_sha256"] = sha256_file(opts.in);
  sd.metadata["tabula.source_layout"] = std::string(layout_name(r.plan.from));
  if (!opts.key.empty()) sd.metadata["tabula.source_key"] = opts.key;
  write_safetensors(opts.out, sd);
  r.tensors_written = sd.tensors.size();
  r.params_written = sd.total_params();
  o << "wrote " << opts.out << ": " << r.tensors_written << " tensors, " << with_commas(r.params_written) << " parameters\n";
  r.report = o.str();
  return r;
}

}  // namespace tabula::weights
