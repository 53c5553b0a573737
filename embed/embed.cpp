// run_embed in its phases: resolve the inputs, the model and its taps, the settings (run.json and the run key),
// the output folder (and --resume against the stored settings), the batch loop over the pending chunks, then the
// folder's files (LAYER.npy, index.csv, aggregation, .h5ad, run.json last).
#include "embed/embed.h"
#include "embed/model_choice.h"
#include "data/transform.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "data/device_preprocess.h"
#include "data/manifest.h"
#include "data/manifest_check.h"
#include "data/pipeline.h"
#include "data/prefetch.h"
#include "data/preprocess.h"
#include "embed/extractor.h"
#include "embed/h5ad.h"
#include "embed/progress.h"
#include "embed/ranks.h"
#include "embed/run_settings.h"
#include "embed/store.h"
#include "models/ca_vit.h"
#include "engine/backend.h"
#include "engine/fileio.h"
#include "engine/ops.h"
#include "engine/system.h"
#include "engine/threads.h"
#include "models/device.h"
#include "models/registry.h"
#include "tabula/build_info.h"
#include "util/json.h"
#include "util/suggest.h"
#include "util/mpi.h"
#include "util/npy.h"
#include "util/sha256.h"
#include "weights_tools/checkpoint.h"
#include "weights_tools/layout.h"

namespace tabula {

namespace fs = std::filesystem;
using data::Image;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<std::string> split_csv_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string json_str(const json::Value& v) { return json::dump(v); }

// ---- phase 1: the inputs -----------------------------------------------------------------------------------------

struct Inputs {
  bool from_npy = false;
  data::Manifest manifest;
  NpyArray npy;  // [N, C, H, W] f32
  int64_t rows = 0;
  std::string sha256, sha256_of;  // what identifies the data in run.json
};

NpyArray read_input_npy(const std::string& path) {
  NpyArray a = read_npy(path);
  if (a.dtype != DType::f32 || a.shape.size() != 4)
    throw std::invalid_argument(path + ": --data .npy must be float32 [N, C, H, W], got " +
                                std::string(dtype_name(a.dtype)) + " with " + std::to_string(a.shape.size()) + " dims");
  if (a.shape[0] == 0 || a.shape[1] == 0 || a.shape[2] == 0 || a.shape[3] == 0)
    throw std::invalid_argument(path + ": --data .npy has shape [" + std::to_string(a.shape[0]) + ", " +
                                std::to_string(a.shape[1]) + ", " + std::to_string(a.shape[2]) + ", " +
                                std::to_string(a.shape[3]) + "]; every dimension must be at least 1");
  const float* v = a.as<float>();
  const size_t n = static_cast<size_t>(a.data.size() / sizeof(float));
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i]))
      throw std::invalid_argument(path + ": element " + std::to_string(i) + " (row " +
                                  std::to_string(static_cast<int64_t>(i) / (a.shape[1] * a.shape[2] * a.shape[3])) +
                                  ") is NaN or infinite; replace or mask such values before embedding");
  return a;
}

// A manifest file is identified by its bytes; a folder (of images or HEST .h5 files) by its file list: each file's
// path under the folder and size, one per line (hashing every image would read the whole data set twice).
void fingerprint(const std::string& data, Inputs* in) {
  if (in->from_npy || fs::is_regular_file(in->manifest.source)) {
    in->sha256 = sha256_file(in->from_npy ? data : in->manifest.source);
    in->sha256_of = "file";
    return;
  }
  std::set<std::string> files;
  for (const data::Sample& s : in->manifest.samples) {
    for (const std::string& p : s.channel_paths) files.insert(p);
    if (!s.h5_path.empty()) files.insert(s.h5_path);
  }
  std::string listing;
  for (const std::string& f : files) {
    std::error_code ec;
    const auto size = fs::file_size(f, ec);
    listing += fs::relative(f, in->manifest.source).string() + " " + (ec ? "?" : std::to_string(size)) + "\n";
  }
  in->sha256 = sha256_hex(listing.data(), listing.size());
  in->sha256_of = "file list (path and size of each file)";
}

Inputs read_inputs(const EmbedOptions& opt) {
  Inputs in;
  if (fs::path(opt.data).extension() == ".npy") {
    in.from_npy = true;
    in.npy = read_input_npy(opt.data);
    in.rows = in.npy.shape[0];
  } else {
    in.manifest = data::read_manifest(opt.data);
    in.rows = static_cast<int64_t>(in.manifest.samples.size());
    if (in.rows == 0) throw std::invalid_argument(opt.data + ": the manifest lists no images");
  }
  fingerprint(opt.data, &in);
  return in;
}

// The index.csv columns rows are averaged over (--aggregate), checked before any work.
std::vector<std::string> aggregate_columns(const EmbedOptions& opt, const Inputs& in) {
  if (opt.format != "npy" && opt.format != "h5ad")
    throw SettingError("--format " + opt.format + ": expected npy or h5ad");
  if (opt.aggregate.empty()) return {};
  if (in.from_npy) throw SettingError("--aggregate needs a manifest's metadata; a .npy input has none");
  if (opt.shard_count > 1)
    throw SettingError("--aggregate with --shard: a well's sites may fall in different shards; embed the shards "
                       "without it, merge them, then aggregate with `tabula eval normalize --method aggregate --by "
                       "COLS`");
  const auto& cols = in.manifest.meta_columns;
  std::vector<std::string> by = opt.aggregate == "well" ? well_columns(cols) : split_csv_list(opt.aggregate);
  for (const auto& c : by)
    if (std::find(cols.begin(), cols.end(), c) == cols.end())
      throw SettingError("--aggregate: " + opt.data + " has no metadata column '" + c + "'" + did_you_mean(c, cols));
  return by;
}

// ---- phase 2: the model (or baseline), its preprocessing and taps -----------------------------------------------

