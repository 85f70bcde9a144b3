// What the CUTLASS 2.x sm80 GEMMs of gemm_sm80.py share: CUTLASS's headers and the epilogue's
// device math. Included at file scope: the model includes it before its anonymous namespace, and
// each kernel definition includes it again (a no-op then; needed where definitions stand alone).
// A translation unit targets one architecture, so this and the sm90 kernels' prelude (which
// defines ait_cuda_gemm for sm_90a) never meet.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/numeric_types.h>
#include <cutlass/array.h>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/kernel/default_gemm_universal_with_visitor.h>
#include <cutlass/epilogue/threadblock/fusion/visitors.hpp>

namespace ait_cuda_gemm {

// An EVT compute functor from a scalar float operation: VisitorCompute calls
// ComputeFn<cutlass::Array<float, N>> on fragments.
template <class T, class Op>
struct Lift {
  template <class... A>
  CUTLASS_HOST_DEVICE T operator()(A const&... a) const { return T(Op{}(float(a)...)); }
};

template <class T, int N, class Op>
struct Lift<cutlass::Array<T, N>, Op> {
  template <class... A>
  CUTLASS_HOST_DEVICE cutlass::Array<T, N> operator()(A const&... a) const {
    cutlass::Array<T, N> out;
    Op op;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) {
      out[i] = T(op(float(a[i])...));
    }
    return out;
  }
};

// The activations gemm.py's EVT functors call (the same forms as the sm90 kernels'): the
// epilogue runs on the CTA's warps after the main loop, so its instruction count shows.
CUTLASS_HOST_DEVICE float fast_exp(float x) {
#ifdef __CUDA_ARCH__
  return __expf(x);
#else
  return expf(x);
#endif
}
CUTLASS_HOST_DEVICE float fast_div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdividef(a, b);  // 0 where |b| > 2^126: right for the uses below
#else
  return a / b;
#endif
}
// 1 + erf(x) = erfc(-x), as Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), relative in the tail
CUTLASS_HOST_DEVICE float one_plus_erf(float x) {
  float a = fabsf(x);
  float t = fast_div(1.0f, 1.0f + 0.3275911f * a);
  float q = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  q *= fast_exp(-a * a);  // erfc(|x|)
  return x >= 0.0f ? 2.0f - q : q;
}
CUTLASS_HOST_DEVICE float sigmoid(float x) { return fast_div(1.0f, 1.0f + fast_exp(-x)); }
CUTLASS_HOST_DEVICE float silu(float x) { return x * sigmoid(x); }
CUTLASS_HOST_DEVICE float gelu(float x) { return 0.5f * x * one_plus_erf(x * 0.70710678118654752f); }
// 0.5 x (1 + tanh(y)) = x sigmoid(2y)
CUTLASS_HOST_DEVICE float gelu_tanh(float x) {
  return x * sigmoid(1.5957691216057308f * (x + 0.044715f * x * x * x));
}

// Whether an operand suits a kernel that moves `elements` elements per access: a pointer
// aligned to the access (16 bytes at most) and row/batch strides that keep every row aligned.
template <class T>
inline bool aligned(const void* p, int64_t elements, int64_t ld, int64_t batch_stride) {
  const int64_t bytes = elements * int64_t(sizeof(T)) < 16 ? elements * int64_t(sizeof(T)) : 16;
  return reinterpret_cast<uintptr_t>(p) % bytes == 0 && ld % elements == 0 && batch_stride % elements == 0;
}

}  // namespace ait_cuda_gemm

// ---- CUTLASS 2.x sm80 implicit-GEMM convolution with an epilogue visitor tree (conv_sm80.py) ----
// CUTLASS 4.2 has no visitor-epilogue conv kernel (its ImplicitGemmConvolution calls the classic
// epilogue with C/D iterators), so this one runs DefaultConv2dFprop's main loop (the im2col
// iterators and the multistage mma) and then EpilogueWithVisitorCallbacks over the output seen as
// an [N*P*Q, O] matrix: the same visitor trees as the GEMMs.
#include <cutlass/device_kernel.h>
#include <cutlass/conv/conv2d_problem_size.h>
#include <cutlass/conv/kernel/default_conv2d_fprop.h>
#include <cutlass/epilogue/threadblock/epilogue_with_visitor_callbacks.h>

namespace ait_cuda_conv {

template <class Mma_, class Epilogue_, class ThreadblockSwizzle_>
struct Conv2dFpropWithVisitor {
  using Mma = Mma_;
  using Epilogue = Epilogue_;
  using ThreadblockSwizzle = ThreadblockSwizzle_;
  using FusionCallbacks = typename Epilogue::FusionCallbacks;
  using ElementA = typename Mma::IteratorA::Element;
  using ElementB = typename Mma::IteratorB::Element;
  static constexpr cutlass::conv::Operator kOp = cutlass::conv::Operator::kFprop;
  static constexpr int kThreadCount = 32 * Mma::WarpCount::kCount;

  struct Params {
    cutlass::conv::Conv2dProblemSize problem_size;
    cutlass::gemm::GemmCoord grid_tiled_shape;
    int swizzle_log_tile;
    int gemm_k_iterations;
    int gemm_k_iterations_per_channel;
    typename Mma::IteratorA::Params iterator_A;
    ElementA const* ptr_A;
    typename Mma::IteratorB::Params iterator_B;
    ElementB const* ptr_B;
    typename FusionCallbacks::Params output_op;
    cute::Shape<int32_t, int32_t, int32_t> problem_shape;  // (M = N*P*Q, N = O, L = 1)
  };

