// aitrace CUDA runtime: device-side conversions and the generic kernels every generated library
// shares (strided copy, row reductions, softmax, layer norm, attention). Generated kernels for
// elementwise chains are written per graph; these are templates instantiated by the calls.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cfloat>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include "ait/runtime.h"

namespace ait {
namespace gpu {

// ------------------------------------------------ storage <-> compute conversions (fp32 compute)
template <typename C, typename T> __device__ __forceinline__ C load(T x) { return static_cast<C>(x); }
template <> __device__ __forceinline__ float load<float, __half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float load<float, __nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T, typename C> __device__ __forceinline__ T store(C x) { return static_cast<T>(x); }
template <> __device__ __forceinline__ __half store<__half, float>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16, float>(float x) { return __float2bfloat16_rn(x); }
__device__ __forceinline__ float one_plus_erf(float x) { return 1.0f + erff(x); }
template <typename T> __device__ __forceinline__ T cmax(T a, T b) { return a > b ? a : b; }
template <typename T> __device__ __forceinline__ T cmin(T a, T b) { return a < b ? a : b; }

// 16-byte vector moves between global memory and a local array (sizeof(T) * V a multiple of 16,
// both pointers 16-byte aligned: the caller checks).
template <int V, typename T>
__device__ __forceinline__ void vload(T (&dst)[V], const T* src) {
  static_assert(sizeof(T) * V % 16 == 0, "whole 16-byte vectors only");
#pragma unroll
  for (int c = 0; c < int(sizeof(T) * V / 16); ++c) reinterpret_cast<uint4*>(dst)[c] = reinterpret_cast<const uint4*>(src)[c];
}
template <int V, typename T>
__device__ __forceinline__ void vstore(T* dst, const T (&src)[V]) {
  static_assert(sizeof(T) * V % 16 == 0, "whole 16-byte vectors only");
#pragma unroll
  for (int c = 0; c < int(sizeof(T) * V / 16); ++c) reinterpret_cast<uint4*>(dst)[c] = reinterpret_cast<const uint4*>(src)[c];
}
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

inline int blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return int(b < 1 ? 1 : (b > 1048576 ? 1048576 : b));  // grid-stride loops cover the rest
}

// ------------------------------------------------ strided copy (layout ops that are not views)
constexpr int kMaxDims = 8;
struct CopyGeometry {
  int nd;
  int64_t shape[kMaxDims], src[kMaxDims], dst[kMaxDims];  // element strides
};

template <typename T>
__global__ void copy_strided_kernel(const T* __restrict__ src, T* __restrict__ dst, CopyGeometry g, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i, so = 0, d = 0;
    for (int k = g.nd - 1; k >= 0; --k) {
      const int64_t x = r % g.shape[k];
      r /= g.shape[k];
      so += x * g.src[k];
      d += x * g.dst[k];
    }
    dst[d] = src[so];
  }
}

template <typename T>
inline void copy_strided(const T* src, const int64_t* ss, T* dst, const int64_t* ds, const int64_t* shape,
                         int nd, cudaStream_t stream) {
  CopyGeometry g{};
  int64_t n = 1;
  int k = 0;
  for (int d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;
    g.shape[k] = shape[d], g.src[k] = ss[d], g.dst[k] = ds[d];
    n *= shape[d];
    ++k;
  }
  for (int d = 0; d < nd; ++d) if (shape[d] == 0) return;
  g.nd = k;
  copy_strided_kernel<T><<<blocks_for(n, 256), 256, 0, stream>>>(src, dst, g, n);
}

