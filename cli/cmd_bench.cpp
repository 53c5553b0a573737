// `tabula bench ARCH`: forward throughput of the untrained model of a seed ("... images/s ..." on one line).
#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/args.h"

#include "embed/embed.h"
#include "engine/threads.h"
#include "models/bench.h"
#include "models/dinov3.h"
#include "util/npy.h"

namespace tabula::cli {

namespace {
// --streamed IN.npy --out OUT.npy: the reference forward of a model too large for its fp32 weights, one block's
// weights in memory at a time (models/dinov3.h), timed, with the peak RSS.
int streamed_reference(const Args& args) {
  if (!args.has("out")) throw UsageError("tabula bench: --streamed needs --out OUT.npy");
  if (args.has("weights")) throw UsageError("tabula bench: --streamed generates the weights of --seed");
  if (args.get("precision") != "fp32" || args.get("device") != "cpu")
    throw UsageError("tabula bench: --streamed is the fp32 reference on the cpu");
  set_num_threads(static_cast<int>(args.get_int("threads")));
  const std::string arch = args.positional().at(0);
  const NpyArray in = read_npy(args.get("streamed"));
  if (in.shape.size() != 4) throw UsageError("tabula bench: " + args.get("streamed") + " must be [N, C, H, W]");
  const Tensor x = Tensor::from_vector(Shape(in.shape.begin(), in.shape.end()), in.to_f32());
  const auto t0 = std::chrono::steady_clock::now();
  const Tensor cls = dinov3_streamed_forward(arch, static_cast<uint64_t>(args.get_int("seed")), x,
                                             load_progress_line("tabula bench --streamed", false));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_npy(args.get("out"), cls.shape(), cls.contiguous().data<float>());
  std::printf("%s: streamed fp32 forward of %lld image(s) in %.1f s (weights generated block by block), peak RSS "
              "%.0f MB; x_norm_clstoken %s -> %s\n",
              arch.c_str(), static_cast<long long>(x.size(0)), s, peak_rss_mb(), shape_str(cls.shape()).c_str(),
              args.get("out").c_str());
  return 0;
}
}  // namespace

int cmd_bench(const Args& args) {
  if (args.has("streamed")) {
    check_arch_name("bench", args.positional().at(0));
    return streamed_reference(args);
  }
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
  o.load_progress = load_progress_line("tabula bench", false);
  if (args.has("weights")) {
    if (args.has("seed")) throw UsageError("tabula bench: give --weights or --seed, not both");
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
