// aitrace CUDA runtime: device-side conversions and the generic kernels every generated library
// shares (strided copy, row reductions, softmax, layer norm, attention). Generated kernels for
// elementwise chains are written per graph; these are templates instantiated by the calls.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cfloat>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <algorithm>
#include <type_traits>
#include <atomic>
#include <vector>
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

// ------------------------------------------------ programmatic dependent launch (Hopper)
// A kernel launched with `launch` may start while the kernel before it on the stream is still
// finishing (its CTAs resident, its launch latency hidden); `await_inputs()`, first in every
// such kernel, holds it until that kernel has completed and its writes are visible, then lets
// the next kernel launch early in turn. Built in where AIT_PDL is defined (sm_90+ builds); off at
// run time with AITRACE_PDL=0. A kernel that does not call await_inputs()
// must not be launched this way: it could finish (and release the one after it) before its own
// inputs are written.
__device__ __forceinline__ void await_inputs() {
#if defined(AIT_PDL) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// AITRACE_PDL=0 turns PDL off; on by default for aitrace's kernels, CUTLASS's data-parallel
// GEMMs and the sm90 convolutions (H100: BERT/ViT bs1 0.63 -> 0.53 ms, ResNet-50 bs1 0.524 ->
// 0.467 ms with the convolutions too, RESULTS.md).
inline bool pdl_enabled() {
#ifdef AIT_PDL
  static const bool on = [] {
    const char* env = std::getenv("AITRACE_PDL");
    return !(env && *env && std::atoi(env) == 0);
  }();
  return on;
#else
  return false;
#endif
}

template <typename... Params, typename... Args>
inline void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = pdl_enabled() ? 1 : 0;
  cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);  // errors: cudaGetLastError after
}

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
  await_inputs();
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
  launch(copy_strided_kernel<T>, blocks_for(n, 256), 256, 0, stream, src, dst, g, n);
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
  await_inputs();
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
  launch(reduce_kernel<T, O>, blocks_for(work, 256), 256, 0, s, x, y, outer, n, inner, op);
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
  await_inputs();
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

inline size_t round_up256(size_t n) { return (n + 255) / 256 * 256; }

inline size_t tensor_bytes(const DLTensor& t) {
  size_t n = (t.dtype.bits * size_t(t.dtype.lanes) + 7) / 8;
  for (int d = 0; d < t.ndim; ++d) n *= size_t(t.shape[d]);
  return n;
}

// Bytes of the staging slots of one run's inputs and outputs (256-byte aligned each).
inline size_t staging_bytes(const DLTensor* in, int64_t n_in, const DLTensor* out, int64_t n_out) {
  size_t n = 0;
  for (int64_t i = 0; i < n_in; ++i) n += round_up256(tensor_bytes(in[i]));
  for (int64_t i = 0; i < n_out; ++i) n += round_up256(tensor_bytes(out[i]));
  return n;
}

// Whole-run CUDA graphs of one run context: one per distinct tuple of dynamic dims (LRU, at most
// kMaxGraphs), captured at the first run of that tuple, replayed by one cudaGraphLaunch after.
//
// Inputs and outputs move between calls while a graph bakes pointers into its kernels (CUTLASS
// TMA descriptors included, which no node update can patch). So the captured kernels read and
// write fixed staging slots in the arena, and the graph is
//     copy-in nodes (user input -> slot)  ->  captured kernels  ->  copy-out nodes (slot -> user output)
// where each call retargets only the copy nodes whose user pointer changed
// (cudaGraphExecMemcpyNodeSetParams1D, about 1 us each on the host; none when the caller reuses
// its tensors). The copies cost bandwidth (BERT-base at batch 1: 3 KB in, 200 KB out, a few us of
// GPU time) against the 3-5 us of host time per kernel launch the graph saves (100+ kernels).
// Rejected: keying graphs by the pointer tuple (fresh input tensors every call would re-capture
// and re-instantiate, ~ms each), re-capturing every call and cudaGraphExecUpdate (pays the launch
// cost again), a device-side pointer table (every kernel would have to read its I/O through it).
//
// Capture runs on a private stream (the legacy default stream, torch's default, cannot be
// captured) in thread-local mode; the graph is launched on the caller's stream. Everything that
// allocates or synchronizes (the arena's reserve) happens before capture.
class GraphCache {
 public:
  static constexpr size_t kMaxGraphs = 16;
  static constexpr int kMaxRefusedUpdates = 8;

