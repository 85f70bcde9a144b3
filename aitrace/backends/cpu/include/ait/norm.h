// aitrace CPU kernels: softmax, layer norm, batch norm (inference). Storage float / ait::half /
// ait::bfloat16, everything (statistics included) computed in fp32, rounded once on store.
//
//   softmax<T>(x, y, outer, n, inner)
//       x, y [outer, n, inner] contiguous; softmax over n: exp(x - max) / sum(exp(x - max)).
//       A row holding NaN or +inf, or only -inf, gives NaN (as the numpy reference).
//       inner == 1 goes through a per-thread fp32 row buffer (n floats, allocated once per call).
//   layer_norm<T, W = T>(x, w, b, y, rows, n, eps)
//       x, y [rows, n]; y = (x - mean) / sqrt(var + eps) * w + b with the biased variance
//       (two passes in fp32, the first shifted by x[0] so |mean| >> std stays accurate);
//       w and b are [n] of type W and either may be nullptr (then 1 / 0). W is not deduced from
//       the arguments (nullptr has no type): it is T unless given, layer_norm<half, float>(...).
//   batch_norm<T, P = T>(x, mean, var, w, b, y, rows, C, eps)
//       channels last: x, y [rows, C]; mean/var/w/b [C] of type P (deduced from mean/var);
//       y = (x - mean[c]) / sqrt(var[c] + eps) * w[c] + b[c]; w and b may be nullptr.
// y may be x (in place) in all three, but must not partially overlap it. Parallel over rows
// (softmax: rows and column blocks).
#pragma once
#include "reduce.h"

