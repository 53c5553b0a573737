// Command-line parsing: the input is split at NUL bytes into argv words and run through every subcommand's flag
// parser. Any words give parsed Args or a UsageError (exit code 2 in the binary); nothing else may escape.
#include <cstdint>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> words(1);
  for (size_t i = 0; i < size && words.size() < 64; ++i) {
    if (data[i] == 0) words.emplace_back();
    else words.back() += static_cast<char>(data[i]);
  }
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  for (const auto& cmd : tabula::cli::commands()) {
    try {
      tabula::cli::Args a = tabula::cli::parse_args(cmd, static_cast<int>(argv.size()), argv.data(), 0);
      for (const auto& f : cmd.flags) {
        (void)a.get(f.name);
        try {
          (void)a.get_int(f.name);
        } catch (const tabula::cli::UsageError&) {
        }
        try {
          (void)a.get_double(f.name);
        } catch (const tabula::cli::UsageError&) {
        }
      }
    } catch (const tabula::cli::UsageError&) {
    }
  }
  return 0;
}