  GraphCache() = default;
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;
  ~GraphCache() {
    clear();
    if (capture_stream_) cudaStreamDestroy(capture_stream_);
  }

  void clear() {
    for (Entry& e : entries_) destroy(e);
    entries_.clear();
  }

  // Runs `launch(in, out, stream)` -- the whole kernel sequence, returning 0 or ait::fail(...) --
  // through the graph of `dims`, capturing it first if new. `staging` points at
  // staging_bytes(in, n_in, out, n_out) bytes of the arena at `arena`; a new arena (it grew)
  // drops every graph, whose kernels point into the old one.
  template <class Launch>
  int run(const int64_t* dims, int n_dims, const DLTensor* in, int n_in, DLTensor* out, int n_out,
          const char* arena, char* staging, cudaStream_t stream, Launch&& launch) {
    if (refused_updates_ >= kMaxRefusedUpdates) return launch(in, out, stream);
    if (arena != arena_) {
      clear();
      arena_ = arena;
    }
    Entry* e = find(dims, n_dims);
    if (e && !retarget(*e, in, out)) {
      // The driver refused to retarget a copy (e.g. memory it cannot address the same way):
      // recapture with this call's pointers; where that keeps happening, stop using graphs.
      cudaGetLastError();
      drop(e);
      if (++refused_updates_ >= kMaxRefusedUpdates) {
        clear();
        return launch(in, out, stream);
      }
      e = nullptr;
    }
    if (!e) {
      int rc = capture(dims, n_dims, in, n_in, out, n_out, staging, launch);
      if (rc) return rc;
      e = &entries_.back();
    }
    e->last_used = ++tick_;
    cudaError_t err = cudaGraphLaunch(e->exec, stream);
    if (err != cudaSuccess) return fail("graph launch: %s", cudaGetErrorString(err));
    return 0;
  }

 private:
  struct Entry {
    std::vector<int64_t> dims;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    std::vector<cudaGraphNode_t> in_nodes, out_nodes;  // null where the tensor is empty
    std::vector<void*> in_slots, out_slots;
    std::vector<size_t> in_bytes, out_bytes;
    std::vector<const void*> in_src;  // the user pointers the copy nodes hold now
    std::vector<void*> out_dst;
    uint64_t last_used = 0;
  };

  static void destroy(Entry& e) {
    if (e.exec) cudaGraphExecDestroy(e.exec);  // a launch in flight completes first
    if (e.graph) cudaGraphDestroy(e.graph);
  }

  void drop(Entry* e) {
    destroy(*e);
    entries_.erase(entries_.begin() + (e - entries_.data()));
  }

  Entry* find(const int64_t* dims, int n_dims) {
    for (Entry& e : entries_)
      if (int(e.dims.size()) == n_dims && std::equal(e.dims.begin(), e.dims.end(), dims)) return &e;
    return nullptr;
  }

  // Points the copy nodes at this call's tensors; false if the driver refuses an update.
  static bool retarget(Entry& e, const DLTensor* in, DLTensor* out) {
    for (size_t i = 0; i < e.in_nodes.size(); ++i) {
      const void* src = tensor_data<const void>(in[i]);
      if (!e.in_nodes[i] || src == e.in_src[i]) continue;
      if (cudaGraphExecMemcpyNodeSetParams1D(e.exec, e.in_nodes[i], e.in_slots[i], src, e.in_bytes[i],
                                             cudaMemcpyDeviceToDevice) != cudaSuccess) return false;
      e.in_src[i] = src;
    }
    for (size_t i = 0; i < e.out_nodes.size(); ++i) {
      void* dst = tensor_data<void>(out[i]);
      if (!e.out_nodes[i] || dst == e.out_dst[i]) continue;
      if (cudaGraphExecMemcpyNodeSetParams1D(e.exec, e.out_nodes[i], dst, e.out_slots[i], e.out_bytes[i],
                                             cudaMemcpyDeviceToDevice) != cudaSuccess) return false;
      e.out_dst[i] = dst;
    }
    return true;
  }

