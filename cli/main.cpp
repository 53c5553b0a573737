#include "cli/commands.h"

int main(int argc, char** argv) { return tabula::cli::run_tabula(argc, argv); }