struct Setup {
  ModelChoice choice;       // --model card / --arch (timm tag): what was built and why
  data::TransformSpec spec; // the resolved transform (card/arch defaults + flags), recorded whole in run.json
  data::Transform tf;
  data::ChannelStrategy strategy;
  std::unique_ptr<Extractor> ex;
  int data_channels = 0;
  int inputs_per_sample = 1;
  std::vector<std::string> input_labels;  // per model input of a sample (per-channel: the channel names)
  std::string weights_sha256;
  std::unique_ptr<DevicePreprocessor> prep;  // --preprocess device: the transform runs on the model's GPU
};

// --preprocess: a usage error where the value cannot work (checked before anything is loaded).
void check_preprocess_option(const EmbedOptions& opt, int device) {
  if (opt.preprocess == "cpu") return;
  if (opt.preprocess != "device") throw SettingError("--preprocess " + opt.preprocess + ": expected cpu or device");
  if (device < 0)
    throw SettingError("--preprocess device needs --device cuda[:N] (on the cpu the decode workers preprocess)");
  if (fs::path(opt.data).extension() == ".npy")
    throw SettingError("--preprocess device: " + opt.data + " is already preprocessed (a .npy input)");
}

// --preprocess device: the device's preprocessor. The first sample's plan is built once here so that a transform
// the device path does not do is a usage error before any sample is decoded.
std::unique_ptr<DevicePreprocessor> device_preprocessor(const EmbedOptions& opt, const Inputs& in, const Setup& s,
                                                        const data::Image& first, int device) {
  if (opt.preprocess != "device") return nullptr;
  try {
    data::device_plan(first, !in.manifest.samples[0].illum_paths.empty(), s.tf, s.strategy);
  } catch (const std::invalid_argument& e) {
    throw SettingError(e.what());
  }
  return backend("--preprocess device", Device::cuda).preprocessor(device);
}

// A weight file goes straight to `device` (packed for the CPU, or uploaded), its load phases on stderr.
std::unique_ptr<Model> load_model(const EmbedOptions& opt, int device) {
  if (opt.weights.empty()) {  // the init pass streams into the layers (a 7B never exists in fp32 at once)
    BuildOptions bo;
    bo.device = device;
    bo.progress = load_progress_line("tabula embed", opt.quiet);
    return build_model_seed(opt.arch, *opt.seed, bo);
  }
  WeightLoadTimes times;
  auto model = load_model_file(opt.arch, opt.weights, opt.weights_key, device, "tabula embed", opt.quiet, &times);
  if (!opt.quiet) std::fprintf(stderr, "tabula embed: weights loaded: %s\n", times.summary().c_str());
  return model;
}

Setup build_setup(const EmbedOptions& opt, const ModelChoice& choice, const Inputs& in, int device,
                  std::vector<std::string>* warnings) {
  Setup s;
  s.choice = choice;
  const bool baseline = is_baseline(opt.arch);
  std::unique_ptr<Model> model;
  if (!baseline) model = load_model(opt, device);
  // The card's or the arch's reference eval transform, with the user's overrides (data/transform.h). The first
  // sample decides channels and the resize implementation (8-bit: Pillow's, as the references run); channels as
  // decoded (an RGB file listed once in a CSV is 3 channels).
  const auto [defaults, origin] = default_transform(choice, model.get());
  data::Image first;
  if (in.from_npy) first = data::Image(static_cast<int>(in.npy.shape[1]), 1, 1);
  else first = data::load_sample(in.manifest, 0);
  data::TransformFlags flags = opt.transform;
  if (opt.size > 0 && !flags.size) flags.size = opt.size;
  if (!opt.intensity.empty() && !flags.intensity) flags.intensity = opt.intensity;
  if (!opt.channels.empty() && !flags.channels) flags.channels = opt.channels;
  if (baseline) flags.channels = "all";
  if (!flags.channels && choice.card && !choice.card->transform.channels.empty())
    flags.channels = choice.card->transform.channels;
  if (!flags.channels && model && model->arch().as<CaViTConfig>()) flags.channels = "all";  // any channel count
  s.spec = data::resolve_transform(defaults, origin, flags, first);
  s.tf = s.spec.t;
  s.strategy = s.spec.channels;
  s.data_channels = first.channels;
  const bool per_channel = !in.from_npy && s.strategy.mode == data::ChannelMode::per_channel;
  s.inputs_per_sample = per_channel ? s.data_channels : 1;
  if (per_channel) {
    for (int c = 0; c < s.data_channels; ++c)
      s.input_labels.push_back(c < static_cast<int>(first.channel_names.size()) ? first.channel_names[c]
                                                                                : "ch" + std::to_string(c));
  }
  if (baseline) {
    if (device >= 0) throw SettingError("--device " + opt.device + ": the " + opt.arch + " baseline runs on the cpu");
    s.ex = make_baseline_extractor(opt.arch, s.data_channels, opt.data);
  } else {
    Shape input;
    if (in.from_npy) {
      input = {1, in.npy.shape[1], in.npy.shape[2], in.npy.shape[3]};
    } else {  // the first sample's model input decides the shape (no crop: the resized image's size)
      const data::Image x = data::preprocess_image(first, s.tf, s.strategy).at(0);
      input = {1, x.channels, x.height, x.width};
    }
    try {  // a fixed-size model fed another size: say which input and which flags set it, before any work
      model->check_input(input);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(
          (in.from_npy ? opt.data + ": the arrays are " : first.source + ": its model input is ") +
          std::to_string(input[1]) + "x" + std::to_string(input[2]) + "x" + std::to_string(input[3]) +
          (in.from_npy ? "" : " (transform " + s.tf.describe() + ")") + ", but " + e.what() +
          (in.from_npy ? "" : "; set the size with --resize N --crop N"));
    }
    s.weights_sha256 = opt.weights.empty() ? "" : sha256_file(opt.weights);
    // CPU bf16: the GEMMs round around what a black and a white image of this transform give (engine/cpu/packed.h)
    if (device < 0)
      model->record_bf16_centres(s.tf.do_normalize ? black_white_inputs(input, s.tf.mean, s.tf.std)
                                                   : black_white_inputs(input, {}, {}));
    s.ex = make_network_extractor(std::move(model), input, opt.layers, opt.pool, device, warnings);
  }
  s.prep = device_preprocessor(opt, in, s, first, device);
  return s;
}

