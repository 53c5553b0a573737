#include "embed/model_choice.h"

#include <stdexcept>

namespace tabula {

ModelChoice choose_model(const std::string& model_flag, const std::string& arch_flag) {
  if (model_flag.empty() == arch_flag.empty())
    throw std::invalid_argument("give --arch ARCH or --model NAME (one of them)");
  ModelChoice c;
  if (!model_flag.empty()) {
    const cards::CardChoice ch = cards::choose_card(model_flag);
    c.card = ch.card, c.arch = ch.arch, c.card_overrides = ch.overrides;
    return c;
  }
  const cards::TaggedArch t = cards::split_timm_tag(arch_flag);
  c.arch = t.arch, c.tag = t.tag;
  return c;
}

std::pair<data::Transform, std::string> default_transform(const ModelChoice& c, const Model* model) {
  if (c.card) return {data::card_transform(c.card->transform), "card " + c.card->name};
  if (c.tag) return {data::timm_tag_transform(*c.tag), std::string("timm pretrained_cfg ") + c.tag->name};
  if (!model) return {data::preset_transform("none"), "baseline " + c.arch};  // the field at full resolution
  return {data::arch_transform(model->arch(), static_cast<int>(model->default_input_shape()[2])), "arch " + c.arch};
}

json::Value card_json(const ModelChoice& ch) {
  if (!ch.card) return json::Value::null();
  const cards::ModelCard& c = *ch.card;
  json::Value o = json::Value::object();
  o.set("name", json::Value::string(c.name));
  o.set("arch", json::Value::string(c.arch));
  if (!ch.card_overrides.empty()) o.set("arch_overrides", json::Value::string(ch.card_overrides));
  o.set("weights_published", json::Value::string(c.weights));
  o.set("layout", json::Value::string(c.layout));
  o.set("embedding", json::Value::string(c.embedding));
  json::Value::Array src;
  for (const cards::Source& s : c.sources) {
    json::Value e = json::Value::object();
    e.set("fact", json::Value::string(s.fact));
    e.set("url", json::Value::string(s.url));
    src.push_back(std::move(e));
  }
  o.set("sources", json::Value::array(std::move(src)));
  return o;
}

}  // namespace tabula
