// aitrace CUDA: the kernels beside the GEMM library: a tiled SIMT GEMM (fp32 and any shape the
// CUTLASS kernels do not take), direct NHWC convolution, pooling, gather, constant pad and batch
// norm. Each GEMM/conv result goes through an epilogue functor `epi(b, row, col, acc)` that stores
// it (fused elementwise work included), so one kernel serves plain and fused forms.
#pragma once
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
  gemm_simt_kernel<TA, TB, Epi><<<grid, 256, 0, s>>>(M, N, K, A, abs_, ars, acs, B, bbs, brs, bcs, epi);
}

// Direct NHWC convolution: one thread per output element (row = output pixel, col = channel),
// weights [O, KH, KW, C/groups]; the epilogue sees (0, pixel, channel, acc).
template <typename T, typename Epi>
__global__ void conv2d_kernel(const T* __restrict__ x, const T* __restrict__ w, int64_t N, int64_t H, int64_t W, int64_t C,
                              int64_t O, int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t pt, int64_t pl,
                              int64_t dh, int64_t dw, int64_t groups, int64_t OH, int64_t OW, Epi epi) {
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
  conv2d_kernel<T, Epi><<<blocks_for(N * OH * OW * O, 256), 256, 0, s>>>(x, w, N, H, W, C, O, KH, KW, sh, sw, pt, pl, dh, dw,
                                                                      groups, OH, OW, epi);
}

// Max / average pooling, NHWC, one thread per output element.
template <typename T>
__global__ void pool2d_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t N, int64_t H, int64_t W, int64_t C,
                              int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t OH,
                              int64_t OW, int is_max, bool count_include_pad) {
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
  pool2d_kernel<T><<<blocks_for(N * OH * OW * C, 256), 256, 0, s>>>(x, y, N, H, W, C, kh, kw, sh, sw, pt, pl, OH, OW, is_max, cip);
}

// take: y[o, i, k] = table[o, clamp(idx[i]), k] (negative indices count from the end).
template <typename T, typename I>
__global__ void take_kernel(const T* __restrict__ t, const I* __restrict__ idx, T* __restrict__ y, int64_t outer, int64_t n,
                            int64_t inner, int64_t m) {
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
  take_kernel<T, I><<<blocks_for(outer * m * inner, 256), 256, 0, s>>>(t, idx, y, outer, n, inner, m);
}

// Constant pad over up to kMaxDims axes (shape: the input's; lo: padding before each axis).
struct PadGeometry {
  int nd;
  int64_t in[kMaxDims], out[kMaxDims], lo[kMaxDims];
};

template <typename T>
__global__ void pad_kernel(const T* __restrict__ x, T* __restrict__ y, PadGeometry g, int64_t total, T value) {
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < total; q += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = q, src = 0, stride = 1;
    bool inside = true;
    for (int d = g.nd - 1; d >= 0; --d) {
      const int64_t c = r % g.out[d] - g.lo[d];
      r /= g.out[d];
      inside = inside && c >= 0 && c < g.in[d];
      src += c * stride;
      stride *= g.in[d];
    }
    y[q] = inside ? x[src] : value;
  }
}

template <typename T>
inline void pad_constant(const T* x, T* y, const int64_t* shape, const int64_t* lo, const int64_t* hi, int nd, T value,
                         cudaStream_t s) {
  PadGeometry g{};
  g.nd = nd;
  int64_t total = 1;
  for (int d = 0; d < nd; ++d) g.in[d] = shape[d], g.lo[d] = lo[d], g.out[d] = shape[d] + lo[d] + hi[d], total *= g.out[d];
  if (total <= 0) return;
  pad_kernel<T><<<blocks_for(total, 256), 256, 0, s>>>(x, y, g, total, value);
}

// Inference batch norm over the last (channel) axis.
template <typename T, typename P>
__global__ void batch_norm_kernel(const T* __restrict__ x, const P* __restrict__ mean, const P* __restrict__ var,
                                  const P* __restrict__ w, const P* __restrict__ b, T* __restrict__ y, int64_t total,
                                  int64_t C, float eps) {
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
  batch_norm_kernel<T, P><<<blocks_for(rows * C, 256), 256, 0, s>>>(x, mean, var, w, b, y, rows * C, C, eps);
}

}  // namespace gpu
}  // namespace ait
