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