// ------------------------------------------------ warp helpers
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ------------------------------------------------ reductions over the middle of [outer, n, inner]
// op: 0 sum, 1 mean, 2 max, 3 min. One warp per output when inner == 1 (contiguous rows), else
// one thread per output (reads coalesced across the inner axis).
template <typename T, typename O>
__global__ void reduce_kernel(const T* __restrict__ x, O* __restrict__ y, int64_t outer, int64_t n, int64_t inner, int op) {
  using C = decltype(load<float>(x[0]));
  if (inner == 1) {
    const int64_t warps = (int64_t(gridDim.x) * blockDim.x) / 32;
    for (int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; row < outer; row += warps) {
      const int lane = threadIdx.x % 32;
      float acc = op >= 2 ? (op == 2 ? -INFINITY : INFINITY) : 0.f;
      for (int64_t j = lane; j < n; j += 32) {
        const float v = load<float>(x[row * n + j]);
        acc = op == 2 ? fmaxf(acc, v) : (op == 3 ? fminf(acc, v) : acc + v);
      }
      for (int o = 16; o > 0; o >>= 1) {
        const float w = __shfl_xor_sync(0xffffffffu, acc, o);
        acc = op == 2 ? fmaxf(acc, w) : (op == 3 ? fminf(acc, w) : acc + w);
      }
      if (lane == 0) y[row] = store<O>(op == 1 ? acc / float(n) : acc);
    }
    return;
  }
  (void)sizeof(C);
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t % inner;
    float acc = op >= 2 ? (op == 2 ? -INFINITY : INFINITY) : 0.f;
    for (int64_t j = 0; j < n; ++j) {
      const float v = load<float>(x[(o * n + j) * inner + i]);
      acc = op == 2 ? fmaxf(acc, v) : (op == 3 ? fminf(acc, v) : acc + v);
    }
    y[t] = store<O>(op == 1 ? acc / float(n) : acc);
  }
}

template <typename T, typename O>
inline void reduce(const T* x, O* y, int64_t outer, int64_t n, int64_t inner, int op, cudaStream_t s) {
  const int64_t work = inner == 1 ? outer * 32 : outer * inner;
  reduce_kernel<T, O><<<blocks_for(work, 256), 256, 0, s>>>(x, y, outer, n, inner, op);
}

// ------------------------------------------------ softmax / layer norm: one warp per row, fp32 statistics
template <typename T>
__global__ void softmax_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n) {
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) / 32;
  const int lane = threadIdx.x % 32;
  for (int64_t r = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; r < rows; r += warps) {
    const T* xr = x + r * n;
    float m = -INFINITY;
    for (int64_t j = lane; j < n; j += 32) m = fmaxf(m, load<float>(xr[j]));
    m = warp_max(m);
    float s = 0.f;
    for (int64_t j = lane; j < n; j += 32) s += __expf(load<float>(xr[j]) - m);
    s = warp_sum(s);
    const float inv = 1.f / s;
    for (int64_t j = lane; j < n; j += 32) y[r * n + j] = store<T>(__expf(load<float>(xr[j]) - m) * inv);
  }
}

template <typename T>
inline void softmax(const T* x, T* y, int64_t rows, int64_t n, cudaStream_t s) {
  softmax_kernel<T><<<blocks_for(rows * 32, 256), 256, 0, s>>>(x, y, rows, n);
}

template <typename T, typename W>
__global__ void layer_norm_kernel(const T* __restrict__ x, const W* __restrict__ w, const W* __restrict__ b,
                                  T* __restrict__ y, int64_t rows, int64_t n, float eps) {
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) / 32;
  const int lane = threadIdx.x % 32;
  for (int64_t r = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; r < rows; r += warps) {
    const T* xr = x + r * n;
    float s = 0.f;
    for (int64_t j = lane; j < n; j += 32) s += load<float>(xr[j]);
    const float mean = warp_sum(s) / float(n);
    float ss = 0.f;
    for (int64_t j = lane; j < n; j += 32) {
      const float d = load<float>(xr[j]) - mean;
      ss += d * d;
    }
    const float rstd = rsqrtf(warp_sum(ss) / float(n) + eps);
    for (int64_t j = lane; j < n; j += 32) {
      const float v = (load<float>(xr[j]) - mean) * rstd;
      y[r * n + j] = store<T>(v * (w ? load<float>(w[j]) : 1.f) + (b ? load<float>(b[j]) : 0.f));
    }
  }
}

