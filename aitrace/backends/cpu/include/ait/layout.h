// aitrace CPU kernels: memory-layout ops. Any trivially copyable T (float, half, bfloat16, ints,
// bool); all sizes, strides and offsets are in ELEMENTS, never bytes.
//
//   copy_strided<T>(src, src_strides, dst, dst_strides, shape, ndim)
//       for every index I < shape: dst[sum I*dst_strides] = src[sum I*src_strides]
//       src/dst point at the element with index (0, ..., 0). Covers transpose (permuted
//       strides), slices with steps (stride * step, pointer at the first element), flip
//       (negative stride, pointer at the last element of that axis), broadcast (src stride 0)
//       and writing into a sub-block of a bigger buffer (concatenate: one call per input with
//       dst offset to its slot). dst must not overlap src, and distinct indices must address
//       distinct dst elements (no dst stride 0 on a dim of size > 1). ndim <= 64; ndim == 0
//       copies one element; a 0 in shape copies nothing. Dims are squeezed, reordered for dst
//       locality and merged first; fast paths: innermost contiguous on both sides (memcpy
//       rows), broadcast rows (fill), and a tiled transpose (cache-line sized tiles through a
//       local buffer) when the src-contiguous and the dst-contiguous dims differ.
//   take<T, I>(table, idx, out, outer, n, inner, num_idx)
//       gather along an axis: table [outer, n, inner], idx [num_idx] (int32/int64; an N-d index
//       array flattened), out [outer, num_idx, inner]: out[o][i][r] = table[o][j][r] with
//       j = idx[i] + n if idx[i] < 0, then clamped to [0, n-1] (out-of-range indices clamp, as
//       the reference). n == 0: out is zero-filled.
//   pad_constant<T>(src, dst, shape, pad_lo, pad_hi, ndim, value)
//       numpy.pad(mode="constant"): src contiguous [shape], dst contiguous
//       [shape[d] + pad_lo[d] + pad_hi[d]], the border filled with `value` (a T: for fp16/bf16
//       pass ait::from_float<ait::half>(v)); pads >= 0; 1 <= ndim <= 64 (ndim == 0 copies the
//       one element).
//   conv2d_patches<T>(x, y, N, H, W, C, KH, KW, P, Q, sh, sw, pt, pl, dh, dw)
//       im2col, NHWC: y[n][p][q][(i*KW + j)*C + c] = x[n][p*sh - pt + i*dh][q*sw - pl + j*dw][c],
//       zero where the tap falls in the padding; x and y contiguous.
// Parallel (OpenMP) over outer rows / tiles when the copy is large enough (>= 64K elements).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>
#include "common.h"

#ifndef AIT_RESTRICT
#define AIT_RESTRICT __restrict__
#endif

namespace ait {
namespace detail {

constexpr int kMaxDims = 64;
constexpr int64_t kLayoutParallelMin = int64_t(1) << 16;  // elements

// Splits [0, total) into chunks; calls f(begin, end) for each, in parallel when big enough.
template <class F>
void for_chunks(int64_t total, int64_t work, F f) {
  if (total <= 0) return;
  const int nt = num_threads();
  if (work < kLayoutParallelMin || nt <= 1 || total == 1) {
    f(int64_t(0), total);
    return;
  }
  const int64_t chunks = std::min<int64_t>(total, int64_t(nt) * 4);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) f(total * c / chunks, total * (c + 1) / chunks);
}

// Decodes linear index `lin` over dims [0, nd) into idx; returns the src/dst offsets.
inline void decode(int64_t lin, int nd, const int64_t* sh, const int64_t* ss, const int64_t* ds,
                   int64_t* idx, int64_t& so, int64_t& dof) {
  so = 0;
  dof = 0;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = lin % sh[d];
    lin /= sh[d];
    so += idx[d] * ss[d];
    dof += idx[d] * ds[d];
  }
}

// Odometer step over dims [0, nd).
inline void advance(int nd, const int64_t* sh, const int64_t* ss, const int64_t* ds, int64_t* idx,
                    int64_t& so, int64_t& dof) {
  for (int d = nd - 1; d >= 0; --d) {
    so += ss[d];
    dof += ds[d];
    if (++idx[d] < sh[d]) return;
    so -= ss[d] * sh[d];
    dof -= ds[d] * sh[d];
    idx[d] = 0;
  }
}

inline int64_t iabs(int64_t v) { return v < 0 ? -v : v; }

}  // namespace detail

