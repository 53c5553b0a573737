#include "engine/init.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

// torch's scalar ops here are plain float multiplies and adds: no contraction into FMAs.
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace tabula {

Fans calculate_fan_in_and_fan_out(const Shape& shape) {
  if (shape.size() < 2)
    throw std::invalid_argument("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions");
  int64_t receptive_field_size = 1;
  for (size_t i = 2; i < shape.size(); ++i) receptive_field_size *= shape[i];
  return {shape[1] * receptive_field_size, shape[0] * receptive_field_size};
}

double calculate_gain(std::string_view nonlinearity, std::optional<double> param) {
  static constexpr std::string_view linear_fns[] = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                                                     "conv_transpose2d", "conv_transpose3d"};
  for (auto f : linear_fns)
    if (nonlinearity == f) return 1.0;
  if (nonlinearity == "sigmoid") return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") {
    const double negative_slope = param.value_or(0.01);
    return std::sqrt(2.0 / (1 + std::pow(negative_slope, 2)));  // Python's negative_slope**2
  }
  if (nonlinearity == "selu") return 3.0 / 4;
  throw std::invalid_argument("Unsupported nonlinearity " + std::string(nonlinearity));
}

namespace {
int64_t correct_fan(const Shape& shape, FanMode mode) {
  const Fans f = calculate_fan_in_and_fan_out(shape);
  return mode == FanMode::fan_in ? f.fan_in : f.fan_out;
}
}  // namespace

void uniform_init(float* w, const Shape& shape, double a, double b, TorchGenerator& gen) {
  uniform_(w, static_cast<size_t>(shape_numel(shape)), a, b, gen);
}
void normal_init(float* w, const Shape& shape, double mean, double std, TorchGenerator& gen) {
  normal_(w, static_cast<size_t>(shape_numel(shape)), mean, std, gen);
}

void kaiming_uniform_(float* w, const Shape& shape, TorchGenerator& gen, double a, FanMode mode,
                      std::string_view nonlinearity) {
  if (shape_numel(shape) == 0) return;  // torch warns and returns
  const double gain = calculate_gain(nonlinearity, a);
  const double std = gain / std::sqrt(static_cast<double>(correct_fan(shape, mode)));
  const double bound = std::sqrt(3.0) * std;
  uniform_init(w, shape, -bound, bound, gen);
}

void kaiming_normal_(float* w, const Shape& shape, TorchGenerator& gen, double a, FanMode mode,
                     std::string_view nonlinearity) {
  if (shape_numel(shape) == 0) return;
  const double gain = calculate_gain(nonlinearity, a);
  const double std = gain / std::sqrt(static_cast<double>(correct_fan(shape, mode)));
  normal_init(w, shape, 0.0, std, gen);
}

void xavier_uniform_(float* w, const Shape& shape, TorchGenerator& gen, double gain) {
  const Fans f = calculate_fan_in_and_fan_out(shape);
  const double std = gain * std::sqrt(2.0 / static_cast<double>(f.fan_in + f.fan_out));
  const double a = std::sqrt(3.0) * std;
  uniform_init(w, shape, -a, a, gen);
}

void xavier_normal_(float* w, const Shape& shape, TorchGenerator& gen, double gain) {
  const Fans f = calculate_fan_in_and_fan_out(shape);
  const double std = gain * std::sqrt(2.0 / static_cast<double>(f.fan_in + f.fan_out));
  normal_init(w, shape, 0.0, std, gen);
}

namespace {
double norm_cdf(double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; }
}  // namespace

