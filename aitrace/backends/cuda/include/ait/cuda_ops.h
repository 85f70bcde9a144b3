// aitrace CUDA: the kernels beside the GEMM library: a tiled SIMT GEMM (fp32 and any shape the
// CUTLASS kernels do not take), direct NHWC convolution, conv patches (im2col), pooling, gather,
// constant pad, batch norm, and the row kernels of softmax and layer norm (plain, with a fused
// prologue, grouped).
// Each GEMM/conv result goes through an epilogue functor `epi(b, row, col, acc)` that stores it
// (fused elementwise work included), so one kernel serves plain and fused forms.
#pragma once
#include <initializer_list>
#include "ait/cuda.h"

namespace ait {
namespace gpu {

template <typename TC>
struct StoreEpi {
  TC* c;
  int64_t batch_stride, ldc;
  __device__ __forceinline__ void operator()(int64_t b, int64_t i, int64_t j, float acc) const {
    c[b * batch_stride + i * ldc + j] = store<TC>(acc);
  }
};

// C[b][i][j] = epi(sum_k A[b][i][k] B[b][k][j]) through (batch, row, col) element strides.
// 64x64 tiles, 256 threads of 4x4 outputs each, fp32 accumulation.
template <typename TA, typename TB, typename Epi>
__global__ void __launch_bounds__(256) gemm_simt_kernel(int64_t M, int64_t N, int64_t K, const TA* A, int64_t abs_, int64_t ars,
                                                        int64_t acs, const TB* B, int64_t bbs, int64_t brs, int64_t bcs, Epi epi) {
  await_inputs();
  constexpr int BM = 64, BN = 64, BK = 16;
  __shared__ float As[BK][BM + 1], Bs[BK][BN + 1];
  const int64_t b = blockIdx.z, m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  A += b * abs_;
  B += b * bbs;
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    for (int t = threadIdx.x; t < BM * BK; t += 256) {
      const int r = t / BK, c = t % BK;
      const int64_t gi = m0 + r, gk = k0 + c;
      As[c][r] = (gi < M && gk < K) ? load<float>(A[gi * ars + gk * acs]) : 0.f;
    }
    for (int t = threadIdx.x; t < BK * BN; t += 256) {
      const int r = t / BN, c = t % BN;
      const int64_t gk = k0 + r, gj = n0 + c;
      Bs[r][c] = (gk < K && gj < N) ? load<float>(B[gk * brs + gj * bcs]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[4], bb[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) a[u] = As[kk][ty * 4 + u], bb[u] = Bs[kk][tx * 4 + u];
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] += a[u] * bb[v];
    }
    __syncthreads();
  }
#pragma unroll
  for (int u = 0; u < 4; ++u)
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const int64_t i = m0 + ty * 4 + u, j = n0 + tx * 4 + v;
      if (i < M && j < N) epi(b, i, j, acc[u][v]);
    }
}

template <typename TA, typename TB, typename Epi>
inline void gemm_simt(int64_t batch, int64_t M, int64_t N, int64_t K, const TA* A, int64_t abs_, int64_t ars, int64_t acs,
                      const TB* B, int64_t bbs, int64_t brs, int64_t bcs, Epi epi, cudaStream_t s) {
  if (batch == 0 || M == 0 || N == 0) return;
  dim3 grid(unsigned((N + 63) / 64), unsigned((M + 63) / 64), unsigned(batch));
  launch(gemm_simt_kernel<TA, TB, Epi>, grid, 256, 0, s, M, N, K, A, abs_, ars, acs, B, bbs, brs, bcs, epi);
}

// Direct NHWC convolution: one thread per output element (row = output pixel, col = channel),
// weights [O, KH, KW, C/groups]; the epilogue sees (0, pixel, channel, acc).
template <typename T, typename Epi>
__global__ void conv2d_kernel(const T* __restrict__ x, const T* __restrict__ w, int64_t N, int64_t H, int64_t W, int64_t C,
                              int64_t O, int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t pt, int64_t pl,
                              int64_t dh, int64_t dw, int64_t groups, int64_t OH, int64_t OW, Epi epi) {
  await_inputs();
  const int64_t total = N * OH * OW * O, cg = C / groups, og = O / groups;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = t % O, pix = t / O, ow = pix % OW, oh = (pix / OW) % OH, n = pix / (OW * OH);
    const int64_t g = o / og;
    float acc = 0.f;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t ih = oh * sh - pt + kh * dh;
      if (ih < 0 || ih >= H) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t iw = ow * sw - pl + kw * dw;
        if (iw < 0 || iw >= W) continue;
        const T* xp = x + ((n * H + ih) * W + iw) * C + g * cg;
        const T* wp = w + ((o * KH + kh) * KW + kw) * cg;
        for (int64_t c = 0; c < cg; ++c) acc += load<float>(xp[c]) * load<float>(wp[c]);
      }
    }
    epi(0, pix, o, acc);
  }
}

