#include "cli/commands.h"
#include "engine/fileio.h"

int main(int argc, char** argv) {
  tabula::install_interrupt_cleanup();  // Ctrl-C / kill leave no half-written temp files
  return tabula::cli::run_tabula(argc, argv);
}
