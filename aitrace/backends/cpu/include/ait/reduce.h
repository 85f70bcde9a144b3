// aitrace CPU kernels: reductions over the middle axis of a contiguous [outer, n, inner] view.
// (The generator expresses any N-d reduction in this form by transposing/reshaping first.)
//
//   reduce_sum <Tin, Tout>(x, y, outer, n, inner)  y[o][j] = sum_k x[o][k][j]
//   reduce_mean<Tin, Tout>(x, y, outer, n, inner)  y[o][j] = sum_k x[o][k][j] / n   (n == 0: nan)
//   reduce_max <Tin, Tout>(x, y, outer, n, inner)  numpy amax: a NaN anywhere gives NaN
//   reduce_min <Tin, Tout>(x, y, outer, n, inner)  numpy amin: a NaN anywhere gives NaN
//   argmax<T>(x, int64_t* y, outer, n, inner)      numpy argmax: index of the first maximum;
//                                                   the first NaN wins over any number
// x is [outer, n, inner] contiguous, y is [outer, inner] contiguous; sizes are element counts.
// Storage types: float, ait::half, ait::bfloat16 (computed in fp32: 32 lanes of fp32 partial
// sums, folded into a double after every 256 adds per lane), int32_t/int64_t (sums in wrapping
// 64-bit integer arithmetic, so int32 sums wrap exactly as numpy's int32 accumulation) and bool
// (max/min/argmax; a bool sum counts the trues). Tout may differ from Tin (e.g. a float sum
// stored as half); the result is rounded once. max/min of n == 0 give the identity (-inf / +inf / int limits); argmax of
// n == 0 gives 0 (the ops layer rejects both).
// Parallel (OpenMP) over output rows/column blocks; when there are fewer of those than threads
// (full reductions), the n axis itself is split between threads and the partials merged.
//
// This header also holds the small vector helpers the other kernel headers share (ait::detail):
// block conversions fp16/bf16 <-> fp32 and a branch-free, auto-vectorizable expf.
#pragma once
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>
#include "common.h"

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

#ifndef AIT_RESTRICT
#define AIT_RESTRICT __restrict__
#endif

namespace ait {
namespace detail {

// Below this many elements of work a kernel stays on the calling thread.
constexpr int64_t kParallelMin = int64_t(1) << 15;

template <typename T> struct is_lowp : std::false_type {};
template <> struct is_lowp<half> : std::true_type {};
template <> struct is_lowp<bfloat16> : std::true_type {};

// std::type_identity_t (C++20): keeps a parameter out of template argument deduction.
template <typename T> struct type_identity { using type = T; };
template <typename T> using nondeduced_t = typename type_identity<T>::type;

// The element type the inner loops read: fp32 for fp16/bf16 (converted a block at a time),
// the storage type itself otherwise (float, ints, bool).
template <typename T> using in_t = typename std::conditional<is_lowp<T>::value, float, T>::type;

// ---------------------------------------------------------------- block conversions
#if defined(__AVX512F__)
// (the maskz forms with an all-ones mask: gcc 12's unmasked ones trip -Wmaybe-uninitialized)
constexpr __mmask16 kAll = 0xFFFF;
#endif
template <typename T>
inline void to_f32(const T* AIT_RESTRICT s, float* AIT_RESTRICT d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = to_float(s[i]);
}
template <>
inline void to_f32<float>(const float* AIT_RESTRICT s, float* AIT_RESTRICT d, int64_t n) {
  std::memcpy(d, s, size_t(n) * sizeof(float));
}
template <>
inline void to_f32<bfloat16>(const bfloat16* AIT_RESTRICT s, float* AIT_RESTRICT d, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    __m512i w = _mm512_maskz_cvtepu16_epi32(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, w, 16)));
  }
#endif
  for (; i < n; ++i) d[i] = to_float(s[i]);
}
template <>
inline void to_f32<half>(const half* AIT_RESTRICT s, float* AIT_RESTRICT d, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(d + i, _mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
#endif
  for (; i < n; ++i) d[i] = to_float(s[i]);
}

template <typename T>
inline void from_f32(const float* AIT_RESTRICT s, T* AIT_RESTRICT d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = from_float<T>(s[i]);
}
template <>
inline void from_f32<float>(const float* AIT_RESTRICT s, float* AIT_RESTRICT d, int64_t n) {
  std::memcpy(d, s, size_t(n) * sizeof(float));
}
template <>
inline void from_f32<half>(const float* AIT_RESTRICT s, half* AIT_RESTRICT d, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                        _mm512_maskz_cvtps_ph(kAll, _mm512_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
  for (; i < n; ++i) d[i] = from_float<half>(s[i]);
}
template <>
inline void from_f32<bfloat16>(const float* AIT_RESTRICT s, bfloat16* AIT_RESTRICT d, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), qnan = _mm512_set1_epi32(0x400000);
  for (; i + 16 <= n; i += 16) {  // round to nearest even; NaNs stay (quiet) NaNs, as from_float
    __m512i u = _mm512_castps_si512(_mm512_loadu_ps(s + i));
    __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, abs_mask), inf);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_maskz_srli_epi32(kAll, u, 16), one)));
    r = _mm512_mask_or_epi32(r, nan, u, qnan);  // nan lanes: (u >> 16) | 0x40, as from_float
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_maskz_cvtepi32_epi16(kAll, _mm512_maskz_srli_epi32(kAll, r, 16)));
  }