template <typename T>
void copy_strided(const T* src, const int64_t* src_strides, T* dst, const int64_t* dst_strides,
                  const int64_t* shape, int ndim) {
  using namespace detail;
  int64_t sh[kMaxDims], ss[kMaxDims], ds[kMaxDims];
  int nd = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] <= 0) return;  // empty
    if (shape[d] == 1) continue;
    sh[nd] = shape[d];
    ss[nd] = src_strides[d];
    ds[nd] = dst_strides[d];
    ++nd;
  }
  if (nd == 0) {
    dst[0] = src[0];
    return;
  }
  // Order dims by decreasing |dst stride| (then |src stride|): the innermost writes are dense.
  for (int i = 1; i < nd; ++i)
    for (int j = i; j > 0; --j) {
      const bool swap = iabs(ds[j]) > iabs(ds[j - 1]) ||
                        (iabs(ds[j]) == iabs(ds[j - 1]) && iabs(ss[j]) > iabs(ss[j - 1]));
      if (!swap) break;
      std::swap(sh[j], sh[j - 1]);
      std::swap(ss[j], ss[j - 1]);
      std::swap(ds[j], ds[j - 1]);
    }
  // Merge dims that are contiguous with their inner neighbour on both sides.
  int m = 0;
  for (int d = 1; d < nd; ++d) {
    if (ss[m] == ss[d] * sh[d] && ds[m] == ds[d] * sh[d]) {
      sh[m] *= sh[d];
      ss[m] = ss[d];
      ds[m] = ds[d];
    } else {
      ++m;
      sh[m] = sh[d];
      ss[m] = ss[d];
      ds[m] = ds[d];
    }
  }
  nd = m + 1;
  const int z = nd - 1;
  const int64_t len = sh[z], szs = ss[z], szd = ds[z];
  int64_t total = 1;
  for (int d = 0; d < nd; ++d) total *= sh[d];

  // Tiled transpose: dst dense along z, src dense along some other dim a.
  int a = -1;
  if (szd == 1 && iabs(szs) != 1)
    for (int d = 0; d < z; ++d)
      if (iabs(ss[d]) == 1 && sh[d] >= 4) a = d;
  if (a >= 0 && len >= 2) {
    // outer dims: all but a and z
    int64_t osh[kMaxDims], oss[kMaxDims], ods[kMaxDims];
    int ond = 0;
    for (int d = 0; d < z; ++d)
      if (d != a) { osh[ond] = sh[d]; oss[ond] = ss[d]; ods[ond] = ds[d]; ++ond; }
    const int64_t na = sh[a], sa = ss[a], da = ds[a];
    // Tiles of TB x TB: read TB src runs along a into a transposed local tile, then write TB
    // dense dst runs along z (memcpy): no strided access to main memory on either side.
    constexpr int64_t TB = sizeof(T) >= 4 ? 32 : 16;
    const int64_t ta = (na + TB - 1) / TB, tz = (len + TB - 1) / TB;
    const int64_t outer = total / (na * len);
    for_chunks(outer * ta * tz, total, [&](int64_t b, int64_t e) {
      int64_t idx[kMaxDims];
      alignas(64) T tile[TB * TB];
      for (int64_t u = b; u < e; ++u) {
        const int64_t t = u % (ta * tz), ou = u / (ta * tz);
        int64_t so, dof;
        decode(ou, ond, osh, oss, ods, idx, so, dof);
        const int64_t a0 = (t / tz) * TB, z0 = (t % tz) * TB;
        const int64_t ma = std::min(na - a0, TB), mz = std::min(len - z0, TB);
        const T* s = src + so + a0 * sa + z0 * szs;
        T* dd = dst + dof + a0 * da + z0;
        for (int64_t iz = 0; iz < mz; ++iz) {
          const T* sr = s + iz * szs;
          for (int64_t ia = 0; ia < ma; ++ia) tile[ia * TB + iz] = sr[ia * sa];
        }
        if (mz >= 8) {
          for (int64_t ia = 0; ia < ma; ++ia)
            std::memcpy(static_cast<void*>(dd + ia * da), static_cast<const void*>(tile + ia * TB),
                        size_t(mz) * sizeof(T));
        } else {  // short dst runs (e.g. NCHW -> NHWC with C = 3): no memcpy calls
          for (int64_t ia = 0; ia < ma; ++ia)
            for (int64_t iz = 0; iz < mz; ++iz) dd[ia * da + iz] = tile[ia * TB + iz];
        }
      }
    });
    return;
  }

  // Row-wise: one row = the innermost dim.
  const int64_t rows = total / len;
  for_chunks(rows, total, [&](int64_t b, int64_t e) {
    int64_t idx[kMaxDims];
    int64_t so, dof;
    decode(b, z, sh, ss, ds, idx, so, dof);
    for (int64_t r = b; r < e; ++r) {
      const T* s = src + so;
      T* AIT_RESTRICT d = dst + dof;
      if (szd == 1 && szs == 1) {
        std::memcpy(static_cast<void*>(d), static_cast<const void*>(s), size_t(len) * sizeof(T));
      } else if (szs == 0) {
        const T v = s[0];
        for (int64_t i = 0; i < len; ++i) d[i * szd] = v;
      } else if (szd == 1) {
        for (int64_t i = 0; i < len; ++i) d[i] = s[i * szs];
      } else {
        for (int64_t i = 0; i < len; ++i) d[i * szd] = s[i * szs];
      }
      advance(z, sh, ss, ds, idx, so, dof);
    }
  });
}

