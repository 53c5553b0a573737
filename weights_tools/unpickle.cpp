#include "weights_tools/unpickle.h"

#include <cstring>
#include <set>
#include <unordered_map>

namespace tabula::weights::pickle {

std::string_view kind_name(Object::Kind k) {
  switch (k) {
    case Object::Kind::none: return "None";
    case Object::Kind::boolean: return "bool";
    case Object::Kind::integer: return "int";
    case Object::Kind::real: return "float";
    case Object::Kind::string: return "str";
    case Object::Kind::tuple: return "tuple";
    case Object::Kind::list: return "list";
    case Object::Kind::dict: return "dict";
    case Object::Kind::set: return "set";
    case Object::Kind::global: return "global";
    case Object::Kind::storage: return "storage";
    case Object::Kind::tensor: return "tensor";
    case Object::Kind::mark: return "mark";
  }
  return "?";
}

std::string Object::describe() const {
  switch (kind) {
    case Kind::string: return "str '" + s + "'";
    case Kind::integer: return "int " + std::to_string(i);
    case Kind::global: return "global " + s;
    case Kind::dict: return std::string(ordered ? "OrderedDict" : "dict") + " (" + std::to_string(entries.size()) + " entries)";
    case Kind::tuple: case Kind::list: case Kind::set:
      return std::string(kind_name(kind)) + " (" + std::to_string(items.size()) + " items)";
    case Kind::tensor: {
      std::string out = "tensor [";
      for (size_t k = 0; k < tensor->size.size(); ++k) out += (k ? ", " : "") + std::to_string(tensor->size[k]);
      return out + "]";
    }
    default: return std::string(kind_name(kind));
  }
}

namespace {

// torch.<X>Storage -> element dtype (the legacy typed-storage names torch.save still writes).
const std::unordered_map<std::string, DType>& storage_types() {
  static const std::unordered_map<std::string, DType> m = {
      {"torch.FloatStorage", DType::f32},  {"torch.HalfStorage", DType::f16},   {"torch.BFloat16Storage", DType::bf16},
      {"torch.DoubleStorage", DType::f64}, {"torch.LongStorage", DType::i64},   {"torch.IntStorage", DType::i32},
      {"torch.ShortStorage", DType::i16},  {"torch.CharStorage", DType::i8},    {"torch.ByteStorage", DType::u8},
      {"torch.BoolStorage", DType::boolean}};
  return m;
}

const std::set<std::string>& dtype_globals() {
  static const std::set<std::string> s = {"torch.float32", "torch.float16", "torch.bfloat16", "torch.float64",
                                          "torch.int64",   "torch.int32",   "torch.int16",    "torch.int8",
                                          "torch.uint8",   "torch.bool"};
  return s;
}

// Callables tabula implements (each maps to fixed code in reduce() below).
const std::set<std::string>& callable_globals() {
  static const std::set<std::string> s = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                          "torch._utils._rebuild_parameter",
                                          "torch._utils._rebuild_parameter_with_state", "torch.Size", "torch.device",
                                          "builtins.set"};
  return s;
}

// The rest of torch's weights_only allow-list (torch/_weights_only_unpickler.py, _get_allowed_globals):
// accepted by torch, not needed for state dicts, so refused here with a message saying so.
const std::set<std::string>& torch_only_globals() {
  static const std::set<std::string> s = {
      "collections.Counter", "torch.nn.parameter.Parameter", "torch.serialization._get_layout", "torch.Tensor",
      "_codecs.encode", "builtins.bytearray", "builtins.complex", "torch._utils._rebuild_qtensor",
      "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_sparse_tensor",
      "torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_wrapper_subclass",
      "torch._utils._rebuild_device_tensor_from_numpy", "torch._utils._rebuild_device_tensor_from_cpu_tensor",
      "torch._tensor._rebuild_from_type_v2", "torch.per_tensor_affine", "torch.per_tensor_symmetric",
      "torch.per_channel_affine", "torch.per_channel_symmetric", "torch.per_channel_affine_float_qparams",
      "torch.complex64", "torch.complex128", "torch.uint16", "torch.uint32", "torch.uint64",
      "torch.float8_e4m3fn", "torch.float8_e5m2", "torch.ComplexFloatStorage", "torch.ComplexDoubleStorage",
      "torch.QInt8Storage", "torch.QUInt8Storage", "torch.QInt32Storage", "torch.QUInt4x2Storage",
      "torch.QUInt2x4Storage", "torch.storage.UntypedStorage", "torch.storage.TypedStorage", "torch.FloatTensor",
      "torch.HalfTensor", "torch.BFloat16Tensor", "torch.DoubleTensor", "torch.LongTensor", "torch.IntTensor"};
  return s;
}

// Python 2 module names that protocol-2 pickles use (pickle's _compat_pickle mapping, the part that matters).
std::string python3_module(const std::string& m) {
  if (m == "__builtin__" || m == "exceptions") return "builtins";
  if (m == "copy_reg") return "copyreg";
  return m;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* d, size_t n, const std::string& source, const PersistentLoad& pl)
      : d_(d), n_(n), source_(source), persistent_load_(pl) {}