#endif
  for (; i < n; ++i) d[i] = from_float<bfloat16>(s[i]);
}

// p as the inner-loop element type: itself, or converted into tmp (n <= tmp's size).
template <typename T>
inline const in_t<T>* as_in(const T* p, float* tmp, int64_t n) {
  if constexpr (is_lowp<T>::value) {
    to_f32(p, tmp, n);
    return tmp;
  } else {
    (void)tmp;
    (void)n;
    return p;
  }
}

// ---------------------------------------------------------------- expf, branch-free
// Cephes-style exp: 2^k * p(r), |r| <= ln2/2, about 1 ulp; exactly 0 below -104 (so exp(-inf)
// is 0), inf above 88.72, NaN in -> NaN out. Written with selects only so loops calling it
// auto-vectorize (no libm call, no errno).
inline float exp_f32(float x) {
  const float lo = -104.0f, hi = 88.7228394f;
  float xc = x > lo ? x : lo;  // the vmaxps / vminps forms (a NaN becomes lo: restored below)
  xc = xc < hi ? xc : hi;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float kf = std::fma(xc, 1.44269504088896341f, magic) - magic;
  float r = std::fma(kf, -0.693359375f, xc);
  r = std::fma(kf, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p, r * r, r + 1.0f);
  int32_t k = int32_t(kf);
  int32_t k1 = k >> 1, k2 = k - k1;  // two factors keep each 2^k in the normal range
  float s1 = bits_to_float(uint32_t(k1 + 127) << 23), s2 = bits_to_float(uint32_t(k2 + 127) << 23);
  float y = p * s1 * s2;
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}

// NaN-propagating max/min (numpy's maximum/minimum) as one compare + select.
template <typename C> inline C max_nan(C a, C b) { return (b > a) | (b != b) ? b : a; }
template <typename C> inline C min_nan(C a, C b) { return (b < a) | (b != b) ? b : a; }
inline bool max_nan(bool a, bool b) { return a | b; }
inline bool min_nan(bool a, bool b) { return a & b; }

template <typename C> inline C lowest() {
  return std::numeric_limits<C>::has_infinity ? -std::numeric_limits<C>::infinity()
                                              : std::numeric_limits<C>::lowest();
}
template <typename C> inline C highest() {
  return std::numeric_limits<C>::has_infinity ? std::numeric_limits<C>::infinity()
                                              : std::numeric_limits<C>::max();
}

// ---------------------------------------------------------------- reduction policies
// A policy reduces values of type In (in_t<T>) into lane accumulators A, folds lanes into a
// total Tot, merges totals, and writes the result.
template <typename T, bool kFloat = !std::is_integral<in_t<T>>::value> struct SumOp;
template <typename T> struct SumOp<T, true> {
  using In = float; using A = float; using Tot = double;
  static constexpr int64_t kFold = 256;  // fp32 adds per accumulator between folds into the double
  static A init() { return 0.f; }
  static A comb(A a, In x) { return a + x; }
  static Tot tinit() { return 0.0; }
  static Tot tadd(Tot t, A a) { return t + double(a); }
  static Tot merge(Tot a, Tot b) { return a + b; }
};
template <typename T> struct SumOp<T, false> {  // integers and bool: wrapping 64-bit sums
  using In = in_t<T>; using A = uint64_t; using Tot = uint64_t;
  static constexpr int64_t kFold = int64_t(1) << 40;
  static A init() { return 0; }
  static A comb(A a, In x) { return a + uint64_t(int64_t(x)); }
  static Tot tinit() { return 0; }
  static Tot tadd(Tot t, A a) { return t + a; }
  static Tot merge(Tot a, Tot b) { return a + b; }
};
template <typename T> struct MaxOp {
  using In = in_t<T>; using A = In; using Tot = In;
  static constexpr int64_t kFold = int64_t(1) << 40;
  static A init() { return lowest<In>(); }
  static A comb(A a, In x) { return max_nan(a, x); }
  static Tot tinit() { return lowest<In>(); }
  static Tot tadd(Tot t, A a) { return max_nan(t, a); }
  static Tot merge(Tot a, Tot b) { return max_nan(a, b); }
};
template <typename T> struct MinOp {
  using In = in_t<T>; using A = In; using Tot = In;
  static constexpr int64_t kFold = int64_t(1) << 40;
  static A init() { return highest<In>(); }
  static A comb(A a, In x) { return min_nan(a, x); }
  static Tot tinit() { return highest<In>(); }
  static Tot tadd(Tot t, A a) { return min_nan(t, a); }
  static Tot merge(Tot a, Tot b) { return min_nan(a, b); }
};

