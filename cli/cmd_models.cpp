// `tabula models`: every named arch with its parameter count, GFLOPs at the default size and default taps; with
// --trained, the model cards (models/cards).
#include <cstdio>
#include <iostream>

#include "cli/args.h"
#include "data/transform.h"
#include "models/cards/cards.h"
#include "models/arch.h"
#include "models/registry.h"
#include "models/vit.h"
#include "models/registry.h"

namespace tabula::cli {

namespace {

int list_cards() {
  std::printf("%-18s %-12s %-18s %-44s %s\n", "model", "params(M)", "layout", "transform", "embedding");
  for (const cards::ModelCard& c : cards::model_cards()) {
    data::TransformSpec spec;
    spec.t = data::card_transform(c.transform);
    std::string tf = spec.t.describe();
    const size_t i = tf.find("intensity=unit ");
    if (i == 0) tf = tf.substr(15);
    std::printf("%-18s %-12.1f %-18s %-44s %s\n", c.name.c_str(), static_cast<double>(param_count(c.arch)) / 1e6,
                c.layout.c_str(), tf.c_str(), c.embedding.c_str());
    std::printf("%-18s arch %s\n%-18s weights %s\n", "", c.arch.c_str(), "", c.weights.c_str());
    std::string aliases;
    for (const auto& a : c.aliases) aliases += (aliases.empty() ? "" : ", ") + a;
    if (!aliases.empty()) std::printf("%-18s also %s\n", "", aliases.c_str());
  }
  std::printf(
      "\n`tabula embed --model NAME --weights FILE` runs the published weights, `--model NAME --seed S` the "
      "untrained twin\n(same arch, transform and embedding rule). Sources for every fact: run.json's \"card\" "
      "or models/cards/cards.cpp.\n");
  return 0;
}

}  // namespace

int cmd_models(const Args& args) {
  if (args.has("trained")) return list_cards();
  std::vector<std::string> archs = args.positional();
  if (archs.empty()) archs = model_names();
  for (const auto& a : archs) check_arch_name("models", a);  // before the header: a typo prints nothing else
  std::printf("%-32s %-19s %10s %9s  %-14s %s\n", "arch", "family", "params(M)", "GFLOPs", "input", "default taps");
  for (const auto& a : archs) {
    const ModelInfo m = model_info(a);
    std::string taps;
    for (const auto& t : m.default_taps) taps += (taps.empty() ? "" : ",") + t;
    const std::string input =
        std::to_string(m.input[1]) + "x" + std::to_string(m.input[2]) + "x" + std::to_string(m.input[3]);
    std::printf("%-32s %-19s %10.2f %9.2f  %-14s %s\n", a.c_str(), m.family.c_str(),
                static_cast<double>(m.params) / 1e6, m.gmacs, input.c_str(), taps.c_str());
  }
  std::printf(
      "\nGFLOPs: multiply-adds of one image's forward at the default input size, as torchvision's docs count "
      "them.\nAny size: resnet:layers=2,2,2,2,block=basic,... or vit:dim=64,depth=2,heads=4,patch=8,img=32,... "
      "(README: Models and untrained weights).\nModel cards (trained models by name): tabula models --trained.\n");
  return 0;
}

}  // namespace tabula::cli