template <typename T, typename Epi>
inline void conv2d(const T* x, const T* w, int64_t N, int64_t H, int64_t W, int64_t C, int64_t O, int64_t KH, int64_t KW,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t dh, int64_t dw,
                   int64_t groups, Epi epi, cudaStream_t s) {
  const int64_t OH = (H + pt + pb - dh * (KH - 1) - 1) / sh + 1, OW = (W + pl + pr - dw * (KW - 1) - 1) / sw + 1;
  if (N * OH * OW * O <= 0) return;
  launch(conv2d_kernel<T, Epi>, blocks_for(N * OH * OW * O, 256), 256, 0, s, x, w, N, H, W, C, O, KH, KW, sh, sw, pt, pl, dh, dw,
                                                                      groups, OH, OW, epi);
}

// Max / average pooling, NHWC, one thread per output element.
template <typename T>
__global__ void pool2d_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t N, int64_t H, int64_t W, int64_t C,
                              int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t OH,
                              int64_t OW, int is_max, bool count_include_pad) {
  await_inputs();
  const int64_t total = N * OH * OW * C;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = t % C, ow = (t / C) % OW, oh = (t / (C * OW)) % OH, n = t / (C * OW * OH);
    float acc = is_max ? -INFINITY : 0.f;
    int64_t count = 0;
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) {
        const int64_t ih = oh * sh - pt + i, iw = ow * sw - pl + j;
        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
        const float v = load<float>(x[((n * H + ih) * W + iw) * C + c]);
        acc = is_max ? fmaxf(acc, v) : acc + v;
        ++count;
      }
    if (!is_max) acc /= float(count_include_pad ? kh * kw : (count ? count : 1));
    y[t] = store<T>(acc);
  }
}

template <typename T>
inline void pool2d(const T* x, T* y, int64_t N, int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw, int64_t sh,
                   int64_t sw, int64_t pt, int64_t pl, int64_t OH, int64_t OW, int is_max, bool cip, cudaStream_t s) {
  if (N * OH * OW * C <= 0) return;
  launch(pool2d_kernel<T>, blocks_for(N * OH * OW * C, 256), 256, 0, s, x, y, N, H, W, C, kh, kw, sh, sw, pt, pl, OH, OW, is_max, cip);
}

// take: y[o, i, k] = table[o, clamp(idx[i]), k] (negative indices count from the end).
template <typename T, typename I>
__global__ void take_kernel(const T* __restrict__ t, const I* __restrict__ idx, T* __restrict__ y, int64_t outer, int64_t n,
                            int64_t inner, int64_t m) {
  await_inputs();
  const int64_t total = outer * m * inner;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = q % inner, i = (q / inner) % m, o = q / (inner * m);
    int64_t r = int64_t(idx[i]);
    r = r < 0 ? r + n : r;
    r = r < 0 ? 0 : (r >= n ? n - 1 : r);
    y[q] = t[(o * n + r) * inner + k];
  }
}

template <typename T, typename I>
inline void take(const T* t, const I* idx, T* y, int64_t outer, int64_t n, int64_t inner, int64_t m, cudaStream_t s) {
  if (outer * m * inner <= 0) return;
  launch(take_kernel<T, I>, blocks_for(outer * m * inner, 256), 256, 0, s, t, idx, y, outer, n, inner, m);
}

// Constant pad over up to kMaxDims axes (shape and element strides: the input's, which may be a
// view such as a transpose; lo: padding before each axis). The output is contiguous.
struct PadGeometry {
  int nd;
  int64_t in[kMaxDims], out[kMaxDims], lo[kMaxDims], stride[kMaxDims];
};

template <typename T>
__global__ void pad_kernel(const T* __restrict__ x, T* __restrict__ y, PadGeometry g, int64_t total, T value) {
  await_inputs();
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = q, src = 0;
    bool inside = true;
    for (int d = g.nd - 1; d >= 0; --d) {
      const int64_t c = r % g.out[d] - g.lo[d];
      r /= g.out[d];
      inside = inside && c >= 0 && c < g.in[d];
      src += c * g.stride[d];
    }
    y[q] = inside ? x[src] : value;
  }
}

