#include "embed/embed.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "engine/fileio.h"
#include "util/mpi.h"
#include "util/npy.h"
#include "engine/ops.h"
#include "util/sha256.h"
#include "engine/system.h"
#include "engine/threads.h"
#include "data/manifest.h"
#include "data/pipeline.h"
#include "data/preprocess.h"
#include "embed/h5ad.h"
#include "embed/progress.h"
#include "embed/ranks.h"
#include "embed/store.h"
#include "models/baselines.h"
#include "models/device.h"
#include "models/registry.h"
#include "tabula/build_info.h"
#include "weights_tools/checkpoint.h"
#include "util/json.h"
#include "weights_tools/layout.h"

namespace tabula {

namespace fs = std::filesystem;
using data::Image;

namespace {

std::vector<std::string> split_csv_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// ---- the thing that turns model inputs into features: a network with taps, or a baseline ----------------------

struct Extractor {
  virtual ~Extractor() = default;
  // Output layers (in order) and their width per model input.
  virtual const std::vector<std::pair<std::string, int64_t>>& layers() const = 0;
  // inputs: B images of one shape -> per layer [B, dim] values (row-major).
  virtual std::vector<std::vector<float>> run(const std::vector<const Image*>& inputs) = 0;
  virtual std::string pool_description() const = 0;
};

// Pooling that makes sense for a tap's output when the user gave none: feature maps -> avg, token sequences ->
// the CLS token when the model has one (else the patch mean), already pooled vectors -> as they are.
Pool natural_pool(const Shape& tap_shape, bool has_cls) {
  if (tap_shape.size() == 4) return Pool::avg;
  if (tap_shape.size() == 3) return has_cls ? Pool::cls : Pool::mean;
  return Pool::none;
}

class NetworkExtractor : public Extractor {
 public:
  // device: -1 for the CPU, else the GPU the weights move to (select_device has set the precision).
  NetworkExtractor(std::unique_ptr<Model> model, const Shape& input, std::vector<std::string> requested,
                   const std::string& pool, int device)
      : model_(std::move(model)), device_(device) {
    if (device_ >= 0) model_->to_device(device_);
    auto taps = model_->list_taps(input);
    std::map<std::string, Shape> shape_of;
    for (const TapInfo& t : taps) shape_of[t.name] = t.shape;
    if (requested.empty()) requested = model_->default_taps();
    if (requested.size() == 1 && requested[0] == "all") {
      // Every stage / block output (a layer sweep), plus the model's feature output.
      static const std::regex stage(R"(^(layer\d+|blocks\.\d+)$)");
      requested.clear();
      for (const TapInfo& t : taps)
        if (std::regex_match(t.name, stage)) requested.push_back(t.name);
      for (const std::string& d : model_->default_taps()) requested.push_back(d);
    }
    bool has_cls = false;
    if (!model_->arch().is_resnet()) has_cls = model_->arch().vit().class_token;
    for (const std::string& name : requested) {
      auto it = shape_of.find(name);
      if (it == shape_of.end()) {
        std::string known;
        for (size_t i = 0; i < taps.size() && i < 12; ++i) known += (i ? ", " : "") + taps[i].name;
        throw std::invalid_argument("--layers: " + model_->arch().name + " has no tap '" + name +
                                    "' (see `tabula hooks " + model_->arch().name + "`; first taps: " + known + ", ...)");
      }
      Pool p = natural_pool(it->second, has_cls);
      if (!pool.empty()) {
        auto given = pool_from_name(pool);
        if (!given) throw std::invalid_argument("--pool: unknown pooling '" + pool + "' (avg|cls|mean|cls+mean|max|gem|none)");
        p = *given;
      }
      taps_.capture(name, p);
      pools_[name] = p;
    }
    // Widths from a 1-image forward of zeros: exact, whatever the pooling does to the shape.
    Tensor probe = Tensor::zeros({1, input[1], input[2], input[3]});
    model_->forward(on_device(probe), taps_);
    for (const std::string& key : taps_.capture_keys()) {
      const Tensor& t = taps_.captured().at(key);
      layers_.push_back({key, t.numel() / t.size(0)});
    }
  }

