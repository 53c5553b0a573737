#include "eval/metrics/features.h"

#include <immintrin.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <mutex>
#include <thread>

#include "util/npy.h"
#include "engine/system.h"
#include "util/suggest.h"

namespace tabula::eval {

namespace fs = std::filesystem;

FeatureSource resolve_features(const std::string& features_arg, const std::string& meta_arg) {
  FeatureSource s;
  std::string dir, layer;
  if (features_arg.size() > 4 && features_arg.substr(features_arg.size() - 4) == ".npy") {
    s.npy_path = features_arg;
    s.layer = fs::path(features_arg).stem().string();
    dir = fs::path(features_arg).parent_path().string();
  } else {
    size_t colon = features_arg.rfind(':');
    if (colon != std::string::npos && fs::is_directory(features_arg.substr(0, colon))) {
      dir = features_arg.substr(0, colon);
      layer = features_arg.substr(colon + 1);
      s.npy_path = (fs::path(dir) / (layer + ".npy")).string();
      s.layer = layer;
    } else if (fs::is_directory(features_arg)) {
      dir = features_arg;
      std::vector<std::string> found;
      for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".npy") found.push_back(e.path().string());
      if (found.size() != 1)
        throw std::runtime_error("--features " + features_arg + ": the folder holds " + std::to_string(found.size()) +
                                 " .npy files; name one as DIR:LAYER");
      s.npy_path = found[0];
      s.layer = fs::path(found[0]).stem().string();
    } else {
      // pycytominer/copairs users hold profiles as one table (Metadata_* columns + features): say how to split it.
      const std::string ext = fs::path(features_arg).extension().string();
      const bool table = ext == ".csv" || ext == ".gz" || ext == ".parquet" || ext == ".tsv";
      throw std::runtime_error("--features " + features_arg + ": not a .npy file, a folder or DIR:LAYER" +
                               (table ? std::string(" (a profiles table is not read: save its feature columns as a "
                                                    "float32 [N, D] .npy and its Metadata_* columns as the --meta "
                                                    "CSV, one row per profile in the same order)")
                                      : std::string()));
    }
  }
  if (!fs::exists(s.npy_path)) {
    std::vector<std::string> layers;  // the layers the folder holds, for a "did you mean"
    if (!dir.empty() && fs::is_directory(dir))
      for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".npy") layers.push_back(e.path().stem().string());
    std::sort(layers.begin(), layers.end());
    throw std::runtime_error("--features: " + s.npy_path + " does not exist" + did_you_mean(s.layer, layers));
  }
  if (!meta_arg.empty()) {
    s.meta_path = meta_arg;
  } else if (!dir.empty() && fs::exists(fs::path(dir) / "index.csv")) {
    s.meta_path = (fs::path(dir) / "index.csv").string();
  }
  return s;
}

std::string find_non_finite(const RowMatrixF& x) {
  // Parallel scan; the first bad row of each chunk is kept and the lowest reported, so the message does not
  // depend on the thread count.
  const int threads = default_threads();
  std::vector<int64_t> first(threads, -1);
  parallel_for(threads, threads, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t r0 = x.rows() * t / threads, r1 = x.rows() * (t + 1) / threads;
      for (int64_t r = r0; r < r1 && first[t] < 0; ++r)
        if (!x.row(r).allFinite()) first[t] = r;
    }
  });
  for (int64_t r : first)
    if (r >= 0)
      for (int64_t c = 0; c < x.cols(); ++c)
        if (!std::isfinite(x(r, c)))
          return "row " + std::to_string(r) + ", column " + std::to_string(c) + " is " +
                 (std::isnan(x(r, c)) ? "NaN" : "inf");
  return "";
}

