// aitrace CPU runtime: storage types, conversions and small helpers shared by every kernel.
// fp16/bf16 are storage formats only: kernels load them to float, compute, and round on store.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#if defined(__F16C__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace ait {

struct half { uint16_t bits; };
struct bfloat16 { uint16_t bits; };

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float to_float(float x) { return x; }
inline float to_float(bfloat16 x) { return bits_to_float(uint32_t(x.bits) << 16); }
inline float to_float(half x) {
#if defined(__F16C__)
  return _cvtsh_ss(x.bits);
#else
  uint32_t h = x.bits, sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {                                                         // zero / subnormal
    float f = std::ldexp(float(man), -24);
    return sign ? -f : f;
  }
  return bits_to_float(sign | ((exp + 112) << 23) | (man << 13));
#endif
}
inline float to_float(int32_t x) { return float(x); }
inline float to_float(int64_t x) { return float(x); }
inline float to_float(bool x) { return x ? 1.f : 0.f; }

template <typename T> inline T from_float(float f);
template <> inline float from_float<float>(float f) { return f; }
template <> inline bfloat16 from_float<bfloat16>(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16{uint16_t((u >> 16) | 0x40)};  // quiet nan
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return bfloat16{uint16_t(u >> 16)};
}
template <> inline half from_float<half>(float f) {
#if defined(__F16C__)
  return half{uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT))};
#else
  uint32_t u = float_to_bits(f), sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return half{uint16_t(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u))};
  if (a >= 0x477ff000u) return half{uint16_t(sign | 0x7c00u)};  // overflow to inf
  if (a < 0x38800000u) {  // subnormal or zero: round a * 2^24 to an integer, ties to even
    float m = bits_to_float(a) * 16777216.0f;
    return half{uint16_t(sign | uint32_t(std::nearbyint(m)))};
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
  return half{uint16_t(sign | (r >> 13))};
#endif
}
template <> inline int32_t from_float<int32_t>(float f) { return int32_t(f); }
template <> inline int64_t from_float<int64_t>(float f) { return int64_t(f); }
template <> inline bool from_float<bool>(float f) { return f != 0.f; }

// The type a kernel computes in for a storage type: float for the float family, itself otherwise.
template <typename T> struct compute { using type = float; };
template <> struct compute<int32_t> { using type = int32_t; };
template <> struct compute<int64_t> { using type = int64_t; };
template <> struct compute<bool> { using type = bool; };
template <typename T> using compute_t = typename compute<T>::type;

template <typename C, typename T> inline C load(T x) { return C(to_float(x)); }
template <> inline int32_t load<int32_t, int32_t>(int32_t x) { return x; }
template <> inline int64_t load<int64_t, int64_t>(int64_t x) { return x; }
template <> inline int64_t load<int64_t, int32_t>(int32_t x) { return x; }
template <> inline bool load<bool, bool>(bool x) { return x; }
template <typename T, typename C> inline T store(C x) { return from_float<T>(float(x)); }
template <> inline int32_t store<int32_t, int32_t>(int32_t x) { return x; }
template <> inline int64_t store<int64_t, int64_t>(int64_t x) { return x; }
template <> inline bool store<bool, bool>(bool x) { return x; }

inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace ait
