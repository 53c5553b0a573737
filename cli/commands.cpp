#include "cli/commands.h"

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "engine/system.h"

namespace tabula::cli {

// Each subcommand's implementation lives in its own cmd_*.cpp file.
int cmd_demo(const Args&);
int cmd_weights_inspect(const Args&);
int cmd_weights_convert(const Args&);

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"demo", "run the study on the embedded synthetic datasets and write a report", "[--out DIR]",
       "tabula demo --out demo-out",
       {{"out", "DIR", "output folder", false, "tabula-demo"},
        {"device", "DEV", "cpu or cuda[:N]", false, "cpu"},
        {"quick", "", "a smaller run (CI)", false, ""},
        {"force", "", "overwrite an existing output folder", false, ""}},
       0, 0, cmd_demo},
      {"weights inspect", "format, layout, tensors, parameters, dtypes and sha256 of a weight file", "FILE [--key K]",
       "tabula weights inspect dinov2_vits14_pretrain.pth",
       {{"key", "K", "nested state dict to use, e.g. teacher or model/teacher (default: detected)", false, ""},
        {"tensors", "", "list every tensor with dtype and shape", false, ""},
        {"no-hash", "", "skip the SHA-256 of the file (it reads every byte; the rest only maps the file)", false, ""}},
       1, 1, cmd_weights_inspect},
      {"weights convert", "map a checkpoint to tabula's names for ARCH and write safetensors",
       "IN --arch ARCH --out OUT.safetensors [--dtype f32|f16|bf16] [--key K]",
       "tabula weights convert dinov2_vits14_pretrain.pth --arch dinov2_vits14 --out vits14.safetensors",
       {{"arch", "ARCH", "architecture the weights are for (resnet50, vit_small_patch16_224, dinov2_vits14, vit:...)", true, ""},
        {"out", "OUT", "output .safetensors file (written atomically)", true, ""},
        {"dtype", "DTYPE", "f32, f16 or bf16 for floating-point tensors (default: keep)", false, ""},
        {"key", "K", "nested state dict to use, e.g. teacher or model/teacher (default: detected)", false, ""},
        {"layout", "L", "source layout instead of detecting it: torchvision-resnet, timm-vit, dinov2-hub, hf-dinov2, hf-vit", false, ""},
        {"allow-missing", "", "write even when the file lacks keys the arch has", false, ""}},
       1, 1, cmd_weights_convert},
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