namespace {
// Layout of the common case (little-endian float32, C order, 2-D, file size consistent with the header): where the
// data starts and its shape. Anything else returns false and takes util/npy's general reader.
struct NpyF32Layout {
  int64_t offset = 0, rows = 0, cols = 0;
};
bool npy_f32_layout(std::FILE* f, NpyF32Layout* out) {
  unsigned char pre[10];
  bool ok = std::fread(pre, 1, 10, f) == 10 && std::memcmp(pre, "\x93NUMPY", 6) == 0 && (pre[6] == 1 || pre[6] == 2);
  size_t hlen = 0, prefix = 10;
  if (ok && pre[6] == 1) {
    hlen = pre[8] | (pre[9] << 8);
  } else if (ok) {
    unsigned char more[2];
    ok = std::fread(more, 1, 2, f) == 2;
    hlen = pre[8] | (pre[9] << 8) | (size_t(more[0]) << 16) | (size_t(more[1]) << 24);
    prefix = 12;
  }
  std::string header(hlen, '\0');
  ok = ok && hlen < (1u << 20) && std::fread(header.data(), 1, hlen, f) == hlen;
  long long rows = -1, cols = -1;
  if (ok) {
    auto has = [&](const char* s) { return header.find(s) != std::string::npos; };
    size_t sp = header.find("'shape': (");
    ok = has("'descr': '<f4'") && has("'fortran_order': False") && sp != std::string::npos &&
         std::sscanf(header.c_str() + sp + 10, "%lld, %lld)", &rows, &cols) == 2 && rows >= 0 && cols >= 0;
  }
  if (ok) {
    std::fseek(f, 0, SEEK_END);
    long long size = std::ftell(f);
    ok = size == static_cast<long long>(prefix + hlen) + rows * cols * 4;
  }
  if (ok) *out = {static_cast<int64_t>(prefix + hlen), rows, cols};
  return ok;
}

// The data goes straight from the file into the matrix, so loading needs one copy of the features, not two.
bool load_f32_direct(const std::string& path, RowMatrixF* out) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  NpyF32Layout l;
  bool ok = npy_f32_layout(f, &l) && std::fseek(f, static_cast<long>(l.offset), SEEK_SET) == 0;
  if (ok) {
    out->resize(l.rows, l.cols);
    ok = std::fread(out->data(), 4, static_cast<size_t>(l.rows * l.cols), f) == static_cast<size_t>(l.rows * l.cols);
  }
  std::fclose(f);
  return ok;
}
}  // namespace

RowMatrixF load_features(const std::string& npy_path) {
  RowMatrixF direct;
  if (load_f32_direct(npy_path, &direct)) {
    std::string bad = find_non_finite(direct);
    if (!bad.empty()) throw std::runtime_error(npy_path + ": " + bad + " (features must be finite)");
    return direct;
  }
  NpyArray a = read_npy(npy_path);
  if (a.shape.size() != 2)
    throw std::runtime_error(npy_path + ": features must be a 2-D array [N, D], found " +
                             std::to_string(a.shape.size()) + " dimensions");
  RowMatrixF x(a.shape[0], a.shape[1]);
  if (a.dtype == DType::f32) {
    std::copy(a.as<float>(), a.as<float>() + a.numel(), x.data());
  } else {
    std::vector<float> v = a.to_f32();
    std::copy(v.begin(), v.end(), x.data());
  }
  std::string bad = find_non_finite(x);
  if (!bad.empty()) throw std::runtime_error(npy_path + ": " + bad + " (features must be finite)");
  return x;
}

float row_l2_norm(const float* x, int64_t n) {
  double ss = 0;
  for (int64_t c = 0; c < n; ++c) ss += static_cast<double>(x[c]) * x[c];
  return static_cast<float>(std::sqrt(ss));
}

void l2_normalize_rows_inplace(RowMatrixF& x, const std::string& what) {
  parallel_for(x.rows(), 0, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float norm = row_l2_norm(x.row(r).data(), x.cols());
      if (!(norm > 0))
        throw std::runtime_error(what + ": row " + std::to_string(r) +
                                 " is all zeros; its cosine similarity is undefined");
      for (int64_t c = 0; c < x.cols(); ++c) x(r, c) = x(r, c) / norm;
    }
  });
}