void trunc_normal_(float* w, size_t n, TorchGenerator& gen, double mean, double std, double a, double b) {
  const double p = norm_cdf((b - mean) / std) - norm_cdf((a - mean) / std);
  if (!(p > 0.3))
    throw std::invalid_argument("trunc_normal_: [a, b] = [" + std::to_string(a) + ", " + std::to_string(b) +
                                "] holds <= 30% of the normal's mass; torch 2.15 then samples by uniform "
                                "rejection, which tabula does not replay");
  // Bounds are rounded to the tensor's dtype first (tensor.new_tensor(a).item()).
  const float lo = static_cast<float>(a), hi = static_cast<float>(b);
  normal_(w, n, mean, std, gen);
  std::vector<float> redraw;
  for (;;) {
    bool any = false;
    for (size_t i = 0; i < n && !any; ++i) any = w[i] < lo || w[i] > hi;
    if (!any) break;
    redraw.resize(n);
    normal_(redraw.data(), n, mean, std, gen);  // torch.empty_like(result).normal_(mean, std)
    for (size_t i = 0; i < n; ++i)
      if (w[i] < lo || w[i] > hi) w[i] = redraw[i];
  }
}

namespace {

// timm_trunc_normal_ after its uniform_: erfinv_, mul_(std * sqrt(2)), add_(mean), clamp_(a, b), per element.
struct TruncNormalTail {
  float from, to, scale, shift, fa, fb;
  float operator()(float u) const {
    float v = static_cast<float>(calc_erfinv(static_cast<double>(u))) * scale;
    v = v + shift;
    return std::min(std::max(v, fa), fb);  // clamp_(min=a, max=b)
  }
  bool operator==(const TruncNormalTail& o) const { return std::memcmp(this, &o, sizeof *this) == 0; }
};

// Each value of timm_trunc_normal_ is a function of one 24-bit draw alone (uniform_ keeps 24 bits of it), so for
// big tensors the 2^24 possible values are computed once (in erfinv_'s double precision, as below) and every
// element looks its draw up: the same bits at a fraction of the erf/exp calls (ViT-g's 1.1 billion weights all
// draw with one set of parameters). One table is kept, for the last parameters that asked for one; smaller tensors
// with the same parameters (ViT-g's attention projections, 2.4 M weights each) read it too once it exists.
constexpr size_t kTableBits = 24;
constexpr size_t kTableMinElements = size_t{1} << 22;
constexpr size_t kTableReuseMinElements = size_t{1} << 16;

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

// Callers hold table_mutex() while they build and read the table.
std::mutex& table_mutex() {
  static std::mutex mutex;
  return mutex;
}

// The table's parameters (null while there is none), and the table.
std::unique_ptr<TruncNormalTail>& table_key() {
  static std::unique_ptr<TruncNormalTail> key;
  return key;
}

const float* trunc_normal_table(const TruncNormalTail& tail) {
  std::unique_ptr<TruncNormalTail>& key = table_key();
  static std::unique_ptr<float[], FreeDeleter> table;
  constexpr size_t kSize = size_t{1} << kTableBits, kBytes = kSize * sizeof(float), kHugePage = size_t{2} << 20;
  if (key && *key == tail) return table.get();
  if (!table) {
    table.reset(static_cast<float*>(std::aligned_alloc(kHugePage, kBytes)));
    if (!table) throw std::bad_alloc();
    // 64 MiB read at random: on 2 MiB pages the lookups do not also miss the TLB (a hint; may be refused).
    ::madvise(table.get(), kBytes, MADV_HUGEPAGE);
  }
  key.reset();
  float* t = table.get();
  detail::parallel_chunks(kSize, 1 << 16, [t, tail](size_t b, size_t e) {
    for (size_t d = b; d < e; ++d) t[d] = tail(detail::uniform_value(static_cast<uint32_t>(d), tail.from, tail.to));
  });
  key = std::make_unique<TruncNormalTail>(tail);
  return t;
}

}  // namespace