// ---- phase 3: the settings (run.json, the run key) and this shard's rows ------------------------------------------

struct Plan {
  json::Value run;     // run.json (without "aggregate", added at the end)
  std::string run_key; // SHA-256 of the keyed settings: resume refuses another
  int64_t chunk_rows = 0;
  RowRange rows;       // this shard's rows
};

json::Value weights_entry(const EmbedOptions& opt, const Setup& s) {
  json::Value w = json::Value::object();
  if (is_baseline(opt.arch)) {
    w.set("kind", json::Value::string("none (baseline)"));
  } else if (opt.weights.empty()) {
    w.set("kind", json::Value::string("untrained"));
    w.set("seed", json::Value::integer(static_cast<int64_t>(*opt.seed)));
    w.set("init", json::Value::string("torch.manual_seed(seed) + the reference constructor's init (torch 2.15 / "
                                      "torchvision 0.29 / timm 1.0.31)"));
  } else {
    w.set("kind", json::Value::string("file"));
    w.set("path", json::Value::string(fs::absolute(opt.weights).string()));
    w.set("sha256", json::Value::string(s.weights_sha256));
    if (!opt.weights_key.empty()) w.set("key", json::Value::string(opt.weights_key));
  }
  return w;
}

Plan build_plan(const EmbedOptions& opt, const Inputs& in, const Setup& s) {
  Plan p;
  json::Value& run = p.run;
  run = json::Value::object();
  json::Value tab = json::Value::object();
  tab.set("version", json::Value::string(TABULA_VERSION));
  tab.set("git", json::Value::string(TABULA_GIT_HASH));
  run.set("tabula", tab);
  run.set("arch", json::Value::string(opt.arch));
  run.set("weights", weights_entry(opt, s));
  json::Value d = json::Value::object();
  d.set("path", json::Value::string(fs::absolute(opt.data).string()));
  d.set("kind", json::Value::string(in.from_npy ? "npy" : in.manifest.kind));
  d.set("sha256", json::Value::string(in.sha256));
  if (in.sha256_of != "file") d.set("sha256_of", json::Value::string(in.sha256_of));
  d.set("rows", json::Value::integer(in.rows));
  run.set("data", d);
  run.set("preprocessing", json::Value::string(in.from_npy ? "preprocessed tensor (used as is)" : s.spec.describe()));
  if (!in.from_npy) run.set("transform", s.spec.to_json());
  if (s.choice.card) run.set("card", card_json(s.choice));
  if (s.choice.tag) run.set("timm_tag", json::Value::string(s.choice.tag->name));
  run.set("channels", json::Value::string(in.from_npy ? "as given" : s.strategy.to_string()));
  if (!s.input_labels.empty()) {
    // Per-channel runs: each layer's features are these inputs' features concatenated, in this order.
    json::Value labels = json::Value::array();
    for (const auto& l : s.input_labels) labels.as_array().push_back(json::Value::string(l));
    run.set("inputs", labels);
  }
  run.set("pool", json::Value::string(s.ex->pool_description()));
  run.set("precision", json::Value::string(opt.precision));
  run.set("device", json::Value::string(opt.device));
  if (s.prep) run.set("preprocess_on", json::Value::string("device"));
  run.set("batch", json::Value::integer(opt.batch));
  p.chunk_rows = opt.chunk_rows > 0 ? opt.chunk_rows
                                    : std::max<int64_t>(1, 4 * opt.batch / std::max(1, s.inputs_per_sample));
  run.set("chunk_rows", json::Value::integer(p.chunk_rows));
  json::Value layers = json::Value::array();
  for (const auto& [name, dim] : s.ex->layers()) {
    json::Value l = json::Value::object();
    l.set("name", json::Value::string(name));
    l.set("dim", json::Value::integer(dim * s.inputs_per_sample));
    if (auto names = s.ex->feature_names(name); !names.empty()) {
      json::Value f = json::Value::array();
      for (const auto& n : names) f.as_array().push_back(json::Value::string(n));
      l.set("features", f);
    }
    layers.as_array().push_back(l);
  }
  run.set("layers", layers);
  run.set("threads", json::Value::integer(get_num_threads()));
  // Shard: whole chunks, so the batches of every chunk are those of the unsharded run.
  const int64_t nchunks = (in.rows + p.chunk_rows - 1) / p.chunk_rows;
  RowRange shard_chunks = shard_rows(nchunks, opt.shard_index, opt.shard_count);
  p.rows = {std::min(in.rows, shard_chunks.begin * p.chunk_rows), std::min(in.rows, shard_chunks.end * p.chunk_rows)};
  if (opt.shard_count > 1) {
    json::Value sh = json::Value::object();
    sh.set("index", json::Value::integer(opt.shard_index));
    sh.set("count", json::Value::integer(opt.shard_count));
    sh.set("begin", json::Value::integer(p.rows.begin));
    sh.set("end", json::Value::integer(p.rows.end));
    run.set("shard", sh);
  }
  // The thread count does not change a single bit (engine/threads.h), so it is not part of the key: a run resumed
  // with other threads or another number of ranks continues the same journal.
  json::Value keyed = json::Value::object();
  for (const auto& [k, v] : run.as_object())
    if (k != "threads") keyed.set(k, v);
  const std::string text = json_str(keyed);
  p.run_key = sha256_hex(text.data(), text.size());
  return p;
}

// ---- phase 4: the output folder -------------------------------------------------------------------------------------

std::string settings_path(const std::string& out) { return EmbeddingStore::partial_dir(out) + "/settings.json"; }