  const std::vector<std::pair<std::string, int64_t>>& layers() const override { return layers_; }

  std::vector<std::vector<float>> run(const std::vector<const Image*>& inputs) override {
    const Image& first = *inputs[0];
    const int64_t B = static_cast<int64_t>(inputs.size());
    Tensor x = Tensor::empty({B, first.channels, first.height, first.width});
    float* p = x.data<float>();
    for (const Image* im : inputs) {
      if (im->channels != first.channels || im->height != first.height || im->width != first.width)
        throw std::runtime_error("model inputs of one batch differ in shape (" + im->source + ")");
      p = std::copy(im->pixels.begin(), im->pixels.end(), p);
    }
    model_->forward(on_device(x), taps_);  // captures come back to the host pooled
    std::vector<std::vector<float>> out;
    for (const auto& [key, dim] : layers_) {
      Tensor t = taps_.captured().at(key).contiguous();
      if (t.numel() != B * dim) throw std::runtime_error("tap " + key + " changed width between batches");
      const float* v = t.data<float>();
      out.emplace_back(v, v + B * dim);
    }
    return out;
  }

  std::string pool_description() const override {
    std::string s;
    for (const auto& [name, p] : pools_) s += (s.empty() ? "" : ",") + name + "=" + std::string(pool_name(p));
    return s;
  }

 private:
  Tensor on_device(const Tensor& x) const { return device_ >= 0 ? upload(x, device_) : x; }

