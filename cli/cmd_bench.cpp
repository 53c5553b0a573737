// `tabula bench ARCH`: forward throughput of the untrained model of a seed ("... images/s ..." on one line).
#include <iostream>

#include "cli/args.h"

#include "embed/embed.h"
#include "models/bench.h"

namespace tabula::cli {

int cmd_bench(const Args& args) {
  BenchOptions o;
  o.device = args.get("device");
  o.precision = args.get("precision");
  o.graph = args.has("graph");
  o.batch = args.get_int("batch");
  o.threads = static_cast<int>(args.get_int("threads"));
  o.seed = static_cast<uint64_t>(args.get_int("seed"));
  o.iters = static_cast<int>(args.get_int("iters"));
  o.warmup = static_cast<int>(args.get_int("warmup"));
  o.size = args.get_int("size");
  if (o.batch < 1 || o.iters < 1 || o.warmup < 0 || o.threads < 0 || o.size < 0)
    throw UsageError("tabula bench: --batch and --iters must be >= 1, --warmup, --threads and --size >= 0");
  if (args.has("weights")) {
    if (args.has("seed")) throw UsageError("tabula bench: give --weights or --seed, not both");
    o.load_progress = load_progress_line("tabula bench", false);
    WeightLoadTimes t;
    o.weights = std::make_shared<const WeightMap>(load_weight_map(args.get("weights"), args.get("key"), &t));
    o.map_ms = t.map_ms;
    o.parse_ms = t.parse_ms;
  }
  check_arch_name("bench", args.positional().at(0));
  const BenchResult r = bench_model(args.positional().at(0), o);
  std::cout << r.summary() << "\n" << r.key_values();
  return 0;
}

}  // namespace tabula::cli