// --resume against the settings stored with the run: a finished folder's run.json, an unfinished run's
// .partial/settings.json. Throws naming every changed setting.
void check_same_settings(const std::string& out, const json::Value& now, bool finished, const EmbedOptions& opt,
                         const std::vector<std::string>& aggregate_by) {
  const std::string where = finished ? out + "/run.json" : settings_path(out);
  if (!fs::exists(where)) return;  // a journal from before settings were stored: the run key still guards it
  const json::Value stored = json::parse_file(where);
  std::string changes = describe_changes(stored, now, where);
  if (!finished) {
    // The journal's key includes the build, so an unfinished run continues only with the binary that started it.
    const json::Value *a = stored.find("tabula"), *b = now.find("tabula");
    const std::string had = a ? json::dump(*a) : "(none)", want = b ? json::dump(*b) : "(none)";
    if (had != want)
      changes += (changes.empty() ? "" : "; ") + std::string("tabula build: ") + had + " in " + where + ", " + want +
                 " now";
  } else {
    std::string had;
    if (const json::Value* agg = stored.find("aggregate"))
      for (const json::Value& c : agg->find("by")->as_array()) had += (had.empty() ? "" : ",") + c.as_string();
    std::string want;
    for (const auto& c : aggregate_by) want += (want.empty() ? "" : ",") + c;
    if (had != want)
      changes += (changes.empty() ? "" : "; ") + std::string("--aggregate: ") + (had.empty() ? "(none)" : had) +
                 " in " + where + ", " + (want.empty() ? "(none)" : want) + " now";
  }
  if (changes.empty()) return;
  throw std::runtime_error(out + ": " + (finished ? "the finished embedding there" : "the unfinished run there") +
                           " was made with other settings: " + changes + " (keep them, or " +
                           (finished ? "use a new --out, or --force to overwrite it" : "start over with --force") +
                           ")");
}

// Never overwrite a finished run or foreign files without --force. Returns true when a finished folder already
// holds this very run (--resume: nothing to do).
bool prepare_output(const EmbedOptions& opt, const Plan& plan, const Setup& s,
                    const std::vector<std::string>& aggregate_by) {
  const std::string& out = opt.out;
  const bool finished = fs::exists(out + "/run.json") && !fs::exists(EmbeddingStore::partial_dir(out));
  if (opt.resume && !opt.force && fs::exists(out))
    check_same_settings(out, plan.run, finished, opt, aggregate_by);
  if (finished && opt.resume && !opt.force) return true;
  if (!fs::exists(out)) return false;
  if (!fs::is_directory(out)) throw std::runtime_error(out + ": exists and is not a folder");
  std::set<std::string> ours = {"run.json", "index.csv", ".partial", "embedding.h5ad"};
  for (const auto& [name, dim] : s.ex->layers()) ours.insert(name + ".npy");
  bool foreign = false, any = false;
  for (const auto& e : fs::directory_iterator(out)) {
    any = true;
    std::string n = e.path().filename().string();
    if (!ours.count(n) && !(n.size() > 4 && n.substr(n.size() - 4) == ".npy" && fs::exists(out + "/run.json")))
      foreign = true;
  }
  if (foreign)
    throw std::runtime_error(out + ": holds files that are not a tabula embedding; choose a new or empty folder");
  if (finished && !opt.force)
    throw std::runtime_error(out + ": holds a finished embedding; use --force to overwrite it");
  if (any && opt.force) {
    for (const auto& e : fs::directory_iterator(out)) fs::remove_all(e.path());
  } else if (any && !opt.resume && fs::exists(EmbeddingStore::partial_dir(out))) {
    throw std::runtime_error(out + ": holds an unfinished run; continue it with --resume or start over with --force");
  }
  return false;
}

// One process at a time writes a folder: a second run on the same --out (or a --resume or --force started while
// the first still runs) would delete or finish the first's chunks under it. An advisory flock on the folder itself
// (not a file inside: --force and finalize() empty the folder) is held until the run returns; the kernel drops it
// when the process dies, so a kill -9 leaves no stale lock. File systems without flock (some NFS, Lustre mounts)
// answer with another errno than EWOULDBLOCK: the run goes on unlocked there, as before.
class OutputLock {
 public:
  explicit OutputLock(const std::string& dir) : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    if (fd_ < 0 || ::flock(fd_, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) return;
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error(dir + ": another tabula process is writing this folder now; wait for it to finish "
                             "(then --resume), or choose another --out");
  }
  ~OutputLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  int fd_ = -1;
};

// A run that fails before it has finished a chunk leaves nothing behind: the folder is removed if this run created
// it (or emptied of what this run wrote). Once a chunk is journalled, the folder is kept: `--resume` continues it.
struct RemoveOnError {
  std::string dir;
  bool created, armed = true;
  int exceptions = std::uncaught_exceptions();
  ~RemoveOnError() {
    if (!armed || std::uncaught_exceptions() <= exceptions) return;
    std::error_code ec;
    if (created) fs::remove_all(dir, ec);
    else fs::remove_all(EmbeddingStore::partial_dir(dir), ec);
  }
};

// ---- phase 5: the batch loop over this rank's pending chunks ------------------------------------------------------

// Collects one chunk's model inputs in order (per sample, its inputs in channel order), runs each batch as soon as
// its inputs have arrived (the model starts on the first batch instead of waiting for the whole chunk to decode),
// and stores the chunk when its last sample is through. Batches never span chunks, so they are the same whatever
// is resumed or sharded.
class ChunkLoop {
 public:
  // dev: the device preprocessor whose jobs add_job receives (nullptr: host images through add_sample).
  ChunkLoop(Extractor& ex, EmbeddingStore& store, std::vector<RowRange> pending, int batch, int inputs_per_sample,
            DevicePreprocessor* dev, std::function<void(size_t chunk_index, int64_t rows)> chunk_stored)
      : ex_(ex), store_(store), pending_(std::move(pending)), batch_(static_cast<size_t>(batch)),
        inputs_per_sample_(inputs_per_sample), dev_(dev), chunk_stored_(std::move(chunk_stored)),
        per_layer_(ex.layers().size()) {}

  void add_sample(std::vector<Image>& inputs) {
    for (Image& im : inputs) flat_.push_back(std::move(im));
    sample_added();
  }
  // A sample preprocessed on the device: its job holds inputs_per_sample model inputs there.
  void add_job(std::unique_ptr<PreprocessJob> job) {
    jobs_.push_back(std::move(job));
    sample_added();
  }

  double forward_seconds = 0, write_seconds = 0;