template <typename T>
inline void pad_constant(const T* x, const int64_t* strides, T* y, const int64_t* shape, const int64_t* lo,
                         const int64_t* hi, int nd, T value, cudaStream_t s) {
  PadGeometry g{};
  g.nd = nd;
  int64_t total = 1;
  for (int d = 0; d < nd; ++d) {
    g.in[d] = shape[d], g.lo[d] = lo[d], g.stride[d] = strides[d], g.out[d] = shape[d] + lo[d] + hi[d];
    total *= g.out[d];
  }
  if (total <= 0) return;
  launch(pad_kernel<T>, blocks_for(total, 256), 256, 0, s, x, y, g, total, value);
}

// The patches of a convolution (im2col), NHWC: y[n][p][q][(i*KW + j)*C + c] =
// x[n][p*sh - pt + i*dh][q*sw - pl + j*dw][c], zero in the padding. x is read through element
// strides (a view: an NCHW -> NHWC transpose costs no copy); y is contiguous. Channels move as
// 16-byte vectors where they are contiguous and C, the strides and the pointers allow.
struct PatchGeometry {
  int64_t H, W, C, KH, KW, P, Q, sh, sw, pt, pl, dh, dw;
  int64_t xs[4];  // x's element strides (n, h, w, c)
};

// Index arithmetic in I: 32-bit where the sizes allow (integer division is slow on the GPU, the
// 64-bit kind much more so). Three ways to cut the work, by what C allows:
//   kChannelVectors  C a multiple of a 16-byte vector: one thread per vector of channels;
//   kRowVectors      a kernel row's KW*C values (contiguous in y) a multiple of a vector, e.g. an
//                    RGB stem padded to 8 columns: one thread per 16-byte vector of y, gathered
//                    value by value (16-byte stores: 2-byte ones cost 8x the store traffic);
//   kRows            otherwise: one thread per kernel row (n, oh, ow, i), scalar stores.
enum PatchCut { kChannelVectors, kRowVectors, kRows };

template <typename T, int Cut, typename I>
__global__ void conv2d_patches_kernel(const T* __restrict__ x, T* __restrict__ y, PatchGeometry g, I work) {
  await_inputs();
  constexpr int V = 16 / sizeof(T);
  const I C = I(g.C), kw = I(g.KW), kh = I(g.KH), pq = I(g.Q), pp = I(g.P);
  const I per_row = Cut == kChannelVectors ? kw * (C / V) : Cut == kRowVectors ? kw * C / V : 1;
  for (I q = blockIdx.x * I(blockDim.x) + threadIdx.x; q < work; q += I(gridDim.x) * blockDim.x) {
    const I t = q % per_row;  // this thread's part of its kernel row
    I r = q / per_row;
    const I i = r % kh;
    r /= kh;
    const I ow = r % pq;
    r /= pq;
    const I oh = r % pp, n = r / pp;
    const int64_t h = int64_t(oh) * g.sh - g.pt + int64_t(i) * g.dh;
    const bool row_in = h >= 0 && h < g.H;
    const T* xr = x + int64_t(n) * g.xs[0] + h * g.xs[1];
    const auto column = [&](I j) -> const T* {  // x at filter column j, or null in the padding
      const int64_t w = int64_t(ow) * g.sw - g.pl + int64_t(j) * g.dw;
      return row_in && w >= 0 && w < g.W ? xr + w * g.xs[2] : nullptr;
    };
    if constexpr (Cut == kChannelVectors) {
      const I cv = C / V, j = t / cv, c = t % cv;
      const T* p = column(j);
      uint4 v = {0, 0, 0, 0};
      if (p) v = *reinterpret_cast<const uint4*>(p + int64_t(c) * V);
      reinterpret_cast<uint4*>(y)[q] = v;
    } else if constexpr (Cut == kRowVectors) {
      I j = t * V / C, c = t * V % C;
      const T* p = column(j);
      T v[V];
#pragma unroll
      for (int e = 0; e < V; ++e) {
        v[e] = p ? p[int64_t(c) * g.xs[3]] : T(0.f);
        if (++c == C) {
          c = 0;
          p = column(++j);
        }
      }
      vstore<V>(y + int64_t(q) * V, v);
    } else {
      T* out = y + int64_t(q) * kw * C;
      for (I j = 0; j < kw; ++j) {
        const T* p = column(j);
        for (I c = 0; c < C; ++c) out[j * C + c] = p ? p[int64_t(c) * g.xs[3]] : T(0.f);
      }
    }
  }
}

