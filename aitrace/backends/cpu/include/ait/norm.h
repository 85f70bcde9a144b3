// aitrace CPU kernels: softmax, layer norm, batch norm (inference). Storage float / ait::half /
// ait::bfloat16, everything (statistics included) computed in fp32, rounded once on store.
//
//   softmax<T>(x, y, outer, n, inner)
//       x, y [outer, n, inner] contiguous; softmax over n: exp(x - max) / sum(exp(x - max)).
//       A row holding NaN or +inf, or only -inf, gives NaN (as the numpy reference).
//   layer_norm<T, W = T>(x, w, b, y, rows, n, eps)
//       x, y [rows, n]; y = (x - mean) / sqrt(var + eps) * w + b with the biased variance
//       (two passes in fp32); w and b are [n] and either may be nullptr (then 1 / 0).
//   batch_norm<T, P = T>(x, mean, var, w, b, y, rows, C, eps)
//       channels last: x, y [rows, C]; mean/var/w/b [C];
//       y = (x - mean[c]) / sqrt(var[c] + eps) * w[c] + b[c]; w and b may be nullptr.
// y may alias x (in-place) in all three. Parallel over rows (softmax: rows and column blocks).
#pragma once
#include "reduce.h"

namespace ait {
namespace detail {

// Sum of a float array with kLanes independent accumulators (vectorizes without reassociation).
inline float lane_sum(const float* AIT_RESTRICT p, int64_t m) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= m; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += p[i + l];
  for (int l = 0; i + l < m; ++l) lanes[l] += p[i + l];
  float s = 0.f;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  return s;
}

// One contiguous row through a per-thread fp32 buffer `buf` of n floats: x is read once,
// exp computed once, y written once.
template <typename T>
void softmax_row(const T* x, T* y, int64_t n, float* AIT_RESTRICT buf) {
  to_f32(x, buf, n);
  const float mx = reduce_row<MaxOp<float>>(buf, 0, n);
  for (int64_t i = 0; i < n; ++i) buf[i] = exp_f32(buf[i] - mx);
  double s = 0.0;
  for (int64_t c = 0; c < n; c += kBlk) s += lane_sum(buf + c, std::min(kBlk, n - c));
  const float inv = 1.0f / float(s);
  for (int64_t i = 0; i < n; ++i) buf[i] = buf[i] * inv;
  from_f32(buf, y, n);
}

// softmax over rows of stride `inner`, columns [0, m), m <= kCols.
template <typename T>
void softmax_cols(const T* x, T* y, int64_t n, int64_t inner, int64_t m) {
  alignas(64) float tmp[kCols], mx[kCols], s[kCols], e[kCols];
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

}  // namespace detail

template <typename T>
void softmax(const T* x, T* y, int64_t outer, int64_t n, int64_t inner) {
  using detail::kCols;
  if (outer <= 0 || inner <= 0 || n <= 0) return;
  const int64_t jblocks = (inner + kCols - 1) / kCols;
  const int64_t tasks = outer * jblocks;
  const bool par = outer * n * inner >= detail::kParallelMin / 4 && tasks > 1;
#pragma omp parallel if (par)
  {
    std::vector<float> buf(inner == 1 ? size_t(n) : size_t(0));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t o = t / jblocks, j0 = (t % jblocks) * kCols;
      const int64_t off = o * n * inner + j0;
      if (inner == 1) detail::softmax_row(x + off, y + off, n, buf.data());
      else detail::softmax_cols(x + off, y + off, n, inner, std::min(kCols, inner - j0));
    }
  }
}

template <typename T, typename W = T>
void layer_norm(const T* x, const detail::nondeduced_t<W>* w, const detail::nondeduced_t<W>* b, T* y,
                int64_t rows, int64_t n, float eps) {
  using detail::kBlk;
  if (rows <= 0 || n <= 0) return;
  const bool par = rows * n >= detail::kParallelMin / 4 && rows > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    alignas(64) float tx[kBlk], tw[kBlk], tb[kBlk], d[kBlk], o[kBlk];
    const T* xr = x + r * n;
    T* yr = y + r * n;
    // Mean of the data shifted by its first element (exact differences when |mean| >> std),
    // kept as an unevaluated float pair hi + lo so that x - hi is exact near the mean.
    const float x0 = to_float(xr[0]);
    double s1 = 0.0;
    for (int64_t c = 0; c < n; c += kBlk) {
      const int64_t m = std::min(kBlk, n - c);
      const float* AIT_RESTRICT p = detail::as_in(xr + c, tx, m);
      for (int64_t i = 0; i < m; ++i) d[i] = p[i] - x0;
      s1 += detail::lane_sum(d, m);
    }
    const double mean_d = double(x0) + s1 / double(n);
    const float mean = float(mean_d), mean_lo = float(mean_d - double(mean));
    double ss = 0.0;
    for (int64_t c = 0; c < n; c += kBlk) {
      const int64_t m = std::min(kBlk, n - c);
      const float* AIT_RESTRICT p = detail::as_in(xr + c, tx, m);
      for (int64_t i = 0; i < m; ++i) { const float v = (p[i] - mean) - mean_lo; d[i] = v * v; }
      ss += detail::lane_sum(d, m);
    }
    const float var = float(ss / double(n));
    const float rstd = 1.0f / std::sqrt(var + eps);
    for (int64_t c = 0; c < n; c += kBlk) {
      const int64_t m = std::min(kBlk, n - c);
      const float* AIT_RESTRICT p = detail::as_in(xr + c, tx, m);
      for (int64_t i = 0; i < m; ++i) o[i] = ((p[i] - mean) - mean_lo) * rstd;
      if (w) {
        const detail::in_t<W>* AIT_RESTRICT pw = detail::as_in(w + c, tw, m);
        for (int64_t i = 0; i < m; ++i) o[i] = o[i] * float(pw[i]);
      }
      if (b) {
        const detail::in_t<W>* AIT_RESTRICT pb = detail::as_in(b + c, tb, m);
        for (int64_t i = 0; i < m; ++i) o[i] = o[i] + float(pb[i]);
      }
      detail::from_f32(o, yr + c, m);
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

}  // namespace ait