  std::shared_ptr<const Unpickled> run() {
    while (true) {
      op_pos_ = pos_;
      uint8_t op = byte();
      switch (op) {
        case 0x80: proto_ = byte(); break;  // PROTO
        case '.': {                         // STOP
          if (stack_.size() != 1 || !marks_.empty()) fail("malformed pickle: STOP with a stack of " + std::to_string(stack_.size()));
          out_->root = stack_.back();
          return out_;
        }
        case 'c': global(); break;           // GLOBAL
        case 'R': reduce(); break;           // REDUCE
        case 'b': build(); break;            // BUILD
        case 0x81: fail("NEWOBJ is not supported (only NEWOBJ of nn.Parameter, which torch.save does not write)");
        case 'a': {                          // APPEND
          Ref v = pop();
          Ref& list = top();
          if (!list->is(Object::Kind::list)) fail("APPEND to a " + list->describe() + " (lists only)");
          list->items.push_back(v);
          break;
        }
        case 'e': {                          // APPENDS
          std::vector<Ref> items = pop_mark();
          Ref& list = top();
          if (!list->is(Object::Kind::list)) fail("APPENDS to a " + list->describe() + " (lists only)");
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 's': {                          // SETITEM
          Ref v = pop();
          Ref k = pop();
          set_item(top(), k, v);
          break;
        }
        case 'u': {                          // SETITEMS
          std::vector<Ref> items = pop_mark();
          if (items.size() % 2) fail("SETITEMS with an odd number of items");
          Ref& dict = top();
          for (size_t k = 0; k < items.size(); k += 2) set_item(dict, items[k], items[k + 1]);
          break;
        }
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case 't': push(seq(Object::Kind::tuple, pop_mark())); break;
        case 0x85: { Ref a = pop(); push(seq(Object::Kind::tuple, {a})); break; }
        case 0x86: { Ref b = pop(); Ref a = pop(); push(seq(Object::Kind::tuple, {a, b})); break; }
        case 0x87: { Ref c = pop(); Ref b = pop(); Ref a = pop(); push(seq(Object::Kind::tuple, {a, b, c})); break; }
        case 'N': push(make(Object::Kind::none)); break;
        case 0x88: push(boolean(true)); break;
        case 0x89: push(boolean(false)); break;
        case ')': push(seq(Object::Kind::tuple, {})); break;
        case ']': push(seq(Object::Kind::list, {})); break;
        case '}': push(make(Object::Kind::dict)); break;
        case 0x8f: push(seq(Object::Kind::set, {})); break;
        case 'J': { uint32_t v = u32(); push(integer(static_cast<int32_t>(v))); break; }
        case 'K': push(integer(byte())); break;
        case 'M': { uint16_t v = static_cast<uint16_t>(byte()); v = static_cast<uint16_t>(v | (byte() << 8)); push(integer(v)); break; }
        case 'G': {                          // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | byte();
          Ref o = make(Object::Kind::real);
          std::memcpy(&o->f, &bits, 8);
          push(o);
          break;
        }
        case 'X': { uint32_t len = u32(); push(str(take(len))); break; }  // BINUNICODE
        case 'U': { uint8_t len = byte(); push(str(take(len))); break; }  // SHORT_BINSTRING
        case 'Q': persistent_id(); break;    // BINPERSID
        case 'h': get(byte()); break;        // BINGET
        case 'j': get(u32()); break;         // LONG_BINGET
        case 'q': put(byte()); break;        // BINPUT
        case 'r': put(u32()); break;         // LONG_BINPUT
        case 0x8a: {                         // LONG1: little-endian two's complement
          uint8_t len = byte();
          if (len > 8) fail("integer of " + std::to_string(len) + " bytes does not fit in 64 bits");
          std::string b = take(len);
          uint64_t v = 0;
          for (int k = len - 1; k >= 0; --k) v = (v << 8) | static_cast<uint8_t>(b[static_cast<size_t>(k)]);
          if (len > 0 && len < 8 && (static_cast<uint8_t>(b[len - 1]) & 0x80)) v |= ~uint64_t(0) << (8 * len);
          push(integer(static_cast<int64_t>(v)));
          break;
        }
        default: {
          char buf[8];
          std::snprintf(buf, sizeof buf, "0x%02x", op);
          fail(std::string("unsupported pickle opcode ") + buf +
               (op >= 0x20 && op < 0x7f ? std::string(" ('") + static_cast<char>(op) + "')" : std::string()) +
               " (torch.load(weights_only=True) refuses it too)");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw UnpickleError(source_ + ": byte " + std::to_string(op_pos_) + ": " + msg);
  }

  uint8_t byte() {
    if (pos_ >= n_) fail("truncated pickle (no STOP opcode)");
    return d_[pos_++];
  }
  uint32_t u32() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= static_cast<uint32_t>(byte()) << (8 * k);
    return v;
  }
  std::string take(size_t len) {
    if (len > n_ - pos_) fail("truncated pickle (string of " + std::to_string(len) + " bytes runs past the end)");
    std::string s(reinterpret_cast<const char*>(d_ + pos_), len);
    pos_ += len;
    return s;
  }
  std::string line() {
    size_t start = pos_;
    while (pos_ < n_ && d_[pos_] != '\n') ++pos_;
    if (pos_ >= n_) fail("truncated pickle (GLOBAL without newline)");
    std::string s(reinterpret_cast<const char*>(d_ + start), pos_ - start);
    ++pos_;
    return s;
  }

  Ref make(Object::Kind k) {
    out_->objects.push_back(std::make_unique<Object>());
    Ref o = out_->objects.back().get();
    o->kind = k;
    return o;
  }
  Ref boolean(bool b) { Ref o = make(Object::Kind::boolean); o->b = b; return o; }
  Ref integer(int64_t i) { Ref o = make(Object::Kind::integer); o->i = i; return o; }
  Ref str(std::string s) { Ref o = make(Object::Kind::string); o->s = std::move(s); return o; }
  Ref seq(Object::Kind k, std::vector<Ref> items) { Ref o = make(k); o->items = std::move(items); return o; }

  void push(Ref o) {
    if (stack_.size() > (1u << 24)) fail("pickle stack too deep");
    stack_.push_back(std::move(o));
  }
  Ref pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("malformed pickle: pop from an empty stack");
    Ref o = stack_.back();
    stack_.pop_back();
    return o;
  }
  Ref& top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("malformed pickle: empty stack");
    return stack_.back();
  }
  std::vector<Ref> pop_mark() {
    if (marks_.empty()) fail("malformed pickle: no MARK");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Ref> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void get(uint32_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo key " + std::to_string(idx) + " was never stored");
    push(it->second);
  }
  void put(uint32_t idx) {
    if (memo_.size() > (1u << 24)) fail("pickle memo too large");
    memo_[idx] = top();
  }

  void set_item(Ref dict, Ref k, Ref v) {
    if (!dict->is(Object::Kind::dict)) fail("SETITEM on a " + dict->describe() + " (dict/OrderedDict only)");
    if (!(k->is(Object::Kind::string) || k->is(Object::Kind::integer)))
      fail("dict key of type " + std::string(kind_name(k->kind)) + " (str or int keys only)");
    for (auto& [ek, ev] : dict->entries) {
      if (ek->kind == k->kind && ek->s == k->s && ek->i == k->i) {  // Python semantics: later value wins
        ev = v;
        return;
      }
    }
    dict->entries.emplace_back(k, v);
  }

  void global() {
    std::string module = python3_module(line());
    std::string name = line();
    std::string q = module + "." + name;
    if (storage_types().count(q) || dtype_globals().count(q) || callable_globals().count(q)) {
      Ref g = make(Object::Kind::global);
      g->s = q;
      push(g);
      return;
    }
    if (torch_only_globals().count(q))
      fail("global '" + q + "' is allowed by torch.load(weights_only=True) but tabula does not support it "
           "(plain state dicts of dense tensors only); nothing was executed");
    fail("refusing global '" + q + "': it is not on the allow-list of torch.load(weights_only=True), so the file "
         "may run arbitrary code when unpickled by Python; tabula never executes pickled code and nothing was run");
  }

  static std::vector<int64_t> int_tuple(Ref o, bool& ok) {
    std::vector<int64_t> out;
    ok = o->is(Object::Kind::tuple) || o->is(Object::Kind::list);
    if (!ok) return out;
    for (const Ref& x : o->items) {
      if (!x->is(Object::Kind::integer)) { ok = false; return out; }
      out.push_back(x->i);
    }
    return out;
  }

  Ref rebuild_tensor(const std::vector<Ref>& a) {
    if (a.size() < 4 || !a[0]->is(Object::Kind::storage) || !a[1]->is(Object::Kind::integer))
      fail("_rebuild_tensor_v2 with unexpected arguments");
    bool ok1 = false, ok2 = false;
    auto t = std::make_shared<TensorRef>();
    t->storage = a[0]->storage;
    t->offset = a[1]->i;
    t->size = int_tuple(a[2], ok1);
    t->stride = int_tuple(a[3], ok2);
    if (!ok1 || !ok2 || t->size.size() != t->stride.size()) fail("_rebuild_tensor_v2: size/stride are not int tuples of equal length");
    if (t->offset < 0) fail("_rebuild_tensor_v2: negative storage offset");
    // The highest element the view touches must lie inside the storage (a lying checkpoint must not read
    // past its record).
    bool empty = false;
    uint64_t last = static_cast<uint64_t>(t->offset);
    for (size_t k = 0; k < t->size.size(); ++k) {
      if (t->size[k] < 0 || t->stride[k] < 0) fail("_rebuild_tensor_v2: negative size or stride");
      if (t->size[k] == 0) empty = true;
      uint64_t step = 0;
      if (t->size[k] > 0 && (__builtin_mul_overflow(static_cast<uint64_t>(t->size[k] - 1), static_cast<uint64_t>(t->stride[k]), &step) ||
                             __builtin_add_overflow(last, step, &last)))
        fail("_rebuild_tensor_v2: size x stride overflows");
    }
    if (!empty && last >= static_cast<uint64_t>(t->storage->numel))
      fail("tensor view (offset " + std::to_string(t->offset) + ", reaching element " + std::to_string(last) +
           ") runs past its storage '" + t->storage->key + "' of " + std::to_string(t->storage->numel) + " elements");
    Ref o = make(Object::Kind::tensor);
    o->tensor = t;
    return o;
  }

  void reduce() {
    Ref args = pop();
    Ref& fn = top();
    if (!fn->is(Object::Kind::global) || !callable_globals().count(fn->s))
      fail("REDUCE of " + fn->describe() + ", which is not an allowed callable");
    if (!args->is(Object::Kind::tuple)) fail("REDUCE of " + fn->s + " with non-tuple arguments");
    const std::vector<Ref>& a = args->items;
    const std::string& f = fn->s;
    Ref result = nullptr;
    if (f == "collections.OrderedDict") {
      result = make(Object::Kind::dict);
      result->ordered = true;
      if (!a.empty()) {
        // OrderedDict(iterable of pairs), which torch.save never writes but weights_only accepts.
        if (a.size() != 1 || !(a[0]->is(Object::Kind::list) || a[0]->is(Object::Kind::tuple)))
          fail("OrderedDict with unexpected arguments");
        for (const Ref& kv : a[0]->items) {
          if (!kv->is(Object::Kind::tuple) || kv->items.size() != 2) fail("OrderedDict item is not a pair");
          set_item(result, kv->items[0], kv->items[1]);
        }
      }
    } else if (f == "torch._utils._rebuild_tensor_v2") {
      result = rebuild_tensor(a);
    } else if (f == "torch._utils._rebuild_parameter" || f == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || !a[0]->is(Object::Kind::tensor)) fail(f + " without a tensor");
      result = a[0];
    } else if (f == "torch.Size") {
      bool ok = false;
      int_tuple(a.empty() ? make(Object::Kind::none) : a[0], ok);
      if (a.size() != 1 || !ok) fail("torch.Size with unexpected arguments");
      result = seq(Object::Kind::tuple, a[0]->items);
    } else if (f == "torch.device") {
      if (a.empty() || !a[0]->is(Object::Kind::string)) fail("torch.device with unexpected arguments");
      result = str(a.size() > 1 && a[1]->is(Object::Kind::integer) ? a[0]->s + ":" + std::to_string(a[1]->i) : a[0]->s);
    } else if (f == "builtins.set") {
      result = seq(Object::Kind::set, {});
      if (!a.empty()) {
        if (!(a[0]->is(Object::Kind::list) || a[0]->is(Object::Kind::tuple))) fail("set() with unexpected arguments");
        result->items = a[0]->items;
      }
    }
    if (!result) fail("REDUCE of " + f + " produced nothing");  // every allowed callable is handled above
    fn = result;
  }

  void build() {
    Ref state = pop();
    Ref& inst = top();
    // OrderedDict state is its __dict__ (torch state dicts carry `_metadata` there): accepted, not needed.
    if (inst->is(Object::Kind::dict) && inst->ordered) {
      if (!state->is(Object::Kind::dict) && !state->is(Object::Kind::none)) fail("BUILD of an OrderedDict with a non-dict state");
      return;
    }
    fail("BUILD of " + inst->describe() + " (only OrderedDict state is accepted)");
  }

  void persistent_id() {
    Ref pid = pop();
    if (!pid->is(Object::Kind::tuple) || pid->items.empty() || !pid->items[0]->is(Object::Kind::string) ||
        pid->items[0]->s != "storage")
      fail("persistent id " + pid->describe() + " is not a storage reference (only storages are allowed)");
    const auto& it = pid->items;
    if (it.size() != 5 || !it[1]->is(Object::Kind::global) || !it[2]->is(Object::Kind::string) ||
        !it[3]->is(Object::Kind::string) || !it[4]->is(Object::Kind::integer))
      fail("malformed storage reference (expected ('storage', type, key, location, numel))");
    if (!storage_types().count(it[1]->s)) fail("storage of type " + it[1]->s + " is not supported");
    if (it[4]->i < 0) fail("storage with negative size");
    auto key = it[2]->s;
    auto found = storages_.find(key);
    Ref o = make(Object::Kind::storage);
    if (found != storages_.end()) {
      // Shared storage: the same record seen twice is one storage (tensors viewing it alias the same bytes).
      if (found->second->dtype != storage_types().at(it[1]->s) || found->second->numel != it[4]->i)
        fail("storage '" + key + "' referenced twice with different type or size");
      o->storage = found->second;
    } else {
      o->storage = persistent_load_(storage_types().at(it[1]->s), key, it[3]->s, it[4]->i);
      if (!o->storage) fail("storage '" + key + "' could not be resolved");
      storages_[key] = o->storage;
    }
    push(o);
  }

  const uint8_t* d_;
  size_t n_;
  const std::string& source_;
  const PersistentLoad& persistent_load_;
  size_t pos_ = 0, op_pos_ = 0;
  int proto_ = 0;
  std::shared_ptr<Unpickled> out_ = std::make_shared<Unpickled>();
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, Ref> memo_;
  std::unordered_map<std::string, std::shared_ptr<StorageRef>> storages_;
};

}  // namespace

bool is_allowed_global(const std::string& q) {
  return storage_types().count(q) || dtype_globals().count(q) || callable_globals().count(q);
}
bool torch_allows_global(const std::string& q) { return is_allowed_global(q) || torch_only_globals().count(q); }

std::shared_ptr<const Unpickled> unpickle(const uint8_t* data, size_t size, const std::string& source,
                                          const PersistentLoad& persistent_load) {
  return Unpickler(data, size, source, persistent_load).run();
}

}  // namespace tabula::weights::pickle
