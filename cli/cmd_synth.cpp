// `tabula synth cellpainting|tissue`: the synthetic datasets as ordinary files (argument parsing only; the
// generators are data/synth.cpp).
#include <filesystem>
#include <iostream>

#include "cli/args.h"
#include "data/synth.h"

namespace tabula::cli {

int cmd_synth(const Args& args) {
  const std::string kind = args.positional().at(0);
  const std::string out = args.get("out");
  if (std::filesystem::exists(out) && !std::filesystem::is_empty(out) && !args.has("force"))
    throw UsageError("synth: output folder '" + out + "' exists and is not empty (use --force to write into it)");
  const long long seed = args.get_int("seed");
  if (seed < 0) throw UsageError("synth: --seed must be >= 0");
  const int threads = int(args.get_int("threads"));
  // --quick is a fixed small layout; silently ignoring a size flag next to it would surprise.
  if (args.has("quick"))
    for (const char* f : {"batches", "plates", "sites", "size", "patients", "patches"})
      if (args.has(f)) throw UsageError(std::string("synth: --quick fixes the layout; drop --quick to set --") + f);
  data::SynthSummary s;
  if (kind == "cellpainting") {
    data::CellPaintingConfig c;
    c.seed = uint64_t(seed);
    c.quick = args.has("quick");
    c.threads = threads;
    if (args.has("plates")) c.plates_per_batch = int(args.get_int("plates"));
    if (args.has("batches")) c.batches = int(args.get_int("batches"));
    if (args.has("sites")) c.sites = int(args.get_int("sites"));
    if (args.has("size")) c.size = int(args.get_int("size"));
    s = data::synth_cellpainting(out, c);
  } else if (kind == "tissue") {
    data::TissueConfig c;
    c.seed = uint64_t(seed);
    c.quick = args.has("quick");
    c.threads = threads;
    if (args.has("patients")) c.patients = int(args.get_int("patients"));
    if (args.has("patches")) c.patches_per_patient = int(args.get_int("patches"));
    if (args.has("size")) c.size = int(args.get_int("size"));
    s = data::synth_tissue(out, c);
  } else {
    throw UsageError("synth: unknown dataset '" + kind + "' (cellpainting or tissue)");
  }
  std::cout << "tabula synth " << kind << ": " << s.images << " images, " << s.files << " files in " << out << " ("
            << s.seconds << " s); manifest: " << s.manifest << "\n";
  return 0;
}

}  // namespace tabula::cli
