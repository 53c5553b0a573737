// `tabula embed`: manifest (or a preprocessed .npy) -> prefetching decoder -> batches -> model with the
// requested taps and pooling -> one LAYER.npy per tap + index.csv + run.json in an embedding folder
// (DESIGN.md §4). Resumable (EmbeddingStore's journal), shardable (--shard I/N, whole chunks per shard, so a
// merge of shards is byte-identical to the unsharded run), never overwriting a finished folder without --force, and
// refusing --resume on a folder made with other settings, naming each (embed/run_settings.h).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/transform.h"
#include "embed/weights_load.h"
#include "models/model.h"

namespace tabula {

struct EmbedOptions {
  std::string arch;                 // any registry arch, or a baseline: pixels[:hist=..,grid=..], nuclei[:dna=..]
  std::string model;                // a model card NAME[:k=v,...] (models/cards): arch, transform, taps, pooling
  data::TransformFlags transform;   // the transform flags (data/transform.h), over the card's or arch's defaults
  std::string weights;              // safetensors / torch checkpoint (any supported layout); empty: --seed
  std::string weights_key;          // nested checkpoint entry (--key)
  std::optional<uint64_t> seed;     // untrained weights of this seed (torch.manual_seed(seed))
  std::string data;                 // manifest (JUMP/RxRx/CSV/folder/HEST) or a float32 [N, C, H, W] .npy
  std::string out;
  // Tap names; empty: the model's default taps; {"all"}: every stage / block plus the feature output, without a
  // stage equal to it (embed/extractor.h).
  std::vector<std::string> layers;
  std::string pool;                 // avg|cls|mean|cls+mean|max|gem|none; empty: the arch's natural pooling
  std::string channels;             // per-channel|rgb:i,j,k|mean|all; empty: rgb for 3-channel data, else per-channel
  int size = 0;                     // crop size override (resize scales with it); 0: the arch's default
  std::string intensity;            // unit|percentile|minmax|none; empty: unit
  std::string device = "cpu";
  std::string precision = "fp32";
  // Where the transform runs: "cpu" (data/preprocess.h, on the decode workers) or "device" (--device cuda: the
  // decoded planes go to the GPU as stored and data/device_preprocess.h's plan runs there).
  std::string preprocess = "cpu";
  int batch = 16;
  int shard_index = 0, shard_count = 1;
  bool resume = false, force = false;
  int threads = 0;                  // model threads (0: default); decode workers are separate
  int64_t chunk_rows = 0;           // rows per journal chunk; 0: 4 batches' worth of samples
  std::string format = "npy";       // npy | h5ad (also DIR/embedding.h5ad: X = last layer, obsm = the others)
  // Mean over the rows of each group before writing: "well" (plate + well, see well_columns) or "C1,C2,..."
  // (index.csv columns); empty: one row per image. The folder then holds one row per group.
  std::string aggregate;
  bool quiet = false;
  // Share the run among the MPI ranks the launcher started (mpirun/srun; embed/ranks.h). Off for library
  // callers (the demo), which would otherwise take part in collectives they do not expect; `tabula embed` sets it.
  bool use_mpi = false;
};

struct EmbedSummary {
  std::string out;
  int64_t rows = 0, computed_rows = 0;
  std::vector<std::string> layers;
  std::vector<int64_t> dims;
  double seconds = 0;
  // Where the compute loop's wall time went: the model's forward passes, waiting for the prefetcher to deliver
  // decoded + preprocessed samples, and journalling chunks. busy = forward / (forward + waiting + writing).
  double forward_seconds = 0, wait_seconds = 0, write_seconds = 0;
  int decode_threads = 0, prefetch_samples = 0;
};

EmbedSummary run_embed(const EmbedOptions& opt);

// The columns that identify a well among a manifest's metadata columns: RxRx3's `well_id` alone when present, else
// the plate column (Metadata_Plate | plate | Plate) and the well column (Metadata_Well | well | Well | address),
// preceded by whichever of Metadata_Source, Metadata_Batch, experiment, experiment_name exist (plate names repeat
// across sources and experiments). Throws naming the columns when no plate or well column is found.
std::vector<std::string> well_columns(const std::vector<std::string>& columns);

// Replaces DIR's LAYER.npy files and index.csv (a finished store's output) by their group means over `by`:
// numpy's float32 mean over the rows of each group, groups in pandas groupby(sort=True) order; index.csv keeps
// the columns constant within every group plus `n_aggregated` (rows per group). Returns the number of groups.
int64_t aggregate_embedding(const std::string& dir, const std::vector<std::string>& layers, const std::vector<std::string>& by);

// `tabula merge`: concatenates shard folders (each a finished embed with --shard) in manifest order into `out`,
// checking that they come from the same run (same settings) and cover every row exactly once.
void merge_embeddings(const std::vector<std::string>& shards, const std::string& out, bool force);

}  // namespace tabula
