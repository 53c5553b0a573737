// `tabula demo`: `tabula study` (study/study.h) on the embedded synthetic data. Generates the Cell Painting,
// tissue and natural-image-like datasets, then studies them with untrained networks (two seeds each), the pixels
// and nuclei baselines and any user weights, every layer: replicate mAP (JUMP's phenotypic-activity preset), MoA
// relationship recall and kNN MoA classification held out by plate on Cell Painting; ridge and 1-NN regression of
// expression (HEST) on tissue; kNN and linear-probe classification on the natural-like set; CKA between seeds.
// Every step is resumable: rerunning the same command continues where it stopped.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "study/study.h"

namespace tabula {

struct DemoOptions {
  std::string out = "tabula-demo";
  bool quick = false;               // CI-sized: the --quick synthetic datasets, small nets, 1000-sample nulls
  std::vector<std::string> models;  // "ARCH@SEED", "ARCH=WEIGHTS", "pixels", "nuclei"; empty: the study's set
  std::vector<std::string> weights; // extra trained models: "ARCH=FILE"
  int size = 0;                     // model input size (0: the arch's default)
  int threads = 0;
  uint64_t data_seed = 0;
  bool quiet = false;
  std::string device = "cpu", precision = "fp32";  // where the networks run (--device cuda[:N], --precision)
};

using DemoResult = StudyResult;

// The study the demo runs on the synthetic data it generated under opt.out/data/ (exposed for the tests).
StudyOptions demo_study(const DemoOptions& opt);
DemoResult run_demo(const DemoOptions& opt);

}  // namespace tabula
