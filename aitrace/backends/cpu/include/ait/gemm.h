// aitrace CPU runtime: blocked, packed, OpenMP-parallel GEMM (BLIS-style) with a fused epilogue.
//
//   C[b][i][j] = epi(sum_k A[b][i][k] * B[b][k][j])      b < batch, i < M, j < N, k < K
//
// A and B are read through arbitrary (batch, row, col) element strides, so transposed operands
// and broadcast batches (stride 0) need no copy: the packing routines read them. TA/TB may be
// float, ait::half or ait::bfloat16; they are converted to fp32 while packing and accumulated in
// fp32. The result never lands in memory by itself: the epilogue functor receives each finished
// row segment of an output tile,
//
//   epi(int64_t b, int64_t i, int64_t j0, const float* acc, int64_t n)   // acc[t] = C[b][i][j0+t]
//
// and converts/stores it (ait::StoreEpilogue) or fuses bias, activation, residual, ... first.
// Calls for different (b, i, j0) may come concurrently from different threads; each output
// element is passed exactly once.
//
// Structure (Goto/BLIS): loops jc (NC columns) > pc (KC depth) > ic (MC rows) > jr (NR) > ir (MR)
// around a register-blocked MR x NR micro-kernel. B is packed per (jc, pc) into KC x NC panels,
// A per (ic, pc) into MC x KC panels, both zero-padded to whole micro-tiles. When K > KC the
// partial sums of a thread's region live in an fp32 buffer (bounded in size) between depth blocks.
// Micro-kernels: AVX-512 14x32 (28 zmm accumulators), AVX2+FMA 6x16, scalar 4x4 fallback;
// edge tiles use the same kernel instantiated for the exact tile rows / vector count. (On Zen 4,
// 14x32, 8x48 and 6x64 all run at ~116 GFLOP/s/core from L1; 8x48 / 6x64 were 1-2% faster on
// big squares, 14x32 up to 15% faster on thin / conv-shaped problems, so 14x32 it is.)
// Thin problems (M <= 4 or N <= 4) skip packing and stream the big operand once (gemv-like).
// Parallelism: the (batch x M x N) output is cut into per-thread rectangles (a grid chosen to
// balance load and limit re-packing); every thread packs into its own thread-local buffers,
// which grow to the largest problem seen and live as long as the thread (per thread, at most
// MC*KC + KC*NC + AIT_GEMM_CBUF_FLOATS floats: about 11 MB with the defaults).
// Tuning knobs (macros, define before including): AIT_GEMM_MR / _NV / _KC / _MC / _NC / _CBUF_FLOATS.
#pragma once
#include "common.h"
#include <array>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <type_traits>
#include <utility>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

// gcc 12 flags the intrinsics' own _mm*_undefined_* as (maybe-)uninitialized (gcc PR105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace ait {

// Converts each accumulator row to TC and stores it at C[b*batch_stride + i*ldc + j].
template <typename TC>
struct StoreEpilogue {
  TC* C;
  int64_t batch_stride;
  int64_t ldc;
  inline void operator()(int64_t b, int64_t i, int64_t j0, const float* acc, int64_t n) const;
};

namespace gemm_detail {

#if defined(__GNUC__)
#define AIT_GEMM_INLINE inline __attribute__((always_inline))
#else
#define AIT_GEMM_INLINE inline
#endif

// ---------------------------------------------------------------------------------------------
// Vector abstraction and tile geometry (chosen at compile time)
#if defined(__AVX512F__)
struct Vec {
  using V = __m512;
  static constexpr int W = 16;
  static AIT_GEMM_INLINE V zero() { return _mm512_setzero_ps(); }
  static AIT_GEMM_INLINE V load(const float* p) { return _mm512_load_ps(p); }
  static AIT_GEMM_INLINE V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static AIT_GEMM_INLINE void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static AIT_GEMM_INLINE V bcast(const float* p) { return _mm512_set1_ps(*p); }
  static AIT_GEMM_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static AIT_GEMM_INLINE V add(V a, V b) { return _mm512_add_ps(a, b); }
  static AIT_GEMM_INLINE float hsum(V a) { return _mm512_reduce_add_ps(a); }
};
#ifndef AIT_GEMM_MR
#define AIT_GEMM_MR 14
#endif
#ifndef AIT_GEMM_NV
#define AIT_GEMM_NV 2
#endif
#elif defined(__AVX2__) && defined(__FMA__)
struct Vec {
  using V = __m256;
  static constexpr int W = 8;
  static AIT_GEMM_INLINE V zero() { return _mm256_setzero_ps(); }
  static AIT_GEMM_INLINE V load(const float* p) { return _mm256_load_ps(p); }
  static AIT_GEMM_INLINE V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static AIT_GEMM_INLINE void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static AIT_GEMM_INLINE V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static AIT_GEMM_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static AIT_GEMM_INLINE V add(V a, V b) { return _mm256_add_ps(a, b); }
  static AIT_GEMM_INLINE float hsum(V a) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
  }
};
#ifndef AIT_GEMM_MR
#define AIT_GEMM_MR 6
#endif
#ifndef AIT_GEMM_NV
#define AIT_GEMM_NV 2
#endif
#else
struct Vec {
  using V = float;
  static constexpr int W = 1;
  static AIT_GEMM_INLINE V zero() { return 0.f; }
  static AIT_GEMM_INLINE V load(const float* p) { return *p; }
  static AIT_GEMM_INLINE V loadu(const float* p) { return *p; }
  static AIT_GEMM_INLINE void storeu(float* p, V v) { *p = v; }
  static AIT_GEMM_INLINE V bcast(const float* p) { return *p; }
  static AIT_GEMM_INLINE V fma(V a, V b, V c) { return a * b + c; }
  static AIT_GEMM_INLINE V add(V a, V b) { return a + b; }
  static AIT_GEMM_INLINE float hsum(V a) { return a; }
};
#ifndef AIT_GEMM_MR
#define AIT_GEMM_MR 4
#endif
#ifndef AIT_GEMM_NV
#define AIT_GEMM_NV 4
#endif
#endif

