#include "models/cards/cards.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <tuple>
#include <utility>

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

std::vector<ModelCard> build() {
  std::vector<ModelCard> v;
  for (auto [s, w] : {std::pair{"s", "S"}, {"b", "B"}, {"l", "L"}, {"g", "g"}})
    for (bool reg : {false, true}) v.push_back(dinov2_card(s, w, reg));

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
  uni.sources = {{"architecture, transform, embedding",
                  "https://huggingface.co/MahmoodLab/UNI (timm.create_model("
                  "\"vit_large_patch16_224\", img_size=224, patch_size=16, "
                  "init_values=1e-5, num_classes=0, dynamic_img_size=True); "
                  "transforms.Resize(224), ToTensor, Normalize(ImageNet))"},
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
  uni2.transform.resize = 224;
  uni2.taps = {"head"};
  uni2.pool = "none";
  uni2.embedding = "model(x): the CLS token after the final norm";
  uni2.sources = {{"architecture, transform, embedding",
                   "https://huggingface.co/MahmoodLab/UNI2-h (timm_kwargs: "
                   "img_size 224, patch_size 14, depth 24, num_heads 24, "
                   "init_values 1e-5, embed_dim 1536, mlp_ratio 2.66667*2, "
                   "no_embed_class, SwiGLUPacked, SiLU, reg_tokens 8; "
                   "Resize(224), ToTensor, Normalize(ImageNet))"}};
  v.push_back(uni2);

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
                 {"use in HEST", kHest}};
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

  ModelCard phikon;
  phikon.name = "phikon";
  phikon.aliases = {"owkin/phikon"};
  phikon.what = "Phikon (Owkin), ViT-B/16 iBOT-trained on TCGA, Hugging Face ViTModel";
  phikon.arch = "vit:dim=768,depth=12,heads=12,patch=16,img=224,classes=0,norm_eps=1e-12";
  phikon.weights = "https://huggingface.co/owkin/phikon/blob/main/model.safetensors";
  phikon.layout = "hf-vit";
  phikon.transform = to_tensor_normalize(kImageNetMean, kImageNetStd);
  phikon.taps = {"head"};
  phikon.pool = "none";
  phikon.embedding = "last_hidden_state[:, 0]: the CLS token after the final layernorm (ViTModel, no pooler)";
  phikon.sources = {{"architecture",
                     "https://huggingface.co/owkin/phikon/blob/main/config.json (ViTModel, hidden 768, "
                     "12 layers, 12 heads, patch 16, layer_norm_eps 1e-12)"},
                    {"transform, embedding", kHest}};
  v.push_back(phikon);

  ModelCard phikon2;
  phikon2.name = "phikon-v2";
  phikon2.aliases = {"owkin/phikon-v2", "phikon_v2"};
  phikon2.what = "Phikon-v2 (Owkin), ViT-L/16 DINOv2-trained on PANCAN-XL, Hugging Face Dinov2Model";
  phikon2.arch = "vit:flavor=dinov2,dim=1024,depth=24,heads=16,patch=16,img=224,init_values=1e-5";
  phikon2.weights = "https://huggingface.co/owkin/phikon-v2/blob/main/model.safetensors";
  phikon2.layout = "hf-dinov2";
  phikon2.transform = to_tensor_normalize(kImageNetMean, kImageNetStd);
  phikon2.taps = {"x_norm_clstoken"};
  phikon2.pool = "none";
  phikon2.embedding = "last_hidden_state[:, 0]: the CLS token after the final layernorm";
  phikon2.sources = {{"architecture",
                      "https://huggingface.co/owkin/phikon-v2/blob/main/config.json (Dinov2Model, "
                      "hidden 1024, 24 layers, 16 heads, patch 16, image 224)"},
                     {"transform, embedding", kHest}};
  v.push_back(phikon2);

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

  ModelCard r50;
  r50.name = "resnet50-hest";
  r50.aliases = {"resnet50_trunc", "resnet50.tv_in1k"};
  r50.what = "ImageNet ResNet-50 (torchvision IMAGENET1K_V1) truncated after layer3, HEST's baseline encoder";
  r50.arch = "resnet:layers=3,4,6,3,block=bottleneck";
  r50.weights = "https://download.pytorch.org/models/resnet50-0676ba61.pth";
  r50.layout = "torchvision-resnet";
  r50.transform = to_tensor_normalize(kImageNetMean, kImageNetStd);
  r50.taps = {"layer3"};
  r50.pool = "avg";
  r50.embedding = "layer3 output, AdaptiveAvgPool2d(1) (timm features_only, out_indices=[3])";
  r50.sources = {{"architecture, transform, embedding", kHest},
                 {"weights", "https://huggingface.co/timm/resnet50.tv_in1k (torchvision's IMAGENET1K_V1 weights)"}};
  v.push_back(r50);

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
  // The card's keys in order, each overridden in place; new keys appended.
  const size_t arch_colon = ch.arch.find(':');
  std::string head = arch_colon == std::string::npos ? ch.arch : ch.arch.substr(0, arch_colon);
  std::vector<std::pair<std::string, std::string>> kv;
  auto split = [&](const std::string& list, bool is_override) {
    size_t start = 0;
    while (start < list.size()) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      const std::string item = list.substr(start, comma - start);
      start = comma + 1;
      if (item.empty()) continue;
      const size_t eq = item.find('=');
      if (eq == std::string::npos)
        throw std::invalid_argument("--model " + spec + ": expected key=value after ':', got '" + item + "'");
      const std::string k = item.substr(0, eq), val = item.substr(eq + 1);
      auto it = std::find_if(kv.begin(), kv.end(), [&](const auto& p) { return p.first == k; });
      if (it != kv.end() && is_override)
        it->second = val;
      else
        kv.emplace_back(k, val);
    }
  };
  if (arch_colon != std::string::npos) split(ch.arch.substr(arch_colon + 1), false);
  split(ch.overrides, true);
  ch.arch = head + ":";
  for (size_t i = 0; i < kv.size(); ++i) ch.arch += (i ? "," : "") + kv[i].first + "=" + kv[i].second;
  return ch;
}

}  // namespace tabula::cards