  template <class Launch>
  int capture(const int64_t* dims, int n_dims, const DLTensor* in, int n_in, DLTensor* out, int n_out,
              char* staging, Launch& launch) {
    if (entries_.size() >= kMaxGraphs) {  // evict the least recently used
      Entry* lru = &entries_[0];
      for (Entry& x : entries_) if (x.last_used < lru->last_used) lru = &x;
      drop(lru);
    }
    if (!capture_stream_) {
      cudaError_t err = cudaStreamCreateWithFlags(&capture_stream_, cudaStreamNonBlocking);
      if (err != cudaSuccess) return fail("graph capture: stream: %s", cudaGetErrorString(err));
    }
    Entry e;
    e.dims.assign(dims, dims + n_dims);
    // The kernels see the staging slots in place of the caller's tensors.
    std::vector<DLTensor> sin(in, in + n_in), sout(out, out + n_out);
    for (int i = 0; i < n_in; ++i) {
      e.in_bytes.push_back(tensor_bytes(in[i]));
      e.in_slots.push_back(staging);
      e.in_src.push_back(tensor_data<const void>(in[i]));
      sin[i].data = staging, sin[i].byte_offset = 0;
      staging += round_up256(e.in_bytes.back());
    }
    for (int i = 0; i < n_out; ++i) {
      e.out_bytes.push_back(tensor_bytes(out[i]));
      e.out_slots.push_back(staging);
      e.out_dst.push_back(tensor_data<void>(out[i]));
      sout[i].data = staging, sout[i].byte_offset = 0;
      staging += round_up256(e.out_bytes.back());
    }
    cudaGetLastError();  // a stale error would be blamed on the first kernel
    cudaError_t err = cudaStreamBeginCapture(capture_stream_, cudaStreamCaptureModeThreadLocal);
    if (err != cudaSuccess) return fail("graph capture: begin: %s", cudaGetErrorString(err));
    int rc = 0;
    try {
      rc = launch(static_cast<const DLTensor*>(sin.data()), sout.data(), capture_stream_);
    } catch (...) {
      end_capture_discarding();
      throw;
    }
    cudaGraph_t body = nullptr;
    err = cudaStreamEndCapture(capture_stream_, &body);
    if (rc || err != cudaSuccess) {  // a failed launch already named its kernel
      if (body) cudaGraphDestroy(body);
      cudaGetLastError();
      return rc ? rc : fail("graph capture: %s (a call in the run cannot be captured; "
                            "AITRACE_CUDA_GRAPHS=0 runs without graphs)", cudaGetErrorString(err));
    }
    err = assemble(e, body);
    cudaGraphDestroy(body);  // cloned into e.graph
    if (err == cudaSuccess) err = cudaGraphInstantiate(&e.exec, e.graph, 0);
    if (err != cudaSuccess) {
      destroy(e);
      cudaGetLastError();
      return fail("graph instantiate: %s (AITRACE_CUDA_GRAPHS=0 runs without graphs)", cudaGetErrorString(err));
    }
    entries_.push_back(std::move(e));
    return 0;
  }

  // e.graph = copy-in nodes -> the captured body (a child graph) -> copy-out nodes.
  static cudaError_t assemble(Entry& e, cudaGraph_t body) {
    cudaError_t err = cudaGraphCreate(&e.graph, 0);
    std::vector<cudaGraphNode_t> copies_in;
    for (size_t i = 0; i < e.in_slots.size() && err == cudaSuccess; ++i) {
      cudaGraphNode_t n = nullptr;
      if (e.in_bytes[i])  // zero-length copies cannot be updated: no node
        err = cudaGraphAddMemcpyNode1D(&n, e.graph, nullptr, 0, e.in_slots[i], e.in_src[i], e.in_bytes[i],
                                       cudaMemcpyDeviceToDevice);
      e.in_nodes.push_back(n);
      if (n) copies_in.push_back(n);
    }
    size_t body_nodes = 0;
    if (err == cudaSuccess) err = cudaGraphGetNodes(body, nullptr, &body_nodes);
    std::vector<cudaGraphNode_t> before_out = copies_in;
    if (err == cudaSuccess && body_nodes) {
      cudaGraphNode_t child = nullptr;
      err = cudaGraphAddChildGraphNode(&child, e.graph, copies_in.data(), copies_in.size(), body);
      before_out.assign(1, child);
    }
    for (size_t i = 0; i < e.out_slots.size() && err == cudaSuccess; ++i) {
      cudaGraphNode_t n = nullptr;
      if (e.out_bytes[i])
        err = cudaGraphAddMemcpyNode1D(&n, e.graph, before_out.data(), before_out.size(), e.out_dst[i],
                                       e.out_slots[i], e.out_bytes[i], cudaMemcpyDeviceToDevice);
      e.out_nodes.push_back(n);
    }
    return err;
  }

