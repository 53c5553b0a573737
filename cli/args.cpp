#include "cli/args.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "util/suggest.h"

namespace tabula::cli {

std::string Args::get(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it != values_.end()) return it->second;
  auto d = defaults_.find(flag);
  return d == defaults_.end() ? std::string() : d->second;
}

long long Args::get_int(const std::string& flag) const {
  std::string v = get(flag);
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError("tabula " + command_ + ": --" + flag + " expects an integer, got '" + v + "'");
  return x;
}

double Args::get_double(const std::string& flag) const {
  std::string v = get(flag);
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError("tabula " + command_ + ": --" + flag + " expects a number, got '" + v + "'");
  return x;
}

Args parse_args(const Command& cmd, int argc, char** argv, int first) {
  Args a;
  a.command_ = cmd.name;
  for (const Flag& f : cmd.flags)
    if (!f.default_value.empty()) a.defaults_[f.name] = f.default_value;
  const std::string hint = " (see 'tabula " + cmd.name + " --help')";
  bool only_positional = false;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (only_positional || arg.size() < 2 || arg.rfind("--", 0) != 0) {
      if (arg.size() > 1 && arg[0] == '-' && !only_positional && arg != "-")
        throw UsageError("tabula " + cmd.name + ": unknown option '" + arg + "'" + hint);
      a.positional_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const Flag* spec = nullptr;
    for (const Flag& f : cmd.flags)
      if (f.name == name) spec = &f;
    if (!spec) {
      std::vector<std::string> names;
      for (const Flag& f : cmd.flags) names.push_back(f.name);
      names.push_back("help");
      const std::string near = did_you_mean(name, names, "--");
      throw UsageError("tabula " + cmd.name + ": unknown flag '--" + name + "'" + (near.empty() ? hint : near));
    }
    if (spec->value_name.empty()) {
      if (inline_value) throw UsageError("tabula " + cmd.name + ": --" + name + " takes no value" + hint);
      value.assign(1, '1');  // not `= "1"`: GCC 12 -Wrestrict false positive
    } else if (!inline_value) {
      if (i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0)
        throw UsageError("tabula " + cmd.name + ": --" + name + " needs a value (" + spec->value_name + ")" + hint);
      value = argv[++i];
    }
    if (a.values_.count(name))
      throw UsageError("tabula " + cmd.name + ": --" + name + " given twice" + hint);
    a.values_[name] = value;
  }
  for (const Flag& f : cmd.flags)
    if (f.required && !a.has(f.name))
      throw UsageError("tabula " + cmd.name + ": missing required flag --" + f.name + hint);
  int n = static_cast<int>(a.positional_.size());
  if (n < cmd.min_positional)
    throw UsageError("tabula " + cmd.name + ": missing argument (usage: tabula " + cmd.name + " " + cmd.usage + ")");
  if (n > cmd.max_positional) {
    const std::string& stray = a.positional_[cmd.max_positional];
    // `--layers layer3, layer4`: the shell split a list at the space after a comma.
    for (int i = first; i + 1 < argc; ++i) {
      const std::string prev = argv[i];
      if (argv[i + 1] == stray && !prev.empty() && prev.back() == ',' && i > first &&
          std::string(argv[i - 1]).rfind("--", 0) == 0)
        throw UsageError("tabula " + cmd.name + ": unexpected argument '" + stray + "' (a list is one argument: " +
                         argv[i - 1] + " " + prev + stray + ", or quote it)");
    }
    throw UsageError("tabula " + cmd.name + ": unexpected argument '" + stray + "'" + hint);
  }
  return a;
}

std::string command_help(const Command& cmd) {
  std::ostringstream o;
  o << "usage: tabula " << cmd.name << (cmd.usage.empty() ? "" : " ") << cmd.usage << "\n\n" << cmd.summary << "\n";
  if (!cmd.flags.empty()) {
    o << "\nflags:\n";
    for (const Flag& f : cmd.flags) {
      std::string left = "  --" + f.name + (f.value_name.empty() ? "" : " " + f.value_name);
      o << left;
      if (left.size() < 28) o << std::string(28 - left.size(), ' ');
      else o << "\n" << std::string(28, ' ');
      o << f.help;
      if (f.required) o << " (required)";
      if (!f.default_value.empty()) o << " [default: " << f.default_value << "]";
      o << "\n";
    }
  }
  o << "  --help                    show this help\n";
  if (!cmd.example.empty()) o << "\nexample:\n  " << cmd.example << "\n";
  return o.str();
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) {
    // "layer3, layer4" (a space after the comma, quoted) is the list layer3,layer4.
    const size_t b = cur.find_first_not_of(" \t"), e = cur.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(cur.substr(b, e - b + 1));
  }
  return out;
}

}  // namespace tabula::cli
