#include "cli/commands.h"

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "engine/system.h"

namespace tabula::cli {

// Each subcommand's implementation lives in its own cmd_*.cpp file.
int cmd_demo(const Args&);
int cmd_synth(const Args&);
int cmd_preprocess(const Args&);

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"demo", "run the study on the embedded synthetic datasets and write a report", "[--out DIR]",
       "tabula demo --out demo-out",
       {{"out", "DIR", "output folder", false, "tabula-demo"},
        {"device", "DEV", "cpu or cuda[:N]", false, "cpu"},
        {"quick", "", "a smaller run (CI)", false, ""},
        {"force", "", "overwrite an existing output folder", false, ""}},
       0, 0, cmd_demo},
      {"synth", "write a synthetic dataset (Cell Painting 16-bit TIFFs or H&E-like tissue patches) from a seed",
       "cellpainting|tissue --out DIR [--seed N] [--quick]", "tabula synth cellpainting --out cp --seed 0",
       {{"out", "DIR", "output folder", true, ""},
        {"seed", "N", "random seed (same seed, same bytes)", false, "0"},
        {"quick", "", "a small dataset for CI (cellpainting: 1 batch x 2 plates, 128 px; tissue: 3 x 12 patches)", false, ""},
        {"batches", "N", "cellpainting: batches", false, "3"},
        {"plates", "N", "cellpainting: plates per batch", false, "2"},
        {"sites", "N", "cellpainting: sites (fields) per well", false, "2"},
        {"size", "PX", "field side (cellpainting, default 256) or patch side (tissue, default 224)", false, ""},
        {"patients", "N", "tissue: patients", false, "6"},
        {"patches", "N", "tissue: patches per patient", false, "60"},
        {"threads", "T", "worker threads (0: all cores)", false, "0"},
        {"force", "", "write into a non-empty output folder", false, ""}},
       1, 1, cmd_synth},
      {"preprocess", "write the exact model input tensors of a manifest to a .npy (with an index.csv)",
       "--data MANIFEST --out X.npy [--preset torchvision|dinov2|timm|none] [--channels per-channel|rgb:i,j,k|mean|all]",
       "tabula preprocess --data cp/load_data.csv --out x.npy --preset dinov2 --intensity percentile --limit 8",
       {{"data", "MANIFEST", "load_data.csv, RxRx metadata.csv, a CSV of image paths, an image folder or HEST .h5", true, ""},
        {"out", "X.npy", "output array (float32 [N, C, H, W]); X.index.csv is written beside it", true, ""},
        {"preset", "NAME", "eval transform: torchvision (resize 256 bilinear, crop 224), dinov2 (256 bicubic, 224), timm (crop_pct 0.9 bicubic), none", false, "torchvision"},
        {"resize", "N|HxW", "shorter side N, or exact size HxW (0: none)", false, ""},
        {"crop", "N", "centre crop (0: none)", false, ""},
        {"interp", "MODE", "bilinear or bicubic", false, ""},
        {"no-antialias", "", "resize without antialiasing (torchvision antialias=False)", false, ""},
        {"intensity", "MODE", "unit (x / type max), percentile (per image and channel), minmax, none", false, "unit"},
        {"percentiles", "LO,HI", "percentiles for --intensity percentile", false, "1,99"},
        {"mean", "M,..", "Normalize mean (1 or C values)", false, ""},
        {"std", "S,..", "Normalize std (1 or C values)", false, ""},
        {"no-normalize", "", "skip Normalize", false, ""},
        {"channels", "STRATEGY", "per-channel, rgb:i,j,k, mean or all", false, "per-channel"},
        {"no-illum", "", "ignore the illumination functions of a load_data.csv", false, ""},
        {"limit", "N", "first N samples only (-1: all)", false, "-1"},
        {"threads", "T", "decode/preprocess threads", false, "2"}},
       0, 0, cmd_preprocess},
  };
  return table;
}

static void print_overview() {
  std::cout << "tabula: what vision backbones learn on microscopy images\n\n"
               "usage: tabula COMMAND [flags]      (tabula COMMAND --help for its flags and an example)\n\n"
               "commands:\n";
  for (const Command& c : commands()) {
    std::string left = "  " + c.name;
    std::cout << left << std::string(left.size() < 22 ? 22 - left.size() : 1, ' ') << c.summary << "\n";
  }
  std::cout << "\n  --version           version, git hash, build type, CPU features, CUDA/MPI\n";
}

int run_tabula(int argc, char** argv) {
  try {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
        std::string(argv[1]) == "help") {
      print_overview();
      return argc < 2 ? 2 : 0;
    }
    std::string first = argv[1];
    if (first == "--version" || first == "version") {
      std::cout << build_summary();
      return 0;
    }
    // Longest match: "weights inspect" before "weights".
    const Command* cmd = nullptr;
    int consumed = 0;
    if (argc >= 3) {
      std::string two = first + " " + argv[2];
      for (const Command& c : commands())
        if (c.name == two) cmd = &c, consumed = 2;
    }
    if (!cmd)
      for (const Command& c : commands())
        if (c.name == first) cmd = &c, consumed = 1;
    if (!cmd) {
      // A group name alone ("tabula eval") lists its members.
      bool group = false;
      for (const Command& c : commands()) {
        if (c.name.rfind(first + " ", 0) == 0) {
          if (!group) std::cout << "tabula " << first << " subcommands:\n";
          group = true;
          std::cout << "  " << c.name << std::string(c.name.size() < 22 ? 22 - c.name.size() : 1, ' ') << c.summary
                    << "\n";
        }
      }
      if (group) return argc >= 3 && std::string(argv[2]) != "--help" ? 2 : 0;
      std::cerr << "tabula: unknown command '" << first << "' (see 'tabula --help')\n";
      return 2;
    }
    for (int i = 1 + consumed; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::cout << command_help(*cmd);
        return 0;
      }
      if (a == "--") break;
    }
    Args args = parse_args(*cmd, argc, argv, 1 + consumed);
    return cmd->run(args);
  } catch (const UsageError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tabula: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tabula::cli