  void end_capture_discarding() {
    cudaGraph_t g = nullptr;
    if (cudaStreamEndCapture(capture_stream_, &g) == cudaSuccess && g) cudaGraphDestroy(g);
    cudaGetLastError();
  }

  std::vector<Entry> entries_;
  cudaStream_t capture_stream_ = nullptr;
  const char* arena_ = nullptr;
  uint64_t tick_ = 0;
  int refused_updates_ = 0;
};

// Orders the runs of one context (they share its arena) when callers switch streams: each run
// waits for the previous one's end when it comes on another stream.
struct StreamOrder {
  cudaEvent_t done = nullptr;
  cudaStream_t last = nullptr;
  bool pending = false;
  ~StreamOrder() { if (done) cudaEventDestroy(done); }
  cudaError_t before(cudaStream_t s) {
    if (pending && s != last) return cudaStreamWaitEvent(s, done, 0);
    return cudaSuccess;
  }
  cudaError_t after(cudaStream_t s) {
    if (!done) {
      cudaError_t err = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
      if (err != cudaSuccess) return err;
    }
    last = s, pending = true;
    return cudaEventRecord(done, s);
  }
};

// The GEMM workspace a run needs (stream-K GEMMs), asked of their kernels once per tuple of
// dynamic dims: `query()` returns the bytes.
struct WorkspaceSize {
  std::vector<int64_t> dims;
  size_t bytes = 0;
  bool known = false;
  template <class Query>
  size_t bytes_for(const int64_t* d, int n, Query query) {
    if (!known || !std::equal(d, d + n, dims.begin())) {
      dims.assign(d, d + n);
      bytes = query();
      known = true;
    }
    return bytes;
  }
};

// Per-kernel GPU time of a library built with kernel timing (AITRACE_KERNEL_TIMES=1): an event
// pair around each kernel on the run's stream; after the run, the elapsed times are added to
// `total_ns` (the library's table, read and reset by ait_kernel_times). Runs without CUDA graphs,
// so the gaps between launches fall outside every kernel's time.
struct KernelTimer {
  std::vector<cudaEvent_t> events;  // 2 per kernel
  ~KernelTimer() { for (cudaEvent_t e : events) cudaEventDestroy(e); }
  cudaError_t begin(int n) {
    while (int(events.size()) < 2 * n) {
      cudaEvent_t e;
      cudaError_t err = cudaEventCreate(&e);
      if (err != cudaSuccess) return err;
      events.push_back(e);
    }
    return cudaSuccess;
  }
  void mark(int kernel, int end, cudaStream_t s) { cudaEventRecord(events[2 * kernel + end], s); }
  cudaError_t collect(int n, std::atomic<int64_t>* total_ns) {
    if (n == 0) return cudaSuccess;
    cudaError_t err = cudaEventSynchronize(events[2 * n - 1]);
    for (int i = 0; i < n && err == cudaSuccess; ++i) {
      float ms = 0.f;
      err = cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]);
      total_ns[i] += int64_t(double(ms) * 1e6);
    }
    return err;
  }
};

}  // namespace ait

// After each launch: a failed launch names the kernel that failed.
#define AIT_LAUNCHED(name)                                                                    \
  do {                                                                                        \
    cudaError_t e_ = cudaGetLastError();                                                      \
    if (e_ != cudaSuccess) return ait::fail("kernel %s: %s", name, cudaGetErrorString(e_));   \
  } while (0)
