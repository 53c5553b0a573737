// Command-line parsing for `tabula`: every subcommand is one row of the table in commands.cpp, with its
// flags declared up front so that unknown flags, missing values and missing required flags are caught
// before any work starts (one-line message, exit code 2).
#pragma once
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tabula::cli {

// A mistake in how the command was typed: printed as one line, exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Flag {
  std::string name;           // without the leading "--"
  std::string value_name;     // "" for a switch that takes no value, e.g. "DIR"
  std::string help;
  bool required = false;
  std::string default_value;  // shown in --help; what get() returns when absent
};

struct Command;

class Args {
 public:
  bool has(const std::string& flag) const { return values_.count(flag) > 0; }
  // The flag's value, else its declared default.
  std::string get(const std::string& flag) const;
  long long get_int(const std::string& flag) const;    // UsageError names the flag when not an integer
  double get_double(const std::string& flag) const;
  const std::vector<std::string>& positional() const { return positional_; }
  const std::string& command() const { return command_; }

 private:
  friend Args parse_args(const Command&, int, char**, int);
  std::string command_;
  std::map<std::string, std::string> values_;
  std::map<std::string, std::string> defaults_;
  std::vector<std::string> positional_;
};

struct Command {
  std::string name;          // "embed", or "weights inspect" for a group member
  std::string summary;       // one line for `tabula --help`
  std::string usage;         // synopsis after "tabula NAME", e.g. "FILE [--key K]"
  std::string example;       // a complete command line
  std::vector<Flag> flags;
  int min_positional = 0, max_positional = 0;
  int (*run)(const Args&) = nullptr;
};

// Parses argv[first..argc) for `cmd`. Throws UsageError.
Args parse_args(const Command& cmd, int argc, char** argv, int first);
// Refuses (UsageError naming the closest names) an arch whose name is not one `tabula models` lists; key=value forms
// (resnet:..., vit:..., NAME:key=value) are checked by name only, and the baselines pixels / nuclei pass when
// `baselines` is set.
void check_arch_name(const std::string& command, const std::string& arch, bool baselines = false);
// The same for a model card name (--model NAME[:k=v,...]): card names and their aliases, case ignored as the cards
// are looked up.
void check_card_name(const std::string& command, const std::string& spec);
// Refuses (UsageError) a --device value that is not cpu, cuda or cuda:N, before any work starts.
void check_device_name(const std::string& command, const std::string& device);
// The same for --precision: fp32, tf32, bf16 or fp16 (which of them the device runs is checked when it is chosen).
void check_precision_name(const std::string& command, const std::string& precision);
std::string command_help(const Command& cmd);

// Splits "a,b,c" (spaces around items trimmed, empty items dropped).
std::vector<std::string> split_list(const std::string& s, char sep = ',');

}  // namespace tabula::cli
