// A restricted unpickler for torch.save checkpoints. It accepts what torch.load(weights_only=True) accepts
// (same opcodes: protocol 2, as torch.save writes) and builds plain data only. Globals are looked up in an
// allow-list; a pickle naming anything else (os.system, builtins.eval, subprocess.Popen, ...) is refused at
// the GLOBAL opcode with an error naming the global, before anything could be called. Even allowed globals
// are never "called" in any general sense: each one maps to a fixed C++ constructor below
// (OrderedDict, _rebuild_tensor_v2, _rebuild_parameter, torch.Size, torch.device, storage types, dtypes).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/dtype.h"

namespace tabula::weights::pickle {

// Refused or malformed pickle: the message names the global / opcode and the byte offset.
struct UnpickleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Object;
// Objects refer to each other by plain pointers: a pickle may build cycles (a list containing itself via the
// memo), so ownership lives in one place, the Unpickled arena, never in the objects.
using Ref = Object*;

// A storage as a persistent id names it: ('storage', torch.FloatStorage, '0', 'cpu', numel).
struct StorageRef {
  DType dtype = DType::f32;
  std::string key;       // record name under <archive>/data/
  std::string location;  // 'cpu', 'cuda:0', ...
  int64_t numel = 0;     // elements
  const uint8_t* data = nullptr;  // the record's bytes (numel * dtype_size), set by the persistent loader
};

// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)
struct TensorRef {
  std::shared_ptr<StorageRef> storage;
  int64_t offset = 0;  // elements
  std::vector<int64_t> size, stride;
};

struct Object {
  enum class Kind { none, boolean, integer, real, string, tuple, list, dict, set, global, storage, tensor, mark };
  Kind kind = Kind::none;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                      // string; for a global: "module.name"
  std::vector<Ref> items;             // tuple, list, set
  std::vector<std::pair<Ref, Ref>> entries;  // dict (insertion order); ordered=true for OrderedDict
  bool ordered = false;
  std::shared_ptr<StorageRef> storage;
  std::shared_ptr<TensorRef> tensor;

  bool is(Kind k) const { return kind == k; }
  std::string describe() const;  // "str 'model'", "tensor [3, 4]", "dict (12 entries)", ...
};

std::string_view kind_name(Object::Kind k);

// Resolves a persistent id to a storage (checks the record exists and has numel * element-size bytes).
using PersistentLoad = std::function<std::shared_ptr<StorageRef>(DType dtype, const std::string& key,
                                                                const std::string& location, int64_t numel)>;

// The globals tabula accepts (a subset of torch's weights_only allow-list) and the storage-type -> dtype map.
bool is_allowed_global(const std::string& qualified);
bool torch_allows_global(const std::string& qualified);  // in torch's weights_only list (for clearer errors)

// Every object of one unpickled file; `root` is what the pickle returned.
struct Unpickled {
  std::vector<std::unique_ptr<Object>> objects;
  Ref root = nullptr;
};

// Unpickles `data` (`source` names it in errors). Throws UnpickleError.
std::shared_ptr<const Unpickled> unpickle(const uint8_t* data, size_t size, const std::string& source,
                                          const PersistentLoad& persistent_load);

}  // namespace tabula::weights::pickle