namespace ait {
namespace detail {

// sum_i f(p[i]) over p[0:n]: kLanes independent fp32 accumulators (vectorizes without
// reassociation), folded into a double every 1024 elements.
template <class F>
inline double lane_accumulate(const float* p, int64_t n, F f) {
  double total = 0.0;
  for (int64_t c = 0; c < n; c += 1024) {
    const int64_t m = std::min<int64_t>(1024, n - c);
    const float* q = p + c;
    float lanes[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= m; i += kLanes)
      for (int l = 0; l < kLanes; ++l) lanes[l] += f(q[i + l]);
    for (int l = 0; i + l < m; ++l) lanes[l] += f(q[i + l]);
    float s = 0.f;
    for (int l = 0; l < kLanes; ++l) s += lanes[l];
    total += double(s);
  }
  return total;
}

// One contiguous row. fp16/bf16 go through the per-thread fp32 buffer `buf` (n floats);
// fp32 writes exp(x - max) straight into y and scales it there. x is read from memory once.
template <typename T>
void softmax_row(const T* x, T* y, int64_t n, float* buf) {
  const float* xf;
  float* e;
  if constexpr (std::is_same<T, float>::value) {
    xf = x;
    e = y;
  } else {
    to_f32(x, buf, n);
    xf = buf;
    e = buf;
  }
  const float mx = reduce_row<MaxOp<float>>(xf, 0, n);
  double s = 0.0;
  for (int64_t c = 0; c < n; c += 1024) {  // e = exp(x - max) and its sum, in one pass
    const int64_t m = std::min<int64_t>(1024, n - c);
    const float* q = xf + c;
    float* ec = e + c;
    float lanes[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= m; i += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const float v = exp_f32(q[i + l] - mx);
        ec[i + l] = v;
        lanes[l] += v;
      }
    for (int l = 0; i + l < m; ++l) {
      const float v = exp_f32(q[i + l] - mx);
      ec[i + l] = v;
      lanes[l] += v;
    }
    float t = 0.f;
    for (int l = 0; l < kLanes; ++l) t += lanes[l];
    s += double(t);
  }
  const float inv = 1.0f / float(s);
  for (int64_t i = 0; i < n; ++i) e[i] = e[i] * inv;
  if constexpr (!std::is_same<T, float>::value) from_f32(buf, y, n);
}

// softmax over rows of stride `inner`, columns [0, m), m <= kBlk (256: a block of n rows
// stays cache-resident across the three passes for n up to a few thousand).
template <typename T>
void softmax_cols(const T* x, T* y, int64_t n, int64_t inner, int64_t m) {
  alignas(64) float tmp[kBlk], mx[kBlk], s[kBlk], e[kBlk];
  for (int64_t j = 0; j < m; ++j) { mx[j] = -std::numeric_limits<float>::infinity(); s[j] = 0.f; }
  for (int64_t k = 0; k < n; ++k) {
    const float* AIT_RESTRICT p = as_in(x + k * inner, tmp, m);
    for (int64_t j = 0; j < m; ++j) mx[j] = max_nan(mx[j], p[j]);
  }
  for (int64_t k = 0; k < n; ++k) {
    const float* AIT_RESTRICT p = as_in(x + k * inner, tmp, m);
    for (int64_t j = 0; j < m; ++j) s[j] += exp_f32(p[j] - mx[j]);
  }
  for (int64_t j = 0; j < m; ++j) s[j] = 1.0f / s[j];
  for (int64_t k = 0; k < n; ++k) {
    const float* AIT_RESTRICT p = as_in(x + k * inner, tmp, m);
    for (int64_t j = 0; j < m; ++j) e[j] = exp_f32(p[j] - mx[j]) * s[j];
    from_f32(e, y + k * inner, m);
  }
}

// out[0:n] = (x - mean(x)) / sqrt(var(x) + eps) * w + b over one fp32 row (out may be x).
// The mean is of the data shifted by its first element (exact differences when |mean| >> std),
// kept as an unevaluated float pair hi + lo so that x - hi is exact near the mean.
inline void normalize_row(const float* xf, float* out, int64_t n, float eps, const float* w, const float* b) {
  const float x0 = xf[0];
  const double s1 = lane_accumulate(xf, n, [x0](float v) { return v - x0; });
  const double mean_d = double(x0) + s1 / double(n);
  const float mean = float(mean_d), mean_lo = float(mean_d - double(mean));
  const double ss = lane_accumulate(xf, n, [mean, mean_lo](float v) {
    const float d = (v - mean) - mean_lo;
    return d * d;
  });
  const float rstd = 1.0f / std::sqrt(float(ss / double(n)) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = ((xf[i] - mean) - mean_lo) * rstd * w[i] + b[i];
}

}  // namespace detail

template <typename T>
void softmax(const T* x, T* y, int64_t outer, int64_t n, int64_t inner) {
  using detail::kBlk;
  if (outer <= 0 || inner <= 0 || n <= 0) return;
  const int64_t jblocks = (inner + kBlk - 1) / kBlk;
  const int64_t tasks = outer * jblocks;
  const bool par = outer * n * inner >= detail::kParallelMin / 4 && tasks > 1;
#pragma omp parallel if (par)
  {
    std::vector<float> buf(inner == 1 && !std::is_same<T, float>::value ? size_t(n) : size_t(0));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t o = t / jblocks, j0 = (t % jblocks) * kBlk;
      const int64_t off = o * n * inner + j0;
      if (inner == 1) detail::softmax_row(x + off, y + off, n, buf.data());
      else detail::softmax_cols(x + off, y + off, n, inner, std::min(kBlk, inner - j0));
    }
  }
}

template <typename T, typename W = T>
void layer_norm(const T* x, const detail::nondeduced_t<W>* w, const detail::nondeduced_t<W>* b, T* y,
                int64_t rows, int64_t n, float eps) {
  if (rows <= 0 || n <= 0) return;
  constexpr bool kF32 = std::is_same<T, float>::value;
  // weight and bias as fp32 once per call (1 and 0 where absent)
  std::vector<float> wb(size_t(2 * n));
  float* wf = wb.data();
  float* bf = wf + n;
  for (int64_t i = 0; i < n; ++i) {
    wf[i] = w ? to_float(w[i]) : 1.0f;
    bf[i] = b ? to_float(b[i]) : 0.0f;
  }
  const bool par = rows * n >= detail::kParallelMin / 4 && rows > 1;
#pragma omp parallel if (par)
  {
    std::vector<float> buf(kF32 ? size_t(0) : size_t(n));  // the fp32 row (fp16/bf16 only)
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xf;
      float* out;
      if constexpr (kF32) {
        xf = x + r * n;
        out = y + r * n;
      } else {
        detail::to_f32(x + r * n, buf.data(), n);
        xf = buf.data();
        out = buf.data();
      }
      detail::normalize_row(xf, out, n, eps, wf, bf);
      if constexpr (!kF32) detail::from_f32(buf.data(), y + r * n, n);
    }
  }
}

