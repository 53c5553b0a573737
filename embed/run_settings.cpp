#include "embed/run_settings.h"

#include <map>
#include <vector>

namespace tabula {

namespace {

// Leaf values by dotted path ("weights.seed" -> "0"); layers by their names ("layer3,layer4").
void flatten(const json::Value& v, const std::string& path, std::map<std::string, std::string>* out) {
  if (path == "layers" && v.is_array()) {
    std::string names;
    for (const json::Value& l : v.as_array()) {
      const json::Value* n = l.is_object() ? l.find("name") : nullptr;
      names += (names.empty() ? "" : ",") + (n && n->is_string() ? n->as_string() : json::dump(l));
    }
    (*out)[path] = names;
    return;
  }
  if (v.is_object()) {
    for (const auto& [k, x] : v.as_object()) flatten(x, path.empty() ? k : path + "." + k, out);
    return;
  }
  (*out)[path] = v.is_string() ? v.as_string() : json::dump(v);
}

// The flag a run.json entry comes from.
std::string flag_of(const std::string& path) {
  static const std::vector<std::pair<std::string, std::string>> table = {
      {"arch", "--arch"},           {"weights.seed", "--seed"},     {"weights.key", "--key"},
      {"weights.kind", "--weights/--seed"}, {"weights.sha256", "--weights (file contents)"},
      {"weights.path", "--weights"}, {"data.sha256", "--data (contents)"}, {"data.rows", "--data (rows)"},
      {"data", "--data"},           {"preprocessing", "--size/--intensity (preprocessing)"},
      {"channels", "--channels"},   {"inputs", "--channels (model inputs)"}, {"pool", "--pool"},
      {"precision", "--precision"}, {"device", "--device"},     {"batch", "--batch"},
      {"chunk_rows", "--batch (chunk rows)"}, {"layers", "--layers"}, {"shard", "--shard"}};
  for (const auto& [prefix, flag] : table)
    if (path == prefix || path.rfind(prefix + ".", 0) == 0) return flag;
  return path;
}

}  // namespace

json::Value keyed_settings(const json::Value& run) {
  json::Value keyed = json::Value::object();
  for (const auto& [k, v] : run.as_object())
    if (k != "threads" && k != "tabula" && k != "aggregate") keyed.set(k, v);
  return keyed;
}

std::string describe_changes(const json::Value& stored, const json::Value& now, const std::string& where) {
  std::map<std::string, std::string> a, b;
  flatten(keyed_settings(stored), "", &a);
  flatten(keyed_settings(now), "", &b);
  std::map<std::string, std::string> by_flag;  // one line per flag (e.g. the data path and its hash)
  std::vector<std::string> order;
  auto note = [&](const std::string& path, const std::string& line) {
    const std::string f = flag_of(path);
    if (!by_flag.count(f)) order.push_back(f);
    if (!by_flag.count(f) || path.find("sha256") == std::string::npos) by_flag[f] = line;
  };
  for (const auto& [path, value] : a) {
    auto it = b.find(path);
    const std::string other = it == b.end() ? "(none)" : it->second;
    if (it == b.end() || it->second != value)
      note(path, flag_of(path) + ": " + value + " in " + where + ", " + other + " now");
  }
  for (const auto& [path, value] : b)
    if (!a.count(path)) note(path, flag_of(path) + ": (none) in " + where + ", " + value + " now");
  std::string out;
  for (const std::string& f : order) out += (out.empty() ? "" : "; ") + by_flag[f];
  return out;
}

}  // namespace tabula