template <typename T, int Cut>
inline void launch_patches(const T* x, T* y, const PatchGeometry& g, int64_t work, cudaStream_t s) {
  constexpr int threads = 256;
  if (work + int64_t(blocks_for(work, threads)) * threads < (int64_t(1) << 31))  // q never overflows
    launch(conv2d_patches_kernel<T, Cut, int32_t>, blocks_for(work, threads), threads, 0, s, x, y, g, int32_t(work));
  else
    launch(conv2d_patches_kernel<T, Cut, int64_t>, blocks_for(work, threads), threads, 0, s, x, y, g, work);
}

template <typename T>
inline void conv2d_patches(const T* x, T* y, int64_t N, const PatchGeometry& g, cudaStream_t s) {
  constexpr int V = 16 / sizeof(T);
  const int64_t rows = N * g.P * g.Q * g.KH;
  if (rows * g.KW * g.C <= 0) return;
  const bool x_vec = g.C % V == 0 && g.xs[3] == 1 && g.xs[0] % V == 0 && g.xs[1] % V == 0 && g.xs[2] % V == 0 &&
                     aligned16(x);
  if (x_vec && aligned16(y))
    launch_patches<T, kChannelVectors>(x, y, g, rows * g.KW * (g.C / V), s);
  else if (g.KW * g.C % V == 0 && aligned16(y))
    launch_patches<T, kRowVectors>(x, y, g, rows * g.KW * g.C / V, s);
  else
    launch_patches<T, kRows>(x, y, g, rows, s);
}

// Inference batch norm over the last (channel) axis.
template <typename T, typename P>
__global__ void batch_norm_kernel(const T* __restrict__ x, const P* __restrict__ mean, const P* __restrict__ var,
                                  const P* __restrict__ w, const P* __restrict__ b, T* __restrict__ y, int64_t total,
                                  int64_t C, float eps) {
  await_inputs();
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = q % C;
    const float sc = (w ? load<float>(w[c]) : 1.f) * rsqrtf(load<float>(var[c]) + eps);
    y[q] = store<T>((load<float>(x[q]) - load<float>(mean[c])) * sc + (b ? load<float>(b[c]) : 0.f));
  }
}

template <typename T, typename P>
inline void batch_norm(const T* x, const P* mean, const P* var, const P* w, const P* b, T* y, int64_t rows, int64_t C,
                       float eps, cudaStream_t s) {
  if (rows * C <= 0) return;
  launch(batch_norm_kernel<T, P>, blocks_for(rows * C, 256), 256, 0, s, x, mean, var, w, b, y, rows * C, C, eps);
}

// ------------------------------------------------ row kernels: softmax / layer norm over the last axis
// Row r's n values x(i) come from a functor `row`: PlainRow (the input's row) or a generated
// fused_norm prologue, which also stores its extra outputs when `first`. It gives them one at a
// time, row(r, i, first), or C = 8 at once, row(r, i, v, first), with 16-byte vector moves
// (where n % 8 == 0 and the pointers are aligned: the host picks C). A group of G threads
// normalizes one row: a warp for rows up to kWarpRowMax, the whole block beyond; thread t takes
// the chunks of C columns at i = t * C, t * C + G * C, ... The row's fp32 values are computed once
// into shared memory (one read of the inputs) where they fit in kRowCacheBytes a block; longer
// rows recompute x(i) in each pass. Statistics in fp32.
constexpr int kRowThreads = 256, kWarpRowMax = 1024, kRowVec = 8;
constexpr size_t kRowCacheBytes = 40 * 1024;  // under the 48 KB without opt-in; 5 blocks an SM

template <typename T>
struct PlainRow {
  const T* x;
  int64_t n;
  __device__ __forceinline__ float operator()(int64_t r, int64_t i, bool) const { return load<float>(x[r * n + i]); }
  __device__ __forceinline__ void operator()(int64_t r, int64_t i, float (&v)[kRowVec], bool) const {
    alignas(16) T b[kRowVec];
    vload(b, x + r * n + i);
#pragma unroll
    for (int k = 0; k < kRowVec; ++k) v[k] = load<float>(b[k]);
  }
};

// Whether rows of n can move as whole vectors: n a multiple of kRowVec, every pointer aligned.
inline bool rows_vectorizable(int64_t n, std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (!aligned16(p)) return false;
  return n % kRowVec == 0;
}