constexpr int kW = Vec::W;
constexpr int kMR = AIT_GEMM_MR;             // micro-tile rows
constexpr int kNV = AIT_GEMM_NV;             // micro-tile vectors per row
constexpr int kNR = kNV * kW;                // micro-tile columns

// Cache blocking (floats). Zen 4 / Skylake-SP class: 32-48 KB L1d, 1-2 MB L2, large shared L3.
// KC x NR B micro-panel (~24 KB) stays in L1, MC x KC A block (~250 KB) in L2, KC x NC B panel in
// L3. Overridable for tuning.
#ifndef AIT_GEMM_KC
#define AIT_GEMM_KC 192
#endif
#ifndef AIT_GEMM_MC
#define AIT_GEMM_MC (kMR * 24)
#endif
#ifndef AIT_GEMM_NC
#define AIT_GEMM_NC 4096
#endif
#ifndef AIT_GEMM_CBUF_FLOATS  // cap of the per-thread fp32 partial-sum buffer (K > KC)
#define AIT_GEMM_CBUF_FLOATS (1 << 21)
#endif

constexpr int64_t kKC = AIT_GEMM_KC;
constexpr int64_t kMC = ((AIT_GEMM_MC) + kMR - 1) / kMR * kMR;
constexpr int64_t kNC = ((AIT_GEMM_NC) + kNR - 1) / kNR * kNR;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// ---------------------------------------------------------------------------------------------
// Micro-kernel: acc(MRK x NVK*W) = sum_k a[k*kMR + r] * b[k*kNR + c];  then
// cout[r*ldout + c] = acc + (cin ? cin[r*ldin + c] : 0).  a, b are packed panels (b 64B-aligned).
template <int MRK, int NVK>
static void ukernel(int64_t kc, const float* __restrict a, const float* __restrict b,
                    const float* cin, int64_t ldin, float* cout, int64_t ldout) {
  using V = Vec::V;
#if defined(__GNUC__)
  if (cin) {  // partial sums come back from L2/L3 at the end: start fetching them now
#pragma GCC unroll 16
    for (int r = 0; r < MRK; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < (NVK * kW + 15) / 16; ++v) __builtin_prefetch(cin + r * ldin + v * 16, 0, 3);
  }
#endif
  V acc[MRK][NVK];
#pragma GCC unroll 16
  for (int r = 0; r < MRK; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NVK; ++v) acc[r][v] = Vec::zero();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NVK];
#pragma GCC unroll 8
    for (int v = 0; v < NVK; ++v) bv[v] = Vec::load(b + v * kW);
#pragma GCC unroll 16
    for (int r = 0; r < MRK; ++r) {
      V av = Vec::bcast(a + r);
#pragma GCC unroll 8
      for (int v = 0; v < NVK; ++v) acc[r][v] = Vec::fma(av, bv[v], acc[r][v]);
    }
    a += kMR;
    b += kNR;
  }
  if (cin) {
#pragma GCC unroll 16
    for (int r = 0; r < MRK; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NVK; ++v) acc[r][v] = Vec::add(acc[r][v], Vec::loadu(cin + r * ldin + v * kW));
  }
#pragma GCC unroll 16
  for (int r = 0; r < MRK; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NVK; ++v) Vec::storeu(cout + r * ldout + v * kW, acc[r][v]);
}

using UKernel = void (*)(int64_t, const float*, const float*, const float*, int64_t, float*, int64_t);

template <int MRK, int... NVs>
constexpr std::array<UKernel, sizeof...(NVs)> kernel_row(std::integer_sequence<int, NVs...>) {
  return {{&ukernel<MRK, NVs + 1>...}};
}
template <int... MRs>
constexpr std::array<std::array<UKernel, kNV>, kMR> kernel_table(std::integer_sequence<int, MRs...>) {
  return {{kernel_row<MRs + 1>(std::make_integer_sequence<int, kNV>{})...}};
}
// kernels[mr-1][nv-1]
inline const std::array<std::array<UKernel, kNV>, kMR>& kernels() {
  static constexpr auto t = kernel_table(std::make_integer_sequence<int, kMR>{});
  return t;
}

