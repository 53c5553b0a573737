// `tabula embed` and `tabula merge`: argument parsing only; the work is run_embed / merge_embeddings.
#include <cstdio>
#include <iostream>
#include <regex>

#include "cli/args.h"
#include "cli/transform_flags.h"
#include "util/mpi.h"
#include "embed/embed.h"

namespace tabula::cli {

int cmd_embed(const Args& a) {
  EmbedOptions o;
  o.arch = a.get("arch");
  o.model = a.get("model");
  if (o.arch.empty() == o.model.empty()) throw UsageError("tabula embed: give --arch ARCH or --model NAME (one of them)");
  if (!o.arch.empty()) check_arch_name("embed", o.arch, true);
  if (!o.model.empty()) check_card_name("embed", o.model);
  if (a.has("weights") && a.has("seed")) throw UsageError("tabula embed: give --weights or --seed, not both");
  if (!a.has("weights") && !a.has("seed") && o.arch.rfind("pixels", 0) != 0 && o.arch.rfind("nuclei", 0) != 0)
    throw UsageError("tabula embed: give --weights FILE (trained) or --seed N (untrained) for " +
                     (o.arch.empty() ? o.model : o.arch));
  o.transform = read_transform_flags(a);
  // A .npy holds model inputs already preprocessed and is used as is: a transform flag would be ignored.
  if (a.get("data").size() > 4 && a.get("data").substr(a.get("data").size() - 4) == ".npy")
    for (const Flag& f : transform_flags())
      if (a.has(f.name))
        throw UsageError("tabula embed: --" + f.name + " does nothing with --data " + a.get("data") +
                         ": a .npy holds model inputs already preprocessed and is used as is (tabula preprocess "
                         "writes such a file from images, with these flags)");
  o.weights = a.get("weights");
  o.weights_key = a.get("key");
  if (a.has("seed")) o.seed = static_cast<uint64_t>(a.get_int("seed"));
  o.data = a.get("data");
  o.out = a.get("out");
  if (a.has("layers")) o.layers = split_list(a.get("layers"));
  o.pool = a.get("pool");
  o.device = a.get("device");
  o.precision = a.get("precision");
  o.preprocess = a.get("preprocess");
  o.batch = static_cast<int>(a.get_int("batch"));
  o.threads = static_cast<int>(a.get_int("threads"));
  o.resume = a.has("resume");
  o.force = a.has("force");
  o.quiet = a.has("quiet");
  o.use_mpi = true;  // under mpirun/srun the ranks share the run (one launcher-less process: no MPI at all)
  o.format = a.get("format");
  o.aggregate = a.get("aggregate");
  if (a.has("shard")) {
    std::smatch m;
    std::string s = a.get("shard");
    if (!std::regex_match(s, m, std::regex(R"((\d+)/(\d+))")))
      throw UsageError("tabula embed: --shard expects I/N (0-based shard I of N), got '" + s + "'");
    o.shard_index = std::stoi(m[1]);
    o.shard_count = std::stoi(m[2]);
    if (o.shard_count < 1 || o.shard_index >= o.shard_count)
      throw UsageError("tabula embed: --shard " + s + ": need 0 <= I < N");
  }
  EmbedSummary s = run_embed(o);
  if (mpi::world().rank != 0) return 0;  // rank 0 reports the run
  std::cout << s.out << ": " << s.rows << " rows";
  for (size_t i = 0; i < s.layers.size(); ++i) std::cout << (i ? ", " : "; ") << s.layers[i] << " [" << s.dims[i] << "]";
  std::printf(" (%.1f s)\n", s.seconds);
  // Whether the data pipeline keeps the model busy (issue #6's criterion), for the rows computed in this run.
  const double loop = s.forward_seconds + s.wait_seconds + s.write_seconds;
  if (!o.quiet && loop > 0)
    std::fprintf(stderr, "tabula embed: model busy %.1f %% of the compute loop (forward %.2f s, waiting for data %.2f s, "
                         "writing %.2f s; %d decode threads, %d samples prefetched)\n",
                 100.0 * s.forward_seconds / loop, s.forward_seconds, s.wait_seconds, s.write_seconds, s.decode_threads,
                 s.prefetch_samples);
  return 0;
}

int cmd_merge(const Args& a) {
  merge_embeddings(a.positional(), a.get("out"), a.has("force"));
  std::cout << a.get("out") << ": merged " << a.positional().size() << " shards\n";
  return 0;
}

}  // namespace tabula::cli