 private:
  void sample_added() {
    ++samples_;
    const RowRange& c = pending_[chunk_i_];
    const bool complete = samples_ == c.size();
    run_batches(complete);
    if (complete) store_chunk(c);
  }

  size_t available() const { return dev_ ? jobs_.size() * static_cast<size_t>(inputs_per_sample_) : flat_.size(); }

  void run_batches(bool chunk_complete) {
    while (available() - done_ >= batch_ || (chunk_complete && done_ < available())) {
      const size_t end = std::min(available(), done_ + batch_);
      const auto t0 = Clock::now();
      auto feats = dev_ ? run_device(done_, end) : run_host(done_, end);
      forward_seconds += seconds_since(t0);
      for (size_t l = 0; l < feats.size(); ++l)
        per_layer_[l].insert(per_layer_[l].end(), feats[l].begin(), feats[l].end());
      done_ = end;
    }
  }

  std::vector<std::vector<float>> run_host(size_t begin, size_t end) {
    std::vector<const Image*> batch;
    for (size_t i = begin; i < end; ++i) batch.push_back(&flat_[i]);
    auto feats = ex_.run(batch);
    for (size_t i = begin; i < end; ++i) flat_[i] = Image();  // free the pixels early
    return feats;
  }

  // Model inputs [begin, end) as slices of the samples' jobs (a batch may start or end inside a sample).
  std::vector<std::vector<float>> run_device(size_t begin, size_t end) {
    const size_t per = static_cast<size_t>(inputs_per_sample_);
    std::vector<JobSlice> slices;
    for (size_t i = begin; i < end;) {
      const size_t j = i / per, first = i % per, count = std::min(per - first, end - i);
      slices.push_back({jobs_[j].get(), static_cast<int>(first), static_cast<int>(count)});
      i += count;
    }
    auto feats = ex_.run_tensor(dev_->gather(slices));
    for (size_t j = begin / per; j < jobs_.size() && (j + 1) * per <= end; ++j) jobs_[j].reset();  // all used
    return feats;
  }

  void store_chunk(const RowRange& c) {
    // Per sample: its inputs' features concatenated in channel order (per-channel strategy), per layer.
    const auto& dims = ex_.layers();
    std::vector<LayerRows> rows;
    for (size_t l = 0; l < dims.size(); ++l)
      rows.push_back(LayerRows{dims[l].first, dims[l].second * inputs_per_sample_, std::move(per_layer_[l])});
    const auto t0 = Clock::now();
    store_.put(c, rows);
    write_seconds += seconds_since(t0);
    chunk_stored_(chunk_i_, c.size());
    flat_.clear();
    jobs_.clear();
    done_ = 0;
    samples_ = 0;
    per_layer_.assign(dims.size(), {});
    ++chunk_i_;
  }

  Extractor& ex_;
  EmbeddingStore& store_;
  std::vector<RowRange> pending_;
  size_t batch_;
  int inputs_per_sample_;
  DevicePreprocessor* dev_;
  std::function<void(size_t, int64_t)> chunk_stored_;
  std::vector<Image> flat_;
  std::vector<std::unique_ptr<PreprocessJob>> jobs_;
  size_t done_ = 0;  // inputs of flat_ already through the model
  int64_t samples_ = 0;
  size_t chunk_i_ = 0;
  std::vector<std::vector<float>> per_layer_;
};

// --preprocess device: the workers decode each sample without dividing out illumination and submit it (raw planes
// into pinned memory, then the upload and the transform on the device's preprocessing stream); the loop gathers the
// device's model inputs into batches.
void feed_device(const EmbedOptions& opt, const Setup& s, data::Manifest sub, const data::PipelineOptions& po,
                 ChunkLoop& loop) {
  std::vector<std::vector<std::string>> illum;
  for (data::Sample& smp : sub.samples) illum.push_back(std::move(smp.illum_paths)), smp.illum_paths.clear();
  const int64_t n = static_cast<int64_t>(sub.samples.size());
  data::DecodeLimits limits = po.decode;
  if (limits.threads <= 1)
    limits.threads = data::decode_threads_per_image(po.threads, std::min<int64_t>(n, po.capacity));
  data::Prefetcher<std::unique_ptr<PreprocessJob>> pf(n, po.threads, po.capacity, [&](int64_t i) {
    std::unique_ptr<PreprocessJob> job = data::load_and_submit(*s.prep, sub, static_cast<size_t>(i), limits,
                                                               illum[static_cast<size_t>(i)], s.tf, s.strategy);
    if (job->plan().inputs != s.inputs_per_sample) {
      const data::Sample& smp = sub.samples[static_cast<size_t>(i)];
      const std::string name = smp.channel_paths.empty() ? sub.source + " (sample " + std::to_string(i) + ")"
                                                         : smp.channel_paths[0];
      throw std::runtime_error(opt.data + ": " + name + " gave " + std::to_string(job->plan().inputs) +
                               " model inputs, the first sample " + std::to_string(s.inputs_per_sample) +
                               " (all images need the same channels)");
    }
    return job;
  });
  for (int64_t i = 0; i < n; ++i) loop.add_job(std::move(*pf.next()));
}

struct LoopStats {
  double loop_seconds = 0;
  int decode_threads = 0, prefetch_samples = 0;
};

