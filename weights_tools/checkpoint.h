// One entry point for every weight file tabula reads: safetensors, and PyTorch checkpoints written by
// torch.save (.pth / .pt / .bin, zip format). Nested checkpoints ({"model": ...}, {"state_dict": ...},
// DINO/DINOv2 {"teacher": ..., "student": ...}) are resolved to one state dict, and wrapper prefixes
// (`module.` from DataParallel/DDP, `teacher.`/`student.`, `backbone.` from DINO heads) are removed, with
// everything that was chosen, stripped or dropped reported so nothing happens silently.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "weights_tools/unpickle.h"
#include "weights_tools/weight_tensor.h"

namespace tabula::weights {

enum class FileFormat { safetensors, torch_zip, torch_legacy, unknown };
std::string_view format_name(FileFormat f);
FileFormat detect_format(const std::string& path);  // by content, not extension; throws when unreadable

struct LoadOptions {
  // Which nested state dict to use: entries separated by '/', e.g. "teacher", "model", "model/teacher".
  // A segment that is not a dict entry selects the keys starting with "<segment>." (and strips it).
  // Empty: the top level when it is a state dict, else the first of state_dict, model, teacher,
  // model_state_dict, module, network, net, ema, student that holds tensors.
  std::string key;
  bool strip_prefixes = true;  // module. / teacher. (over student.) / backbone.
};

struct Checkpoint {
  std::string path;
  FileFormat format = FileFormat::unknown;
  StateDict sd;
  std::vector<std::string> top_level_keys;   // of a nested checkpoint (empty for a plain state dict)
  std::string selected;                      // the nested entry used ("" = top level)
  std::vector<std::string> stripped;         // prefixes removed, in order
  std::vector<std::string> dropped;          // tensors outside the chosen prefix (e.g. DINO head.*)
  std::vector<std::string> skipped;          // non-tensor entries inside the state dict
  size_t copied_tensors = 0;                 // tensors that could not be zero-copy views (non-contiguous)
  double map_ms = 0;    // opening and memory-mapping the file, detecting its format
  double parse_ms = 0;  // the safetensors header or the zip directory + pickle, choosing the state dict
};

// Throws std::runtime_error naming the file (and the key, global or opcode) on any problem.
Checkpoint load_checkpoint(const std::string& path, const LoadOptions& opts = {});

// The raw unpickled object of a torch zip checkpoint with storages resolved (for inspect and tests).
struct TorchArchive {
  std::shared_ptr<const MappedFile> file;
  std::shared_ptr<const pickle::Unpickled> objects;  // owns every object; root points into it
  pickle::Ref root = nullptr;
};
TorchArchive read_torch_zip(const std::string& path);
// A tensor reference as a WeightTensor: a zero-copy view when the view is contiguous, else a gathered copy.
WeightTensor tensor_from_ref(const std::string& name, const pickle::TensorRef& t, const std::shared_ptr<const void>& owner,
                             bool* copied = nullptr);

}  // namespace tabula::weights