FeatureRows FeatureRows::open_npy(const std::string& npy_path) {
  FeatureRows r;
  r.name_ = npy_path;
  std::FILE* f = std::fopen(npy_path.c_str(), "rb");
  if (!f) throw std::runtime_error(npy_path + ": cannot open: " + std::strerror(errno));
  NpyF32Layout l;
  bool direct = npy_f32_layout(f, &l);
  std::fclose(f);
  if (!direct) {
    r.owned_ = std::make_shared<RowMatrixF>(load_features(npy_path));
    r.mem_ = r.owned_.get();
    r.rows_ = r.mem_->rows();
    r.cols_ = r.mem_->cols();
    return r;
  }
  int fd = ::open(npy_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(npy_path + ": cannot open: " + std::strerror(errno));
  r.fd_ = std::shared_ptr<const int>(new int(fd), [](const int* p) {
    ::close(*p);
    delete p;
  });
  r.data_offset_ = l.offset;
  r.rows_ = l.rows;
  r.cols_ = l.cols;
  return r;
}

FeatureRows FeatureRows::borrow(const RowMatrixF& x, std::string name) {
  FeatureRows r;
  r.name_ = std::move(name);
  r.mem_ = &x;
  r.rows_ = x.rows();
  r.cols_ = x.cols();
  return r;
}

void FeatureRows::read_range(int64_t r0, int64_t r1, float* dst) const {
  if (r0 < 0 || r1 > rows_ || r0 > r1) throw std::out_of_range(name_ + ": rows out of range");
  if (mem_) {
    std::memcpy(dst, mem_->data() + r0 * cols_, static_cast<size_t>((r1 - r0) * cols_) * sizeof(float));
    return;
  }
  char* p = reinterpret_cast<char*>(dst);
  size_t left = static_cast<size_t>((r1 - r0) * cols_) * sizeof(float);
  off_t at = static_cast<off_t>(data_offset_ + r0 * cols_ * static_cast<int64_t>(sizeof(float)));
  while (left > 0) {
    ssize_t got = ::pread(*fd_, p, left, at);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      throw std::runtime_error(name_ + ": read failed at row " + std::to_string(r0) + ": " +
                               (got < 0 ? std::strerror(errno) : "file shorter than its header says"));
    p += got, at += got, left -= static_cast<size_t>(got);
  }
}

void FeatureRows::read(const int32_t* ids, int64_t k, float* dst) const {
  for (int64_t a = 0; a < k;) {
    int64_t b = a + 1;
    while (b < k && ids[b] == ids[b - 1] + 1) ++b;
    read_range(ids[a], ids[a] + (b - a), dst + a * cols_);
    a = b;
  }
}

RowMatrixF FeatureRows::load_all() const {
  if (mem_) return *mem_;
  RowMatrixF x(rows_, cols_);
  read_range(0, rows_, x.data());
  std::string bad = find_non_finite(x);
  if (!bad.empty()) throw std::runtime_error(name_ + ": " + bad + " (features must be finite)");
  return x;
}

std::vector<float> checked_row_norms(const FeatureRows& x, int threads) {
  const int64_t n = x.rows(), d = x.cols(), chunk = 1024;
  std::vector<float> norms(n);
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  if (threads <= 0) threads = default_threads();
  const int64_t t = std::max<int64_t>(1, std::min<int64_t>(threads, n_chunks));
  // Each thread scans a contiguous range of chunks and stops at its first bad row; the lowest of those is the first
  // bad row of the file whatever the thread count.
  std::vector<int64_t> bad_row(t, -1), bad_col(t, -1), zero_row(t, -1);
  parallel_for(t, static_cast<int>(t), [&](int64_t t0, int64_t t1) {
    std::vector<float> buf(static_cast<size_t>(chunk * d));
    for (int64_t th = t0; th < t1; ++th)
      for (int64_t c = n_chunks * th / t; c < n_chunks * (th + 1) / t && bad_row[th] < 0; ++c) {
        int64_t r0 = c * chunk, r1 = std::min(n, r0 + chunk);
        x.read_range(r0, r1, buf.data());
        for (int64_t r = r0; r < r1 && bad_row[th] < 0; ++r) {
          const float* row = buf.data() + (r - r0) * d;
          for (int64_t k = 0; k < d; ++k)
            if (!std::isfinite(row[k])) {
              bad_row[th] = r, bad_col[th] = k;
              break;
            }
          if (bad_row[th] >= 0) break;
          norms[r] = numpy_norm_f32(row, d);
          if (!(norms[r] > 0) && zero_row[th] < 0) zero_row[th] = r;
        }
      }
  });
  for (int64_t th = 0; th < t; ++th)
    if (bad_row[th] >= 0) {
      float v;
      int32_t r = static_cast<int32_t>(bad_row[th]);
      std::vector<float> row(d);
      x.read(&r, 1, row.data());
      v = row[bad_col[th]];
      throw std::runtime_error(x.name() + ": row " + std::to_string(bad_row[th]) + ", column " +
                               std::to_string(bad_col[th]) + " is " + (std::isnan(v) ? "NaN" : "inf") +
                               " (features must be finite)");
    }
  for (int64_t th = 0; th < t; ++th)
    if (zero_row[th] >= 0)
      throw std::runtime_error(x.name() + ": row " + std::to_string(zero_row[th]) +
                               " is all zeros; its cosine similarity is undefined");
  return norms;
}

RowMatrixF l2_normalize_rows(const RowMatrixF& x, const std::string& what) {
  RowMatrixF out = x;
  l2_normalize_rows_inplace(out, what);
  return out;
}

namespace {
// AVX-512 build of the same 16-lane scheme (one zmm accumulator per lane group, FMA), compiled for that target only
// and called after the runtime CPU check; its bits differ from the portable path by FMA rounding, but on one machine
// a pair of vectors always gives the same bits.
__attribute__((target("avx512f,fma"))) float dot_f32_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  alignas(64) float lane[16];
  _mm512_store_ps(lane, acc);
  for (int w = 8; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) lane[k] += lane[k + w];
  return lane[0];
}

float dot_f32_portable(const float* a, const float* b, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) acc[k] += a[i + k] * b[i + k];
  for (int k = 0; i < n; ++i, ++k) acc[k] += a[i] * b[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
  return acc[0];
}
}  // namespace