// Feeds the pending rows (global row numbers, in order) through the loop: from the .npy as is, or through the
// prefetching decode + preprocess pipeline.
LoopStats feed(const EmbedOptions& opt, const Inputs& in, const Setup& s, const std::vector<int64_t>& rows,
               int64_t chunk_rows, ChunkLoop& loop) {
  LoopStats st;
  const auto t0 = Clock::now();
  if (in.from_npy) {
    const int64_t per = in.npy.shape[1] * in.npy.shape[2] * in.npy.shape[3];
    const float* base = in.npy.as<float>();
    for (int64_t r : rows) {
      Image im(static_cast<int>(in.npy.shape[1]), static_cast<int>(in.npy.shape[2]), static_cast<int>(in.npy.shape[3]));
      std::copy(base + r * per, base + (r + 1) * per, im.pixels.begin());
      im.source = opt.data + " row " + std::to_string(r);
      std::vector<Image> one;
      one.push_back(std::move(im));
      loop.add_sample(one);
    }
  } else if (!rows.empty()) {
    data::Manifest sub = in.manifest;
    sub.samples.clear();
    for (int64_t r : rows) sub.samples.push_back(in.manifest.samples[static_cast<size_t>(r)]);
    data::PipelineOptions po;
    // Decode up to two chunks ahead, so the workers keep decoding while the model runs and a slow field (or a
    // burst of them) does not starve it (bench/RESULTS_data.md). Memory: 2 chunks of model inputs (ResNet-50,
    // 5 channels, batch 16: 24 samples, ~72 MB).
    po.capacity = static_cast<int>(std::clamp<int64_t>(2 * chunk_rows, 8, 256));
    if (s.prep) {
      // The device runs the model and the preprocessing; the CPU only reads and decodes (0.03 CPU-s per deflate
      // field, bench/RESULTS_data.md), so every core of this rank decodes, each with a field of its own in flight.
      po.threads = std::max(po.threads, mpi::default_threads_per_rank());
      po.capacity = std::max(po.capacity, 2 * po.threads);
    }
    st.decode_threads = po.threads;
    st.prefetch_samples = po.capacity;
    if (s.prep) {
      feed_device(opt, s, sub, po, loop);
      st.loop_seconds = seconds_since(t0);
      return st;
    }
    data::for_each_preprocessed(sub, s.tf, s.strategy, po, [&](size_t, std::vector<Image>& inputs) {
      if (static_cast<int>(inputs.size()) != s.inputs_per_sample)  // per-channel: one input per channel
        throw std::runtime_error(opt.data + ": " + (inputs.empty() ? "a sample" : inputs[0].source) + " gave " +
                                 std::to_string(inputs.size()) + " model inputs, the first sample " +
                                 std::to_string(s.inputs_per_sample) + " (all images need the same channels)");
      loop.add_sample(inputs);
    });
  }
  st.loop_seconds = seconds_since(t0);
  return st;
}

// ---- phase 6: the folder's files ------------------------------------------------------------------------------------

// index.csv, aggregation, the .h5ad, then run.json last: its presence marks the folder complete. Returns the rows.
int64_t write_outputs(const EmbedOptions& opt, const Inputs& in, const RowRange& rows,
                      const std::vector<std::string>& layer_names, const std::vector<std::string>& aggregate_by,
                      json::Value& run) {
  std::string index;
  if (in.from_npy) {
    index = "index\n";
    for (int64_t r = rows.begin; r < rows.end; ++r) index += std::to_string(r) + "\n";
  } else {
    std::vector<size_t> idx;
    for (int64_t r = rows.begin; r < rows.end; ++r) idx.push_back(static_cast<size_t>(r));
    index = data::index_csv(in.manifest, idx);
  }
  write_file_atomic(opt.out + "/index.csv", index);
  int64_t out_rows = rows.size();
  if (!aggregate_by.empty()) {
    out_rows = aggregate_embedding(opt.out, layer_names, aggregate_by);
    json::Value agg = json::Value::object();
    json::Value by = json::Value::array();
    for (const auto& c : aggregate_by) by.as_array().push_back(json::Value::string(c));
    agg.set("by", by);
    agg.set("method", json::Value::string("mean"));
    agg.set("rows", json::Value::integer(out_rows));
    run.set("aggregate", agg);
  }
  if (opt.format == "h5ad") write_embedding_h5ad(opt.out, "", "", json_str(run));
  write_file_atomic(opt.out + "/run.json", json_str(run) + "\n");
  return out_rows;
}

EmbedSummary summary_of(const EmbedOptions& opt, const Setup& s, int64_t rows, int64_t computed,
                        Clock::time_point t0) {
  EmbedSummary sum;
  sum.out = opt.out;
  sum.rows = rows;
  sum.computed_rows = computed;
  for (const auto& [name, dim] : s.ex->layers()) {
    sum.layers.push_back(name);
    sum.dims.push_back(dim * s.inputs_per_sample);
  }
  sum.seconds = seconds_since(t0);
  return sum;
}

}  // namespace

// ---- run_embed -------------------------------------------------------------------------------------------------

// --model NAME[:k=v] / --arch NAME[.tag]: what to build; a card's taps and pooling become the defaults.
EmbedOptions apply_model_choice(const EmbedOptions& given, ModelChoice* choice) {
  EmbedOptions o = given;
  *choice = choose_model(given.model, given.arch);
  o.arch = choice->arch;
  if (choice->card && o.layers.empty()) {
    o.layers = choice->card->taps;
    if (o.pool.empty()) o.pool = choice->card->pool;
  }
  return o;
}

