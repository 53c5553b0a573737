#include "models/cards/cards.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "models/key_values.h"

namespace tabula::cards {

namespace {

constexpr const char* kHest =
    "https://github.com/mahmoodlab/HEST/blob/main/src/hest/bench/cpath_model_zoo/inference_models.py";
constexpr const char* kDinov2Transforms =
    "https://github.com/facebookresearch/dinov2/blob/main/dinov2/data/transforms.py "
    "(make_classification_eval_transform)";
constexpr const char* kDinov2Hub = "https://github.com/facebookresearch/dinov2/blob/main/dinov2/hub/backbones.py";

// torchvision's Resize(256, bicubic) -> CenterCrop(224) -> ImageNet Normalize: DINOv2's eval transform.
CardTransform dinov2_eval() {
  CardTransform t;
  t.resize = 256, t.crop = 224, t.interp = "bicubic";
  return t;
}
// ToTensor -> Normalize only (HEST's get_eval_transforms with no target size): 224-pixel patches as given.
CardTransform to_tensor_normalize(std::array<float, 3> mean, std::array<float, 3> std) {
  CardTransform t;
  t.mean = mean, t.std = std;
  return t;
}
constexpr std::array<float, 3> kImageNetMean{0.485f, 0.456f, 0.406f}, kImageNetStd{0.229f, 0.224f, 0.225f};
constexpr std::array<float, 3> kHOptimusMean{0.707223f, 0.578729f, 0.703617f},
    kHOptimusStd{0.211883f, 0.230117f, 0.177517f};

ModelCard dinov2_card(const std::string& size, const std::string& what, bool reg) {
  ModelCard c;
  c.name = "dinov2-vit" + size + "14" + (reg ? "-reg" : "");
  c.aliases = {"dinov2_vit" + size + "14" + (reg ? "_reg" : "")};
  c.what = "DINOv2 ViT-" + what + "/14" + (reg ? " with 4 registers" : "") + " (Meta, LVD-142M), torch hub backbone";
  c.arch = "dinov2_vit" + size + "14" + (reg ? "_reg" : "");
  c.weights = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vit" + size + "14/dinov2_vit" + size + "14" +
              (reg ? "_reg4" : "") + "_pretrain.pth";
  c.layout = "dinov2-hub";
  c.transform = dinov2_eval();
  c.taps = {"head"};
  c.pool = "none";
  c.embedding = "CLS token after the final norm (x_norm_clstoken; the hub model's forward)";
  c.sources = {{"architecture, weights", kDinov2Hub},
               {"transform", kDinov2Transforms},
               {"embedding",
                "https://github.com/facebookresearch/dinov2/blob/main/dinov2/models/vision_transformer.py "
                "(forward: head(x_norm_clstoken), head = Identity)"}};
  return c;
}

// UNI and UNI2-h (Mahmood Lab).
void uni_cards(std::vector<ModelCard>& v) {
  ModelCard uni;
  uni.name = "uni";
  uni.aliases = {"MahmoodLab/UNI", "uni_v1"};
  uni.what = "UNI (Mahmood Lab), ViT-L/16 DINOv2-trained on Mass-100K H&E";
  uni.arch = "vit:dim=1024,depth=24,heads=16,patch=16,img=224,init_values=1e-5,classes=0,dynamic_img_size=1";
  uni.weights = "https://huggingface.co/MahmoodLab/UNI/blob/main/pytorch_model.bin";
  uni.layout = "timm-vit";
  uni.transform.resize = 224;  // transforms.Resize(224): bilinear, no crop
  uni.taps = {"head"};
  uni.pool = "none";
  uni.embedding = "model(x): the CLS token after the final norm (timm global_pool='token', num_classes=0)";
  uni.sources = {{"architecture, transform (no crop), embedding",
                  "https://github.com/mahmoodlab/UNI/blob/main/README_old.md (timm.create_model("
                  "\"vit_large_patch16_224\", img_size=224, patch_size=16, init_values=1e-5, num_classes=0, "
                  "dynamic_img_size=True); transforms.Resize(224), ToTensor, Normalize(ImageNet))"},
                 {"note: the repository's get_encoder() adds CenterCrop(224) (center_crop=True by default; the same "
                  "for square tiles); HEST builds it with init_values=1.0 and the hub's pretrained_cfg transform",
                  "https://github.com/mahmoodlab/UNI/blob/main/uni/get_encoder/get_encoder.py"},
                 {"use in HEST", kHest}};
  v.push_back(uni);

  ModelCard uni2;
  uni2.name = "uni2-h";
  uni2.aliases = {"MahmoodLab/UNI2-h", "uni_v2"};
  uni2.what = "UNI2-h (Mahmood Lab), ViT-H/14-style (1536 wide, 24 blocks, SwiGLU, 8 registers)";
  uni2.arch =
      "vit:dim=1536,depth=24,heads=24,patch=14,img=224,init_values=1e-5,mlp_ratio=5.33334,classes=0,"
      "no_embed_class=1,mlp=swiglu_packed,act=silu,reg=8,dynamic_img_size=1";
  uni2.weights = "https://huggingface.co/MahmoodLab/UNI2-h/blob/main/pytorch_model.bin";
  uni2.layout = "timm-vit";
  uni2.transform.resize = 224, uni2.transform.crop = 224;  // the README's manual transform crops, unlike UNI's
  uni2.taps = {"head"};
  uni2.pool = "none";
  uni2.embedding = "model(x): the CLS token after the final norm";
  uni2.sources = {{"architecture, transform, embedding",
                   "https://github.com/mahmoodlab/UNI/blob/main/README.md (timm_kwargs: model_name "
                   "vit_giant_patch14_224, img_size 224, patch_size 14, depth 24, num_heads 24, init_values 1e-5, "
                   "embed_dim 1536, mlp_ratio 2.66667*2, num_classes 0, no_embed_class, SwiGLUPacked, SiLU, "
                   "reg_tokens 8, dynamic_img_size; Resize(224), CenterCrop(224), ToTensor, Normalize(ImageNet))"},
                  {"same kwargs and crop (get_encoder's center_crop=True)",
                   "https://github.com/mahmoodlab/UNI/blob/main/uni/get_encoder/get_encoder.py"},
                  {"weights", "https://huggingface.co/MahmoodLab/UNI2-h"}};
  v.push_back(uni2);
}

// H-optimus-0/1 and H0-mini (Bioptimus).
void bioptimus_cards(std::vector<ModelCard>& v) {
  for (int gen : {0, 1}) {
    ModelCard h;
    h.name = "h-optimus-" + std::to_string(gen);
    h.aliases = {"bioptimus/H-optimus-" + std::to_string(gen)};
    if (gen == 0) h.aliases.push_back("hoptimus0");
    h.what =
        std::string("H-optimus-") + std::to_string(gen) + " (Bioptimus), ViT-g/14 with 4 registers, 1.1 B parameters";
    h.arch =
        "vit:dim=1536,depth=40,heads=24,patch=14,img=224,init_values=1e-5,mlp_ratio=5.33334,classes=0,"
        "no_embed_class=1,mlp=swiglu_packed,act=silu,reg=4";
    h.weights = "https://huggingface.co/bioptimus/H-optimus-" + std::to_string(gen) + "/blob/main/pytorch_model.bin";
    h.layout = "timm-vit";
    h.transform = to_tensor_normalize(kHOptimusMean, kHOptimusStd);  // no resize: 224-pixel tiles at 0.5 um/px
    h.taps = {"head"};
    h.pool = "none";
    h.embedding = "model(x): the CLS token after the final norm (timm vit_giant_patch14_reg4_dinov2, num_classes=0)";
    h.sources = {{"architecture, transform, embedding",
                  "https://huggingface.co/bioptimus/H-optimus-" + std::to_string(gen) +
                      " (timm.create_model(\"hf-hub:bioptimus/H-optimus-" + std::to_string(gen) +
                      "\", init_values=1e-5, dynamic_img_size=False); ToTensor, Normalize(mean=(0.707223, 0.578729, "
                      "0.703617), std=(0.211883, 0.230117, 0.177517)))"},
                 {"timm arch (SwiGLUPacked, SiLU, reg4, no_embed_class)",
                  "https://github.com/huggingface/pytorch-image-models/blob/main/timm/models/vision_transformer.py "
                  "(vit_giant_patch14_reg4_dinov2)"}};
    if (gen == 0) h.sources.push_back({"use in HEST", kHest});
    v.push_back(h);
  }

  // H0-mini: a ViT-B/14 with 4 registers distilled from H-optimus-1, loaded by timm from the hub.
  ModelCard h0;
  h0.name = "h0-mini";
  h0.aliases = {"bioptimus/H0-mini"};
  h0.what = "H0-mini (Bioptimus), ViT-B/14 with 4 registers and SwiGLU, distilled from H-optimus-1";
  h0.arch =
      "vit:dim=768,depth=12,heads=12,patch=14,img=224,init_values=1e-5,reg=4,no_embed_class=1,classes=0,"
      "global_pool=,mlp=swiglu_packed,act=silu";
  h0.weights = "https://huggingface.co/bioptimus/H0-mini (timm hf-hub checkpoint)";
  h0.layout = "timm-vit";
  h0.transform.resize = 224, h0.transform.crop = 224, h0.transform.interp = "bicubic";
  h0.transform.mean = kHOptimusMean, h0.transform.std = kHOptimusStd;
  h0.taps = {"norm"};
  h0.pool = "cls+mean";
  h0.embedding = "CLS token concatenated with the mean of the patch tokens (output[:, num_prefix_tokens:]), 1536 wide";
  h0.sources = {
      {"embedding (output_type cls+patch_mean, embedding_dim 1536), patch 14, 224-pixel tiles at 0.5 um/px, "
       "mean/std (0.707, 0.579, 0.704) / (0.212, 0.230, 0.178) as rounded there",
       "https://docs.bioptimus.com/sdk-reference/models/types (ModelSpec example for h0-mini)"},
      {"timm.create_model(\"hf-hub:bioptimus/H0-mini\", mlp_layer=SwiGLUPacked, act_layer=SiLU), model(x) a token "
       "sequence with 5 prefix tokens (patch tokens output[:, 5:]), create_transform(resolve_data_config("
       "model.pretrained_cfg)); HEST itself keeps the CLS token only (return_cls=True)",
       kHest},
      {"NOT VERIFIED from a public source here (the hub's config.json could not be read): vit_base_patch14_reg4_dinov2 "
       "(768 wide, 12 blocks, init_values 1e-5) with global_pool '', and a pretrained_cfg of 224 px, crop_pct 1.0, "
       "bicubic and the unrounded H-optimus mean/std",
       "https://huggingface.co/bioptimus/H0-mini/blob/main/config.json"}};
  v.push_back(h0);
}

// Virchow/Virchow2 (Paige) and Prov-GigaPath.
void paige_gigapath_cards(std::vector<ModelCard>& v) {
  for (int gen : {1, 2}) {
    ModelCard c;
    c.name = gen == 1 ? "virchow" : "virchow2";
    c.aliases = {gen == 1 ? "paige-ai/Virchow" : "paige-ai/Virchow2"};
    c.what = std::string(gen == 1 ? "Virchow" : "Virchow2") + " (Paige), ViT-H/14 with SwiGLU" +
             (gen == 2 ? " and 4 registers" : "");
    c.arch =
        "vit:dim=1280,depth=32,heads=16,patch=14,img=224,init_values=1e-5,mlp_ratio=5.3375,classes=0,"
        "global_pool=,mlp=swiglu_packed,act=silu,dynamic_img_size=1" +
        std::string(gen == 2 ? ",reg=4" : "");
    c.weights = std::string("https://huggingface.co/paige-ai/") + (gen == 1 ? "Virchow" : "Virchow2") +
                "/blob/main/pytorch_model.bin";
    c.layout = "timm-vit";
    c.transform.resize = 224, c.transform.crop = 224, c.transform.interp = "bicubic";  // pretrained_cfg: crop_pct 1.0
    c.taps = {"norm"};
    c.pool = "cls+mean";
    c.embedding = std::string("CLS token concatenated with the mean of the patch tokens (output[:, ") +
                  (gen == 1 ? "1" : "5") + ":]) of model(x), global_pool=''";
    c.sources = {{"architecture, transform, embedding",
                  std::string("https://huggingface.co/paige-ai/") + (gen == 1 ? "Virchow" : "Virchow2") +
                      " (mlp_layer=SwiGLUPacked, act_layer=SiLU; resolve_data_config: Resize(224, bicubic), "
                      "CenterCrop(224), Normalize(ImageNet); torch.cat([class_token, patch_tokens.mean(1)]))"},
                 {"use in HEST (create_transform(resolve_data_config(model.pretrained_cfg)), SwiGLUPacked, SiLU; "
                  "CLS + patch mean from output[:, 1:] / output[:, 5:])",
                  kHest},
                 {"NOT VERIFIED from a public source here: the hub config.json's pretrained_cfg (crop_pct 1.0, "
                  "bicubic, ImageNet mean/std, as remembered), which resolve_data_config turns into the transform "
                  "above",
                  std::string("https://huggingface.co/paige-ai/") + (gen == 1 ? "Virchow" : "Virchow2") +
                      "/blob/main/config.json"}};
    v.push_back(c);
  }

  ModelCard giga;
  giga.name = "prov-gigapath";
  giga.aliases = {"prov-gigapath/prov-gigapath", "gigapath"};
  giga.what = "Prov-GigaPath tile encoder (Microsoft / Providence), ViT-g/16 with SwiGLU";
  giga.arch =
      "vit:dim=1536,depth=40,heads=24,patch=16,img=224,init_values=1e-5,mlp_ratio=5.33334,classes=0,"
      "mlp=swiglu_packed,act=silu";
  giga.weights = "https://huggingface.co/prov-gigapath/prov-gigapath/blob/main/pytorch_model.bin";
  giga.layout = "timm-vit";
  giga.transform.resize = 256, giga.transform.crop = 224, giga.transform.interp = "bicubic";
  giga.taps = {"head"};
  giga.pool = "none";
  giga.embedding = "model(x): the CLS token after the final norm";
  giga.sources = {{"architecture",
                   "https://huggingface.co/prov-gigapath/prov-gigapath (config.json: "
                   "vit_giant_patch14_dinov2 with img_size 224, patch_size 16, init_values 1e-5, "
                   "mlp_ratio 5.33334, num_classes 0)"},
                  {"transform, embedding", kHest},
                  {"transform",
                   "https://github.com/prov-gigapath/prov-gigapath (Resize(256, BICUBIC), CenterCrop(224),"
                   " ToTensor, Normalize(ImageNet))"}};
  v.push_back(giga);
}

// Phikon/Phikon-v2 (Owkin) and Hibou (HistAI).
void owkin_histai_cards(std::vector<ModelCard>& v) {
  ModelCard phikon;
  phikon.name = "phikon";
  phikon.aliases = {"owkin/phikon"};
  phikon.what = "Phikon (Owkin), ViT-B/16 iBOT-trained on TCGA, Hugging Face ViTModel";
  phikon.arch = "vit:dim=768,depth=12,heads=12,patch=16,img=224,classes=0,norm_eps=1e-12,hf_init=vit";
  phikon.weights = "https://huggingface.co/owkin/phikon/blob/main/model.safetensors";
  phikon.layout = "hf-vit";
  phikon.transform = to_tensor_normalize(kImageNetMean, kImageNetStd);
  phikon.taps = {"head"};
  phikon.pool = "none";
  phikon.embedding = "last_hidden_state[:, 0]: the CLS token after the final layernorm (ViTModel, no pooler)";
  phikon.sources = {{"class, transform, embedding (ViTModel.from_pretrained(\"owkin/phikon\", "
                     "add_pooling_layer=False); ToTensor, Normalize(ImageNet); last_hidden_state[:, 0])",
                     kHest},
                    {"NOT VERIFIED from a public source here: config.json's hidden 768, 12 layers, 12 heads, patch 16, "
                     "layer_norm_eps 1e-12, initializer_range 0.02 (ViTConfig's defaults, as remembered)",
                     "https://huggingface.co/owkin/phikon/blob/main/config.json"},
                    {"untrained twin: ViTModel's _init_weights (weights_tools/reference/hf_init_fixtures.py)",
                     "https://github.com/huggingface/transformers/blob/main/src/transformers/models/vit/"
                     "modeling_vit.py"}};
  v.push_back(phikon);

  ModelCard phikon2;
  phikon2.name = "phikon-v2";
  phikon2.aliases = {"owkin/phikon-v2", "phikon_v2"};
  phikon2.what = "Phikon-v2 (Owkin), ViT-L/16 DINOv2-trained on PANCAN-XL, Hugging Face Dinov2Model";
  phikon2.arch = "vit:flavor=dinov2,dim=1024,depth=24,heads=16,patch=16,img=224,init_values=1e-5,hf_init=dinov2";
  phikon2.weights = "https://huggingface.co/owkin/phikon-v2/blob/main/model.safetensors";
  phikon2.layout = "hf-dinov2";
  phikon2.transform = to_tensor_normalize(kImageNetMean, kImageNetStd);
  phikon2.taps = {"x_norm_clstoken"};
  phikon2.pool = "none";
  phikon2.embedding = "last_hidden_state[:, 0]: the CLS token after the final layernorm";
  phikon2.sources = {{"class, transform, embedding (AutoModel.from_pretrained(\"owkin/phikon-v2\"); ToTensor, "
                      "Normalize(ImageNet); last_hidden_state[:, 0])",
                      kHest},
                     {"NOT VERIFIED from a public source here: config.json's Dinov2Model with hidden 1024, 24 layers, "
                      "16 heads, patch 16, image 224, layerscale 1e-5 (as remembered)",
                      "https://huggingface.co/owkin/phikon-v2/blob/main/config.json"},
                     {"untrained twin: Dinov2Model's _init_weights (weights_tools/reference/hf_init_fixtures.py)",
                      "https://github.com/huggingface/transformers/blob/main/src/transformers/models/dinov2/"
                      "modeling_dinov2.py"}};
  v.push_back(phikon2);

  // Hibou (HistAI): DINOv2's DinoVisionTransformer as HistAI's build_model() sets it up (SwiGLUFFNFused, LayerScale
  // 1e-5, 4 registers, pos-embed resampled by size with antialias), the hub model's forward = CLS after the norm.
  constexpr const char* kHibouBuild = "https://github.com/HistAI/hibou/blob/main/hibou/models/__init__.py";
  constexpr const char* kHibouExample = "https://github.com/HistAI/hibou/blob/main/example.ipynb";
  for (auto [tag, size, dim, depth, heads] : {std::tuple{"b", "B", 768, 12, 12}, {"l", "L", 1024, 24, 16}}) {
    const std::string t = tag;
    ModelCard hb;
    hb.name = "hibou-" + t;
    hb.aliases = {std::string("histai/hibou-") + (t == "b" ? "b" : "L")};
    hb.what = std::string("Hibou-") + size + " (HistAI), ViT-" + size +
              "/14 with 4 registers and SwiGLU, DINOv2-trained on private H&E/IHC slides";
    hb.arch = "vit:flavor=dinov2,dim=" + std::to_string(dim) + ",depth=" + std::to_string(depth) +
              ",heads=" + std::to_string(heads) +
              ",patch=14,img=224,init_values=1e-5,mlp=swiglufused,reg=4,interpolate_antialias=1,interpolate_offset=0";
    hb.weights = t == "b" ? "https://huggingface.co/histai/hibou-b/blob/main/model.safetensors, or hibou-b.pth "
                            "(the Google Drive link in github.com/HistAI/hibou's README; DinoVisionTransformer keys)"
                          : "https://huggingface.co/histai/hibou-L/blob/main/model.safetensors";
    hb.layout = "dinov2-hub|hf-dinov2";
    hb.transform.resize_h = hb.transform.resize_w = 224, hb.transform.crop = 224, hb.transform.interp = "bicubic";
    hb.transform.mean = {0.7068f, 0.5755f, 0.7220f}, hb.transform.std = {0.1950f, 0.2316f, 0.1816f};
    hb.taps = {"head"};
    hb.pool = "none";
    hb.embedding =
        "model(x) = head(x_norm_clstoken): the CLS token after the final norm (the HF model's "
        "pooler_output, which example.ipynb compares with it)";
    hb.sources = {{"architecture (build_model: patch 14, img 224, layerscale 1e-5, swiglufused, 4 registers, "
                   "interpolate_offset 0, interpolate_antialias True; vit_base / vit_large)",
                   kHibouBuild},
                  {"transform (Resize((224, 224), BICUBIC), CenterCrop(224), Normalize(mean=[0.7068, 0.5755, 0.7220], "
                   "std=[0.1950, 0.2316, 0.1816])), embedding",
                   kHibouExample}};
    if (t == "b")
      hb.sources.push_back({"85.7 M parameters, as the hub lists (a plain-MLP ViT-B/14 would be 86.6 M)",
                            "https://huggingface.co/collections/histai/hibou-foundation-models"});
    if (t == "l") {
      hb.sources.push_back(
          {"4 registers (patch tokens last_hidden_state[:, 5:]), CLS = last_hidden_state[:, 0]; "
           "HEST uses the hub's AutoImageProcessor as the transform",
           kHest});
      hb.sources.push_back(
          {"NOT VERIFIED from a public source here: that Hibou-L otherwise uses build_model's "
           "settings with vit_large (SwiGLU, LayerScale 1e-5) and example.ipynb's transform (the "
           "repository's code ships Hibou-B; the hub's config.json, preprocessor_config.json and "
           "custom modeling_dinov2.py could not be read)",
           "https://huggingface.co/histai/hibou-L"});
    }
    hb.sources.push_back(
        {"NOT VERIFIED from a public source here: the key names of the hub's model.safetensors "
         "(HistAI's customised transformers Dinov2 with registers); read as hf-dinov2",
         "https://huggingface.co/histai/hibou-" + std::string(t == "b" ? "b" : "L")});
    v.push_back(hb);
  }
}

// kaiko.ai.
void kaiko_cards(std::vector<ModelCard>& v) {
  // kaiko.ai's torch hub backbones: timm ViTs (dynamic_img_size=True, num_classes=0), torchvision.transforms.v2 on a
  // uint8 tensor (ToImage, Resize(224), CenterCrop(224), ToDtype(scale=True), Normalize(0.5)).
  constexpr const char* kKaikoHub = "https://github.com/kaiko-ai/towards_large_pathology_fms/blob/main/hubconf.py";
  constexpr const char* kKaikoReadme = "https://github.com/kaiko-ai/towards_large_pathology_fms/blob/main/README.md";
  for (auto [tag, size, patch, dim, depth, heads] : {std::tuple{"vits16", "S", 16, 384, 12, 6},
                                                     {"vits8", "S", 8, 384, 12, 6},
                                                     {"vitb16", "B", 16, 768, 12, 12},
                                                     {"vitb8", "B", 8, 768, 12, 12}}) {
    ModelCard k;
    k.name = std::string("kaiko-") + tag;
    k.aliases = {std::string("kaiko-ai/towards_large_pathology_fms:") + tag};
    if (std::string(tag) == "vitb8") k.aliases.push_back("kaiko_base_8");
    k.what = std::string("kaiko.ai ViT-") + size + "/" + std::to_string(patch) + " pathology backbone (DINO on TCGA)";
    k.arch = "vit:dim=" + std::to_string(dim) + ",depth=" + std::to_string(depth) + ",heads=" + std::to_string(heads) +
             ",patch=" + std::to_string(patch) + ",img=224,classes=0,dynamic_img_size=1";
    k.weights =
        std::string("https://github.com/kaiko-ai/towards_large_pathology_fms/releases/download/0.0.1/") + tag + ".pth";
    k.layout = "timm-vit";
    k.transform.resize = 224, k.transform.crop = 224, k.transform.interp = "bilinear";
    k.transform.mean = {0.5f, 0.5f, 0.5f}, k.transform.std = {0.5f, 0.5f, 0.5f};
    k.transform.resize_impl = "uint8";
    k.taps = {"head"};
    k.pool = "none";
    k.embedding = "model(x): the CLS token after the final norm";
    k.sources = {{"architecture, weights", kKaikoHub}, {"transform, embedding", kKaikoReadme}};
    if (std::string(tag) == "vitb8") k.sources.push_back({"use in HEST", kHest});
    v.push_back(k);
  }
  // vitl14: timm's vit_large_patch14_reg4_dinov2 (518-pixel pos-embed, 4 registers, LayerScale) fed the DINOv2 hub
  // checkpoint through timm's _convert_dinov2. The hub entry alone builds it with a fixed 518 input, which rejects
  // the README's 224 crops; kaiko's eva builds it with dynamic_img_size=True, as this card does.
  ModelCard kl;
  kl.name = "kaiko-vitl14";
  kl.aliases = {"kaiko-ai/towards_large_pathology_fms:vitl14", "kaiko_vitl14"};
  kl.what = "kaiko.ai ViT-L/14 pathology backbone with 4 registers (DINOv2 on TCGA)";
  kl.arch =
      "vit:dim=1024,depth=24,heads=16,patch=14,img=518,init_values=1e-5,reg=4,no_embed_class=1,classes=0,"
      "dynamic_img_size=1";
  kl.weights = "https://github.com/kaiko-ai/towards_large_pathology_fms/releases/download/0.0.1/vitl14.pth";
  kl.layout = "dinov2-hub";  // the DINOv2 hub's names (register_tokens, pos_embed with the CLS row, mask_token)
  kl.transform = v.back().transform;
  kl.taps = {"head"};
  kl.pool = "none";
  kl.embedding = "model(x): the CLS token after the final norm (global_pool='token', num_classes=0)";
  kl.sources = {{"architecture (timm.create_model(\"vit_large_patch14_reg4_dinov2\"); state dict through "
                 "vision_transformer._convert_dinov2), weights",
                 kKaikoHub},
                {"dynamic_img_size=True (eva's pathology/kaiko_vitl14)",
                 "https://github.com/kaiko-ai/eva/blob/main/src/eva/vision/models/networks/backbones/pathology/"
                 "kaiko.py"},
                {"timm arch (patch 14, 1024 wide, 24 blocks, init_values 1e-5, reg_tokens 4, no_embed_class; "
                 "pretrained_cfg img_size 518, num_classes 0)",
                 "https://github.com/huggingface/pytorch-image-models/blob/main/timm/models/vision_transformer.py "
                 "(vit_large_patch14_reg4_dinov2)"},
                {"transform, embedding", kKaikoReadme}};
  v.push_back(kl);
}

// DINOv3 (Meta) and OpenPhenom (Recursion).
void dinov3_openphenom_cards(std::vector<ModelCard>& v) {
  // DINOv3 (Meta, LVD-1689M): the torch hub backbones and their transformers ports. The eval transform of their
  // k-NN and linear evaluations is make_classification_eval_transform: torchvision.transforms.v2 on the uint8 image
  // (ToImage, Resize(256, bicubic), CenterCrop(224), ToDtype(scale=True), Normalize(ImageNet)); their k-NN
  // evaluation classifies the backbone's output, the CLS token after the final norm.
  constexpr const char* kDinov3Hub = "https://github.com/facebookresearch/dinov3/blob/main/dinov3/hub/backbones.py";
  constexpr const char* kDinov3Transforms =
      "https://github.com/facebookresearch/dinov3/blob/main/dinov3/data/transforms.py "
      "(make_classification_eval_transform: v2.ToImage, v2.Resize(256, BICUBIC), v2.CenterCrop(224), "
      "v2.ToDtype(float32, scale=True), v2.Normalize(ImageNet))";
  constexpr const char* kDinov3Knn =
      "https://github.com/facebookresearch/dinov3/blob/main/dinov3/eval/knn.py (features = model(x): the "
      "backbone's forward, head(x_norm_clstoken) with head = Identity)";
  for (auto [tag, what, hash] : {std::tuple{"vits16", "ViT-S/16 (21 M)", "08c60483"},
                                 {"vits16plus", "ViT-S+/16 (29 M, SwiGLU)", "4057cbaa"},
                                 {"vitb16", "ViT-B/16 (86 M)", "73cec8be"},
                                 {"vitl16", "ViT-L/16 (300 M)", "8aa4cbdd"},
                                 {"vith16plus", "ViT-H+/16 (840 M, SwiGLU)", "7c1da9a5"}}) {
    ModelCard d;
    const std::string t = tag;
    d.name = "dinov3-" + t;
    d.aliases = {"facebook/dinov3-" + t + "-pretrain-lvd1689m", "dinov3_" + t};
    d.what = std::string("DINOv3 ") + what + " with 4 registers and RoPE (Meta, LVD-1689M), torch hub backbone";
    d.arch = "dinov3_" + t;
    d.weights = "https://dl.fbaipublicfiles.com/dinov3/dinov3_" + t + "/dinov3_" + t + "_pretrain_lvd1689m-" + hash +
                ".pth (hub; by request form), or https://huggingface.co/facebook/dinov3-" + t +
                "-pretrain-lvd1689m/blob/main/model.safetensors (transformers DINOv3ViTModel)";
    d.layout = "dinov3-hub|hf-dinov3";
    d.transform.resize = 256, d.transform.crop = 224, d.transform.interp = "bicubic";
    d.transform.resize_impl = "uint8";
    d.taps = {"x_norm_clstoken"};
    d.pool = "none";
    d.embedding = "the CLS token after the final norm (x_norm_clstoken; the hub model's forward)";
    d.sources = {{"architecture, weights", kDinov3Hub},
                 {"transform", kDinov3Transforms},
                 {"embedding", kDinov3Knn},
                 {"hub id, transformers layout", "https://huggingface.co/facebook/dinov3-" + t + "-pretrain-lvd1689m"}};
    v.push_back(d);
  }

  // OpenPhenom-S/16 (Recursion): the channel-agnostic MAE whose encoder is the only public trained model of the
  // RxRx3-core benchmark. MAEModel.predict: input_norm (/ 255, then per-image, per-channel self-standardisation),
  // the encoder on all channels at once, and the mean of the patch tokens of the last block (norm is Identity).
  ModelCard ph;
  ph.name = "openphenom";
  ph.aliases = {"recursionpharma/OpenPhenom", "phenom-ca-mae-s16", "openphenom-s16"};
  ph.what = "OpenPhenom-S/16 (Recursion), channel-agnostic MAE ViT-S/16 on RxRx3 and JUMP-CP, any channel count";
  ph.arch = "ca_vit_small_patch16_256";
  ph.weights = "https://huggingface.co/recursionpharma/OpenPhenom/blob/main/model.safetensors";
  ph.layout = "recursion-mae";  // MAEModel's state dict: encoder.vit_backbone.* (decoder keys ignored)
  ph.transform.crop = 256;      // 256-pixel crops as the model was trained on; no resize
  ph.transform.intensity = "self-standardize";
  ph.transform.normalize = false;
  ph.transform.channels = "all";
  ph.taps = {"norm"};
  ph.pool = "mean";
  ph.embedding = "MAEModel.predict: mean of the patch tokens (CLS excluded) of the last block's output";
  ph.sources = {{"architecture (vit_small_patch16_256, ParallelScalingBlock, qk_norm, sin-cos pos, ChannelAgnostic"
                 "PatchEmbed)",
                 "https://github.com/recursionpharma/maes_microscopy/blob/main/vit.py"},
                {"transform (input_norm: / 255, SelfStandardize), embedding (predict: patch-token mean)",
                 "https://github.com/recursionpharma/maes_microscopy/blob/main/huggingface_mae.py"},
                {"weights, usage (model.predict on uint8 crops of shape N x C x 256 x 256)",
                 "https://huggingface.co/recursionpharma/OpenPhenom"}};
  v.push_back(ph);
}

// HEST's ResNet-50, CONCH and CTransPath.
void hest_baseline_cards(std::vector<ModelCard>& v) {
  ModelCard r50;
  r50.name = "resnet50-hest";
  r50.aliases = {"resnet50_trunc", "resnet50.tv_in1k"};
  r50.what = "ImageNet ResNet-50 (torchvision IMAGENET1K_V1) truncated after layer3, HEST's baseline encoder";
  // HEST builds it with timm (features_only, num_classes=0): timm's ResNet init is torchvision's with
  // zero_init_residual (timm's zero_init_last) and no fc draws (classes=0) -- the untrained twin follows it.
  r50.arch = "resnet:layers=3,4,6,3,block=bottleneck,zero_init_residual=1,classes=0";
  r50.weights = "https://download.pytorch.org/models/resnet50-0676ba61.pth";
  r50.layout = "torchvision-resnet";
  r50.transform = to_tensor_normalize(kImageNetMean, kImageNetStd);
  r50.taps = {"layer3"};
  r50.pool = "avg";
  r50.embedding = "layer3 output, AdaptiveAvgPool2d(1) (timm features_only, out_indices=[3]); layer4 never runs";
  r50.sources = {{"architecture (timm.create_model(\"resnet50.tv_in1k\", features_only=True, out_indices=[3], "
                  "num_classes=0)), transform (get_eval_transforms: ToTensor, Normalize(ImageNet)), embedding "
                  "(AdaptiveAvgPool2d(1) of the layer3 map)",
                  kHest},
                 {"weights", "https://huggingface.co/timm/resnet50.tv_in1k (torchvision's IMAGENET1K_V1 weights)"},
                 {"init (zero_init_last=True; fc Identity for num_classes=0)",
                  "https://github.com/huggingface/pytorch-image-models/blob/main/timm/models/resnet.py "
                  "(ResNet.__init__, init_weights)"}};
  v.push_back(r50);

  // CONCH v1 (Mahmood Lab): the vision tower of their CoCa. create_model_from_pretrained('conch_ViT-B-16',
  // 'hf_hub:MahmoodLab/conch') returns the model and its preprocess, image_transform(448, OpenAI CLIP mean/std);
  // the README's feature extraction (and HEST's) is encode_image(image, proj_contrast=False, normalize=False).
  constexpr const char* kConch = "https://github.com/mahmoodlab/CONCH/blob/main/conch/open_clip_custom/";
  ModelCard conch;
  conch.name = "conch";
  conch.aliases = {"MahmoodLab/CONCH", "conch_v1", "conch_ViT-B-16"};  // matched case-insensitively
  conch.what = "CONCH v1 (Mahmood Lab), CoCa vision tower: ViT-B/16 at 448 + attentional pooler, on H&E image-caption "
               "pairs";
  conch.arch = "conch_vit_b16";
  conch.weights = "https://huggingface.co/MahmoodLab/CONCH/blob/main/pytorch_model.bin (gated; whole CoCa)";
  conch.layout = "conch-coca";  // visual.* of the CoCa state dict; text.*, text_decoder.*, logit_scale ignored
  conch.transform.resize = 448, conch.transform.crop = 448, conch.transform.interp = "bicubic";
  conch.transform.mean = {0.48145466f, 0.4578275f, 0.40821073f};
  conch.transform.std = {0.26862954f, 0.26130258f, 0.27577711f};
  conch.taps = {"visual.ln_contrast"};
  conch.pool = "none";
  conch.embedding = "encode_image(proj_contrast=False, normalize=False): ln_contrast of the attentional pooler's "
                    "query output (512-d), before the contrastive projection";
  conch.sources = {
      {"architecture (conch_ViT-B-16: timm VisionTransformer trunk, AttentionalPooler x2, ln_contrast, proj_contrast)",
       std::string(kConch) + "coca_model.py, vision_tower.py, transformer.py, model_configs/conch_ViT-B-16.json"},
      {"transform (image_transform: Resize(448, BICUBIC), CenterCrop(448), ToTensor, Normalize(OPENAI_DATASET_MEAN, "
       "OPENAI_DATASET_STD))",
       std::string(kConch) + "factory.py, transform.py, constants.py"},
      {"embedding (README: encode_image(image, proj_contrast=False, normalize=False) for linear probes and MIL)",
       "https://github.com/mahmoodlab/CONCH/blob/main/README.md"},
      {"use in HEST (ConchInferenceEncoder: the same preprocess and encode_image call)", kHest},
      {"weights", "https://huggingface.co/MahmoodLab/CONCH"}};
  v.push_back(conch);
  // CTransPath (Wang et al. 2022): Swin-T whose patch embedding is a ConvStem (two 3x3/2 conv + BN + ReLU, a 1x1
  // conv), as HEST builds it on timm 0.5.4 (timm_ctp) with the head replaced by nn.Identity: the embedding is
  // forward_features' average of the final-norm tokens. ctranspath.pth holds {'model': state_dict} in timm 0.5's
  // names (downsample at the end of a stage, relative_position_index and attn_mask buffers): models/swin.cpp maps
  // them; HEST drops attn_mask and loads with strict=False.
  ModelCard ctp;
  ctp.name = "ctranspath";
  ctp.aliases = {"TransPath", "ctranspath-swin-t"};
  ctp.what = "CTransPath (Wang et al.), Swin-T with a convolutional stem, SRCL-trained on TCGA + PAIP H&E";
  ctp.arch = "ctranspath";
  ctp.weights = "https://drive.google.com/file/d/1DoDx_70_TLj98gTf6YTXnu4tFhsFocDX/view (ctranspath.pth)";
  ctp.layout = "swin-timm0.5";
  ctp.transform = to_tensor_normalize(kImageNetMean, kImageNetStd);  // HEST: no resize, 224-pixel patches
  ctp.taps = {"head"};
  ctp.pool = "none";
  ctp.embedding = "model(x) with head = Identity: mean over positions of the final LayerNorm's output (768-d)";
  ctp.sources = {
      {"architecture (ConvStem, swin_tiny_patch4_window7_224 with embed_layer=ConvStem)",
       "https://github.com/mahmoodlab/HEST/blob/main/src/hest/bench/cpath_model_zoo/ctranspath/ctran.py"},
      {"weights loading (torch.load(path)['model'], attn_mask dropped, strict=False), head = Identity, transform "
       "(get_eval_transforms(imagenet mean, std): ToTensor, Normalize)",
       kHest},
      {"transform", "https://github.com/mahmoodlab/HEST/blob/main/src/hest/bench/cpath_model_zoo/utils/"
                    "transform_utils.py (get_eval_transforms), utils/constants.py (IMAGENET_MEAN, IMAGENET_STD)"},
      {"embedding (timm 0.5.4 SwinTransformer.forward_features: norm, avgpool over tokens, flatten)",
       "https://github.com/huggingface/pytorch-image-models/blob/v0.5.4/timm/models/swin_transformer.py"},
      {"checkpoint layout (head = Identity, then load_state_dict(td['model'], strict=True): no head keys, the "
       "0.5 buffers present); its own transform adds Resize(224), a no-op on HEST's 224-pixel patches",
       "https://github.com/Xiyue-Wang/TransPath/blob/main/get_features_CTransPath.py"},
      {"original ConvStem", "https://github.com/Xiyue-Wang/TransPath/blob/main/ctran.py"}};
  v.push_back(ctp);
}

std::vector<ModelCard> build() {
  std::vector<ModelCard> v;
  for (auto [s, w] : {std::pair{"s", "S"}, {"b", "B"}, {"l", "L"}, {"g", "g"}})
    for (bool reg : {false, true}) v.push_back(dinov2_card(s, w, reg));
  for (auto add : {uni_cards, bioptimus_cards, paige_gigapath_cards, owkin_histai_cards, kaiko_cards,
                   dinov3_openphenom_cards, hest_baseline_cards})
    add(v);
  return v;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

}  // namespace

const std::vector<ModelCard>& model_cards() {
  static const std::vector<ModelCard> cards = build();
  return cards;
}

const ModelCard* find_card(const std::string& name) {
  const std::string n = lower(name);
  for (const ModelCard& c : model_cards()) {
    if (lower(c.name) == n) return &c;
    for (const std::string& a : c.aliases)
      if (lower(a) == n) return &c;
  }
  return nullptr;
}

CardChoice choose_card(const std::string& spec) {
  // Hub ids contain '/', never ':'; NAME:k=v splits at the first ':'.
  const size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  CardChoice ch;
  ch.card = find_card(name);
  if (!ch.card) {
    std::string names;
    for (const ModelCard& c : model_cards()) names += (names.empty() ? "" : ", ") + c.name;
    throw std::invalid_argument("--model " + name +
                                ": no such model card (tabula models --trained lists them: " + names + ")");
  }
  ch.arch = ch.card->arch;
  if (colon == std::string::npos) return ch;
  ch.overrides = spec.substr(colon + 1);
  // The card's keys in order, each overridden in place; new keys appended. List values (layers=3,4,6,3) are
  // parsed as the arch parser parses them.
  const size_t arch_colon = ch.arch.find(':');
  std::string head = arch_colon == std::string::npos ? ch.arch : ch.arch.substr(0, arch_colon);
  KeyValues kv;
  try {
    if (arch_colon != std::string::npos) kv = parse_key_values(ch.arch.substr(arch_colon + 1));
    for (const auto& [k, val] : parse_key_values(ch.overrides)) {
      auto it = std::find_if(kv.begin(), kv.end(), [&](const auto& p) { return p.first == k; });
      if (it != kv.end()) it->second = val;
      else kv.emplace_back(k, val);
    }
  } catch (const KeyValueError& e) {
    throw std::invalid_argument("--model " + spec + ": " + e.what());
  }
  ch.arch = head + ":";
  for (size_t i = 0; i < kv.size(); ++i) ch.arch += (i ? "," : "") + kv[i].first + "=" + kv[i].second;
  return ch;
}

}  // namespace tabula::cards