template <typename T, typename W>
inline void layer_norm(const T* x, const W* w, const W* b, T* y, int64_t rows, int64_t n, float eps, cudaStream_t s) {
  layer_norm_kernel<T, W><<<blocks_for(rows * 32, 256), 256, 0, s>>>(x, w, b, y, rows, n, eps);
}

// ------------------------------------------------ attention: one warp per query row, online softmax
// q/k/v/out [B,H,S,D] through (batch, head, seq) element strides, head dim contiguous, D <= 256.
// mask_kind 0 none, 1 boolean (true attends), 2 additive; mask addressed by its 4 strides.
template <typename T, typename M>
__global__ void attention_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                 T* __restrict__ o, int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D,
                                 int64_t Dv, float scale, bool causal, int mask_kind, const M* __restrict__ mask,
                                 int64_t msb, int64_t msh, int64_t msq, int64_t msk,
                                 int64_t qsb, int64_t qsh, int64_t qss, int64_t ksb, int64_t ksh, int64_t kss,
                                 int64_t vsb, int64_t vsh, int64_t vss, int64_t osb, int64_t osh, int64_t oss) {
  constexpr int kMaxPerLane = 8;  // D, Dv <= 256
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) / 32;
  const int lane = threadIdx.x % 32;
  for (int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; row < B * H * Sq; row += warps) {
    const int64_t i = row % Sq, h = (row / Sq) % H, b = row / (Sq * H);
    float qr[kMaxPerLane], acc[kMaxPerLane];
    for (int t = 0; t < kMaxPerLane; ++t) {
      const int64_t d = lane + 32 * t;
      qr[t] = d < D ? load<float>(q[b * qsb + h * qsh + i * qss + d]) * scale : 0.f;
      acc[t] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int64_t j = 0; j < Sk; ++j) {
      if (causal && j > i) break;
      float bias = 0.f;
      if (mask_kind) {
        const M mv = mask[b * msb + h * msh + i * msq + j * msk];
        if constexpr (std::is_same<M, bool>::value) { if (!mv) continue; }  // mask_kind 1
        else bias = load<float>(mv);                                          // mask_kind 2
      }
      float s = 0.f;
      for (int t = 0; t < kMaxPerLane; ++t) {
        const int64_t d = lane + 32 * t;
        if (d < D) s += qr[t] * load<float>(k[b * ksb + h * ksh + j * kss + d]);
      }
      s = warp_sum(s) + bias;
      const float mn = fmaxf(m, s);
      if (mn == -INFINITY) continue;
      const float corr = __expf(m - mn), p = __expf(s - mn);
      l = l * corr + p;
      for (int t = 0; t < kMaxPerLane; ++t) {
        const int64_t d = lane + 32 * t;
        acc[t] = acc[t] * corr + (d < Dv ? p * load<float>(v[b * vsb + h * vsh + j * vss + d]) : 0.f);
      }
      m = mn;
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int t = 0; t < kMaxPerLane; ++t) {
      const int64_t d = lane + 32 * t;
      if (d < Dv) o[b * osb + h * osh + i * oss + d] = store<T>(acc[t] * inv);
    }
  }
}

}  // namespace gpu

// Device memory for the intermediate buffers of one run context: grows, never shrinks.
struct DeviceArena {
  char* data = nullptr;
  size_t size = 0;
  char* reserve(size_t n) {
    if (n > size) {
      if (data) cudaFree(data);
      data = nullptr;
      if (cudaMalloc(&data, n) != cudaSuccess) { size = 0; throw std::bad_alloc(); }
      size = n;
    }
    return data;
  }
  ~DeviceArena() { if (data) cudaFree(data); }
};

}  // namespace ait

// After each launch: a failed launch names the kernel that failed.
#define AIT_LAUNCHED(name)                                                                    \
  do {                                                                                        \
    cudaError_t e_ = cudaGetLastError();                                                      \
    if (e_ != cudaSuccess) return ait::fail("kernel %s: %s", name, cudaGetErrorString(e_));   \
  } while (0)