template <typename T, typename I>
void take(const T* table, const I* idx, T* out, int64_t outer, int64_t n, int64_t inner,
          int64_t num_idx) {
  using namespace detail;
  if (outer <= 0 || inner <= 0 || num_idx <= 0) return;
  if (n <= 0) {
    std::fill_n(out, outer * num_idx * inner, T{});
    return;
  }
  auto pick = [n](I v) {
    int64_t j = int64_t(v);
    j = j < 0 ? j + n : j;
    return j < 0 ? int64_t(0) : (j >= n ? n - 1 : j);
  };
  const int64_t rows = outer * num_idx;
  if (inner == 1) {
    for_chunks(rows, rows, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t o = r / num_idx, i = r % num_idx;
        out[r] = table[o * n + pick(idx[i])];
      }
    });
    return;
  }
  for_chunks(rows, rows * inner, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t o = r / num_idx, i = r % num_idx;
      std::memcpy(static_cast<void*>(out + r * inner),
                  static_cast<const void*>(table + (o * n + pick(idx[i])) * inner),
                  size_t(inner) * sizeof(T));
    }
  });
}

template <typename T>
void pad_constant(const T* src, T* dst, const int64_t* shape, const int64_t* pad_lo,
                  const int64_t* pad_hi, int ndim, T value) {
  using namespace detail;
  if (ndim == 0) {
    dst[0] = src[0];
    return;
  }
  int64_t osh[kMaxDims], ist[kMaxDims], zero[kMaxDims];
  int64_t total = 1, in_total = 1;
  for (int d = 0; d < ndim; ++d) {
    osh[d] = shape[d] + pad_lo[d] + pad_hi[d];
    total *= osh[d];
    in_total *= shape[d];
    zero[d] = 0;
  }
  if (total <= 0) return;
  ist[ndim - 1] = 1;
  for (int d = ndim - 2; d >= 0; --d) ist[d] = ist[d + 1] * shape[d + 1];
  const int z = ndim - 1;
  const int64_t olen = osh[z], lo = pad_lo[z], ilen = shape[z];
  const int64_t rows = total / olen;
  for_chunks(rows, total, [&](int64_t b, int64_t e) {
    int64_t idx[kMaxDims];
    int64_t unused, dof;
    decode(b, z, osh, zero, zero, idx, unused, dof);
    for (int64_t r = b; r < e; ++r) {
      T* AIT_RESTRICT d = dst + r * olen;
      bool inside = in_total > 0;
      int64_t so = 0;
      for (int k = 0; k < z; ++k) {
        const int64_t ii = idx[k] - pad_lo[k];
        inside = inside && ii >= 0 && ii < shape[k];
        so += ii * ist[k];
      }
      if (!inside) {
        std::fill_n(d, olen, value);
      } else {
        std::fill_n(d, lo, value);
        std::memcpy(static_cast<void*>(d + lo), static_cast<const void*>(src + so),
                    size_t(ilen) * sizeof(T));
        std::fill_n(d + lo + ilen, olen - lo - ilen, value);
      }
      advance(z, osh, zero, zero, idx, unused, dof);
    }
  });
}

template <typename T>
void conv2d_patches(const T* x, T* y, int64_t N, int64_t H, int64_t W, int64_t C, int64_t KH, int64_t KW,
                    int64_t P, int64_t Q, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t dh, int64_t dw) {
  const int64_t rows = N * P * Q, row = KH * KW * C;
  detail::for_chunks(rows, rows * row, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t n = r / (P * Q), p = r / Q % P, q = r % Q;
      T* AIT_RESTRICT d = y + r * row;
      for (int64_t i = 0; i < KH; ++i)
        for (int64_t j = 0; j < KW; ++j, d += C) {
          const int64_t h = p * sh - pt + i * dh, w = q * sw - pl + j * dw;
          if (h >= 0 && h < H && w >= 0 && w < W)
            std::memcpy(static_cast<void*>(d), static_cast<const void*>(x + ((n * H + h) * W + w) * C), size_t(C) * sizeof(T));
          else
            std::memset(static_cast<void*>(d), 0, size_t(C) * sizeof(T));
        }
    }
  });
}

}  // namespace ait