EmbedSummary run_embed(const EmbedOptions& options) {
  ModelChoice choice;
  const EmbedOptions opt = apply_model_choice(options, &choice);
  const auto t0 = Clock::now();
  // Under mpirun/srun: this process is one rank of the run (embed/ranks.h).
  const mpi::World single;
  const mpi::World& world = opt.use_mpi ? mpi::world() : single;
  const bool dist = world.size > 1;
  const bool root = world.rank == 0;
  // Each rank takes one GPU of its node (by node-local rank) when --device cuda names none.
  // (cuda_devices() loads the CUDA backend: not for a cpu run.)
  const std::string device_name =
      dist && opt.device != "cpu"
          ? mpi::bind_device(opt.device, world.local_rank, static_cast<int>(cuda_devices().size()))
          : opt.device;
  const int device = select_device(device_name, opt.precision);
  if (opt.batch < 1) throw SettingError("--batch must be >= 1");
  check_preprocess_option(opt, device);
  if (opt.weights.empty() == !opt.seed.has_value() && !is_baseline(opt.arch))
    throw SettingError("give exactly one of --weights FILE and --seed N");
  if (opt.threads > 0) set_num_threads(opt.threads);
  else if (dist) set_num_threads(mpi::default_threads_per_rank());  // the node's cores shared among its ranks

  const Inputs in = read_inputs(opt);
  const std::vector<std::string> aggregate_by = aggregate_columns(opt, in);
  std::vector<std::string> warnings;
  const Setup s = build_setup(opt, choice, in, device, &warnings);
  if (root && !opt.quiet)
    for (const std::string& w : warnings) std::fprintf(stderr, "tabula embed: note: %s\n", w.c_str());
  Plan plan = build_plan(opt, in, s);
  const RowRange rows = plan.rows;

  // Rank 0 alone looks at the folder and decides; the other ranks learn the outcome from its broadcast.
  const std::string& out = opt.out;
  const bool created = root && !fs::exists(out);
  std::optional<OutputLock> lock;
  if (root) {
    fs::create_directories(out);
    lock.emplace(out);
  }
  // Until the checks below pass, only a folder this run made is removed on an error.
  RemoveOnError remove_on_error{out, created};
  remove_on_error.armed = created;
  const bool complete = root && prepare_output(opt, plan, s, aggregate_by);
  if ((dist && mpi::broadcast(complete ? "complete" : "open") == "complete") || complete) {
    if (root && !opt.quiet) std::fprintf(stderr, "tabula embed: %s is already complete\n", out.c_str());
    // --resume --format h5ad on a finished folder adds the AnnData file from what the folder holds.
    if (root && opt.format == "h5ad" && !fs::exists(out + "/embedding.h5ad")) write_embedding_h5ad(out);
    EmbedSummary done;
    done.out = out;
    done.rows = rows.size();
    return done;
  }
  // A missing image is reported now rather than when its chunk is reached (hours into a large run). Not when the
  // folder holds progress (its chunks' files were read already) nor under MPI (one rank failing alone would leave
  // the others waiting at the next broadcast).
  if (!in.from_npy && !dist && !fs::exists(EmbeddingStore::partial_dir(out)))
    data::check_images_exist(in.manifest, static_cast<size_t>(rows.begin), static_cast<size_t>(rows.end));
  // Only rank 0 owns the folder; an earlier run's progress is not ours to delete.
  remove_on_error.armed = root && !fs::exists(EmbeddingStore::partial_dir(out));
  // Rank 0 opens the run (and with --resume reads every journal); the other ranks join once it has. On --resume
  // each rank re-hashes a share of the journalled chunks (chunk k: rank k mod size) and the pending chunks are the
  // union of what the ranks found missing or damaged; a fresh run's pending chunks are all of them.
  auto my_share = [&](int64_t chunk_index) { return chunk_index % world.size == world.rank; };
  const auto mode = opt.resume ? EmbeddingStore::Mode::resume : EmbeddingStore::Mode::fresh;
  std::optional<EmbeddingStore> opened;
  if (root) {
    opened.emplace(out, rows.size(), plan.chunk_rows, plan.run_key, mode, 0,
                   dist ? std::function<bool(int64_t)>(my_share) : nullptr);
    // The settings by name, for a later --resume to say what changed (the journal holds only their hash).
    if (!fs::exists(settings_path(out))) write_file_atomic(settings_path(out), json_str(plan.run) + "\n");
  }
  mpi::barrier();
  if (!root)
    opened.emplace(out, rows.size(), plan.chunk_rows, plan.run_key,
                   opt.resume ? EmbeddingStore::Mode::resume : EmbeddingStore::Mode::attach, world.rank, my_share);
  EmbeddingStore& store = *opened;
  std::vector<RowRange> pending_all = store.pending();
  if (dist) {
    // Every rank's view (no rank writes before this exchange, so all read the same journals).
    std::set<int64_t> missing;
    for (const std::string& view : mpi::allgather(encode_chunks(pending_all)))
      for (const RowRange& c : decode_chunks(view)) missing.insert(c.begin);
    pending_all.clear();
    for (const RowRange& c : store.chunks())
      if (missing.count(c.begin)) pending_all.push_back(c);
  }
  int64_t rows_done_before = rows.size();
  for (const RowRange& c : pending_all) rows_done_before -= c.size();

  // Work: this rank's share of the pending chunks (relative to the shard), as one stream.
  std::vector<RowRange> pending = chunks_of_rank(pending_all, world.rank, world.size);
  if (dist && !opt.quiet)
    std::fprintf(stderr, "tabula embed: rank %d/%d on %s (node-local %d/%d): device %s, %d threads, %zu of %zu pending chunks\n",
                 world.rank, world.size, world.host.c_str(), world.local_rank, world.local_size, device_name.c_str(),
                 get_num_threads(), pending.size(), pending_all.size());
  std::vector<int64_t> global_rows;
  for (const RowRange& c : pending)
    for (int64_t r = c.begin; r < c.end; ++r) global_rows.push_back(rows.begin + r);

  // One bar for the whole run, on rank 0: its own chunks plus what the other ranks report.
  Progress progress("embed " + opt.arch, rows.size(), "images", opt.quiet || !root);
  std::string note;
  if (opt.shard_count > 1) note = "shard " + std::to_string(opt.shard_index + 1) + "/" + std::to_string(opt.shard_count);
  if (dist) note += (note.empty() ? "" : ", ") + std::to_string(world.size) + " ranks";
  if (!note.empty()) progress.set_note(note);
  progress.skip(rows_done_before);
  int ranks_finished = 0;
  ChunkLoop loop(*s.ex, store, pending, opt.batch, s.inputs_per_sample, s.prep.get(), [&](size_t chunk_i, int64_t n) {
    remove_on_error.armed = false;  // progress worth keeping for --resume
    exit_if_test_hook(world.rank, static_cast<int64_t>(chunk_i) + 1);
    if (root) progress.advance(n + mpi::poll_progress(&ranks_finished));
    else mpi::post_progress(n);
  });
  const LoopStats stats = feed(opt, in, s, global_rows, plan.chunk_rows, loop);

  if (dist) {
    // Rank 0 keeps the bar moving until every rank is done, then adopts their journal lines and assembles.
    if (root) {
      while (ranks_finished < world.size - 1) progress.advance(mpi::wait_progress(&ranks_finished));
    } else {
      mpi::post_finished();
    }
    std::vector<std::string> lines = mpi::gather(store.written());
    for (size_t r = 1; r < lines.size(); ++r) store.adopt(lines[r]);
    if (!root) {
      mpi::barrier();  // returns once rank 0 has written the folder: the job ends complete
      return summary_of(opt, s, rows.size(), static_cast<int64_t>(global_rows.size()), t0);
    }
  }
  const std::vector<std::string> layer_names = store.finalize();
  const int64_t out_rows = write_outputs(opt, in, rows, layer_names, aggregate_by, plan.run);
  progress.finish();
  if (dist) mpi::barrier();

  EmbedSummary sum = summary_of(opt, s, out_rows, static_cast<int64_t>(global_rows.size()), t0);
  sum.forward_seconds = loop.forward_seconds;
  sum.write_seconds = loop.write_seconds;
  // The rest of the loop: waiting for inputs (+ copies).
  sum.wait_seconds = std::max(0.0, stats.loop_seconds - loop.forward_seconds - loop.write_seconds);
  sum.decode_threads = stats.decode_threads;
  sum.prefetch_samples = stats.prefetch_samples;
  return sum;
}