void timm_trunc_normal_(float* w, size_t n, TorchGenerator& gen, double mean, double std, double a, double b) {
  const double l = norm_cdf((a - mean) / std);
  const double u = norm_cdf((b - mean) / std);
  const double from = 2 * l - 1, to = 2 * u - 1;
  const TruncNormalTail tail{static_cast<float>(from), static_cast<float>(to),
                             static_cast<float>(std * std::sqrt(2.0)), static_cast<float>(mean),
                             static_cast<float>(a), static_cast<float>(b)};
  std::unique_lock<std::mutex> lock(table_mutex());
  const bool table_ready = table_key() && *table_key() == tail;
  if (n < kTableMinElements && !(table_ready && n >= kTableReuseMinElements)) {
    lock.unlock();
    uniform_(w, n, from, to, gen);
    detail::parallel_chunks(n, 1 << 16, [w, tail](size_t b0, size_t e) {
      for (size_t i = b0; i < e; ++i) w[i] = tail(w[i]);
    });
    return;
  }
  if (!(from <= to)) uniform_(w, 0, from, to, gen);  // uniform_'s error for an empty range
  const float* table = trunc_normal_table(tail);
  // The draws, in order, held as their bits in the output; then each looked up (independently: any threads),
  // the table line of a draw a little ahead prefetched so that many lookups are in flight at once. The draws are
  // taken a stretch at a time on this thread (one sequence: it cannot be split) while the stretch before is
  // looked up on the others, so the generator and the first touch of the output's pages overlap the lookups.
  auto look_up = [w, table](size_t begin, size_t count) {
    detail::parallel_chunks(count, 1 << 16, [w = w + begin, table](size_t b0, size_t e) {
      constexpr size_t kAhead = 48;
      constexpr uint32_t kMask = (1u << kTableBits) - 1;
      for (size_t i = b0; i < e; ++i) {
        uint32_t d;
        if (i + kAhead < e) {
          std::memcpy(&d, w + i + kAhead, 4);
          __builtin_prefetch(table + (d & kMask));
        }
        std::memcpy(&d, w + i, 4);
        w[i] = table[d & kMask];
      }
    });
  };
  struct Joined {  // joined however the loop is left
    std::thread thread;
    void join() {
      if (thread.joinable()) thread.join();
    }
    ~Joined() { join(); }
  } looking;
  constexpr size_t kStretch = size_t{1} << 21;
  for (size_t begin = 0; begin < n; begin += kStretch) {
    const size_t count = std::min(kStretch, n - begin);
    gen.fill_random(reinterpret_cast<uint32_t*>(w + begin), count);
    looking.join();
    looking.thread = std::thread(look_up, begin, count);
  }
}

void timm_trunc_normal_tf_(float* w, size_t n, TorchGenerator& gen, double mean, double std, double a, double b) {
  timm_trunc_normal_(w, n, gen, 0.0, 1.0, a, b);
  const float scale = static_cast<float>(std), shift = static_cast<float>(mean);
  for (size_t i = 0; i < n; ++i) {
    const float v = w[i] * scale;  // mul_(std)
    w[i] = v + shift;              // add_(mean)
  }
}

void lecun_normal_(float* w, const Shape& shape, TorchGenerator& gen) {
  // variance_scaling_(mode='fan_in', distribution='truncated_normal'); .8796... is the standard deviation of
  // a standard normal truncated to (-2, 2).
  const double variance = 1.0 / static_cast<double>(calculate_fan_in_and_fan_out(shape).fan_in);
  timm_trunc_normal_tf_(w, static_cast<size_t>(shape_numel(shape)), gen, 0.0, std::sqrt(variance) / .87962566103423978);
}

void default_reset_parameters(float* weight, const Shape& weight_shape, float* bias, TorchGenerator& gen) {
  kaiming_uniform_(weight, weight_shape, gen, std::sqrt(5.0));
  if (bias) {
    const int64_t fan_in = calculate_fan_in_and_fan_out(weight_shape).fan_in;
    const double bound = fan_in > 0 ? 1 / std::sqrt(static_cast<double>(fan_in)) : 0;
    uniform_(bias, static_cast<size_t>(weight_shape[0]), -bound, bound, gen);
  }
}

uint64_t default_reset_draws(const Shape& weight_shape, bool has_bias) {
  // uniform_ on float takes one 32-bit draw per element.
  return static_cast<uint64_t>(shape_numel(weight_shape)) + (has_bias ? static_cast<uint64_t>(weight_shape[0]) : 0);
}

}  // namespace tabula