template <typename T, typename P = T>
void batch_norm(const T* x, const P* mean, const P* var, const detail::nondeduced_t<P>* w,
                const detail::nondeduced_t<P>* b, T* y,
                int64_t rows, int64_t C, float eps) {
  using detail::kBlk;
  if (rows <= 0 || C <= 0) return;
  // Per-channel fp32 constants: y = (x - mu) * sc + sh with sc = w / sqrt(var + eps).
  std::vector<float> consts(size_t(3 * C));
  float* AIT_RESTRICT mu = consts.data();
  float* AIT_RESTRICT sc = mu + C;
  float* AIT_RESTRICT sh = sc + C;
  for (int64_t c = 0; c < C; ++c) {
    mu[c] = to_float(mean[c]);
    const float den = std::sqrt(to_float(var[c]) + eps);
    sc[c] = w ? to_float(w[c]) / den : 1.0f / den;
    sh[c] = b ? to_float(b[c]) : 0.0f;
  }
  const bool par = rows * C >= detail::kParallelMin && rows > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    alignas(64) float tx[kBlk], o[kBlk];
    for (int64_t c = 0; c < C; c += kBlk) {
      const int64_t m = std::min(kBlk, C - c);
      const float* AIT_RESTRICT p = detail::as_in(x + r * C + c, tx, m);
      const float *AIT_RESTRICT mc = mu + c, *AIT_RESTRICT scc = sc + c, *AIT_RESTRICT shc = sh + c;
      for (int64_t i = 0; i < m; ++i) o[i] = (p[i] - mc[i]) * scc[i] + shc[i];
      detail::from_f32(o, y + r * C + c, m);
    }
  }
}

// ---------------------------------------------------------------- one fp32 row (fused_norm)
// For kernels that build each row themselves in a per-thread fp32 buffer (an elementwise
// prologue fused into the norm): the row is finished here and stored to y once.
//   softmax_row_f32<T>(row, y, n)                 y[0:n] = softmax(row[0:n]); row is scratch
//   layer_norm_row_f32<T>(row, y, n, eps, w, b)   y[0:n] = layer_norm(row) * w + b, as layer_norm
//                                                 (w, b: n fp32 each, never nullptr); row is scratch
//   affine_f32<W>(w, b, n)                        {w as fp32 (1 where nullptr), b (0 where nullptr)}:
//                                                 2n floats, for layer_norm_row_f32's w = data(), b = data() + n
template <typename T>
void softmax_row_f32(float* row, T* y, int64_t n) {
  if (n <= 0) return;
  if constexpr (std::is_same<T, float>::value) {
    detail::softmax_row<float>(row, y, n, nullptr);
  } else {
    detail::softmax_row<float>(row, row, n, nullptr);
    detail::from_f32(row, y, n);
  }
}

template <typename T>
void layer_norm_row_f32(float* row, T* y, int64_t n, float eps, const float* AIT_RESTRICT w,
                        const float* AIT_RESTRICT b) {
  if (n <= 0) return;
  constexpr bool kF32 = std::is_same<T, float>::value;
  const float* xf = row;
  float* out = nullptr;
  if constexpr (kF32) out = y; else out = row;
  detail::normalize_row(xf, out, n, eps, w, b);
  if constexpr (!kF32) detail::from_f32(row, y, n);
}

template <typename W>
std::vector<float> affine_f32(const detail::nondeduced_t<W>* w, const detail::nondeduced_t<W>* b, int64_t n) {
  std::vector<float> wb(size_t(2 * std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) {
    wb[size_t(i)] = w ? to_float(w[i]) : 1.0f;
    wb[size_t(n + i)] = b ? to_float(b[i]) : 0.0f;
  }
  return wb;
}

}  // namespace ait