constexpr int kLanes = 32;    // independent accumulators in a contiguous-row reduction
constexpr int64_t kBlk = 256;    // elements per conversion chunk of a contiguous row
constexpr int64_t kCols = 1024;  // columns per block when reducing across rows (inner > 1)

// Reduce x[k0:k1] of one contiguous row (inner == 1).
template <class Op, typename T>
typename Op::Tot reduce_row(const T* x, int64_t k0, int64_t k1) {
  using A = typename Op::A; using In = typename Op::In;
  alignas(64) float tmp[kBlk];
  A lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = Op::init();
  typename Op::Tot tot = Op::tinit();
  int64_t since_fold = 0;
  for (int64_t c = k0; c < k1; c += kBlk) {
    const int64_t m = std::min(kBlk, k1 - c);
    const In* AIT_RESTRICT p = as_in(x + c, tmp, m);
    int64_t i = 0;
    for (; i + kLanes <= m; i += kLanes)
      for (int l = 0; l < kLanes; ++l) lanes[l] = Op::comb(lanes[l], p[i + l]);
    for (int l = 0; i + l < m; ++l) lanes[l] = Op::comb(lanes[l], p[i + l]);
    since_fold += kBlk / kLanes;
    if (since_fold >= Op::kFold) {
      for (int l = 0; l < kLanes; ++l) { tot = Op::tadd(tot, lanes[l]); lanes[l] = Op::init(); }
      since_fold = 0;
    }
  }
  for (int l = 0; l < kLanes; ++l) tot = Op::tadd(tot, lanes[l]);
  return tot;
}

// Reduce rows k0..k1 of x (row stride `inner`) over columns [0, m), m <= kCols, into tot[0:m].
template <class Op, typename T>
void reduce_cols(const T* x, int64_t inner, int64_t k0, int64_t k1, int64_t m, typename Op::Tot* tot) {
  using A = typename Op::A; using In = typename Op::In;
  alignas(64) float tmp[kCols];
  alignas(64) A acc[kCols];
  for (int64_t j = 0; j < m; ++j) { acc[j] = Op::init(); tot[j] = Op::tinit(); }
  int64_t since_fold = 0;
  for (int64_t k = k0; k < k1; ++k) {
    const In* AIT_RESTRICT p = as_in(x + k * inner, tmp, m);
    for (int64_t j = 0; j < m; ++j) acc[j] = Op::comb(acc[j], p[j]);
    if (++since_fold >= Op::kFold) {
      for (int64_t j = 0; j < m; ++j) { tot[j] = Op::tadd(tot[j], acc[j]); acc[j] = Op::init(); }
      since_fold = 0;
    }
  }
  for (int64_t j = 0; j < m; ++j) tot[j] = Op::tadd(tot[j], acc[j]);
}

