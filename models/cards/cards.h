// Model cards: the public models the paper and its benchmarks use, as data. A card binds a name to the architecture
// (a key=value arch string, independent of the registry's internals), the weight file the authors publish and its
// layout, the eval transform the authors document, the embedding rule they use, and the source of every fact.
// `tabula embed --model NAME --weights FILE` runs the trained model; `--model NAME --seed S` its untrained twin
// (same architecture, transform and embedding rule; torch-identical random init).
#pragma once
#include <array>
#include <string>
#include <vector>

namespace tabula::cards {

// The authors' eval transform, as their code states it: Resize (shorter side, or exact HxW) -> CenterCrop ->
// ToTensor -> Normalize, by torchvision on a PIL image (resize_impl "auto": Pillow's resampling for 8-bit data) or
// by torchvision.transforms.v2 on a uint8 tensor ("uint8": torch's uint8 resampling).
struct CardTransform {
  int resize = 0;                   // shorter side; 0 = no Resize
  int resize_h = 0, resize_w = 0;   // Resize((h, w)) instead, when both > 0
  int crop = 0;                     // CenterCrop; 0 = none
  std::string interp = "bilinear";  // torchvision's Resize default is bilinear
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f}, std{0.229f, 0.224f, 0.225f};
  std::string resize_impl = "auto";
  std::string intensity = "unit";  // ToTensor's / 255 (data/transform.h lists the others)
  bool normalize = true;           // false: no Normalize(mean, std) after the intensity step
  std::string channels;            // the channel strategy ("all": every channel in one input); empty: the default
};

struct Source {
  std::string fact;  // what the source establishes ("transform", "architecture", "embedding", "weights")
  std::string url;
};

struct ModelCard {
  std::string name;                  // the authors' repo name in lowercase
  std::vector<std::string> aliases;  // hub ids (bioptimus/H-optimus-0, ...), also accepted
  std::string what;                  // one line
  std::string arch;                  // tabula arch string (key=value form)
  std::string weights;               // where the authors publish the weights (file name at the hub)
  std::string layout;  // the published file's layout: timm-vit, hf-vit, hf-dinov2, dinov2-hub, torchvision, ...
  CardTransform transform;
  std::vector<std::string> taps;  // the embedding's tap(s); empty: the model's default output
  std::string pool;               // how the tap becomes the embedding: cls, cls+mean, avg
  std::string embedding;          // the rule in words
  std::vector<Source> sources;
};

// Every card, in table order.
const std::vector<ModelCard>& model_cards();
// The card named `name` (card name or alias, case-insensitive), or nullptr.
const ModelCard* find_card(const std::string& name);

// NAME or NAME:k=v,...: the card, with its arch's keys overridden by the k=v after ':' (a narrower or shallower
// variant of the same geometry, for fixtures). Throws std::invalid_argument listing the card names when unknown.
struct CardChoice {
  const ModelCard* card = nullptr;
  std::string arch;  // the card's arch with the overrides applied
  std::string overrides;
};
CardChoice choose_card(const std::string& spec);

}  // namespace tabula::cards
