// What `--model NAME[:k=v]` or `--arch NAME[.tag][:k=v]` chooses, for `tabula embed` and `tabula preprocess` alike:
// the arch to build, the model card or timm pretrained tag behind it, and the eval transform defaults that follow
// (the card's, the tag's pretrained_cfg, or the arch's reference transform).
#pragma once
#include <string>
#include <utility>

#include "data/transform.h"
#include "models/cards/cards.h"
#include "models/cards/timm_tags.h"
#include "models/model.h"
#include "util/json.h"

namespace tabula {

struct ModelChoice {
  std::string arch;                        // what to build: card overrides applied, timm tag stripped
  const cards::ModelCard* card = nullptr;  // --model
  std::string card_overrides;              // the k=v after NAME:
  const cards::TimmTag* tag = nullptr;     // --arch base.tag
};
// Exactly one of model_flag / arch_flag non-empty (std::invalid_argument otherwise, naming the flags).
ModelChoice choose_model(const std::string& model_flag, const std::string& arch_flag);

// The transform defaults and their origin ("card uni", "timm pretrained_cfg resnet50.a1_in1k", "arch resnet50");
// `model` is the built (or skeleton) network; nullptr for a baseline (no resize, crop or Normalize).
std::pair<data::Transform, std::string> default_transform(const ModelChoice& choice, const Model* model);

// The card as run.json records it: name, arch, overrides, published weights and layout, embedding rule, sources.
json::Value card_json(const ModelChoice& choice);

}  // namespace tabula