  union SharedStorage {
    typename Mma::SharedStorage main_loop;
    typename Epilogue::SharedStorage epilogue;
  };

  // activation and filter are packed NHWC / OHWI (KRSC) tensors
  static Params make_params(cutlass::conv::Conv2dProblemSize const& p, void const* activation, void const* filter,
                            typename FusionCallbacks::Arguments const& callbacks) {
    Params params;
    cutlass::gemm::GemmCoord gemm = cutlass::conv::implicit_gemm_problem_size(kOp, p);
    params.problem_size = p;
    ThreadblockSwizzle swizzle;
    params.grid_tiled_shape = swizzle.get_tiled_shape(gemm, {Mma::Shape::kM, Mma::Shape::kN, Mma::Shape::kK}, 1);
    params.swizzle_log_tile = swizzle.get_log_tile(params.grid_tiled_shape);
    params.gemm_k_iterations = cutlass::conv::implicit_gemm_k_iterations(
        kOp, Mma::Shape::kK, p, Mma::IteratorA::kIteratorAlgorithm, cutlass::conv::GroupMode::kNone, Mma::Shape::kN);
    params.gemm_k_iterations_per_channel = cutlass::conv::implicit_gemm_k_iterations_per_channel(
        kOp, p, Mma::IteratorA::kIteratorAlgorithm);
    params.iterator_A = Mma::IteratorA::getParams(p, cutlass::layout::TensorNHWC::packed({p.N, p.H, p.W, p.C}));
    params.ptr_A = static_cast<ElementA const*>(activation);
    params.iterator_B = typename Mma::IteratorB::Params(p, cutlass::layout::TensorNHWC::packed({p.K, p.R, p.S, p.C}));
    params.ptr_B = static_cast<ElementB const*>(filter);
    params.output_op = FusionCallbacks::to_underlying_arguments(gemm, callbacks, nullptr);
    params.problem_shape = cute::make_shape(gemm.m(), gemm.n(), 1);
    return params;
  }

  // Whether the iterators take the problem (channel alignment, the optimized iterators' limits),
  // 32-bit offsets suffice and the grid fits.
  static bool can_implement(Params const& params) {
    auto const& p = params.problem_size;
    if (Mma::IteratorA::can_implement(p) != cutlass::Status::kSuccess ||
        Mma::IteratorB::can_implement(p) != cutlass::Status::kSuccess)
      return false;
    if (p.activation_size() * sizeof(ElementA) >= (1ull << 31) || p.filter_size() * sizeof(ElementB) >= (1ull << 31) ||
        p.output_size() * 4 >= (1ull << 31))
      return false;
    dim3 grid = ThreadblockSwizzle().get_grid_shape(params.grid_tiled_shape);
    return grid.y < 65536 && grid.z < 65536;
  }

  static cudaError_t run(Params const& params, cudaStream_t stream) {
    constexpr int smem = int(sizeof(SharedStorage));
    if (smem >= (48 << 10)) {
      cudaError_t err = cudaFuncSetAttribute(cutlass::Kernel<Conv2dFpropWithVisitor>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
      if (err != cudaSuccess) return err;
    }
    dim3 grid = ThreadblockSwizzle().get_grid_shape(params.grid_tiled_shape);
    cutlass::Kernel<Conv2dFpropWithVisitor><<<grid, kThreadCount, smem, stream>>>(params);
    return cudaGetLastError();
  }

  CUTLASS_DEVICE void operator()(Params const& params, SharedStorage& shared_storage) {
    ThreadblockSwizzle swizzle;
    cutlass::gemm::GemmCoord tile = swizzle.get_tile_offset(params.swizzle_log_tile);
    if (params.grid_tiled_shape.m() <= tile.m() || params.grid_tiled_shape.n() <= tile.n()) return;
    int thread_idx = threadIdx.x;
    int warp_idx = cutlass::canonical_warp_idx_sync();
    int lane_idx = threadIdx.x % 32;
    typename Mma::IteratorA iterator_A(params.iterator_A, params.problem_size, params.ptr_A, thread_idx,
                                       cutlass::MatrixCoord(tile.m() * Mma::Shape::kM, 0));
    typename Mma::IteratorB iterator_B(params.iterator_B, params.problem_size, params.ptr_B, thread_idx,
                                       cutlass::MatrixCoord(0, tile.n() * Mma::Shape::kN));
    Mma mma(shared_storage.main_loop, thread_idx, warp_idx, lane_idx);
    typename Mma::FragmentC accumulators;
    accumulators.clear();
    mma(params.gemm_k_iterations, accumulators, iterator_A, iterator_B, accumulators,
        params.gemm_k_iterations_per_channel);
    // the main loop's shared memory is reused by the epilogue (a union): wait for every warp
    __syncthreads();
    Epilogue epilogue(params.output_op, shared_storage.epilogue, thread_idx, warp_idx, lane_idx);
    epilogue(accumulators, tile, params.problem_shape, thread_idx);
  }
};

}  // namespace ait_cuda_conv