// ---- merge ---------------------------------------------------------------------------------------------------------

namespace {

// The run.json entries (dotted paths, the shard entry left out) where two shards differ, with both values when they
// are short: with 32 shard folders the user needs to know which setting a stray one was made with.
std::string run_json_differences(const json::Value& a, const json::Value& b, const std::string& prefix) {
  std::vector<std::string> keys;
  for (const auto& [k, x] : a.as_object()) keys.push_back(k);
  for (const auto& [k, x] : b.as_object())
    if (!a.find(k)) keys.push_back(k);
  std::string out;
  for (const std::string& k : keys) {
    if (prefix.empty() && k == "shard") continue;
    const json::Value* x = a.find(k);
    const json::Value* y = b.find(k);
    const std::string dx = x ? json::dump(*x) : "(none)", dy = y ? json::dump(*y) : "(none)";
    if (dx == dy) continue;
    std::string d;
    if (x && y && x->is_object() && y->is_object()) d = run_json_differences(*x, *y, prefix + k + ".");
    else d = prefix + k + (dx.size() + dy.size() <= 120 ? " " + dx + " vs " + dy : "");
    out += (out.empty() ? "" : "; ") + d;
  }
  return out;
}

}  // namespace

void merge_embeddings(const std::vector<std::string>& shards, const std::string& out, bool force) {
  if (shards.empty()) throw std::invalid_argument("tabula merge: no shard folders given");
  struct Shard {
    std::string dir;
    json::Value run;
    int64_t begin = 0, end = 0, count = 1;
  };
  std::vector<Shard> list;
  for (const std::string& dir : shards) {
    if (fs::exists(EmbeddingStore::partial_dir(dir)) || !fs::exists(dir + "/run.json"))
      throw std::runtime_error(dir + ": not a finished embedding (no run.json, or still running: finish it with --resume)");
    Shard s;
    s.dir = dir;
    s.run = json::parse_file(dir + "/run.json");
    const json::Value* sh = s.run.find("shard");
    if (!sh) throw std::runtime_error(dir + "/run.json: not a shard (no \"shard\" entry)");
    s.begin = sh->find("begin")->as_int64();
    s.end = sh->find("end")->as_int64();
    s.count = sh->find("count")->as_int64();
    list.push_back(std::move(s));
  }
  std::sort(list.begin(), list.end(), [](const Shard& a, const Shard& b) { return a.begin < b.begin; });
  // Same run: identical run.json apart from the shard entry.
  auto without_shard = [](const json::Value& v) {
    json::Value o = json::Value::object();
    for (const auto& [k, x] : v.as_object())
      if (k != "shard") o.set(k, x);
    return json::dump(o);
  };
  const std::string base = without_shard(list[0].run);
  const int64_t total = list[0].run.find("data")->find("rows")->as_int64();
  int64_t next = 0;
  for (const Shard& s : list) {
    if (without_shard(s.run) != base)
      throw std::runtime_error(s.dir + ": comes from a different run than " + list[0].dir + " (run.json differs: " +
                               run_json_differences(list[0].run, s.run, "") + ")");
    if (s.begin != next)
      throw std::runtime_error(s.begin > next ? "tabula merge: rows [" + std::to_string(next) + ", " + std::to_string(s.begin) +
                                                    ") are missing (a shard was not given)"
                                              : s.dir + ": overlaps rows before " + std::to_string(next) + " (a shard given twice?)");
    next = s.end;
  }
  if (next != total)
    throw std::runtime_error("tabula merge: rows [" + std::to_string(next) + ", " + std::to_string(total) + ") are missing");
  if (static_cast<int64_t>(list.size()) != list[0].count)
    throw std::runtime_error("tabula merge: " + std::to_string(list.size()) + " folders given for a run of " +
                             std::to_string(list[0].count) + " shards");
  if (fs::exists(out + "/run.json") && !force) throw std::runtime_error(out + ": holds a finished embedding; use --force to overwrite it");
  fs::create_directories(out);
  // Layers.
  for (const json::Value& l : list[0].run.find("layers")->as_array()) {
    const std::string name = l.find("name")->as_string();
    const int64_t dim = l.find("dim")->as_int64();
    AtomicFile f(out + "/" + name + ".npy");
    f.write(npy_header(DType::f32, {total, dim}));
    for (const Shard& s : list) {
      NpyArray a = read_npy(s.dir + "/" + name + ".npy");
      if (a.shape != std::vector<int64_t>{s.end - s.begin, dim})
        throw std::runtime_error(s.dir + "/" + name + ".npy: shape does not match its run.json");
      f.write(a.data.data(), a.data.size());
    }
    f.commit();
  }
  // index.csv: one header, rows in order.
  std::string index;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string text = read_file_text(list[i].dir + "/index.csv");
    auto nl = text.find('\n');
    if (i == 0) index += text;
    else if (nl != std::string::npos) index += text.substr(nl + 1);
  }
  write_file_atomic(out + "/index.csv", index);
  json::Value merged = json::parse(base, "merged run.json");
  write_file_atomic(out + "/run.json", json::dump(merged) + "\n");
}

}  // namespace tabula