// Drives a policy over [outer, n, inner]; fin(Tot) -> Tout writes each result.
template <class Op, typename Tin, typename Tout, class Fin>
void reduce_driver(const Tin* x, Tout* y, int64_t outer, int64_t n, int64_t inner, Fin fin) {
  using Tot = typename Op::Tot;
  if (outer <= 0 || inner <= 0) return;
  const int64_t jblocks = (inner + kCols - 1) / kCols;
  const int64_t tasks = outer * jblocks;
  const int64_t work = outer * n * inner;
  const int nt = num_threads();
  const bool par = work >= kParallelMin && nt > 1;
  // Split n between threads when the independent outputs are too few to keep them busy.
  int64_t splits = 1;
  if (par && tasks < 2 * nt) splits = std::min<int64_t>(std::max<int64_t>(n / 1024, 1), 2 * nt / tasks + 1);
  if (splits <= 1) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t o = t / jblocks, j0 = (t % jblocks) * kCols, m = std::min(kCols, inner - j0);
      const Tin* xo = x + o * n * inner + j0;
      if (inner == 1) {
        y[o] = fin(reduce_row<Op>(xo, 0, n));
      } else {
        Tot tot[kCols];
        reduce_cols<Op>(xo, inner, 0, n, m, tot);
        for (int64_t j = 0; j < m; ++j) y[o * inner + j0 + j] = fin(tot[j]);
      }
    }
    return;
  }
  std::unique_ptr<Tot[]> part(new Tot[size_t(splits * outer * inner)]);
  const int64_t chunk = (n + splits - 1) / splits;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tasks * splits; ++t) {
    const int64_t s = t % splits, tk = t / splits;
    const int64_t o = tk / jblocks, j0 = (tk % jblocks) * kCols, m = std::min(kCols, inner - j0);
    const int64_t k0 = std::min(n, s * chunk), k1 = std::min(n, k0 + chunk);
    Tot* dst = part.get() + (s * outer + o) * inner + j0;
    const Tin* xo = x + o * n * inner + j0;
    if (inner == 1) dst[0] = reduce_row<Op>(xo, k0, k1);
    else reduce_cols<Op>(xo, inner, k0, k1, m, dst);
  }
  for (int64_t i = 0; i < outer * inner; ++i) {
    Tot t = part[size_t(i)];
    for (int64_t s = 1; s < splits; ++s) t = Op::merge(t, part[size_t(s * outer * inner + i)]);
    y[i] = fin(t);
  }
}

template <typename Tout, typename V> inline Tout cast_out(V v) {
  if constexpr (std::is_integral<Tout>::value && std::is_integral<V>::value) return Tout(v);
  else return from_float<Tout>(float(v));
}

// A reduction whose total is converted to the output type as it is.
template <typename Op, typename Tin, typename Tout>
void reduce_cast(const Tin* x, Tout* y, int64_t outer, int64_t n, int64_t inner) {
  reduce_driver<Op>(x, y, outer, n, inner, [](typename Op::Tot t) { return cast_out<Tout>(t); });
}

}  // namespace detail

// ---------------------------------------------------------------- public kernels
template <typename Tin, typename Tout>
void reduce_sum(const Tin* x, Tout* y, int64_t outer, int64_t n, int64_t inner) {
  detail::reduce_cast<detail::SumOp<Tin>>(x, y, outer, n, inner);
}

template <typename Tin, typename Tout>
void reduce_mean(const Tin* x, Tout* y, int64_t outer, int64_t n, int64_t inner) {
  using Op = detail::SumOp<Tin>;
  // fp32 division of the fp32-rounded sum, as the numpy reference (sum in fp32, / count in fp32)
  const float cnt = float(n);
  detail::reduce_driver<Op>(x, y, outer, n, inner, [cnt](typename Op::Tot t) {
    if constexpr (std::is_integral<typename Op::Tot>::value)
      return from_float<Tout>(float(int64_t(t)) / cnt);
    else
      return from_float<Tout>(float(t) / cnt);
  });
}

template <typename Tin, typename Tout>
void reduce_max(const Tin* x, Tout* y, int64_t outer, int64_t n, int64_t inner) {
  detail::reduce_cast<detail::MaxOp<Tin>>(x, y, outer, n, inner);
}

template <typename Tin, typename Tout>
void reduce_min(const Tin* x, Tout* y, int64_t outer, int64_t n, int64_t inner) {
  detail::reduce_cast<detail::MinOp<Tin>>(x, y, outer, n, inner);
}

