// `tabula demo`: the paper's study on the embedded synthetic data, in one command. Generates the Cell Painting
// and tissue datasets, embeds them with untrained networks (two seeds each), the pixels and nuclei baselines and
// any user weights, every layer; evaluates replicate mAP (JUMP's phenotypic-activity preset), MoA relationship
// recall, kNN MoA classification held out by plate, tissue ridge and 1-NN regression (HEST), and layer x layer
// CKA between the two seeds; writes summary.csv (every number, tidy) and report.html. Every step is resumable:
// rerunning the same command continues where it stopped.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

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

struct DemoResult {
  std::string summary_csv, report_html;
  std::string table;  // the short text table printed at the end
};

DemoResult run_demo(const DemoOptions& opt);

}  // namespace tabula