namespace {
// One block of numpy's pairwise sum (8 <= n <= 128) over the rounded products a[i] * b[i].
float numpy_block_portable(const float* a, const float* b, int64_t n) {
  float r[8];
  for (int j = 0; j < 8; ++j) r[j] = a[j] * b[j];
  int64_t i = 8;
  for (; i < n - (n % 8); i += 8)
    for (int j = 0; j < 8; ++j) r[j] += a[i + j] * b[i + j];
  float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
  for (; i < n; ++i) res += a[i] * b[i];
  return res;
}

// The same block with the 8 accumulators in one ymm register; AVX2 without FMA, so the product is rounded first.
__attribute__((target("avx2"))) float numpy_block_avx2(const float* a, const float* b, int64_t n) {
  __m256 r = _mm256_mul_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b));
  int64_t i = 8;
  for (; i < n - (n % 8); i += 8) r = _mm256_add_ps(r, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  alignas(32) float l[8];
  _mm256_store_ps(l, r);
  float res = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  for (; i < n; ++i) res += a[i] * b[i];
  return res;
}

// Four blocks of the same length at once, each with its own accumulator and the same operations as
// numpy_block_avx2 (so the same bits): independent add chains instead of one 4-cycle-latency chain per block.
__attribute__((target("avx2"))) void numpy_block4_avx2(const float* a, const float* b, const int64_t* off, int64_t n,
                                                       float* res) {
  __m256 r0 = _mm256_mul_ps(_mm256_loadu_ps(a + off[0]), _mm256_loadu_ps(b + off[0]));
  __m256 r1 = _mm256_mul_ps(_mm256_loadu_ps(a + off[1]), _mm256_loadu_ps(b + off[1]));
  __m256 r2 = _mm256_mul_ps(_mm256_loadu_ps(a + off[2]), _mm256_loadu_ps(b + off[2]));
  __m256 r3 = _mm256_mul_ps(_mm256_loadu_ps(a + off[3]), _mm256_loadu_ps(b + off[3]));
  int64_t i = 8;
  for (; i < n - (n % 8); i += 8) {
    r0 = _mm256_add_ps(r0, _mm256_mul_ps(_mm256_loadu_ps(a + off[0] + i), _mm256_loadu_ps(b + off[0] + i)));
    r1 = _mm256_add_ps(r1, _mm256_mul_ps(_mm256_loadu_ps(a + off[1] + i), _mm256_loadu_ps(b + off[1] + i)));
    r2 = _mm256_add_ps(r2, _mm256_mul_ps(_mm256_loadu_ps(a + off[2] + i), _mm256_loadu_ps(b + off[2] + i)));
    r3 = _mm256_add_ps(r3, _mm256_mul_ps(_mm256_loadu_ps(a + off[3] + i), _mm256_loadu_ps(b + off[3] + i)));
  }
  alignas(32) float l[4][8];
  _mm256_store_ps(l[0], r0);
  _mm256_store_ps(l[1], r1);
  _mm256_store_ps(l[2], r2);
  _mm256_store_ps(l[3], r3);
  for (int k = 0; k < 4; ++k) {
    float v = ((l[k][0] + l[k][1]) + (l[k][2] + l[k][3])) + ((l[k][4] + l[k][5]) + (l[k][6] + l[k][7]));
    for (int64_t j = i; j < n; ++j) v += a[off[k] + j] * b[off[k] + j];
    res[k] = v;
  }
}