// Columns [i, i + C) of row r: from the cache, or computed (and cached on the first pass). A
// thread reads back only its own columns, so the cache needs no barrier; chunks of 8 move as
// float4s (a strided float access would be an 8-way bank conflict).
template <int C, typename Row>
__device__ __forceinline__ void row_chunk(const Row& row, int64_t r, int64_t i, float* cache, bool first, float (&v)[C]) {
  if (cache && !first) {
    if constexpr (C == 1) {
      v[0] = cache[i];
    } else {
#pragma unroll
      for (int k = 0; k < C / 4; ++k) {
        const float4 q = reinterpret_cast<const float4*>(cache + i)[k];
        v[4 * k] = q.x, v[4 * k + 1] = q.y, v[4 * k + 2] = q.z, v[4 * k + 3] = q.w;
      }
    }
    return;
  }
  if constexpr (C == 1) v[0] = row(r, i, first);
  else row(r, i, v, first);
  if (!cache) return;
  if constexpr (C == 1) {
    cache[i] = v[0];
  } else {
#pragma unroll
    for (int k = 0; k < C / 4; ++k) reinterpret_cast<float4*>(cache + i)[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
  }
}

template <int C, typename T>
__device__ __forceinline__ void store_chunk(T* y, const float (&v)[C]) {
  alignas(16) T b[C];
#pragma unroll
  for (int k = 0; k < C; ++k) b[k] = store<T>(v[k]);
  if constexpr (C == 1) y[0] = b[0];
  else vstore(y, b);
}

// Sum (or max) over the G threads of a row group: a warp, or the block through `scratch` (32 floats).
template <int G, bool kMax>
__device__ __forceinline__ float group_reduce(float v, float* scratch) {
  v = kMax ? warp_max(v) : warp_sum(v);
  if (G == 32) return v;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // the previous reduction has read scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < G / 32 ? scratch[lane] : (kMax ? -INFINITY : 0.f);
  return kMax ? warp_max(v) : warp_sum(v);
}

template <int G, int C, typename T, typename W, typename Row>
__device__ void layer_norm_row(const Row& row, int64_t r, int64_t n, float* cache, float* scratch, const W* w,
                               const W* b, T* y, float eps) {
  const int64_t start = int64_t(threadIdx.x % G) * C;
  float v[C], s = 0.f;
  for (int64_t i = start; i < n; i += G * C) {
    row_chunk(row, r, i, cache, true, v);
#pragma unroll
    for (int k = 0; k < C; ++k) s += v[k];
  }
  const float mean = group_reduce<G, false>(s, scratch) / float(n);
  float ss = 0.f;
  for (int64_t i = start; i < n; i += G * C) {
    row_chunk(row, r, i, cache, false, v);
#pragma unroll
    for (int k = 0; k < C; ++k) ss += (v[k] - mean) * (v[k] - mean);
  }
  const float rstd = rsqrtf(group_reduce<G, false>(ss, scratch) / float(n) + eps);
  for (int64_t i = start; i < n; i += G * C) {
    row_chunk(row, r, i, cache, false, v);
#pragma unroll
    for (int k = 0; k < C; ++k)
      v[k] = (v[k] - mean) * rstd * (w ? load<float>(w[i + k]) : 1.f) + (b ? load<float>(b[i + k]) : 0.f);
    store_chunk(y + r * n + i, v);
  }
}

template <int G, int C, typename T, typename Row>
__device__ void softmax_row(const Row& row, int64_t r, int64_t n, float* cache, float* scratch, T* y) {
  const int64_t start = int64_t(threadIdx.x % G) * C;
  float v[C], m = -INFINITY;
  for (int64_t i = start; i < n; i += G * C) {
    row_chunk(row, r, i, cache, true, v);
#pragma unroll
    for (int k = 0; k < C; ++k) m = fmaxf(m, v[k]);
  }
  m = group_reduce<G, true>(m, scratch);
  float s = 0.f;
  for (int64_t i = start; i < n; i += G * C) {
    row_chunk(row, r, i, cache, false, v);
#pragma unroll
    for (int k = 0; k < C; ++k) s += __expf(v[k] - m);
  }
  const float inv = 1.f / group_reduce<G, false>(s, scratch);
  for (int64_t i = start; i < n; i += G * C) {
    row_chunk(row, r, i, cache, false, v);
#pragma unroll
    for (int k = 0; k < C; ++k) v[k] = __expf(v[k] - m) * inv;
    store_chunk(y + r * n + i, v);
  }
}

// The launch of rows of n: threads a row (group), blocks, and the shared-memory row cache (0: none).
struct RowLaunch {
  int group;
  int64_t blocks;
  size_t cache_bytes;
};
inline RowLaunch row_launch(int64_t rows, int64_t n) {
  const int group = n <= kWarpRowMax ? 32 : kRowThreads, per_block = kRowThreads / group;
  const size_t bytes = size_t(per_block) * size_t(n) * sizeof(float);
  return {group, (rows + per_block - 1) / per_block, bytes <= kRowCacheBytes ? bytes : 0};
}

// Row r = blockIdx.x * (kRowThreads / G) + threadIdx.x / G.
template <int G, int C, typename T, typename W, typename Row>
__global__ void __launch_bounds__(kRowThreads) layer_norm_rows_kernel(Row row, const W* w, const W* b, T* y, int64_t rows,
                                                                      int64_t n, float eps, bool cached) {
  await_inputs();
  extern __shared__ __align__(16) float row_cache[];
  __shared__ float scratch[32];
  const int slot = threadIdx.x / G;
  const int64_t r = int64_t(blockIdx.x) * (kRowThreads / G) + slot;
  if (r < rows) layer_norm_row<G, C>(row, r, n, cached ? row_cache + slot * n : nullptr, scratch, w, b, y, eps);
}

template <int G, int C, typename T, typename Row>
__global__ void __launch_bounds__(kRowThreads) softmax_rows_kernel(Row row, T* y, int64_t rows, int64_t n, bool cached) {
  await_inputs();
  extern __shared__ __align__(16) float row_cache[];
  __shared__ float scratch[32];
  const int slot = threadIdx.x / G;
  const int64_t r = int64_t(blockIdx.x) * (kRowThreads / G) + slot;
  if (r < rows) softmax_row<G, C>(row, r, n, cached ? row_cache + slot * n : nullptr, scratch, y);
}

template <int G, int C, typename T, typename W, typename Row>
inline void launch_layer_norm_rows(const RowLaunch& l, const Row& row, const W* w, const W* b, T* y, int64_t rows, int64_t n,
                                   float eps, cudaStream_t s) {
  launch(layer_norm_rows_kernel<G, C, T, W, Row>, unsigned(l.blocks), kRowThreads, l.cache_bytes, s, row, w, b, y, rows, n, eps,
                                                                                                 l.cache_bytes > 0);
}

template <int G, int C, typename T, typename Row>
inline void launch_softmax_rows(const RowLaunch& l, const Row& row, T* y, int64_t rows, int64_t n, cudaStream_t s) {
  launch(softmax_rows_kernel<G, C, T, Row>, unsigned(l.blocks), kRowThreads, l.cache_bytes, s, row, y, rows, n, l.cache_bytes > 0);
}

// Layer norm of vectorizable rows up to kWarpRowMax long, a warp a row, the row held in
// registers: every chunk's load issued at once (one memory round trip, where the loop above
// waits once per chunk), then the statistics and the store. NCH = chunks of 8 columns a lane.
// With `preload` (the weight and bias are the model's constants) they are read before waiting
// on the kernel before (PDL), so their latency hides under its tail.
constexpr int kWarpRowsPerBlock = 4;
template <int NCH, typename T, typename W, typename Row>
__global__ void __launch_bounds__(32 * kWarpRowsPerBlock) layer_norm_warp_rows_kernel(Row row, const W* w, const W* b, T* y,
                                                                                      int64_t rows, int n, float eps,
                                                                                      bool preload) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / 32;
  float wv[NCH][kRowVec], bv[NCH][kRowVec];
  auto load_affine = [&] {
#pragma unroll
    for (int c = 0; c < NCH; ++c) {
      const int i = (c * 32 + lane) * kRowVec;
#pragma unroll
      for (int k = 0; k < kRowVec; ++k) {
        wv[c][k] = w && i < n ? load<float>(w[i + k]) : 1.f;
        bv[c][k] = b && i < n ? load<float>(b[i + k]) : 0.f;
      }
    }
  };
  if (preload) load_affine();
  await_inputs();
  if (!preload) load_affine();
  if (r >= rows) return;
  float v[NCH][kRowVec], s = 0.f;
#pragma unroll
  for (int c = 0; c < NCH; ++c) {
    const int i = (c * 32 + lane) * kRowVec;
    if (i < n) {
      row(r, i, v[c], true);
    } else {
#pragma unroll
      for (int k = 0; k < kRowVec; ++k) v[c][k] = 0.f;
    }
#pragma unroll
    for (int k = 0; k < kRowVec; ++k) s += v[c][k];
  }
  const float mean = warp_sum(s) / float(n);
  float ss = 0.f;
#pragma unroll
  for (int c = 0; c < NCH; ++c) {
    const bool valid = (c * 32 + lane) * kRowVec < n;
#pragma unroll
    for (int k = 0; k < kRowVec; ++k) ss += valid ? (v[c][k] - mean) * (v[c][k] - mean) : 0.f;
  }
  const float rstd = rsqrtf(warp_sum(ss) / float(n) + eps);
#pragma unroll
  for (int c = 0; c < NCH; ++c) {
    const int i = (c * 32 + lane) * kRowVec;
    if (i >= n) continue;
#pragma unroll
    for (int k = 0; k < kRowVec; ++k) v[c][k] = (v[c][k] - mean) * rstd * wv[c][k] + bv[c][k];
    store_chunk(y + r * n + i, v[c]);
  }
}