namespace detail {
// argmax candidate merge: NaN beats numbers, then the larger value, then the smaller index.
template <typename C> inline bool arg_better(C v, int64_t i, C bv, int64_t bi) {
  const bool vn = v != v, bn = bv != bv;
  if (vn || bn) return vn && (!bn || i < bi);
  return v > bv || (v == bv && i < bi);
}

// First max of rows k0..k1 of x (row stride `inner`) over columns [0, m), m <= kCols.
template <typename T>
void argmax_cols(const T* x, int64_t inner, int64_t k0, int64_t k1, int64_t m, in_t<T>* best, int64_t* idx) {
  using In = in_t<T>;
  alignas(64) float tmp[kCols];
  for (int64_t j = 0; j < m; ++j) { best[j] = lowest<In>(); idx[j] = k0; }
  for (int64_t k = k0; k < k1; ++k) {
    const In* AIT_RESTRICT p = as_in(x + k * inner, tmp, m);
    for (int64_t j = 0; j < m; ++j) {
      const In v = p[j], b = best[j];
      const bool take = (v > b) | ((v != v) & (b == b));  // strictly greater keeps the first
      best[j] = take ? v : b;
      idx[j] = take ? k : idx[j];
    }
  }
}

// First max of x[k0:k1] of one contiguous row: kLanes strided candidates, then merged.
template <typename T>
void argmax_row(const T* x, int64_t k0, int64_t k1, in_t<T>& best_out, int64_t& idx_out) {
  using In = in_t<T>;
  alignas(64) float tmp[kBlk];
  In best[kLanes];
  int64_t idx[kLanes];
  for (int l = 0; l < kLanes; ++l) { best[l] = lowest<In>(); idx[l] = k0; }
  for (int64_t c = k0; c < k1; c += kBlk) {
    const int64_t m = std::min(kBlk, k1 - c);
    const In* AIT_RESTRICT p = as_in(x + c, tmp, m);
    int64_t i = 0;
    for (; i + kLanes <= m; i += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const In v = p[i + l], b = best[l];
        const bool take = (v > b) | ((v != v) & (b == b));
        best[l] = take ? v : b;
        idx[l] = take ? c + i + l : idx[l];
      }
    for (int l = 0; i + l < m; ++l) {
      const In v = p[i + l], b = best[l];
      const bool take = (v > b) | ((v != v) & (b == b));
      best[l] = take ? v : b;
      idx[l] = take ? c + i + l : idx[l];
    }
  }
  In bv = best[0];
  int64_t bi = idx[0];
  for (int l = 1; l < kLanes; ++l)
    if (arg_better(best[l], idx[l], bv, bi)) { bv = best[l]; bi = idx[l]; }
  // A lane that never saw a value above `lowest` keeps index k0; a row that is all `lowest`
  // (e.g. all -inf) must still answer its first index, which k0 is.
  best_out = bv;
  idx_out = bi;
}
}  // namespace detail

template <typename T>
void argmax(const T* x, int64_t* y, int64_t outer, int64_t n, int64_t inner) {
  using In = detail::in_t<T>;
  using detail::kCols;
  if (outer <= 0 || inner <= 0) return;
  const int64_t jblocks = (inner + kCols - 1) / kCols;
  const int64_t tasks = outer * jblocks;
  const int nt = num_threads();
  const bool par = outer * n * inner >= detail::kParallelMin && nt > 1;
  int64_t splits = 1;
  if (par && tasks < 2 * nt) splits = std::min<int64_t>(std::max<int64_t>(n / 1024, 1), 2 * nt / tasks + 1);
  if (splits <= 1) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t o = t / jblocks, j0 = (t % jblocks) * kCols, m = std::min(kCols, inner - j0);
      const T* xo = x + o * n * inner + j0;
      if (inner == 1) {
        In b;
        detail::argmax_row(xo, 0, n, b, y[o]);
      } else {
        In best[kCols];
        detail::argmax_cols(xo, inner, 0, n, m, best, y + o * inner + j0);
      }
    }
    return;
  }
  const size_t total = size_t(splits * outer * inner);
  std::unique_ptr<In[]> pbest(new In[total]);
  std::unique_ptr<int64_t[]> pidx(new int64_t[total]);
  const int64_t chunk = (n + splits - 1) / splits;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tasks * splits; ++t) {
    const int64_t s = t % splits, tk = t / splits;
    const int64_t o = tk / jblocks, j0 = (tk % jblocks) * kCols, m = std::min(kCols, inner - j0);
    const int64_t k0 = std::min(n, s * chunk), k1 = std::min(n, k0 + chunk);
    const size_t off = size_t((s * outer + o) * inner + j0);
    const T* xo = x + o * n * inner + j0;
    if (k0 == k1) {  // an empty slice: a candidate that loses to everything
      for (int64_t j = 0; j < m; ++j) { pbest[off + j] = detail::lowest<In>(); pidx[off + j] = n; }
    } else if (inner == 1) {
      detail::argmax_row(xo, k0, k1, pbest[off], pidx[off]);
    } else {
      detail::argmax_cols(xo, inner, k0, k1, m, pbest.get() + off, pidx.get() + off);
    }
  }
  for (int64_t i = 0; i < outer * inner; ++i) {
    In bv = pbest[size_t(i)];
    int64_t bi = pidx[size_t(i)];
    for (int64_t s = 1; s < splits; ++s) {
      const size_t k = size_t(s * outer * inner + i);
      if (detail::arg_better(pbest[k], pidx[k], bv, bi)) { bv = pbest[k]; bi = pidx[k]; }
    }
    y[i] = n > 0 && bi >= n ? 0 : bi;
  }
}

}  // namespace ait