  std::unique_ptr<Model> model_;
  int device_ = -1;
  TapSet taps_;
  std::map<std::string, Pool> pools_;
  std::vector<std::pair<std::string, int64_t>> layers_;
};

// key=value options after "pixels:" / "nuclei:".
std::map<std::string, std::string> baseline_options(const std::string& arch) {
  std::map<std::string, std::string> kv;
  auto colon = arch.find(':');
  if (colon == std::string::npos) return kv;
  std::stringstream in(arch.substr(colon + 1));
  std::string item;
  while (std::getline(in, item, ',')) {
    auto eq = item.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("arch " + arch + ": expected key=value, got '" + item + "'");
    kv[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return kv;
}

class BaselineExtractor : public Extractor {
 public:
  BaselineExtractor(const std::string& arch, int channels) : name_(arch.substr(0, arch.find(':'))) {
    auto kv = baseline_options(arch);
    auto take = [&](const char* key, auto& field) {
      auto it = kv.find(key);
      if (it == kv.end()) return;
      field = static_cast<std::decay_t<decltype(field)>>(std::stod(it->second));
      kv.erase(it);
    };
    int64_t dim = 0;
    if (name_ == "pixels") {
      take("hist", pixels_.hist_bins);
      take("grid", pixels_.grid);
      dim = static_cast<int64_t>(baselines::pixel_feature_names(channels, pixels_).size());
    } else {
      take("dna", nuclei_.dna_channel);
      take("sigma", nuclei_.sigma);
      take("min_area", nuclei_.min_area);
      take("min_distance", nuclei_.min_distance);
      take("radius", nuclei_.graph_radius);
      int invert = 0;
      take("invert", invert);
      nuclei_.invert = invert != 0;
      dim = static_cast<int64_t>(baselines::nuclei_feature_names().size());
    }
    if (!kv.empty()) throw std::invalid_argument("arch " + arch + ": unknown option '" + kv.begin()->first + "'");
    layers_.push_back({name_, dim});
  }
  const std::vector<std::pair<std::string, int64_t>>& layers() const override { return layers_; }
  std::vector<std::vector<float>> run(const std::vector<const Image*>& inputs) override {
    std::vector<float> out;
    for (const Image* im : inputs) {
      auto f = name_ == "pixels"
                   ? baselines::pixel_features(im->pixels.data(), im->channels, im->height, im->width, pixels_)
                   : baselines::nuclei_features(im->pixels.data(), im->channels, im->height, im->width, nuclei_);
      out.insert(out.end(), f.begin(), f.end());
    }
    return {out};
  }
  std::string pool_description() const override { return "none (baseline features)"; }

 private:
  std::string name_;
  baselines::PixelsConfig pixels_;
  baselines::NucleiConfig nuclei_;
  std::vector<std::pair<std::string, int64_t>> layers_;
};

bool is_baseline(const std::string& arch) {
  std::string base = arch.substr(0, arch.find(':'));
  return base == "pixels" || base == "nuclei";
}

// ---- inputs: a manifest through the data pipeline, or a ready tensor ---------------------------------------------

struct Inputs {
  bool from_npy = false;
  data::Manifest manifest;
  NpyArray npy;  // [N, C, H, W] f32
  int64_t rows = 0;
  std::string describe;
};

std::string json_str(const json::Value& v) { return json::dump(v); }

}  // namespace

WeightMap load_weight_map(const std::string& path, const std::string& key) {
  weights::LoadOptions lo;
  lo.key = key;
  weights::Checkpoint ck = weights::load_checkpoint(path, lo);
  weights::LayoutPlan plan;
  weights::StateDict sd = weights::to_canonical(ck.sd, &plan);
  if (!plan.problems.empty()) throw std::runtime_error(path + ": " + plan.problems[0]);
  WeightMap wm;
  for (const weights::WeightTensor& t : sd.tensors) {
    Shape shape(t.shape.begin(), t.shape.end());
    // Zero-copy view into the file mapping (or the loader's buffer), kept alive by its storage owner.
    wm[t.name] = Tensor::from_external(const_cast<uint8_t*>(t.data), shape, t.dtype,
                                       std::const_pointer_cast<void>(t.storage));
  }
  return wm;
}

// ---- run_embed -------------------------------------------------------------------------------------------------

EmbedSummary run_embed(const EmbedOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  // Under mpirun/srun: this process is one rank of the run (embed/ranks.h).
  const mpi::World single;
  const mpi::World& world = opt.use_mpi ? mpi::world() : single;
  const bool dist = world.size > 1;
  const bool root = world.rank == 0;
  // Each rank takes one GPU of its node (by node-local rank) when --device cuda names none.
  const std::string device_name =
      dist ? mpi::bind_device(opt.device, world.local_rank, static_cast<int>(cuda_devices().size())) : opt.device;
  const int device = select_device(device_name, opt.precision);
  if (opt.batch < 1) throw std::invalid_argument("--batch must be >= 1");
  if (opt.weights.empty() == !opt.seed.has_value() && !is_baseline(opt.arch))
    throw std::invalid_argument("give exactly one of --weights FILE and --seed N");
  if (opt.threads > 0) set_num_threads(opt.threads);
  else if (dist) set_num_threads(mpi::default_threads_per_rank());  // the node's cores shared among its ranks

  // Inputs.
  Inputs in;
  if (fs::path(opt.data).extension() == ".npy") {
    in.from_npy = true;
    in.npy = read_npy(opt.data);
    if (in.npy.dtype != DType::f32 || in.npy.shape.size() != 4)
      throw std::invalid_argument(opt.data + ": --data .npy must be float32 [N, C, H, W], got " +
                                  std::string(dtype_name(in.npy.dtype)) + " with " + std::to_string(in.npy.shape.size()) + " dims");
    in.rows = in.npy.shape[0];
    if (in.rows == 0 || in.npy.shape[1] == 0 || in.npy.shape[2] == 0 || in.npy.shape[3] == 0)
      throw std::invalid_argument(opt.data + ": --data .npy has shape [" + std::to_string(in.npy.shape[0]) + ", " +
                                  std::to_string(in.npy.shape[1]) + ", " + std::to_string(in.npy.shape[2]) + ", " +
                                  std::to_string(in.npy.shape[3]) + "]; every dimension must be at least 1");
    {
      const float* v = in.npy.as<float>();
      const size_t n = static_cast<size_t>(in.npy.data.size() / sizeof(float));
      for (size_t i = 0; i < n; ++i)
        if (!std::isfinite(v[i]))
          throw std::invalid_argument(opt.data + ": element " + std::to_string(i) + " (row " +
                                      std::to_string(static_cast<int64_t>(i) / (in.npy.shape[1] * in.npy.shape[2] * in.npy.shape[3])) +
                                      ") is NaN or infinite; replace or mask such values before embedding");
    }
    in.describe = "preprocessed tensor (used as is)";
  } else {
    in.manifest = data::read_manifest(opt.data);
    in.rows = static_cast<int64_t>(in.manifest.samples.size());
    if (in.rows == 0) throw std::invalid_argument(opt.data + ": the manifest lists no images");
  }

  // Output options, checked before any work.
  if (opt.format != "npy" && opt.format != "h5ad")
    throw std::invalid_argument("--format " + opt.format + ": expected npy or h5ad");
  std::vector<std::string> aggregate_by;
  if (!opt.aggregate.empty()) {
    if (in.from_npy) throw std::invalid_argument("--aggregate needs a manifest's metadata; a .npy input has none");
    if (opt.shard_count > 1)
      throw std::invalid_argument("--aggregate with --shard: a well's sites may fall in different shards; embed the "
                                  "shards without it, merge them, then aggregate with `tabula eval normalize "
                                  "--method aggregate --by COLS`");
    aggregate_by = opt.aggregate == "well" ? well_columns(in.manifest.meta_columns) : split_csv_list(opt.aggregate);
    for (const auto& c : aggregate_by)
      if (std::find(in.manifest.meta_columns.begin(), in.manifest.meta_columns.end(), c) == in.manifest.meta_columns.end())
        throw std::invalid_argument("--aggregate: " + opt.data + " has no metadata column '" + c + "'");
  }

  // Preprocessing: the arch's reference eval transform, with the user's overrides.
  const bool baseline = is_baseline(opt.arch);
  data::Transform tf;
  data::ChannelStrategy strategy;
  std::unique_ptr<Model> model;
  std::string weights_desc;
  if (!baseline) {
    if (opt.weights.empty()) {
      model = build_model_seed(opt.arch, *opt.seed);
    } else {
      WeightMap wm = load_weight_map(opt.weights, opt.weights_key);  // its errors name the file already
      try {
        model = build_model(opt.arch, wm);
      } catch (const std::exception& e) {  // weights for another arch: say which file
        throw std::runtime_error(opt.weights + ": " + e.what());
      }
    }
    const ArchConfig& ac = model->arch();
    const int default_size = static_cast<int>(model->default_input_shape()[2]);
    const int crop = opt.size > 0 ? opt.size : default_size;
    if (ac.is_resnet()) {
      tf = data::transform_torchvision(static_cast<int>(std::lround(crop * 256.0 / 224.0)), crop);
    } else if (ac.vit().flavor == ViTConfig::Flavor::dinov2 || ac.name.find("dinov2") != std::string::npos) {
      tf = data::transform_dinov2(crop);
      tf.resize = static_cast<int>(std::lround(crop * 256.0 / 224.0));
    } else if (const auto cfg = timm_pretrained_cfg(ac.name)) {
      // The timm name's own pretrained_cfg (e.g. crop_pct 1.0 for *_384, CLIP mean/std, ImageNet mean for DINO).
      tf = data::transform_timm(crop, cfg->crop_pct,
                                cfg->interpolation == "bilinear" ? data::Interp::bilinear : data::Interp::bicubic,
                                {cfg->mean.begin(), cfg->mean.end()}, {cfg->std.begin(), cfg->std.end()});
    } else {
      // timm's default pretrained config for ViTs: crop_pct 0.9, bicubic, mean = std = 0.5.
      tf = data::transform_timm(crop, 0.9, data::Interp::bicubic, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});
    }
  } else {
    tf.resize = 0;
    tf.crop = 0;
    tf.do_normalize = false;  // baselines see the intensity-scaled field at full resolution
  }
  if (!opt.intensity.empty()) tf.intensity = opt.intensity;
  // Channels as decoded (an RGB file listed once in a CSV is 3 channels): read from the first sample.
  const int data_channels = in.from_npy ? static_cast<int>(in.npy.shape[1]) : data::load_sample(in.manifest, 0).channels;
  if (baseline) strategy = data::parse_channel_strategy("all");
  else if (!opt.channels.empty()) strategy = data::parse_channel_strategy(opt.channels);
  else strategy = data::parse_channel_strategy(data_channels == 3 ? "rgb" : "per-channel");
  int inputs_per_sample = strategy.mode == data::ChannelMode::per_channel ? data_channels : 1;
  if (in.from_npy) inputs_per_sample = 1;

  // The extractor and the shape of one model input.
  std::unique_ptr<Extractor> ex;
  if (baseline) {
    if (device >= 0) throw std::invalid_argument("--device " + opt.device + ": the " + opt.arch + " baseline runs on the cpu");
    ex = std::make_unique<BaselineExtractor>(opt.arch, data_channels);
  } else {
    Shape input;
    if (in.from_npy) input = {1, in.npy.shape[1], in.npy.shape[2], in.npy.shape[3]};
    else input = {1, strategy.mode == data::ChannelMode::all ? data_channels : 3, tf.crop, tf.crop};
    weights_desc = opt.weights.empty() ? "" : sha256_file(opt.weights);
    ex = std::make_unique<NetworkExtractor>(std::move(model), input, opt.layers, opt.pool, device);
  }

  // Settings that determine the numbers: they make the run key (resume refuses a different one) and run.json.
  json::Value run = json::Value::object();
  json::Value tab = json::Value::object();
  tab.set("version", json::Value::string(TABULA_VERSION));
  tab.set("git", json::Value::string(TABULA_GIT_HASH));
  run.set("tabula", tab);
  run.set("arch", json::Value::string(opt.arch));
  json::Value w = json::Value::object();
  if (baseline) {
    w.set("kind", json::Value::string("none (baseline)"));
  } else if (opt.weights.empty()) {
    w.set("kind", json::Value::string("untrained"));
    w.set("seed", json::Value::integer(static_cast<int64_t>(*opt.seed)));
    w.set("init", json::Value::string("torch.manual_seed(seed) + the reference constructor's init (torch 2.15 / torchvision 0.29 / timm 1.0.31)"));
  } else {
    w.set("kind", json::Value::string("file"));
    w.set("path", json::Value::string(fs::absolute(opt.weights).string()));
    w.set("sha256", json::Value::string(weights_desc));
    if (!opt.weights_key.empty()) w.set("key", json::Value::string(opt.weights_key));
  }
  run.set("weights", w);
  json::Value d = json::Value::object();
  d.set("path", json::Value::string(fs::absolute(opt.data).string()));
  d.set("kind", json::Value::string(in.from_npy ? "npy" : in.manifest.kind));
  d.set("sha256", json::Value::string(sha256_file(in.from_npy ? opt.data : (fs::is_directory(opt.data) ? in.manifest.source : opt.data))));
  d.set("rows", json::Value::integer(in.rows));
  run.set("data", d);
  run.set("preprocessing", json::Value::string(in.from_npy ? in.describe : tf.describe()));
  run.set("channels", json::Value::string(in.from_npy ? "as given" : strategy.to_string()));
  run.set("pool", json::Value::string(ex->pool_description()));
  run.set("precision", json::Value::string(opt.precision));
  run.set("device", json::Value::string(opt.device));
  run.set("batch", json::Value::integer(opt.batch));
  const int64_t chunk_rows = opt.chunk_rows > 0 ? opt.chunk_rows
                                                : std::max<int64_t>(1, 4 * opt.batch / std::max(1, inputs_per_sample));
  run.set("chunk_rows", json::Value::integer(chunk_rows));
  json::Value layers = json::Value::array();
  for (const auto& [name, dim] : ex->layers()) {
    json::Value l = json::Value::object();
    l.set("name", json::Value::string(name));
    l.set("dim", json::Value::integer(dim * inputs_per_sample));
    layers.as_array().push_back(l);
  }
  run.set("layers", layers);
  run.set("threads", json::Value::integer(get_num_threads()));

  // Shard: whole chunks, so the batches of every chunk are those of the unsharded run.
  const int64_t nchunks = (in.rows + chunk_rows - 1) / chunk_rows;
  RowRange shard_chunks = shard_rows(nchunks, opt.shard_index, opt.shard_count);
  RowRange rows{std::min(in.rows, shard_chunks.begin * chunk_rows), std::min(in.rows, shard_chunks.end * chunk_rows)};
  json::Value run_for_key = run;
  if (opt.shard_count > 1) {
    json::Value s = json::Value::object();
    s.set("index", json::Value::integer(opt.shard_index));
    s.set("count", json::Value::integer(opt.shard_count));
    s.set("begin", json::Value::integer(rows.begin));
    s.set("end", json::Value::integer(rows.end));
    run.set("shard", s);
  }
  // The thread count does not change a single bit (engine/threads.h), so it is not part of the key: a run resumed
  // with other threads or another number of ranks continues the same journal.
  json::Value keyed = json::Value::object();
  for (const auto& [k, v] : run.as_object())
    if (k != "threads") keyed.set(k, v);
  const std::string run_key = sha256_hex(json_str(keyed).data(), json_str(keyed).size());

  // The output folder: never overwrite a finished run or foreign files without --force. Rank 0 alone looks and
  // decides; the other ranks learn the outcome (and the pending chunks) from its broadcast.
  const std::string out = opt.out;
  const bool finished = root && fs::exists(out + "/run.json") && !fs::exists(EmbeddingStore::partial_dir(out));
  const bool complete = finished && opt.resume && !opt.force;
  if (dist && mpi::broadcast(complete ? "complete" : "open") == "complete") {
    EmbedSummary s;
    s.out = out;
    s.rows = rows.size();
    if (root && !opt.quiet) std::fprintf(stderr, "tabula embed: %s is already complete\n", out.c_str());
    return s;
  }
  if (complete) {
    EmbedSummary s;
    s.out = out;
    s.rows = rows.size();
    if (!opt.quiet) std::fprintf(stderr, "tabula embed: %s is already complete\n", out.c_str());
    // --resume --format h5ad on a finished folder adds the AnnData file from what the folder holds.
    if (opt.format == "h5ad" && !fs::exists(out + "/embedding.h5ad")) write_embedding_h5ad(out);
    return s;
  }
  if (root && fs::exists(out)) {
    if (!fs::is_directory(out)) throw std::runtime_error(out + ": exists and is not a folder");
    std::set<std::string> ours = {"run.json", "index.csv", ".partial", "embedding.h5ad"};
    for (const auto& [name, dim] : ex->layers()) ours.insert(name + ".npy");
    bool foreign = false, any = false;
    for (const auto& e : fs::directory_iterator(out)) {
      any = true;
      std::string n = e.path().filename().string();
      if (!ours.count(n) && !(n.size() > 4 && n.substr(n.size() - 4) == ".npy" && fs::exists(out + "/run.json")))
        foreign = true;
    }
    if (foreign) throw std::runtime_error(out + ": holds files that are not a tabula embedding; choose a new or empty folder");
    if (finished && !opt.force) throw std::runtime_error(out + ": holds a finished embedding; use --force to overwrite it");
    if (any && opt.force) {
      for (const auto& e : fs::directory_iterator(out)) fs::remove_all(e.path());
    } else if (any && !opt.resume && fs::exists(EmbeddingStore::partial_dir(out))) {
      throw std::runtime_error(out + ": holds an unfinished run; continue it with --resume or start over with --force");
    }
  }
  // A run that fails before it has finished a chunk leaves nothing behind: the folder is removed if this run
  // created it (or emptied of what this run wrote). Once a chunk is journalled, the folder is kept: `--resume`
  // continues from it.
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
  } remove_on_error{out, root && !fs::exists(out)};
  // Only rank 0 owns the folder; an earlier run's progress is not ours to delete.
  if (!root || fs::exists(EmbeddingStore::partial_dir(out))) remove_on_error.armed = false;
  if (root) fs::create_directories(out);
  // Rank 0 opens the run (and with --resume reads every journal); the other ranks join once it has. On --resume
  // each rank re-hashes a share of the journalled chunks (chunk k: rank k mod size) and the pending chunks are the
  // union of what the ranks found missing or damaged; a fresh run's pending chunks are all of them.
  auto my_share = [&](int64_t chunk_index) { return chunk_index % world.size == world.rank; };
  std::optional<EmbeddingStore> opened;
  if (root)
    opened.emplace(out, rows.size(), chunk_rows, run_key,
                   opt.resume ? EmbeddingStore::Mode::resume : EmbeddingStore::Mode::fresh, 0,
                   dist ? std::function<bool(int64_t)>(my_share) : nullptr);
  mpi::barrier();
  if (!root)
    opened.emplace(out, rows.size(), chunk_rows, run_key,
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

  // Work: this rank's share of the pending chunks (relative to the shard), as one stream through the prefetching
  // pipeline.
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

  const auto& layer_dims = ex->layers();
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  double forward_s = 0, write_s = 0, loop_s = 0;
  size_t chunk_i = 0;
  // The current chunk's model inputs in order (per sample, its inputs in channel order). Batches never span
  // chunks, so they are the same whatever is resumed or sharded; within a chunk, each batch runs as soon as its
  // inputs have arrived (the model starts on the first batch instead of waiting for the whole chunk to decode).
  std::vector<Image> chunk_flat;
  size_t chunk_done = 0;  // inputs of chunk_flat already through the model
  int64_t chunk_samples = 0;
  std::vector<std::vector<float>> per_layer(layer_dims.size());
  auto run_batches = [&](bool chunk_complete) {
    const size_t B = static_cast<size_t>(opt.batch);
    while (chunk_flat.size() - chunk_done >= B || (chunk_complete && chunk_done < chunk_flat.size())) {
      const size_t end = std::min(chunk_flat.size(), chunk_done + B);
      std::vector<const Image*> batch;
      for (size_t i = chunk_done; i < end; ++i) batch.push_back(&chunk_flat[i]);
      const auto tf0 = Clock::now();
      auto feats = ex->run(batch);
      forward_s += since(tf0);
      for (size_t l = 0; l < feats.size(); ++l) per_layer[l].insert(per_layer[l].end(), feats[l].begin(), feats[l].end());
      for (size_t i = chunk_done; i < end; ++i) chunk_flat[i] = Image();  // free the pixels early
      chunk_done = end;
    }
  };
  auto add_sample = [&](std::vector<Image>& inputs) {
    for (Image& im : inputs) chunk_flat.push_back(std::move(im));
    ++chunk_samples;
    const RowRange& c = pending[chunk_i];
    const bool chunk_complete = chunk_samples == c.size();
    run_batches(chunk_complete);
    if (!chunk_complete) return;
    // Per sample: its inputs' features concatenated in channel order (per-channel strategy), per layer.
    std::vector<LayerRows> rows_out;
    for (size_t l = 0; l < layer_dims.size(); ++l) {
      LayerRows lr{layer_dims[l].first, layer_dims[l].second * inputs_per_sample, std::move(per_layer[l])};
      rows_out.push_back(std::move(lr));
    }
    const auto tw0 = Clock::now();
    store.put(c, rows_out);
    write_s += since(tw0);
    remove_on_error.armed = false;  // progress worth keeping for --resume
    exit_if_test_hook(world.rank, static_cast<int64_t>(chunk_i) + 1);
    if (root) progress.advance(c.size() + mpi::poll_progress(&ranks_finished));
    else mpi::post_progress(c.size());
    chunk_flat.clear();
    chunk_done = 0;
    chunk_samples = 0;
    per_layer.assign(layer_dims.size(), {});
    ++chunk_i;
  };
  int summary_decode_threads = 0, summary_prefetch = 0;
  if (in.from_npy) {
    const auto tl0 = Clock::now();
    const int64_t per = in.npy.shape[1] * in.npy.shape[2] * in.npy.shape[3];
    const float* base = in.npy.as<float>();
    for (const RowRange& c : pending) {
      for (int64_t r = c.begin; r < c.end; ++r) {
        Image im(static_cast<int>(in.npy.shape[1]), static_cast<int>(in.npy.shape[2]), static_cast<int>(in.npy.shape[3]));
        const float* src = base + (rows.begin + r) * per;
        std::copy(src, src + per, im.pixels.begin());
        im.source = opt.data + " row " + std::to_string(rows.begin + r);
        std::vector<Image> one;
        one.push_back(std::move(im));
        add_sample(one);
      }
    }
    loop_s = since(tl0);
  } else if (!global_rows.empty()) {
    data::Manifest sub = in.manifest;
    sub.samples.clear();
    for (int64_t r : global_rows) sub.samples.push_back(in.manifest.samples[static_cast<size_t>(r)]);
    data::PipelineOptions po;
    // Decode up to two chunks ahead, so the workers keep decoding while the model runs and a slow field (or a
    // burst of them) does not starve it (bench/RESULTS_data.md). Memory: 2 chunks of model inputs (ResNet-50,
    // 5 channels, batch 16: 24 samples, ~72 MB).
    po.capacity = static_cast<int>(std::clamp<int64_t>(2 * chunk_rows, 8, 256));
    summary_decode_threads = po.threads;
    summary_prefetch = po.capacity;
    const auto tl0 = Clock::now();
    data::for_each_preprocessed(sub, tf, strategy, po, [&](size_t, std::vector<Image>& inputs) {
      if (static_cast<int>(inputs.size()) != inputs_per_sample)
        throw std::runtime_error(opt.data + ": a sample gave " + std::to_string(inputs.size()) + " model inputs, expected " +
                                 std::to_string(inputs_per_sample) + " (all images need the same channels)");
      add_sample(inputs);
    });
    loop_s = since(tl0);
  }
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
      EmbedSummary s;
      s.out = out;
      s.rows = rows.size();
      s.computed_rows = static_cast<int64_t>(global_rows.size());
      for (const auto& [name, dim] : ex->layers()) {
        s.layers.push_back(name);
        s.dims.push_back(dim * inputs_per_sample);
      }
      s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return s;
    }
  }
  std::vector<std::string> layer_names = store.finalize();