template <int NCH, typename T, typename W, typename Row>
inline void launch_layer_norm_warp_rows(const Row& row, const W* w, const W* b, T* y, int64_t rows, int64_t n, float eps,
                                        bool preload, cudaStream_t s) {
  launch(layer_norm_warp_rows_kernel<NCH, T, W, Row>, unsigned((rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock),
         32 * kWarpRowsPerBlock, 0, s, row, w, b, y, rows, int(n), eps, preload);
}

// vec: rows_vectorizable over every pointer the row functor and the kernel move by vectors;
// preload: w and b are constants (never written by an earlier kernel of the run)
template <typename T, typename W, typename Row>
inline void layer_norm_rows(const Row& row, const W* w, const W* b, T* y, int64_t rows, int64_t n, float eps, bool vec,
                            cudaStream_t s, bool preload = false) {
  if (rows <= 0 || n <= 0) return;
  constexpr int64_t kChunk = 32 * kRowVec;  // columns a warp moves at once
  if (vec && n <= kWarpRowMax) {
    static_assert(kWarpRowMax == 4 * kChunk, "one instantiation per chunk count");
    switch ((n + kChunk - 1) / kChunk) {
      case 1: launch_layer_norm_warp_rows<1>(row, w, b, y, rows, n, eps, preload, s); return;
      case 2: launch_layer_norm_warp_rows<2>(row, w, b, y, rows, n, eps, preload, s); return;
      case 3: launch_layer_norm_warp_rows<3>(row, w, b, y, rows, n, eps, preload, s); return;
      default: launch_layer_norm_warp_rows<4>(row, w, b, y, rows, n, eps, preload, s); return;
    }
  }
  const RowLaunch l = row_launch(rows, n);
  if (l.group == 32)  // scalar rows only: vector rows this short took the register path above
    launch_layer_norm_rows<32, 1>(l, row, w, b, y, rows, n, eps, s);
  else
    vec ? launch_layer_norm_rows<kRowThreads, kRowVec>(l, row, w, b, y, rows, n, eps, s)
        : launch_layer_norm_rows<kRowThreads, 1>(l, row, w, b, y, rows, n, eps, s);
}

template <typename T, typename Row>
inline void softmax_rows(const Row& row, T* y, int64_t rows, int64_t n, bool vec, cudaStream_t s) {
  if (rows <= 0 || n <= 0) return;
  const RowLaunch l = row_launch(rows, n);
  if (l.group == 32)
    vec ? launch_softmax_rows<32, kRowVec>(l, row, y, rows, n, s) : launch_softmax_rows<32, 1>(l, row, y, rows, n, s);
  else
    vec ? launch_softmax_rows<kRowThreads, kRowVec>(l, row, y, rows, n, s) : launch_softmax_rows<kRowThreads, 1>(l, row, y, rows, n, s);
}

// Layer norms of one stage (a `grouped` eqn) in one launch: the blocks of member k start at its
// first_block; each block finds its member in the table, passed as a kernel parameter.
template <typename T, typename W>
struct LayerNormMember {
  const T* x;
  const W* w;  // nullptr: no weight (likewise b)
  const W* b;
  T* y;
  int64_t rows, n;
  float eps;
  int64_t first_block;  // the launch fields, set by grouped_layer_norm
  int group;
  bool cached, vec;
};
template <typename T, typename W, int M>
struct LayerNormGroup {
  LayerNormMember<T, W> m[M];
};

template <int G, int C, typename T, typename W>
__device__ __forceinline__ void grouped_layer_norm_member(const LayerNormMember<T, W>& m, float* row_cache, float* scratch) {
  const int slot = threadIdx.x / G;
  const int64_t r = (int64_t(blockIdx.x) - m.first_block) * (kRowThreads / G) + slot;
  if (r < m.rows)
    layer_norm_row<G, C>(PlainRow<T>{m.x, m.n}, r, m.n, m.cached ? row_cache + slot * m.n : nullptr, scratch, m.w, m.b, m.y, m.eps);
}

template <typename T, typename W, int M>
__global__ void __launch_bounds__(kRowThreads) grouped_layer_norm_kernel(const __grid_constant__ LayerNormGroup<T, W, M> g) {
  await_inputs();
  extern __shared__ __align__(16) float row_cache[];
  __shared__ float scratch[32];
  int k = 0;
  while (k + 1 < M && int64_t(blockIdx.x) >= g.m[k + 1].first_block) ++k;
  const LayerNormMember<T, W>& m = g.m[k];  // uniform over the block: one member a block
  if (m.group == 32)
    m.vec ? grouped_layer_norm_member<32, kRowVec>(m, row_cache, scratch) : grouped_layer_norm_member<32, 1>(m, row_cache, scratch);
  else
    m.vec ? grouped_layer_norm_member<kRowThreads, kRowVec>(m, row_cache, scratch)
          : grouped_layer_norm_member<kRowThreads, 1>(m, row_cache, scratch);
}

template <typename T, typename W, int M>
inline void grouped_layer_norm(LayerNormGroup<T, W, M> g, cudaStream_t s) {
  int64_t blocks = 0;
  size_t cache = 0;
  for (LayerNormMember<T, W>& m : g.m) {
    const RowLaunch l = row_launch(m.rows, m.n);
    m.first_block = blocks, m.group = l.group, m.cached = l.cache_bytes > 0;
    m.vec = rows_vectorizable(m.n, {m.x, m.y});
    blocks += m.rows > 0 && m.n > 0 ? l.blocks : 0;
    cache = cache > l.cache_bytes ? cache : l.cache_bytes;
  }
  if (blocks > 0) launch(grouped_layer_norm_kernel<T, W, M>, unsigned(blocks), kRowThreads, cache, s, g);
}

// ------------------------------------------------ one axis of [outer, n, inner]: argmax, softmax
// One thread per (outer, inner) position walks the axis (reads coalesced across inner); these
// serve axes other than the last, where the row kernels above do not apply.

// numpy argmax: the first maximum; the first NaN beats any number.
template <typename T>
__global__ void argmax_kernel(const T* __restrict__ x, int64_t* __restrict__ y, int64_t outer, int64_t n, int64_t inner) {
  await_inputs();
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t % inner;
    const T* p = x + o * n * inner + i;
    float best = load<float>(p[0]);
    int64_t arg = 0;
    for (int64_t j = 1; j < n && best == best; ++j) {
      const float v = load<float>(p[j * inner]);
      if (v > best || v != v) best = v, arg = j;
    }
    y[t] = arg;
  }
}