// The leaves (blocks of 8..128 terms) of numpy's pairwise recursion over n >= 8 terms, left to right.
void pairwise_leaves(int64_t off, int64_t n, std::vector<int64_t>& leaf_off, std::vector<int64_t>& leaf_len) {
  if (n <= 128) {
    leaf_off.push_back(off);
    leaf_len.push_back(n);
    return;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  pairwise_leaves(off, n2, leaf_off, leaf_len);
  pairwise_leaves(off + n2, n - n2, leaf_off, leaf_len);
}

// Adds the leaf sums back up in the recursion's order.
float pairwise_combine(int64_t n, const float* leaf, size_t& k) {
  if (n <= 128) return leaf[k++];
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  float left = pairwise_combine(n2, leaf, k);
  return left + pairwise_combine(n - n2, leaf, k);
}

float numpy_pairwise_dot(const float* a, const float* b, int64_t n, bool avx2) {
  if (n < 8) {
    float res = 0.f;
    for (int64_t i = 0; i < n; ++i) res += a[i] * b[i];
    return res;
  }
  if (n <= 128) return avx2 ? numpy_block_avx2(a, b, n) : numpy_block_portable(a, b, n);
  if (!avx2) {
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return numpy_pairwise_dot(a, b, n2, false) + numpy_pairwise_dot(a + n2, b + n2, n - n2, false);
  }
  // The recursion's shape depends on n only: its leaves are computed once per length (the feature width).
  thread_local int64_t plan_n = -1;
  thread_local std::vector<int64_t> leaf_off, leaf_len;
  thread_local std::vector<float> leaf;
  if (plan_n != n) {
    leaf_off.clear();
    leaf_len.clear();
    pairwise_leaves(0, n, leaf_off, leaf_len);
    leaf.resize(leaf_off.size());
    plan_n = n;
  }
  size_t k = 0;
  for (; k + 4 <= leaf_off.size(); k += 4) {
    if (leaf_len[k] == leaf_len[k + 1] && leaf_len[k] == leaf_len[k + 2] && leaf_len[k] == leaf_len[k + 3]) {
      numpy_block4_avx2(a, b, leaf_off.data() + k, leaf_len[k], leaf.data() + k);
    } else {
      for (size_t j = k; j < k + 4; ++j) leaf[j] = numpy_block_avx2(a + leaf_off[j], b + leaf_off[j], leaf_len[j]);
    }
  }
  for (; k < leaf_off.size(); ++k) leaf[k] = numpy_block_avx2(a + leaf_off[k], b + leaf_off[k], leaf_len[k]);
  size_t at = 0;
  return pairwise_combine(n, leaf.data(), at);
}
}  // namespace

float numpy_dot_f32_reference(const float* a, const float* b, int64_t n) {
  return numpy_pairwise_dot(a, b, n, false);
}

float numpy_dot_f32(const float* a, const float* b, int64_t n) {
  static const bool avx2 = cpu_features().avx2;
  return numpy_pairwise_dot(a, b, n, avx2);
}

float numpy_norm_f32(const float* x, int64_t n) { return std::sqrt(numpy_dot_f32(x, x, n)); }

