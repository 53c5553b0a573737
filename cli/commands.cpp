#include "cli/commands.h"

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "engine/system.h"

namespace tabula::cli {

// Each subcommand's implementation lives in its own cmd_*.cpp file.
int cmd_demo(const Args&);
int cmd_models(const Args&);
int cmd_hooks(const Args&);
int cmd_bench(const Args&);

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"demo", "run the study on the embedded synthetic datasets and write a report", "[--out DIR]",
       "tabula demo --out demo-out",
       {{"out", "DIR", "output folder", false, "tabula-demo"},
        {"device", "DEV", "cpu or cuda[:N]", false, "cpu"},
        {"quick", "", "a smaller run (CI)", false, ""},
        {"force", "", "overwrite an existing output folder", false, ""}},
       0, 0, cmd_demo},
      {"models", "list architectures: parameters, GFLOPs at the default size, default taps", "[ARCH...]",
       "tabula models", {}, 0, 1000, cmd_models},
      {"hooks", "list every tap of an architecture with its output shape", "ARCH [--size S] [--batch B]",
       "tabula hooks vit_base_patch16_224",
       {{"size", "S", "input height = width (default: the arch's default input size)", false, ""},
        {"batch", "B", "batch size in the shapes", false, "1"}},
       1, 1, cmd_hooks},
      {"bench", "forward throughput of an architecture (images/s, ms/batch, peak RSS)",
       "ARCH [--batch B] [--threads T] [--seed N] [--iters I] [--warmup W]",
       "tabula bench resnet50 --batch 16 --threads 2",
       {{"batch", "B", "images per forward", false, "16"},
        {"threads", "T", "CPU threads (0: TABULA_THREADS or all cores)", false, "0"},
        {"seed", "N", "untrained weights of this seed (torch.manual_seed)", false, "0"},
        {"iters", "I", "timed forwards (the median is reported)", false, "5"},
        {"warmup", "W", "untimed forwards first", false, "2"},
        {"size", "S", "input height = width (0: the arch's default)", false, "0"},
        {"device", "D", "cpu", false, "cpu"},
        {"precision", "P", "fp32", false, "fp32"}},
       1, 1, cmd_bench},
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