  // index.csv, then run.json last: its presence marks the folder complete.
  std::string index;
  if (in.from_npy) {
    index = "index\n";
    for (int64_t r = rows.begin; r < rows.end; ++r) index += std::to_string(r) + "\n";
  } else {
    std::vector<size_t> idx;
    for (int64_t r = rows.begin; r < rows.end; ++r) idx.push_back(static_cast<size_t>(r));
    index = data::index_csv(in.manifest, idx);
  }
  write_file_atomic(out + "/index.csv", index);
  int64_t out_rows = rows.size();
  if (!aggregate_by.empty()) {
    out_rows = aggregate_embedding(out, layer_names, aggregate_by);
    json::Value agg = json::Value::object();
    json::Value by = json::Value::array();
    for (const auto& c : aggregate_by) by.as_array().push_back(json::Value::string(c));
    agg.set("by", by);
    agg.set("method", json::Value::string("mean"));
    agg.set("rows", json::Value::integer(out_rows));
    run.set("aggregate", agg);
  }
  if (opt.format == "h5ad") write_embedding_h5ad(out, "", "", json_str(run));
  write_file_atomic(out + "/run.json", json_str(run) + "\n");
  progress.finish();
  if (dist) mpi::barrier();

  EmbedSummary s;
  s.out = out;
  s.rows = out_rows;
  s.computed_rows = static_cast<int64_t>(global_rows.size());
  for (const auto& [name, dim] : layer_dims) {
    s.layers.push_back(name);
    s.dims.push_back(dim * inputs_per_sample);
  }
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.forward_seconds = forward_s;
  s.write_seconds = write_s;
  s.wait_seconds = std::max(0.0, loop_s - forward_s - write_s);  // the rest of the loop: waiting for inputs (+ copies)
  s.decode_threads = summary_decode_threads;
  s.prefetch_samples = summary_prefetch;
  (void)run_for_key;
  return s;
}

// ---- merge ---------------------------------------------------------------------------------------------------------

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
      throw std::runtime_error(s.dir + ": comes from a different run than " + list[0].dir + " (run.json settings differ)");
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
