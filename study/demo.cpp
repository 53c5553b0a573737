#include "study/demo.h"

#include <cstdio>
#include <filesystem>

#include "data/synth.h"
#include "study/steps.h"

namespace tabula {

namespace fs = std::filesystem;

StudyOptions demo_study(const DemoOptions& opt) {
  StudyOptions s;
  s.out = opt.out;
  s.models = opt.models;
  if (s.models.empty()) {
    if (opt.quick)
      s.models = {"resnet18@0", "resnet18@1", "vit_tiny_patch16_224@0", "vit_tiny_patch16_224@1", "pixels", "nuclei"};
    else
      s.models = {"resnet50@0", "resnet50@1", "vit_small_patch16_224@0", "vit_small_patch16_224@1", "pixels", "nuclei"};
  }
  for (const std::string& w : opt.weights) s.models.push_back(w);
  s.null_size = opt.quick ? 1000 : 10000;
  s.size = opt.size;
  s.threads = opt.threads;
  s.quiet = opt.quiet;
  s.device = opt.device;
  s.precision = opt.precision;
  s.tag = "demo";
  const std::string cp = opt.out + "/data/cellpainting", tissue = opt.out + "/data/tissue";
  StudyDataset c;
  c.name = "cellpainting";
  c.data = cp + "/load_data.csv";
  c.plate_col = "Metadata_Plate";
  c.batch_col = "Metadata_Batch";
  c.control = "Metadata_pert_type=negcon";
  c.compound_col = "Metadata_JCP2022";
  c.phenotype_csv = cp + "/compounds.csv";
  c.relationships = cp + "/relationships.csv";
  c.relationship_name = "MoA";
  c.label_col = "Metadata_moa";
  c.label_name = "MoA";
  c.group_col = "Metadata_Plate";
  c.group_name = "plate";
  c.knn_k = opt.quick ? 5 : 10;
  StudyDataset t;
  t.name = "tissue";
  t.data = tissue + "/metadata.csv";
  t.targets = tissue + "/expression.csv";
  t.target_id = "patch_id";
  t.targets_name = "expression";
  t.fold_col = "patient";
  t.log1p = true;
  t.pca_components = opt.quick ? 16 : 256;
  t.dark_nuclei = true;  // dark nuclei on H&E
  StudyDataset n;
  n.name = "natural";
  n.data = opt.out + "/data/natural";
  n.label_col = "label";
  n.label_name = "class";
  n.knn_k = opt.quick ? 5 : 10;
  s.datasets = {c, t, n};
  return s;
}

DemoResult run_demo(const DemoOptions& opt) {
  fs::create_directories(opt.out);
  auto say = [&](const std::string& m) {
    if (!opt.quiet) std::fprintf(stderr, "tabula demo: %s\n", m.c_str());
  };
  const std::string cp = opt.out + "/data/cellpainting", tissue = opt.out + "/data/tissue";
  const std::string natural = opt.out + "/data/natural";
  study::step(opt.out + "/data/.cellpainting.done", [&] {
    say("writing the synthetic Cell Painting dataset");
    fs::remove_all(cp);
    data::CellPaintingConfig c;
    c.seed = opt.data_seed;
    c.quick = opt.quick;
    c.sites = 1;  // 192 fields x 5 channels per network: the whole study stays within minutes on 2 cores
    data::synth_cellpainting(cp, c);
  });
  study::step(opt.out + "/data/.tissue.done", [&] {
    say("writing the synthetic tissue dataset");
    fs::remove_all(tissue);
    data::TissueConfig c;
    c.seed = opt.data_seed;
    c.quick = opt.quick;
    data::synth_tissue(tissue, c);
  });
  study::step(opt.out + "/data/.natural.done", [&] {
    say("writing the synthetic natural-image-like dataset");
    fs::remove_all(natural);
    data::NaturalConfig c;
    c.seed = opt.data_seed;
    c.quick = opt.quick;
    data::synth_natural(natural, c);
  });
  return run_study(demo_study(opt));
}

}  // namespace tabula
