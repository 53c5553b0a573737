#include "models/layers.h"

#include <stdexcept>

#include "engine/backend.h"
#include "engine/file_pages.h"
#include "models/device.h"
#include "models/model.h"

namespace tabula {

namespace {
std::string join(const Module& m, const std::string& local) {
  const std::string p = m.name();
  return p.empty() ? local : p + "." + local;
}

// Every output element of a Linear or Conv2d is a dot product of `per_output` terms.
MacRule macs_per_output(int64_t per_output) {
  return [per_output](const Shape& out) {
    return static_cast<double>(shape_numel(out)) * static_cast<double>(per_output);
  };
}

thread_local const Layer* t_preparing = nullptr;  // the layer PrepareScope marks
}  // namespace

void Layer::release() {
  throw std::logic_error("Layer::release: this layer type keeps its tensors (only models/layers.h's layers release "
                         "theirs)");
}

void throw_no_weights(const std::string& layer) {
  throw std::logic_error("layer '" + layer + "' run without its weights: released (Model::unload) or never loaded");
}

PrepareScope::PrepareScope(const Layer& layer) : outer_(t_preparing) { t_preparing = &layer; }

PrepareScope::~PrepareScope() { t_preparing = outer_; }

void Parameter::check_not_read_by_other_prepare() const {
  if (t_preparing && t_preparing != this)
    throw std::logic_error("parameter '" + name() + "' read by another layer's prepare(): a layer may prepare only "
                           "the tensors its own load() took (models/layers.h, the Layer rule)");
}

Parameter::Parameter(ModuleTree& t, Module& owner, const std::string& local, Shape shape, CtorInit init)
    : owner_(&owner), local_(local) {
  t.param(owner, local, std::move(shape), init);
}

void Parameter::load(const ParamStore& p) { value_ = p[name()]; }

std::string Parameter::name() const { return join(*owner_, local_); }

void Parameter::prepare(int device) {
  if (device >= 0) value_ = upload(value_, device);
}

Linear::Linear(ModuleTree& t, Module& parent, const std::string& local, int64_t in, int64_t out, bool bias,
               bool pack)
    : module_(&t.child(parent, local, "Linear")), has_bias_(bias), pack_(pack) {
  t.reset_weight_bias(*module_, {out, in}, bias);
  module_->macs = macs_per_output(in);
}

void Linear::load(const ParamStore& p) {
  const std::string n = module_->name();
  weight_ = p[n + ".weight"];
  if (has_bias_) bias_ = p[n + ".bias"];
}

void Linear::prepare(int device) {
  if (device < 0) {
    if (!pack_) return;
    packed_ = PackedLinear(weight_);
    release_file_pages(weight_);  // the packed copy is the only one read from now on
    weight_ = Tensor();
    return;
  }
  weight_ = upload_linear_weight(packed_.defined() ? packed_.weight() : weight_, device);
  packed_ = PackedLinear();
  bias_ = upload_activation_param(bias_, device);
}

void Linear::release() {
  weight_ = Tensor();
  packed_ = PackedLinear();
  bias_ = Tensor();
}

Tensor Linear::operator()(const Tensor& x, Activation act) const {
  if (packed_.defined()) return ops::linear(x, packed_, bias_, act);
  if (!weight_.defined()) throw_no_weights(module_->name());
  return ops::linear(x, weight_, bias_, act);
}

Tensor Linear::operator()(const Tensor& x, const Tensor& residual) const {
  if (packed_.defined()) return ops::linear(x, packed_, bias_, Activation::none, residual);
  if (!weight_.defined()) throw_no_weights(module_->name());
  return ops::linear(x, weight_, bias_, Activation::none, residual);
}

LayerNorm::LayerNorm(ModuleTree& t, Module& parent, const std::string& local, int64_t dim, double eps)
    : module_(&t.child(parent, local, "LayerNorm")), eps_(eps) {
  Module& m = *module_;
  t.param(m, "weight", {dim}, {CtorInit::constant, 1.0});
  t.param(m, "bias", {dim});
}

void LayerNorm::load(const ParamStore& p) {
  const std::string n = module_->name();
  weight_ = p[n + ".weight"];
  bias_ = p[n + ".bias"];
}

void LayerNorm::prepare(int device) {
  if (device < 0) return;
  weight_ = upload(weight_, device);
  bias_ = upload(bias_, device);
}

void LayerNorm::release() {
  weight_ = Tensor();
  bias_ = Tensor();
}

Conv2d::Conv2d(ModuleTree& t, Module& parent, const std::string& local, int64_t in, int64_t out, int64_t kernel,
               const Conv2dOptions& opt, bool bias)
    : module_(&t.child(parent, local, "Conv2d")), has_bias_(bias), opt_(opt) {
  t.reset_weight_bias(*module_, {out, in / opt.groups, kernel, kernel}, bias);
  module_->macs = macs_per_output(in / opt.groups * kernel * kernel);
}

void Conv2d::load(const ParamStore& p) {
  const std::string n = module_->name();
  weight_ = p[n + ".weight"];
  if (has_bias_) bias_ = p[n + ".bias"];
}

void Conv2d::prepare(int device) {
  if (device < 0) return;
  weight_ = upload_conv_weight(weight_, device);
  bias_ = upload(bias_, device);
}

void Conv2d::release() {
  weight_ = Tensor();
  bias_ = Tensor();
}

}  // namespace tabula
