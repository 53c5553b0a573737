#include "embed/extractor.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "engine/ops.h"
#include "models/baselines.h"
#include "models/device.h"
#include "models/ca_vit.h"
#include "models/key_values.h"
#include "models/swin.h"
#include "models/vit.h"
#include "util/suggest.h"

namespace tabula {

using data::Image;

namespace {

// Attention probabilities ([B, heads, N, N], each row sums to 1 over the keys).
bool is_attention_map(const std::string& tap) {
  const std::string last = tap.substr(tap.rfind('.') + 1);
  return last == "softmax" || last == "attn_drop";
}

// Pooling that makes sense for a tap's output when the user gave none: feature maps -> avg, token sequences ->
// the CLS token when the model has one (else the patch mean), attention maps -> max (avg is the constant 1/N),
// already pooled vectors -> as they are.
Pool natural_pool(const std::string& tap, const Shape& shape, bool has_cls) {
  if (shape.size() == 4) return is_attention_map(tap) ? Pool::max : Pool::avg;
  if (shape.size() == 3) return has_cls ? Pool::cls : Pool::mean;
  return Pool::none;
}

std::string shape_text(const Shape& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

class NetworkExtractor : public Extractor {
 public:
  NetworkExtractor(std::unique_ptr<Model> model, const Shape& input, std::vector<std::string> requested,
                   const std::string& pool, int device, std::vector<std::string>* warnings)
      : model_(std::move(model)), device_(device) {
    if (device_ >= 0) model_->to_device(device_);
    const std::string arch = model_->arch().name;
    std::vector<std::string> names;
    std::map<std::string, Shape> shape_of;
    for (const TapInfo& t : model_->list_taps(input)) {
      names.push_back(t.name);
      shape_of[t.name] = t.shape;
    }
    const bool all = requested.size() == 1 && requested[0] == "all";
    if (requested.empty()) requested = model_->default_taps();
    if (all) {
      // Every stage / block output (a layer sweep), plus the model's feature output.
      static const std::regex stage(R"(^(layer\d+|blocks\.\d+)$)");
      requested.clear();
      for (const std::string& n : names)
        if (std::regex_match(n, stage)) requested.push_back(n);
      for (const std::string& d : model_->default_taps())
        if (std::find(requested.begin(), requested.end(), d) == requested.end()) requested.push_back(d);
    }
    std::optional<Pool> given;
    const bool per_channel = pool == kMeanPerChannel;
    if (per_channel && !model_->arch().as<CaViTConfig>())
      throw SettingError("--pool mean-per-channel needs a channel-agnostic model (ca_vit archs), got " + arch);
    if (!pool.empty() && !per_channel) {
      given = pool_from_name(pool);
      if (!given)
        throw SettingError("--pool: unknown pooling '" + pool + "'" +
                           did_you_mean(pool, {"avg", "cls", "mean", "cls+mean", "max", "gem", "none", kMeanPerChannel}) +
                           " (avg|cls|mean|cls+mean|max|gem|none|mean-per-channel)");
    }
    // The token models other than timm's ViT have a class token; the CA-ViT's published embedding
    // (MAEModel.predict) is the patch mean nonetheless, so its taps default to that.
    bool has_cls = false;
    if (!model_->arch().is_resnet() && !model_->arch().as<CaViTConfig>() && !model_->arch().as<SwinConfig>())
      has_cls = !model_->arch().as<ViTConfig>() || model_->arch().vit().class_token;
    for (const std::string& name : requested) {
      auto it = shape_of.find(name);
      if (it == shape_of.end())
        throw SettingError("--layers: " + arch + " has no tap '" + name + "'" + did_you_mean(name, names, "", 3) +
                           "; `tabula hooks " + arch + "` lists all " + std::to_string(names.size()));
      const Shape& shape = it->second;
      Pool p = given ? *given : natural_pool(name, shape, has_cls);
      if (per_channel) {
        // The channel-agnostic ViT's tokens come in one group per input channel (MAEModel.predict with
        // return_channelwise_embeddings): the whole tap is captured and reduced per group after the forward.
        if (shape.size() != 3)
          throw SettingError("--pool mean-per-channel needs a token tap, got '" + name + "' " + shape_text(shape));
        per_channel_.insert(name);
        p = Pool::none;
      }
      if (shape.size() == 2) {  // already one vector per image (fc_norm, head, x_norm_clstoken)
        if (p != Pool::none)
          warnings->push_back(name + " is already a vector per image " + shape_text(shape) + "; --pool " + pool +
                              " does not apply to it, kept as is");
        p = Pool::none;
      }
      if ((p == Pool::cls || p == Pool::cls_mean) && (shape.size() != 3 || !has_cls))
        throw SettingError("--pool " + pool + ": tap '" + name + "' of " + arch + " is " +
                           (shape.size() == 3 ? "a token sequence without a class token" : "not a token sequence") +
                           " (" + shape_text(shape) + "); use avg, max, gem or none" +
                           (shape.size() == 3 ? ", or mean" : ""));
      if (is_attention_map(name)) {
        if (!given)
          warnings->push_back(name + ": attention probabilities sum to 1 over the keys, so avg pooling would be the "
                                     "constant 1/N; pooled with max (each head's peak attention; --pool none keeps "
                                     "the maps)");
        else if (p == Pool::avg || p == Pool::mean)
          warnings->push_back(name + ": --pool " + pool + " of attention probabilities is the constant 1/N for "
                                     "every image (rows sum to 1); use max or none");
      }
      pools_[name] = p;
    }
    if (all) requested = without_duplicates(requested, input);
    for (const std::string& name : requested) taps_.capture(name, pools_.at(name));
    for (auto it = pools_.begin(); it != pools_.end();)
      it = std::find(requested.begin(), requested.end(), it->first) == requested.end() ? pools_.erase(it) : ++it;
    // Widths from a 1-image forward of zeros: exact, whatever the pooling does to the shape.
    Tensor probe = Tensor::zeros({1, input[1], input[2], input[3]});
    model_->forward(on_device(probe), taps_);
    groups_ = input[1];
    for (const std::string& key : taps_.capture_keys()) {
      const Tensor t = captured(key);
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
    return run_tensor(on_device(x));
  }

  std::vector<std::vector<float>> run_tensor(const Tensor& x) override {
    const int64_t B = x.size(0);
    model_->forward(x, taps_);  // captures come back to the host pooled
    std::vector<std::vector<float>> out;
    for (const auto& [key, dim] : layers_) {
      Tensor t = captured(key).contiguous();
      if (t.numel() != B * dim) throw std::runtime_error("tap " + key + " changed width between batches");
      const float* v = t.data<float>();
      out.emplace_back(v, v + B * dim);
    }
    return out;
  }

  std::string pool_description() const override {
    std::string s;
    for (const auto& [name, p] : pools_)
      s += (s.empty() ? "" : ",") + name + "=" + std::string(per_channel_.count(name) ? kMeanPerChannel : pool_name(p));
    return s;
  }

 private:
  static constexpr const char* kMeanPerChannel = "mean-per-channel";

  // A capture, reduced to the mean of each channel's token group ([B, C x D], channel-major) for the taps given
  // --pool mean-per-channel. Tokens: the prefix (CLS; none for patch_embed) then C groups of equal size.
  Tensor captured(const std::string& key) const {
    const Tensor& t = taps_.captured().at(key);
    if (!per_channel_.count(key)) return t;
    const int64_t B = t.size(0), N = t.size(1), D = t.size(2), prefix = N % groups_, per = (N - prefix) / groups_;
    const Tensor groups = t.slice(1, prefix, N).contiguous().reshape({B * groups_, per, D});
    return ops::pool(groups, Pool::mean, 0).reshape({B, groups_ * D});
  }

  Tensor on_device(const Tensor& x) const { return device_ >= 0 ? upload(x, device_) : x; }

  // The taps of `names` whose pooled features differ from every later one's, on one deterministic non-constant
  // image (equal there means the same tensor: a ResNet's layer4 average-pooled is its avgpool, the feature output,
  // which stays). Equal within 1e-4 relative (L2), so that a device whose pooling rounds differently from the
  // model's own avgpool still drops the same taps; different layers differ by far more.
  std::vector<std::string> without_duplicates(const std::vector<std::string>& names, const Shape& input) {
    TapSet probe_taps;
    for (const std::string& n : names) probe_taps.capture(n, pools_.at(n));
    Tensor probe = Tensor::empty({1, input[1], input[2], input[3]});
    float* v = probe.data<float>();
    for (int64_t i = 0; i < probe.numel(); ++i) v[i] = static_cast<float>((i * 7919) % 1009) / 1009.0f - 0.5f;
    model_->forward(on_device(probe), probe_taps);
    std::vector<Tensor> values;
    for (const std::string& n : names) values.push_back(probe_taps.captured().at(n).contiguous());
    auto same = [](const Tensor& a, const Tensor& b) {
      if (a.numel() != b.numel()) return false;
      const float *x = a.data<float>(), *y = b.data<float>();
      double diff = 0, norm = 0;
      for (int64_t i = 0; i < a.numel(); ++i) {
        diff += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
        norm += double(y[i]) * y[i];
      }
      return diff <= 1e-8 * norm;
    };
    std::vector<std::string> kept;
    for (size_t i = 0; i < names.size(); ++i) {
      bool dup = false;
      for (size_t j = i + 1; j < names.size(); ++j) dup = dup || same(values[i], values[j]);
      if (!dup) kept.push_back(names[i]);
    }
    return kept;
  }

  std::unique_ptr<Model> model_;
  int device_ = -1;
  TapSet taps_;
  std::map<std::string, Pool> pools_;
  std::set<std::string> per_channel_;
  int64_t groups_ = 1;  // channels of one model input
  std::vector<std::pair<std::string, int64_t>> layers_;
};

// key=value options after "pixels:" / "nuclei:".
std::map<std::string, std::string> baseline_options(const std::string& arch) {
  std::map<std::string, std::string> kv;
  auto colon = arch.find(':');
  if (colon == std::string::npos) return kv;
  try {
    for (auto& [k, v] : parse_key_values(arch.substr(colon + 1), /*lists=*/false)) kv[k] = v;
  } catch (const std::invalid_argument& e) {
    throw SettingError("arch " + arch + ": " + e.what());
  }
  return kv;
}

class BaselineExtractor : public Extractor {
 public:
  BaselineExtractor(const std::string& arch, int channels, const std::string& data)
      : name_(arch.substr(0, arch.find(':'))) {
    auto kv = baseline_options(arch);
    auto take = [&](const char* key, auto& field) {
      auto it = kv.find(key);
      if (it == kv.end()) return;
      field = static_cast<std::decay_t<decltype(field)>>(std::stod(it->second));
      kv.erase(it);
    };
    if (name_ == "pixels") {
      take("hist", pixels_.hist_bins);
      take("grid", pixels_.grid);
      names_ = baselines::pixel_feature_names(channels, pixels_);
    } else {
      take("dna", nuclei_.dna_channel);
      take("sigma", nuclei_.sigma);
      take("min_area", nuclei_.min_area);
      take("min_distance", nuclei_.min_distance);
      take("radius", nuclei_.graph_radius);
      int invert = 0;
      take("invert", invert);
      nuclei_.invert = invert != 0;
      // Checked here, before any image is decoded: the feature code would only find it at the first batch.
      if (channels > 0 && (nuclei_.dna_channel < 0 || nuclei_.dna_channel >= channels))
        throw SettingError("arch " + arch + ": dna channel " + std::to_string(nuclei_.dna_channel) + ", but " +
                           (data.empty() ? std::string("the data") : data) + " has " + std::to_string(channels) +
                           " channel(s) (dna= takes 0 to " + std::to_string(channels - 1) + ")");
      names_ = baselines::nuclei_feature_names();
    }
    if (!kv.empty()) {
      const std::vector<std::string> keys = name_ == "pixels"
                                                ? std::vector<std::string>{"hist", "grid"}
                                                : std::vector<std::string>{"dna", "sigma", "min_area", "min_distance",
                                                                           "radius", "invert"};
      throw SettingError("arch " + arch + ": unknown option '" + kv.begin()->first + "'" +
                         did_you_mean(kv.begin()->first, keys));
    }
    layers_.push_back({name_, static_cast<int64_t>(names_.size())});
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
  std::vector<std::string> feature_names(const std::string&) const override { return names_; }

 private:
  std::string name_;
  baselines::PixelsConfig pixels_;
  baselines::NucleiConfig nuclei_;
  std::vector<std::string> names_;
  std::vector<std::pair<std::string, int64_t>> layers_;
};

}  // namespace

std::unique_ptr<Extractor> make_network_extractor(std::unique_ptr<Model> model, const Shape& input,
                                                  std::vector<std::string> requested, const std::string& pool,
                                                  int device, std::vector<std::string>* warnings) {
  return std::make_unique<NetworkExtractor>(std::move(model), input, std::move(requested), pool, device, warnings);
}

std::unique_ptr<Extractor> make_baseline_extractor(const std::string& arch, int channels, const std::string& data) {
  return std::make_unique<BaselineExtractor>(arch, channels, data);
}

bool is_baseline(const std::string& arch) {
  std::string base = arch.substr(0, arch.find(':'));
  return base == "pixels" || base == "nuclei";
}

}  // namespace tabula
