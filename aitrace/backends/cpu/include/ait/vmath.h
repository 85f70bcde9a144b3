// aitrace CPU: float math written so gcc vectorizes it inside `#pragma omp simd` loops (no
// branches, no calls into libm): std::exp/tanh/erf stay scalar without -ffast-math, which we
// cannot use (it breaks NaN semantics). Accuracy: a few ulp, far inside the fp32 tolerance.
#pragma once
#include "reduce.h"  // detail::exp_f32

namespace ait {

inline float vexp(float x) { return detail::exp_f32(x); }

// tanh: odd Taylor series to x^15 for |x| < 0.55 (error < 4e-7 relative), else
// 1 - 2 / (exp(2|x|) + 1) with the sign restored; both computed, one selected.
inline float vtanh(float x) {
  const float a = std::fabs(x), z = x * x;
  float p = -929569.0f / 638512875.0f;
  p = std::fma(p, z, 21844.0f / 6081075.0f);
  p = std::fma(p, z, -1382.0f / 155925.0f);
  p = std::fma(p, z, 62.0f / 2835.0f);
  p = std::fma(p, z, -17.0f / 315.0f);
  p = std::fma(p, z, 2.0f / 15.0f);
  p = std::fma(p, z, -1.0f / 3.0f);
  const float small = std::fma(p * z, x, x);
  const float big = std::copysign(1.0f - 2.0f / (detail::exp_f32(2.0f * a) + 1.0f), x);
  return a < 0.55f ? small : big;
}

// erfc for z >= 0 (Chebyshev fit, relative error < 1.2e-7 everywhere).
inline float verfc_pos(float z) {
  const float t = 1.0f / std::fma(0.5f, z, 1.0f);
  float p = 0.17087277f;
  p = std::fma(p, t, -0.82215223f);
  p = std::fma(p, t, 1.48851587f);
  p = std::fma(p, t, -1.13520398f);
  p = std::fma(p, t, 0.27886807f);
  p = std::fma(p, t, -0.18628806f);
  p = std::fma(p, t, 0.09678418f);
  p = std::fma(p, t, 0.37409196f);
  p = std::fma(p, t, 1.00002368f);
  p = std::fma(p, t, -1.26551223f);
  return t * detail::exp_f32(std::fma(-z, z, p));
}

// erf for |x| < 0.5: Taylor series to x^15 (no cancellation near 0).
inline float verf_small(float x) {
  const float z = x * x;
  float p = -1.0f / 75600.0f;
  p = std::fma(p, z, 1.0f / 9360.0f);
  p = std::fma(p, z, -1.0f / 1320.0f);
  p = std::fma(p, z, 1.0f / 216.0f);
  p = std::fma(p, z, -1.0f / 42.0f);
  p = std::fma(p, z, 1.0f / 10.0f);
  p = std::fma(p, z, -1.0f / 3.0f);
  return 1.12837916709551257f * std::fma(p * z, x, x);
}

// erf: the series for |x| < 0.5, else 1 - erfc(|x|) with the sign restored.
inline float verf(float x) {
  const float a = std::fabs(x);
  return a < 0.5f ? verf_small(x) : std::copysign(1.0f - verfc_pos(a), x);
}

// 1 + erf(x) without cancellation for negative x (exact GELU's tail): one erfc(|x|), as
// erfc(|x|) for x <= -0.5 and 2 - erfc(|x|) for x >= 0.5 (vectorized loops evaluate every
// branch, so sharing it halves the cost).
inline float one_plus_erf(float x) {
  const float a = std::fabs(x), c = verfc_pos(a);
  return a < 0.5f ? 1.0f + verf_small(x) : (x < 0.0f ? c : 2.0f - c);
}

}  // namespace ait