// ---------------------------------------------------------------------------------------------
// Storage type <-> float vectors of width kW: vload (kW elements), vload_n (n < kW, rest 0),
// vstore / vstore_n. bf16 rounds to nearest even like ait::from_float (quiet NaN kept).
template <typename T> AIT_GEMM_INLINE Vec::V vload(const T* p);
template <typename T> AIT_GEMM_INLINE void vstore(T* p, Vec::V v);
#if defined(__AVX512F__)
template <> AIT_GEMM_INLINE __m512 vload<float>(const float* p) { return _mm512_loadu_ps(p); }
template <> AIT_GEMM_INLINE __m512 vload<half>(const half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
template <> AIT_GEMM_INLINE __m512 vload<bfloat16>(const bfloat16* p) {
  __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
template <> AIT_GEMM_INLINE void vstore<float>(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
template <> AIT_GEMM_INLINE void vstore<half>(half* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
template <> AIT_GEMM_INLINE void vstore<bfloat16>(bfloat16* p, __m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}
#elif defined(__AVX2__) && defined(__FMA__)
template <> AIT_GEMM_INLINE __m256 vload<float>(const float* p) { return _mm256_loadu_ps(p); }
template <> AIT_GEMM_INLINE __m256 vload<bfloat16>(const bfloat16* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
template <> AIT_GEMM_INLINE void vstore<float>(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
#if defined(__F16C__)
template <> AIT_GEMM_INLINE __m256 vload<half>(const half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
template <> AIT_GEMM_INLINE void vstore<half>(half* p, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
#endif
#endif
// generic: through a small buffer (scalar build, or types without a vector path)
template <typename T> AIT_GEMM_INLINE Vec::V vload(const T* p) {
  alignas(64) float tmp[kW];
  for (int t = 0; t < kW; ++t) tmp[t] = to_float(p[t]);
  return Vec::loadu(tmp);
}
template <typename T> AIT_GEMM_INLINE void vstore(T* p, Vec::V v) {
  alignas(64) float tmp[kW];
  Vec::storeu(tmp, v);
  for (int t = 0; t < kW; ++t) p[t] = from_float<T>(tmp[t]);
}
template <typename T> AIT_GEMM_INLINE Vec::V vload_n(const T* p, int n) {
#if defined(__AVX512F__)
  if (std::is_same<T, float>::value)
    return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1u), reinterpret_cast<const float*>(p));
#endif
  alignas(64) float tmp[kW];
  for (int t = 0; t < kW; ++t) tmp[t] = t < n ? to_float(p[t]) : 0.f;
  return Vec::loadu(tmp);
}
template <typename T> AIT_GEMM_INLINE void vstore_n(T* p, Vec::V v, int n) {
#if defined(__AVX512F__)
  if (std::is_same<T, float>::value) {
    _mm512_mask_storeu_ps(reinterpret_cast<float*>(p), __mmask16((1u << n) - 1u), v);
    return;
  }
#endif
  alignas(64) T tmp[kW];
  vstore<T>(tmp, v);
  for (int t = 0; t < n; ++t) p[t] = tmp[t];
}

// n contiguous storage elements -> floats, and back
template <typename T>
AIT_GEMM_INLINE void load_contig(const T* src, int64_t n, float* dst) {
  int64_t t = 0;
  for (; t + kW <= n; t += kW) Vec::storeu(dst + t, vload<T>(src + t));
  if (t < n) vstore_n<float>(dst + t, vload_n<T>(src + t, int(n - t)), int(n - t));
}
template <typename T>
AIT_GEMM_INLINE void store_contig(T* dst, const float* src, int64_t n) {
  int64_t t = 0;
  for (; t + kW <= n; t += kW) vstore<T>(dst + t, Vec::loadu(src + t));
  if (t < n) vstore_n<T>(dst + t, vload_n<float>(src + t, int(n - t)), int(n - t));
}

// ---------------------------------------------------------------------------------------------
// Packing. A block (mc x kc, element (i,k) at A[i*rs + k*cs]) -> ceil(mc/MR) panels of
// [kc][MR]; B block (kc x nc, element (k,j) at B[k*rs + j*cs]) -> ceil(nc/NR) panels of [kc][NR].
// Rows/columns past the edge are zero.

// Transposing pack: `rows` source rows (row r at src + r*ld, contiguous along k) into
// dst[k*P + r] for k < kc; rows [rows, P) are zero. AVX-512: 16 x 16 blocks through registers.
#if defined(__AVX512F__)
template <typename T> AIT_GEMM_INLINE __m512 load16(const T* p) { return vload<T>(p); }
// in: v[r] = row r (16 columns); out: v[c] = column c (16 rows)
AIT_GEMM_INLINE void transpose16(__m512 v[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
    __m512d a2 = _mm512_castps_pd(t[4 * i + 2]), a3 = _mm512_castps_pd(t[4 * i + 3]);
    v[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  // v[4i + q]: lane L holds column 4L + q of rows 4i..4i+3
  for (int i = 0; i < 2; ++i)
    for (int q = 0; q < 4; ++q) {
      t[8 * i + q] = _mm512_shuffle_f32x4(v[8 * i + q], v[8 * i + 4 + q], 0x88);
      t[8 * i + 4 + q] = _mm512_shuffle_f32x4(v[8 * i + q], v[8 * i + 4 + q], 0xdd);
    }
  for (int q = 0; q < 8; ++q) {
    v[q] = _mm512_shuffle_f32x4(t[q], t[8 + q], 0x88);
    v[8 + q] = _mm512_shuffle_f32x4(t[q], t[8 + q], 0xdd);
  }
}
#endif

template <int P, typename T>
static void pack_transpose(const T* src, int64_t ld, int rows, int64_t kc, float* dst) {
  int64_t k = 0;
#if defined(__AVX512F__)
  for (int r0 = 0; r0 < P; r0 += 16) {
    const int rb = std::min(16, P - r0), rv = std::max(0, std::min(rb, rows - r0));
    const __mmask16 m = __mmask16((1u << rb) - 1u);
    for (k = 0; k + 16 <= kc; k += 16) {
      __m512 v[16];
      for (int r = 0; r < 16; ++r) v[r] = r < rv ? load16<T>(src + (r0 + r) * ld + k) : _mm512_setzero_ps();
      transpose16(v);
      float* d = dst + k * P + r0;
      if (rb == 16)
        for (int c = 0; c < 16; ++c) _mm512_storeu_ps(d + c * P, v[c]);
      else
        for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(d + c * P, m, v[c]);
    }
  }
#endif
  for (; k < kc; ++k) {
    float* d = dst + k * P;
    for (int r = 0; r < rows; ++r) d[r] = to_float(src[r * ld + k]);
    for (int r = rows; r < P; ++r) d[r] = 0.f;
  }
}

template <typename T>
static void pack_A(const T* A, int64_t rs, int64_t cs, int64_t mc, int64_t kc, float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += kMR, dst += kMR * kc) {
    const int rows = int(std::min<int64_t>(kMR, mc - i0));
    const T* a = A + i0 * rs;
    if (cs == 1 && rs != 1) {
      pack_transpose<kMR>(a, rs, rows, kc, dst);
    } else if (rs == 1 && rows == kMR) {
      for (int64_t k = 0; k < kc; ++k) load_contig<T>(a + k * cs, kMR, dst + k * kMR);
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        float* d = dst + k * kMR;
        for (int r = 0; r < rows; ++r) d[r] = to_float(a[r * rs + k * cs]);
        for (int r = rows; r < kMR; ++r) d[r] = 0.f;
      }
    }
  }
}

template <typename T>
static void pack_B(const T* B, int64_t rs, int64_t cs, int64_t kc, int64_t nc, float* dst) {
  if (cs == 1) {
    // row by row, so the source is read sequentially (rows of a wide B are far apart)
    const int64_t full = nc / kNR * kNR, rem = nc - full;
    for (int64_t k = 0; k < kc; ++k) {
      const T* b = B + k * rs;
      float* d = dst + k * kNR;
      for (int64_t j0 = 0; j0 < full; j0 += kNR, d += kNR * kc)
#pragma GCC unroll 8
        for (int v = 0; v < kNV; ++v) Vec::storeu(d + v * kW, vload<T>(b + j0 + v * kW));
      if (rem)
        for (int c0 = 0; c0 < kNR; c0 += kW) {
          const int n = int(std::max<int64_t>(0, std::min<int64_t>(kW, rem - c0)));
          Vec::storeu(d + c0, n == kW ? vload<T>(b + full + c0) : n ? vload_n<T>(b + full + c0, n) : Vec::zero());
        }
    }
    return;
  }
  for (int64_t j0 = 0; j0 < nc; j0 += kNR, dst += kNR * kc) {
    const int cols = int(std::min<int64_t>(kNR, nc - j0));
    const T* b = B + j0 * cs;
    if (rs == 1) {
      pack_transpose<kNR>(b, cs, cols, kc, dst);
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        float* d = dst + k * kNR;
        for (int c = 0; c < cols; ++c) d[c] = to_float(b[k * rs + c * cs]);
        for (int c = cols; c < kNR; ++c) d[c] = 0.f;
      }
    }
  }
}

AIT_GEMM_INLINE void prefetch_l2(const char* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 2);
#else
  (void)p;
#endif
}

// ---------------------------------------------------------------------------------------------
// Thread-local, grow-only, 64-byte aligned scratch.
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      size_t bytes = (n * sizeof(float) + 4095) & ~size_t(4095);
      p = static_cast<float*>(std::aligned_alloc(4096, bytes));
      if (!p) throw std::bad_alloc();
      cap = bytes / sizeof(float);
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};
struct ThreadBuffers {
  Scratch a, b, c;
};
inline ThreadBuffers& thread_buffers() {
  static thread_local ThreadBuffers t;
  return t;
}

// The depth block gemm_region packs B in for a reduction of K (balanced blocks <= kKC).
inline int64_t depth_block(int64_t K) { return round_up(ceil_div(K, ceil_div(K, kKC)), 8); }

// One thread's rectangle [m0, m1) x [n0, n1) of output batch `bi`. Bp: B packed whole
// (ait::pack_gemm_b, N columns in all), or null to pack B's blocks here.
template <typename TA, typename TB, typename Epi>
void gemm_region(int64_t bi, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t K,
                 const TA* A, int64_t ars, int64_t acs, const TB* B, int64_t brs, int64_t bcs,
                 Epi& epi, const float* Bp, int64_t N) {
  ThreadBuffers& tb = thread_buffers();
  const auto& kern = kernels();
  alignas(64) float tile[kMR * kNR];

  // balanced block sizes
  const int64_t nkb = ceil_div(K, kKC);
  const int64_t KC = depth_block(K), np = round_up(N, kNR);
  // When K needs several depth blocks, partial sums of an MB x NC block live in cbuf
  // (<= AIT_GEMM_CBUF_FLOATS): B is re-packed M/MB times and A N/NC times, so both are kept
  // large (about sqrt(cap) each when the region does not fit at once).
  int64_t nc_target = kNC;
  if (nkb > 1) {
    const int64_t cap = AIT_GEMM_CBUF_FLOATS, sq = int64_t(std::sqrt(double(cap)));
    nc_target = std::min(nc_target, std::max(sq, cap / (m1 - m0)));
  }
  const int64_t nnb = ceil_div(n1 - n0, nc_target);
  const int64_t NC = round_up(ceil_div(n1 - n0, nnb), kNR);
  const int64_t MC = kMC;
  int64_t MB = m1 - m0;
  if (nkb > 1) {
    const int64_t nmb = ceil_div(MB, std::max<int64_t>(MC, AIT_GEMM_CBUF_FLOATS / NC / MC * MC));
    MB = round_up(ceil_div(MB, nmb), kMR);
  }

  float* apack = tb.a.get(size_t(MC * KC));
  float* bbuf = Bp ? nullptr : tb.b.get(size_t(NC * KC));  // B's block packed per call
  float* cbuf = nkb > 1 ? tb.c.get(size_t(std::min(MB, m1 - m0) * NC)) : nullptr;

  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min(NC, n1 - jc);
    const int64_t ldc = round_up(nc, kNR);
    for (int64_t mb = m0; mb < m1; mb += MB) {
      const int64_t mbe = std::min(m1, mb + MB);
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc);
        const bool first = pc == 0, last = pc + kc == K;
        if (!Bp) pack_B<TB>(B + pc * brs + jc * bcs, brs, bcs, kc, nc, bbuf);
        const float* bpack = Bp ? Bp + pc * np + jc * kc : bbuf;
        for (int64_t ic = mb; ic < mbe; ic += MC) {
          const int64_t mc = std::min(MC, mbe - ic);
          pack_A<TA>(A + ic * ars + pc * acs, ars, acs, mc, kc, apack);
          for (int64_t jr = 0; jr < nc; jr += kNR) {
            const int64_t nr = std::min<int64_t>(kNR, nc - jr);
            const int nv = int(ceil_div(nr, kW));
            const float* bp = bpack + jr * kc;
            // B packed ahead of time comes from memory, not from a panel packed just now:
            // fetch the next micro-panel into L2 while this one computes, a slice per row tile
            const char* next = Bp && jr + kNR < nc ? reinterpret_cast<const char*>(bp + kNR * kc) : nullptr;
            const int64_t lines = kc * kNR * int64_t(sizeof(float)) / 64, per = ceil_div(lines, ceil_div(mc, kMR));
            for (int64_t ir = 0; ir < mc; ir += kMR) {
              const int mr = int(std::min<int64_t>(kMR, mc - ir));
              if (next)
                for (int64_t l = ir / kMR * per, le = std::min(lines, l + per); l < le; ++l)
                  prefetch_l2(next + l * 64);
              const float* ap = apack + ir * kc;
              float* cb = cbuf ? cbuf + (ic - mb + ir) * ldc + jr : nullptr;
              if (last) {
                kern[mr - 1][nv - 1](kc, ap, bp, first ? nullptr : cb, ldc, tile, kNR);
                for (int r = 0; r < mr; ++r) epi(bi, ic + ir + r, jc + jr, tile + r * kNR, nr);
              } else {
                kern[mr - 1][nv - 1](kc, ap, bp, first ? nullptr : cb, ldc, cb, ldc);
              }
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Thin problems (M or N <= kThin): packing the big operand would cost more than the arithmetic,
// so it is streamed once, straight from its storage. The small operand is converted to a float
// buffer S[s][K] first.
constexpr int kThin = 4;

// out[s][t] = sum_k S[s*K + k] * big[t*ld + k]   (s < NS, t < NT; big rows contiguous in k)
template <int NS, int NT, typename T>
AIT_GEMM_INLINE void thin_dots(const float* S, int64_t K, const T* big, int64_t ld, float out[kThin][kThin]) {
  Vec::V acc[NS][NT];
#pragma GCC unroll 4
  for (int s = 0; s < NS; ++s)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[s][t] = Vec::zero();
  int64_t k = 0;
  for (; k + kW <= K; k += kW) {
    Vec::V bv[NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) bv[t] = vload<T>(big + t * ld + k);
#pragma GCC unroll 4
    for (int s = 0; s < NS; ++s) {
      const Vec::V av = Vec::loadu(S + s * K + k);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) acc[s][t] = Vec::fma(av, bv[t], acc[s][t]);
    }
  }
  if (k < K) {
    const int n = int(K - k);
    Vec::V bv[NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) bv[t] = vload_n<T>(big + t * ld + k, n);
#pragma GCC unroll 4
    for (int s = 0; s < NS; ++s) {
      const Vec::V av = vload_n<float>(S + s * K + k, n);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) acc[s][t] = Vec::fma(av, bv[t], acc[s][t]);
    }
  }
#pragma GCC unroll 4
  for (int s = 0; s < NS; ++s)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) out[s][t] = Vec::hsum(acc[s][t]);
}

template <int NS, typename T>
AIT_GEMM_INLINE void thin_dots_n(const float* S, int64_t K, const T* big, int64_t ld, int nt,
                                 float out[kThin][kThin]) {
  switch (nt) {
    case 4: thin_dots<NS, 4>(S, K, big, ld, out); break;
    case 3: thin_dots<NS, 3>(S, K, big, ld, out); break;
    case 2: thin_dots<NS, 2>(S, K, big, ld, out); break;
    default: thin_dots<NS, 1>(S, K, big, ld, out); break;
  }
}
template <typename T>
AIT_GEMM_INLINE void thin_dots_sn(int ns, const float* S, int64_t K, const T* big, int64_t ld, int nt,
                                  float out[kThin][kThin]) {
  switch (ns) {
    case 4: thin_dots_n<4>(S, K, big, ld, nt, out); break;
    case 3: thin_dots_n<3>(S, K, big, ld, nt, out); break;
    case 2: thin_dots_n<2>(S, K, big, ld, nt, out); break;
    default: thin_dots_n<1>(S, K, big, ld, nt, out); break;
  }
}

// acc[s][c] = sum_k S[s*K + k] * B[k*rs + c] for c < nc <= kThinCols (B rows contiguous)
constexpr int kThinNV = 4, kThinCols = kThinNV * kW;
// (lds: row stride of S; accumulate: add to what out holds)
template <int NS, typename T>
AIT_GEMM_INLINE void thin_axpy(const float* S, int64_t lds, int64_t K, const T* B, int64_t rs, int nc,
                               float* out, int64_t ldo, bool accumulate) {
  Vec::V acc[NS][kThinNV];
#pragma GCC unroll 4
  for (int s = 0; s < NS; ++s)
#pragma GCC unroll 4
    for (int v = 0; v < kThinNV; ++v) acc[s][v] = accumulate ? Vec::loadu(out + s * ldo + v * kW) : Vec::zero();
  if (nc == kThinCols) {
    for (int64_t k = 0; k < K; ++k) {
      Vec::V bv[kThinNV];
#pragma GCC unroll 4
      for (int v = 0; v < kThinNV; ++v) bv[v] = vload<T>(B + k * rs + v * kW);
#pragma GCC unroll 4
      for (int s = 0; s < NS; ++s) {
        const Vec::V av = Vec::bcast(S + s * lds + k);
#pragma GCC unroll 4
        for (int v = 0; v < kThinNV; ++v) acc[s][v] = Vec::fma(av, bv[v], acc[s][v]);
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      Vec::V bv[kThinNV];
      for (int v = 0; v < kThinNV; ++v) {
        const int n = std::max(0, std::min(kW, nc - v * kW));
        bv[v] = n == kW ? vload<T>(B + k * rs + v * kW) : n ? vload_n<T>(B + k * rs + v * kW, n) : Vec::zero();
      }
#pragma GCC unroll 4
      for (int s = 0; s < NS; ++s) {
        const Vec::V av = Vec::bcast(S + s * lds + k);
#pragma GCC unroll 4
        for (int v = 0; v < kThinNV; ++v) acc[s][v] = Vec::fma(av, bv[v], acc[s][v]);
      }
    }
  }
#pragma GCC unroll 4
  for (int s = 0; s < NS; ++s)
#pragma GCC unroll 4
    for (int v = 0; v < kThinNV; ++v) Vec::storeu(out + s * ldo + v * kW, acc[s][v]);
}

// S[s][k] = X[s*rs + k*cs] as float, s < ns
template <typename T>
void thin_pack(const T* X, int64_t rs, int64_t cs, int ns, int64_t K, float* S) {
  for (int s = 0; s < ns; ++s) {
    if (cs == 1) load_contig<T>(X + s * rs, K, S + s * K);
    else for (int64_t k = 0; k < K; ++k) S[s * K + k] = to_float(X[s * rs + k * cs]);
  }
}

// Returns false when the layout has no thin path (then the packed path runs).
template <typename TA, typename TB, typename Epi>
bool gemm_thin(int64_t batch, int64_t M, int64_t N, int64_t K, const TA* A, int64_t abs_, int64_t ars,
               int64_t acs, const TB* B, int64_t bbs, int64_t brs, int64_t bcs, Epi& epi, int nth) {
  enum { kDotB, kAxpyB, kDotA } mode;
  if (M <= kThin && brs == 1 && N > 1) mode = kDotB;        // C row i = A_i . (columns of B)
  else if (M <= kThin && bcs == 1) mode = kAxpyB;           // C row i = sum_k A_ik * B row k
  else if (N <= kThin && acs == 1 && K >= 4 * kW) mode = kDotA;  // C col j = (rows of A) . B_j
                                                            // (short rows: the packed path wins)
  else if (M <= kThin && brs == 1) mode = kDotB;
  else return false;
  const int64_t big = mode == kDotA ? M : N;
  // kAxpyB reads B row pieces of blk columns: wide, so they stream (one piece per thread)
  const int64_t blk = mode == kDotA ? 64 : mode == kDotB ? 256
                    : std::min<int64_t>(4096, round_up(ceil_div(N, std::max(1, nth)), kThinCols));
  const int64_t nblk = ceil_div(big, blk), ntasks = batch * nblk;
  const int ns = int(mode == kDotA ? N : M);
  auto task = [&](int64_t t) {
    const int64_t b = t / nblk, i0 = (t % nblk) * blk, i1 = std::min(big, i0 + blk);
    const TA* a = A + b * abs_;
    const TB* bm = B + b * bbs;
    float* S = thread_buffers().a.get(size_t(ns * K + 16));
    alignas(64) float out[kThin][kThin];
    if (mode == kDotA) {
      // S = B^T [N][K]; rows of A stream
      thin_pack<TB>(bm, bcs, brs, ns, K, S);
      alignas(64) float row[kThin];
      for (int64_t i = i0; i < i1; i += kThin) {
        const int nt = int(std::min<int64_t>(kThin, i1 - i));
        thin_dots_sn<TA>(ns, S, K, a + i * ars, ars, nt, out);
        for (int t2 = 0; t2 < nt; ++t2) {
          for (int j = 0; j < ns; ++j) row[j] = out[j][t2];
          epi(b, i + t2, 0, row, ns);
        }
      }
      return;
    }
    thin_pack<TA>(a, ars, acs, ns, K, S);  // S = A [M][K]
    const int64_t ldr = round_up(blk, kThinCols);
    float* rows = thread_buffers().c.get(size_t(ns * ldr));
    if (mode == kDotB) {
      for (int64_t j = i0; j < i1; j += kThin) {
        const int nt = int(std::min<int64_t>(kThin, i1 - j));
        thin_dots_sn<TB>(ns, S, K, bm + j * bcs, bcs, nt, out);
        for (int s2 = 0; s2 < ns; ++s2)
          for (int t2 = 0; t2 < nt; ++t2) rows[s2 * ldr + j - i0 + t2] = out[s2][t2];
      }
    } else {
      // k in chunks, so each chunk reads whole (blk-wide) row pieces of B: fewer pages in flight
      for (int64_t k0 = 0; k0 < K; k0 += 8) {
        const int64_t kc = std::min<int64_t>(8, K - k0);
        const TB* bk = bm + k0 * brs;
        for (int64_t j = i0; j < i1; j += kThinCols) {
          const int nc = int(std::min<int64_t>(kThinCols, i1 - j));
          float* o = rows + (j - i0);
          switch (ns) {
            case 4: thin_axpy<4, TB>(S + k0, K, kc, bk + j, brs, nc, o, ldr, k0 > 0); break;
            case 3: thin_axpy<3, TB>(S + k0, K, kc, bk + j, brs, nc, o, ldr, k0 > 0); break;
            case 2: thin_axpy<2, TB>(S + k0, K, kc, bk + j, brs, nc, o, ldr, k0 > 0); break;
            default: thin_axpy<1, TB>(S + k0, K, kc, bk + j, brs, nc, o, ldr, k0 > 0); break;
          }
        }
      }
    }
    for (int s2 = 0; s2 < ns; ++s2) epi(b, s2, i0, rows + s2 * ldr, i1 - i0);
  };
  if (nth > ntasks) nth = int(ntasks);
#ifdef _OPENMP
  if (nth > 1) {
#pragma omp parallel for schedule(static) num_threads(nth)
    for (int64_t t = 0; t < ntasks; ++t) task(t);
    return true;
  }
#endif
  for (int64_t t = 0; t < ntasks; ++t) task(t);
  return true;
}

// Work split: `parts` rectangles per batch entry as a tm x tn grid (tm * tn == parts).
struct Split {
  int64_t tm = 1, tn = 1;
};
inline Split choose_split(int64_t parts, int64_t M, int64_t N) {
  Split best;
  double best_cost = -1;
  const int64_t mt = ceil_div(M, kMR), nt = ceil_div(N, kNR);
  for (int64_t tm = parts; tm >= 1; --tm) {  // ties go to cutting M: B panels pack cheaper than A
    if (parts % tm) continue;
    const int64_t tn = parts / tm;
    if ((tm > mt && tm > 1) || (tn > nt && tn > 1)) continue;
    const double rows = double(ceil_div(mt, tm) * kMR), cols = double(ceil_div(nt, tn) * kNR);
    // largest task's compute + its packing (A rows, B columns), in micro-tile-ish units
    const double cost = rows * cols + 16.0 * (rows + cols);
    if (best_cost < 0 || cost < best_cost) best_cost = cost, best = Split{tm, tn};
  }
  if (best_cost < 0) {  // too small to cut `parts` ways: cut as far as the shape allows
    best.tm = std::min(parts, mt);
    best.tn = 1;
  }
  return best;
}

inline int64_t gcd64(int64_t a, int64_t b) {
  while (b) { int64_t t = a % b; a = b; b = t; }
  return a;
}

}  // namespace gemm_detail

// Row conversion helpers for epilogue functors (vectorized for float / half / bfloat16):
// dst[t] = T(src[t]) and dst[t] = float(src[t]) for t < n.
template <typename T>
inline void store_row(T* dst, const float* src, int64_t n) { gemm_detail::store_contig<T>(dst, src, n); }
template <typename T>
inline void load_row(float* dst, const T* src, int64_t n) { gemm_detail::load_contig<T>(src, n, dst); }

template <typename TC>
inline void StoreEpilogue<TC>::operator()(int64_t b, int64_t i, int64_t j0, const float* acc,
                                          int64_t n) const {
  gemm_detail::store_contig<TC>(C + b * batch_stride + i * ldc + j0, acc, n);
}

// Floats of B [K, N] packed whole for gemm's `packed_b` (see pack_gemm_b).
inline int64_t packed_b_floats(int64_t K, int64_t N) {
  return K * gemm_detail::round_up(N, gemm_detail::kNR);
}
// Packs B [K, N] (element strides rs, cs) into dst (packed_b_floats(K, N) floats, 64-byte
// aligned), once, for a B that many gemm calls share (a model's constant weight): as gemm_region
// packs it per call, depth block [pc, pc + kc) at dst + pc * round_up(N, kNR), in micro-panels of
// kNR columns (kc x kNR floats each, zero-padded).
template <typename T>
void pack_gemm_b(const T* B, int64_t rs, int64_t cs, int64_t K, int64_t N, float* dst) {
  using namespace gemm_detail;
  const int64_t KC = depth_block(K), np = round_up(N, kNR);
  for (int64_t pc = 0; pc < K; pc += KC) pack_B<T>(B + pc * rs, rs, cs, std::min(KC, K - pc), N, dst + pc * np);
}

// C[b][i][j] = epi(sum_k A[b][i][k] * B[b][k][j]) for b < batch (see the top of this file).
// packed_b: B as pack_gemm_b packed it (one B for every batch entry: b_batch_stride 0 or
// batch 1), or null; the packed path then reads it instead of packing B (thin problems still
// read B itself, which must stay valid).
template <typename TA, typename TB, typename Epi>
void gemm(int64_t batch, int64_t M, int64_t N, int64_t K,
          const TA* A, int64_t a_batch_stride, int64_t a_row_stride, int64_t a_col_stride,
          const TB* B, int64_t b_batch_stride, int64_t b_row_stride, int64_t b_col_stride,
          Epi epi, const float* packed_b = nullptr) {
  using namespace gemm_detail;
  if (batch <= 0 || M <= 0 || N <= 0) return;
  if (b_batch_stride != 0 && batch > 1) packed_b = nullptr;  // one packed B serves one B only
  if (K <= 0) {  // empty reduction: every output is epi(0)
    alignas(64) float zeros[256] = {};
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; j += 256) epi(b, i, j, zeros, std::min<int64_t>(256, N - j));
    return;
  }
  int64_t nth = num_threads();
#ifdef _OPENMP
  if (omp_in_parallel()) nth = 1;
#endif
  const double flops = 2.0 * double(batch) * double(M) * double(N) * double(K);
  if (flops < 2.0e5) nth = 1;
  if ((M <= kThin || N <= kThin) &&
      gemm_thin<TA, TB, Epi>(batch, M, N, K, A, a_batch_stride, a_row_stride, a_col_stride, B,
                             b_batch_stride, b_row_stride, b_col_stride, epi, int(nth)))
    return;
  // tasks = batch x parts; parts chosen so tasks divide evenly over the threads
  int64_t parts = 1;
  if (nth > 1 && batch % nth != 0 && batch < 4 * nth) parts = nth / gcd64(batch, nth);
  const Split sp = choose_split(parts, M, N);
  const int64_t tm = sp.tm, tn = sp.tn;
  const int64_t mstep = round_up(ceil_div(M, tm), kMR), nstep = round_up(ceil_div(N, tn), kNR);
  const int64_t ntasks = batch * tm * tn;
  if (nth > ntasks) nth = ntasks;

  auto task = [&](int64_t t) {
    const int64_t b = t / (tm * tn), r = t % (tm * tn), pm = r / tn, pn = r % tn;
    const int64_t m0 = pm * mstep, n0 = pn * nstep;
    if (m0 >= M || n0 >= N) return;
    gemm_region<TA, TB, Epi>(b, m0, std::min(M, m0 + mstep), n0, std::min(N, n0 + nstep), K,
                             A + b * a_batch_stride, a_row_stride, a_col_stride,
                             B + b * b_batch_stride, b_row_stride, b_col_stride, epi, packed_b, N);
  };
#ifdef _OPENMP
  if (nth > 1) {
#pragma omp parallel for schedule(static) num_threads(int(nth))
    for (int64_t t = 0; t < ntasks; ++t) task(t);
    return;
  }
#endif
  for (int64_t t = 0; t < ntasks; ++t) task(t);
}

}  // namespace ait

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
