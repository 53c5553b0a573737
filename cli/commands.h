// The one table of `tabula` subcommands (commands.cpp) and the entry point main() calls.
#pragma once
#include <vector>

#include "cli/args.h"

namespace tabula::cli {

const std::vector<Command>& commands();
// Runs `tabula argv...`; returns the process exit code (0 ok, 1 failure, 2 usage error).
int run_tabula(int argc, char** argv);

}  // namespace tabula::cli