namespace {
constexpr int kPanel = DotPanel::kLanes;

// Lane-wise sum of the products q[i] * t[i][lane] over terms [off, off + n) in numpy's pairwise order (the structure
// of numpy_pairwise_dot / numpy_block_portable, with every scalar widened to kPanel lanes).
void panel_sum_portable(const float* t, const float* q, int64_t off, int64_t n, float* res) {
  if (n < 8) {
    for (int c = 0; c < kPanel; ++c) res[c] = 0.f;
    for (int64_t i = off; i < off + n; ++i)
      for (int c = 0; c < kPanel; ++c) res[c] += q[i] * t[i * kPanel + c];
    return;
  }
  if (n <= 128) {
    float r[8][kPanel];
    for (int j = 0; j < 8; ++j)
      for (int c = 0; c < kPanel; ++c) r[j][c] = q[off + j] * t[(off + j) * kPanel + c];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j)
        for (int c = 0; c < kPanel; ++c) r[j][c] += q[off + i + j] * t[(off + i + j) * kPanel + c];
    for (int c = 0; c < kPanel; ++c)
      res[c] = ((r[0][c] + r[1][c]) + (r[2][c] + r[3][c])) + ((r[4][c] + r[5][c]) + (r[6][c] + r[7][c]));
    for (; i < n; ++i)
      for (int c = 0; c < kPanel; ++c) res[c] += q[off + i] * t[(off + i) * kPanel + c];
    return;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  float right[kPanel];
  panel_sum_portable(t, q, off, n2, res);
  panel_sum_portable(t, q, off + n2, n - n2, right);
  for (int c = 0; c < kPanel; ++c) res[c] = res[c] + right[c];
}

// The AVX-512 build: one zmm = the 16 lanes. The masked forms (all lanes on) are builtins, not plain vector
// arithmetic, so the compiler cannot contract a multiply and an add into an FMA (numpy rounds the product before
// adding it; _mm512_mul_ps/_mm512_add_ps are plain vector operators that GCC may fuse under -ffp-contract=fast).
__attribute__((target("avx512f"))) inline __m512 panel_mul(__m512 a, __m512 b) {
  return _mm512_maskz_mul_ps(static_cast<__mmask16>(0xFFFF), a, b);
}
__attribute__((target("avx512f"))) inline __m512 panel_add(__m512 a, __m512 b) {
  return _mm512_maskz_add_ps(static_cast<__mmask16>(0xFFFF), a, b);
}

// Two queries against the panel at once: each loaded panel row feeds both (half the loads of one query at a time).
__attribute__((target("avx512f"))) void panel_sum2_avx512(const float* t, const float* q0, const float* q1,
                                                          int64_t off, int64_t n, __m512& res0, __m512& res1) {
  const float* tt = t + off * kPanel;
  const float* a = q0 + off;
  const float* b = q1 + off;
  if (n < 8) {
    res0 = _mm512_setzero_ps();
    res1 = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; ++i) {
      const __m512 c = _mm512_load_ps(tt + i * kPanel);
      res0 = panel_add(res0, panel_mul(_mm512_set1_ps(a[i]), c));
      res1 = panel_add(res1, panel_mul(_mm512_set1_ps(b[i]), c));
    }
    return;
  }
  if (n <= 128) {
    __m512 r0[8], r1[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m512 c = _mm512_load_ps(tt + j * kPanel);
      r0[j] = panel_mul(_mm512_set1_ps(a[j]), c);
      r1[j] = panel_mul(_mm512_set1_ps(b[j]), c);
    }
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const __m512 c = _mm512_load_ps(tt + (i + j) * kPanel);
        r0[j] = panel_add(r0[j], panel_mul(_mm512_set1_ps(a[i + j]), c));
        r1[j] = panel_add(r1[j], panel_mul(_mm512_set1_ps(b[i + j]), c));
      }
    }
    res0 = panel_add(panel_add(panel_add(r0[0], r0[1]), panel_add(r0[2], r0[3])),
                     panel_add(panel_add(r0[4], r0[5]), panel_add(r0[6], r0[7])));
    res1 = panel_add(panel_add(panel_add(r1[0], r1[1]), panel_add(r1[2], r1[3])),
                     panel_add(panel_add(r1[4], r1[5]), panel_add(r1[6], r1[7])));
    for (; i < n; ++i) {
      const __m512 c = _mm512_load_ps(tt + i * kPanel);
      res0 = panel_add(res0, panel_mul(_mm512_set1_ps(a[i]), c));
      res1 = panel_add(res1, panel_mul(_mm512_set1_ps(b[i]), c));
    }
    return;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  __m512 l0, l1, h0, h1;
  panel_sum2_avx512(t, q0, q1, off, n2, l0, l1);
  panel_sum2_avx512(t, q0, q1, off + n2, n - n2, h0, h1);
  res0 = panel_add(l0, h0);
  res1 = panel_add(l1, h1);
}

