// aitrace CPU: the heavy kernel templates (GEMM, convolution, attention) are compiled once per
// machine into a static archive that every generated library links (backends/cpu/kernels.cpp),
// so a model's translation unit only instantiates its own small kernels. Generated code passes
// its epilogue functor through ait::Erased (one indirect call per finished row segment).
#pragma once
#include "attention.h"
#include "conv.h"
#include "gemm.h"

namespace ait {

// A type-erased epilogue: calls the referenced functor; the functor must outlive the call.
struct Erased {
  void (*fn)(const void*, int64_t, int64_t, int64_t, const float*, int64_t);
  const void* ctx;
  void operator()(int64_t b, int64_t i, int64_t j0, const float* acc, int64_t n) const {
    fn(ctx, b, i, j0, acc, n);
  }
  template <typename Epi>
  static Erased of(const Epi& e) {
    return {[](const void* c, int64_t b, int64_t i, int64_t j0, const float* acc, int64_t n) {
              (*static_cast<const Epi*>(c))(b, i, j0, acc, n);
            },
            &e};
  }
};

#define AIT_FOR_FLOAT_TYPES(X) X(float) X(half) X(bfloat16)

#define AIT_GEMM(T)                                                                           \
  AIT_EXTERN template void gemm<T, T, Erased>(int64_t, int64_t, int64_t, int64_t, const T*,  \
                                              int64_t, int64_t, int64_t, const T*, int64_t,  \
                                              int64_t, int64_t, Erased, const float*);
#define AIT_CONV(T)                                                                           \
  AIT_EXTERN template void conv2d_nhwc<T, Erased>(const T*, const T*, int64_t, int64_t,      \
      int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
      int64_t, int64_t, int64_t, int64_t, Erased, bool, const float*);
#define AIT_ATTENTION(T, M)                                                                   \
  AIT_EXTERN template void attention<T, M>(const T*, const T*, const T*, T*, int64_t, int64_t, \
      int64_t, int64_t, int64_t, int64_t, float, bool, int, const M*, int64_t, int64_t,       \
      int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
      int64_t, int64_t, int64_t, int64_t);
#define AIT_ATTENTION_ALL(T) AIT_ATTENTION(T, T) AIT_ATTENTION(T, bool)

#ifndef AIT_EXTERN
#define AIT_EXTERN extern  // generated code: declarations only; kernels.cpp defines them
#endif
AIT_FOR_FLOAT_TYPES(AIT_GEMM)
AIT_FOR_FLOAT_TYPES(AIT_CONV)
AIT_FOR_FLOAT_TYPES(AIT_ATTENTION_ALL)

// GEMM / conv with any epilogue functor, through the precompiled instantiations (gemm:
// packed_b as gemm takes it; conv: const_weight says w is a model constant, packed_w its packed
// form, see conv2d_nhwc).
template <typename T, typename Epi>
inline void gemm_erased(int64_t batch, int64_t M, int64_t N, int64_t K, const T* A, int64_t abs_,
                        int64_t ars, int64_t acs, const T* B, int64_t bbs, int64_t brs,
                        int64_t bcs, const Epi& epi, const float* packed_b = nullptr) {
  gemm<T, T, Erased>(batch, M, N, K, A, abs_, ars, acs, B, bbs, brs, bcs, Erased::of(epi), packed_b);
}

template <typename T, typename Epi>
inline void conv2d_erased(const T* x, const T* w, int64_t N, int64_t H, int64_t W, int64_t C,
                          int64_t O, int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t pt,
                          int64_t pb, int64_t pl, int64_t pr, int64_t dh, int64_t dw,
                          int64_t groups, const Epi& epi, bool const_weight,
                          const float* packed_w = nullptr) {
  conv2d_nhwc<T, Erased>(x, w, N, H, W, C, O, KH, KW, sh, sw, pt, pb, pl, pr, dh, dw, groups,
                         Erased::of(epi), const_weight, packed_w);
}

}  // namespace ait