template <typename T>
inline void argmax(const T* x, int64_t* y, int64_t outer, int64_t n, int64_t inner, cudaStream_t s) {
  launch(argmax_kernel<T>, blocks_for(outer * inner, 256), 256, 0, s, x, y, outer, n, inner);
}

template <typename T>
__global__ void softmax_axis_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t n, int64_t inner) {
  await_inputs();
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (t / inner) * n * inner + t % inner;
    float m = -INFINITY, sum = 0.f;
    for (int64_t j = 0; j < n; ++j) m = fmaxf(m, load<float>(x[base + j * inner]));
    for (int64_t j = 0; j < n; ++j) sum += __expf(load<float>(x[base + j * inner]) - m);
    const float inv = 1.f / sum;
    for (int64_t j = 0; j < n; ++j) y[base + j * inner] = store<T>(__expf(load<float>(x[base + j * inner]) - m) * inv);
  }
}

template <typename T>
inline void softmax_axis(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, cudaStream_t s) {
  launch(softmax_axis_kernel<T>, blocks_for(outer * inner, 256), 256, 0, s, x, y, outer, n, inner);
}

// After a launch in a host function that returns nothing: a failed launch throws, naming the
// kernel (ait_run turns it into the run's error).
inline void check_launch(const char* name) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string("kernel ") + name + ": " + cudaGetErrorString(e));
}

}  // namespace gpu
}  // namespace ait
