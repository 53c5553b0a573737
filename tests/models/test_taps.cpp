// The tap list and the MAC count are derived from the module tree a model's constructor declares
// (ModuleTree::tap): here, for every family and two input sizes each, the derived list is exactly what the
// forward passes -- the same names, passed in tap_order(), each with its listed shape at its last call (a module
// called twice, torchvision's ReLU or the hub Mlp's Dropout, is seen by a forward hook at its last call).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/hooks.h"
#include "models/layers.h"
#include "models/model.h"
#include "models/registry.h"
#include "tests/models/model_fixtures.h"

namespace tabula {
namespace {

// `unordered`: a module whose forward calls its children in another order than its __init__ registers them
// (open_clip's AttentionalPooler: ln_k, ln_q, then attn; registered attn, ln_q, ln_k). Its taps and their
// children are checked for names and shapes, not for order.
void check_forward_passes_declared_taps(const std::string& arch, const Shape& input,
                                        const std::vector<std::string>& unordered = {}) {
  SCOPED_TRACE(arch + " " + shape_str(input));
  auto model = build_model_seed(arch, 0);
  TapSet all;
  all.capture("all", Pool::none);  // every optional tap (the attention maps) is produced
  std::vector<std::pair<std::string, Shape>> passed;
  all.trace(&passed);
  model->forward(test::hash_input(input, 1), all);
  std::map<std::string, Shape> last_shape;
  std::map<std::string, int> calls;
  for (const auto& [name, shape] : passed) {
    last_shape[name] = shape;
    ++calls[name];
  }
  // The modules called once are passed in tap_order() (a module called more than once is listed where
  // named_modules() has it, which need not be where any of its calls is).
  auto ordered = [&](const std::string& n) {
    if (calls[n] != 1) return false;
    for (const std::string& u : unordered)
      if (n.compare(0, u.size(), u) == 0 && (n.size() == u.size() || n[u.size()] == '.')) return false;
    return true;
  };
  std::vector<std::string> once_passed, once_listed;
  for (const auto& p : passed)
    if (ordered(p.first)) once_passed.push_back(p.first);
  for (const std::string& n : model->tap_order(input))
    if (ordered(n)) once_listed.push_back(n);
  EXPECT_EQ(once_passed, once_listed);
  const auto listed = model->list_taps(input);
  EXPECT_EQ(listed.size(), last_shape.size());
  for (const TapInfo& t : listed) {
    auto it = last_shape.find(t.name);
    if (it == last_shape.end()) {
      ADD_FAILURE() << "declared but never passed: " << t.name;
      continue;
    }
    EXPECT_EQ(shape_str(it->second), shape_str(t.shape)) << t.name;
  }
}

TEST(ModelTaps, DeclaredTapsAreWhatTheForwardPassesResNet) {
  for (const Shape& in : {Shape{2, 3, 40, 32}, Shape{1, 3, 33, 47}}) {
    check_forward_passes_declared_taps("resnet:layers=1,1,1,1,block=basic,classes=3", in);
    check_forward_passes_declared_taps("resnet:layers=1,2,1,1,width=16,groups=2,classes=3", in);
  }
  check_forward_passes_declared_taps("resnet:layers=1,1,1,1,block=basic,classes=3", {1, 3, 1, 3});
}

TEST(ModelTaps, DeclaredTapsAreWhatTheForwardPassesViT) {
  for (const Shape& in : {Shape{2, 3, 32, 32}, Shape{1, 3, 24, 40}}) {
    check_forward_passes_declared_taps(
        "vit:dim=32,depth=2,heads=2,patch=8,img=32,classes=4,reg=2,init_values=0.5,dynamic_img_size=1", in);
    check_forward_passes_declared_taps(
        "vit:dim=32,depth=1,heads=2,patch=8,img=32,classes=0,global_pool=,dynamic_img_size=1", in);
    check_forward_passes_declared_taps("vit:flavor=dinov2,dim=32,depth=1,heads=2,patch=8,img=32,reg=4", in);
    check_forward_passes_declared_taps("vit:flavor=dinov2,dim=32,depth=1,heads=2,patch=8,img=32,mlp=swiglufused",
                                       in);
    check_forward_passes_declared_taps("vit:dim=32,depth=1,heads=2,patch=8,img=32,classes=3,reg=1,mlp=swiglu,"
                                       "global_pool=map,dynamic_img_size=1",
                                       in);
    check_forward_passes_declared_taps("vit:dim=32,depth=1,heads=2,patch=8,img=32,classes=3,qk_norm=1,"
                                       "mlp=swiglu_packed,global_pool=avgmax,pre_norm=1,dynamic_img_size=1",
                                       in);
  }
  // strict_img_size: two batch sizes
  for (int64_t b : {1, 3})
    check_forward_passes_declared_taps("vit:dim=32,depth=1,heads=2,patch=8,img=32,classes=3,act=quick_gelu",
                                       {b, 3, 32, 32});
}

TEST(ModelTaps, DeclaredTapsAreWhatTheForwardPassesDinov3) {
  for (const Shape& in : {Shape{2, 3, 32, 32}, Shape{1, 3, 48, 16}}) {
    check_forward_passes_declared_taps("dinov3:dim=32,depth=2,heads=2,patch=8", in);
    check_forward_passes_declared_taps("dinov3:dim=32,depth=1,heads=2,patch=8,ffn=swiglu,layerscale=none,storage=0,"
                                       "untie_cls_and_patch_norms=1,untie_global_and_local_cls_norm=1",
                                       in);
  }
}

TEST(ModelTaps, DeclaredTapsAreWhatTheForwardPassesCaViT) {
  for (const Shape& in : {Shape{2, 1, 32, 32}, Shape{1, 5, 32, 32}}) {
    check_forward_passes_declared_taps("ca_vit:dim=32,depth=2,heads=2,patch=8,img=32", in);
    check_forward_passes_declared_taps("ca_vit:dim=32,depth=1,heads=2,patch=8,img=32,qk_norm=0,qkv_bias=1,"
                                       "global_pool=token",
                                       in);
  }
}

TEST(ModelTaps, DeclaredTapsAreWhatTheForwardPassesConvNeXt) {
  for (const Shape& in : {Shape{2, 3, 64, 64}, Shape{1, 3, 72, 40}}) {
    check_forward_passes_declared_taps("convnext:depths=1,2,1,1,dims=8,16,16,24,classes=3", in);
    check_forward_passes_declared_taps("convnext:depths=1,1,0,1,dims=8,8,16,16,conv_mlp=1,classes=0,ls_init=none",
                                       in);
  }
}

TEST(ModelTaps, DeclaredTapsAreWhatTheForwardPassesConch) {
  const std::vector<std::string> poolers{"visual.attn_pool_contrast", "visual.attn_pool_caption"};
  for (const Shape& in : {Shape{2, 3, 32, 32}, Shape{1, 3, 48, 24}}) {
    check_forward_passes_declared_taps("conch:width=32,depth=2,heads=2,patch=8,img=32,embed_dim=16,caption_dim=24,"
                                       "pool_heads=2,queries_contrast=1,queries_caption=4",
                                       in, poolers);
    check_forward_passes_declared_taps("conch:width=16,depth=1,heads=2,patch=8,img=32,embed_dim=16,caption_dim=16,"
                                       "pool_heads=4,queries_contrast=2,queries_caption=3",
                                       in, poolers);
  }
}

// Swin's window attention taps are per image ([B, windows * N, C], the maps [B, windows * heads, N, N]); the
// second size pads to whole windows, the odd grid pads in PatchMerging.
TEST(ModelTaps, DeclaredTapsAreWhatTheForwardPassesSwin) {
  for (const Shape& in : {Shape{2, 3, 64, 64}, Shape{1, 3, 56, 40}}) {
    check_forward_passes_declared_taps("swin:dim=16,depths=2,2,heads=1,2,window=4,img=64,classes=3", in);
    check_forward_passes_declared_taps("swin:dim=16,depths=2,1,heads=2,2,window=4,img=64,embed_layer=convstem,"
                                       "classes=0",
                                       in);
  }
}

// The MAC count is the sum of what the declared Linear / Conv2d / attention-map modules compute at their declared
// output shapes for one image (torchvision's "GFLOPS" column): checked here on a tiny ViT by hand.
TEST(ModelTaps, GmacsSumTheDeclaredModules) {
  auto m = build_model_skeleton("vit:dim=32,depth=2,heads=2,patch=8,img=32,classes=4,mlp_ratio=2");
  const double D = 32, N = 17, Hm = 64, P = 16;
  const double macs = P * D * 3 * 8 * 8 + 2 * (N * D * 3 * D + 2 * N * N * D + N * D * D + 2 * N * D * Hm) + D * 4;
  EXPECT_EQ(m->gmacs({1, 3, 32, 32}), macs / 1e9);
  EXPECT_EQ(m->gmacs({5, 3, 32, 32}), macs / 1e9);  // one image's
}

// A module tree's taps and MACs as declared: pre-order, only the modules declared taps, dotted locals allowed.
TEST(ModuleTreeTaps, DeclaredOrderShapesAndMacs) {
  ModuleTree t;
  Module& root = t.root();
  const ShapeRule tok = [](const Shape& in) { return Shape{in[0], 4, 8}; };
  Module& block = t.tap(t.child(root, "block", "Block"), tok);
  Linear& fc = t.tap(t.layer<Linear>(block, "fc", 8, 16), [](const Shape& in) { return Shape{in[0], 4, 16}; });
  t.tap(block, "act", "GELU", [](const Shape& in) { return Shape{in[0], 4, 16}; });
  t.child(root, "unused", "Identity");  // not declared a tap: not listed
  t.untapped(t.layer<Linear>(root, "hidden", 8, 2), [](const Shape& in) { return Shape{in[0], 2}; });
  t.tap(root, "attn.softmax", "Softmax", tok, [](const Shape& out) { return 3.0 * static_cast<double>(out[0]); });
  const auto taps = t.taps({2, 3, 8, 8});
  ASSERT_EQ(taps.size(), 4u);
  EXPECT_EQ(taps[0].first, "block");
  EXPECT_EQ(taps[1].first, "block.fc");
  EXPECT_EQ(taps[1].second, (Shape{2, 4, 16}));
  EXPECT_EQ(taps[2].first, "block.act");
  EXPECT_EQ(taps[3].first, "attn.softmax");
  EXPECT_EQ(&fc.module(), root.children[0]->children[0]);
  // fc: 4 * 16 outputs of 8 terms; hidden (untapped, counted): 2 * 8; softmax: its rule
  EXPECT_EQ(t.macs({1, 3, 8, 8}), 4.0 * 16 * 8 + 2 * 8 + 3);
  EXPECT_THROW(t.tap(root, "bad", "Identity", ShapeRule()), std::logic_error);
  t.layer<Linear>(root, "no_shape", 2, 2);  // counts MACs but has no output shape: a declaration error
  EXPECT_THROW(t.macs({1, 3, 8, 8}), std::logic_error);
}

// A family written the old way -- its own list_taps and gmacs beside the forward, nothing declared a tap --
// still works: tap_order and the hooks use its overrides.
class OldWayModel final : public Model {
 public:
  explicit OldWayModel(const ArchConfig& arch) : Model(arch) {}
  Shape default_input_shape(int64_t batch) const override { return {batch, 1, 4, 4}; }
  void check_input(const Shape&) const override {}
  Tensor forward(const Tensor& x, TapSet& taps) override {
    taps.bind(tap_order(x.shape()));
    Tensor y = tap(taps, "a.b", x);
    y = tap(taps, "a", y);
    return tap(taps, "c", y);
  }
  std::vector<TapInfo> list_taps(const Shape& in) const override { return {{"a", in}, {"a.b", in}, {"c", in}}; }
  std::vector<std::string> default_taps() const override { return {"c"}; }
  double gmacs(const Shape&) const override { return 0.5; }
};

TEST(ModelTaps, AFamilyThatListsItsOwnTapsStillWorks) {
  OldWayModel m(parse_arch("resnet18"));
  EXPECT_EQ(m.tap_order({1, 1, 4, 4}), (std::vector<std::string>{"a.b", "a", "c"}));
  EXPECT_EQ(m.gmacs({1, 1, 4, 4}), 0.5);
  TapSet taps;
  taps.capture("a", Pool::none);
  m.forward(Tensor::zeros({1, 1, 4, 4}), taps);
  EXPECT_EQ(taps.captured().count("a"), 1u);
}

}  // namespace
}  // namespace tabula