__attribute__((target("avx512f"))) void panel_dot2_avx512(const float* t, const float* q0, const float* q1, int64_t n,
                                                          float* out0, float* out1) {
  __m512 r0, r1;
  panel_sum2_avx512(t, q0, q1, 0, n, r0, r1);
  _mm512_storeu_ps(out0, r0);
  _mm512_storeu_ps(out1, r1);
}

// 64-byte aligned start inside a vector with kPanel floats of slack.
float* aligned64(std::vector<float>& v) {
  auto p = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<float*>((p + 63) & ~static_cast<uintptr_t>(63));
}
const float* aligned64(const std::vector<float>& v) { return aligned64(const_cast<std::vector<float>&>(v)); }
}  // namespace

DotPanel::DotPanel(int64_t n, bool simd)
    : n_(n), simd_(simd && cpu_features().avx512f), t_(static_cast<size_t>(n * kPanel + kPanel), 0.f) {
  if (n < 0) throw std::invalid_argument("DotPanel: negative length");
}

void DotPanel::set(int lane, const float* row) {
  if (lane < 0 || lane >= kPanel) throw std::out_of_range("DotPanel::set: lane out of range");
  float* t = aligned64(t_) + lane;
  for (int64_t i = 0; i < n_; ++i) t[i * kPanel] = row[i];
}

void DotPanel::dot2(const float* q0, const float* q1, float* out0, float* out1) const {
  const float* t = aligned64(t_);
  if (simd_) return panel_dot2_avx512(t, q0, q1, n_, out0, out1);
  panel_sum_portable(t, q0, 0, n_, out0);
  panel_sum_portable(t, q1, 0, n_, out1);
}

float dot_f32(const float* a, const float* b, int64_t n) {
  static const bool avx512 = cpu_features().has_avx512();
  return avx512 ? dot_f32_avx512(a, b, n) : dot_f32_portable(a, b, n);
}

void similarity_block(const RowMatrixF& a_normed, int64_t q0, int64_t q1, const RowMatrixF& b_normed, RowMatrixF& out) {
  out.resize(q1 - q0, b_normed.rows());
  out.noalias() = a_normed.middleRows(q0, q1 - q0) * b_normed.transpose();
}

namespace {
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
}  // namespace

StageTimer::StageTimer(bool on) : on_(on) {
  if (on_) t_ = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (on_) cpu_ = cpu_seconds();
}

void StageTimer::stage(const char* name) {
  if (!on_) return;
  const double now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  std::string rss = "?", hwm = "?", line;
  std::ifstream st("/proc/self/status");
  auto value = [](const std::string& l) { return l.substr(l.find_first_not_of(" \t", 6)); };
  while (std::getline(st, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = value(line);
    if (line.rfind("VmHWM:", 0) == 0) hwm = value(line);
  }
  const double cpu = cpu_seconds();
  std::fprintf(stderr, "  %-36s %8.3f s  cpu %7.3f s   rss %s   peak %s\n", name, now - t_, cpu - cpu_, rss.c_str(),
               hwm.c_str());
  t_ = now;
  cpu_ = cpu;
}

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

void parallel_for(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& fn) {
  if (threads <= 0) threads = default_threads();
  if (n <= 0) return;
  int64_t t = std::min<int64_t>(threads, n);
  if (t == 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  std::exception_ptr err;
  std::mutex m;
  for (int64_t k = 0; k < t; ++k) {
    int64_t b = n * k / t, e = n * (k + 1) / t;
    pool.emplace_back([&, b, e] {
      try {
        fn(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lock(m);
        if (!err) err = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace tabula::eval
