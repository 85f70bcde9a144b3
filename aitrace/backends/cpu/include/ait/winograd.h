// aitrace CPU runtime: Winograd F(4x4, 3x3) convolution for 3x3, stride 1, dilation 1, groups 1
// on NHWC data (Lavin & Gray 2016, interpolation points 0, +-1, +-2, inf):
//
//   out tile (4x4) = A^T [ U (6x6) (.) (B^T d B) ] A,   U = G g G^T,   d: a 6x6 input tile
//
// so 36 GEMMs over the channels replace the 9-tap reduction: 36 multiplies per 16 outputs
// instead of 144 (4x fewer, less the waste of partial tiles at the edges). Per chunk of tiles
// (bounded buffers: AIT_CONV_WINOGRAD_BYTES):
//   1. input transform, 16 channels per vector: V[xi][t][c] = (B^T d_t B)[xi];
//   2. 36 GEMMs M[xi] = V[xi] (tiles x C) * U[xi] (C x O) with gemm.h's micro-kernel; U is kept
//      packed in gemm B panels ([xi][depth block][32-column panel][kc][32]), so no packing of the
//      weight at run time;
//   3. output transform Y_t = A^T M_t A, handed to the epilogue one output pixel (all O channels)
//      at a time: the contract of conv2d_nhwc (rows of [N*OH*OW, O], each element once).
// The phases run in one OpenMP region: tiles, then (xi, row block) GEMM tasks, then tiles.
// Weight: a model constant (const_weight) has its packed transform cached (at most
// AIT_WINOGRAD_CACHE_BYTES, oldest dropped), keyed by address, shape, type and a sample of 64
// values, since constants of a freed model may reuse the address (a new weight equal to the old
// one at all 64 sampled points would be missed); any other weight is transformed on every call.
// Error vs fp64 (uniform random data, fp32): up to ~1e-5 of the largest output magnitude on
// ResNet-50 shapes, ~2e-6 of sum |x*w| (test_kernels.cpp); im2col is ~2e-7 of sum |x*w|.
#pragma once
#include "gemm.h"
#include <memory>
#include <mutex>
#include <typeinfo>
#include <vector>

#ifndef AIT_CONV_WINOGRAD_BYTES  // V + M per chunk of tiles
#define AIT_CONV_WINOGRAD_BYTES (4 << 20)
#endif
#ifndef AIT_CONV_WINOGRAD  // 0: never (tuning / comparisons)
#define AIT_CONV_WINOGRAD 1
#endif
#ifndef AIT_WINOGRAD_CACHE_BYTES  // transformed constant weights kept; oldest dropped beyond
#define AIT_WINOGRAD_CACHE_BYTES (int64_t(1) << 30)
#endif

namespace ait {
namespace winograd_detail {

using gemm_detail::Vec;
using gemm_detail::kW;
using gemm_detail::kNR;
using gemm_detail::round_up;
using gemm_detail::ceil_div;
constexpr int kXi = 36;  // 6x6 transformed points

// B^T on 6 values: o[k * os] for k < 6 (a row or a column of a tile)
template <typename X>
AIT_GEMM_INLINE void input_1d(X d0, X d1, X d2, X d3, X d4, X d5, X* o, int os) {
  const X a = d4 - d2, b = d3 - d1;
  o[0] = 4.f * d0 - 5.f * d2 + d4;
  o[1 * os] = (d3 + d4) - 4.f * (d1 + d2);
  o[2 * os] = (d4 - d3) + 4.f * (d1 - d2);
  o[3 * os] = a + 2.f * b;
  o[4 * os] = a - 2.f * b;
  o[5 * os] = 4.f * d1 - 5.f * d3 + d5;
}

// A^T on 6 values: o[k * os] for k < 4
template <typename X>
AIT_GEMM_INLINE void output_1d(X m0, X m1, X m2, X m3, X m4, X m5, X* o, int os) {
  const X s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
  o[0] = m0 + s12 + s34;
  o[1 * os] = d12 + 2.f * d34;
  o[2 * os] = s12 + 4.f * s34;
  o[3 * os] = d12 + 8.f * d34 + m5;
}

// G on 3 values (double: done once per weight)
inline void weight_1d(double g0, double g1, double g2, double* o, int os) {
  o[0] = g0 / 4;
  o[1 * os] = -(g0 + g1 + g2) / 6;
  o[2 * os] = -(g0 - g1 + g2) / 6;
  o[3 * os] = (g0 + 2 * g1 + 4 * g2) / 24;
  o[4 * os] = (g0 - 2 * g1 + 4 * g2) / 24;
  o[5 * os] = g2;
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

// U packed as gemm B panels: for xi, for depth block (pc, kc), ceil(O/32) panels of [kc][32].
struct PackedWeight {
  int64_t C = 0, O = 0, Op = 0;  // Op = O rounded up to whole panels
  std::unique_ptr<float, FreeDeleter> data;
  int64_t bytes() const { return kXi * C * Op * int64_t(sizeof(float)); }
};

// Balanced depth blocks as gemm.h chooses them: kc of block starting at pc.
inline int64_t depth_block(int64_t C) {
  return round_up(ceil_div(C, ceil_div(C, gemm_detail::kKC)), 8);
}

// w [O][3][3][C] -> U packed into dst (kXi * C * Op floats, 64-byte aligned)
template <typename T>
void pack_weight(const T* w, int64_t C, int64_t O, int64_t Op, float* dst) {
  std::vector<float> u(size_t(kXi * O * C));  // u[xi][o][c]
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c) {
      double g[9], t[18], r[36];
      for (int k = 0; k < 9; ++k) g[k] = to_float(w[(o * 9 + k) * C + c]);
      for (int j = 0; j < 3; ++j) weight_1d(g[j], g[3 + j], g[6 + j], t + j, 3);       // G g: t[6][3]
      for (int i = 0; i < 6; ++i) weight_1d(t[i * 3], t[i * 3 + 1], t[i * 3 + 2], r + i * 6, 1);  // (G g) G^T
      for (int xi = 0; xi < kXi; ++xi) u[size_t((xi * O + o) * C + c)] = float(r[xi]);
    }
  const int64_t KC = depth_block(C);
  for (int xi = 0; xi < kXi; ++xi)
    for (int64_t pc = 0; pc < C; pc += KC)
      gemm_detail::pack_B<float>(u.data() + xi * O * C + pc, 1, C, std::min(KC, C - pc), O,
                                 dst + (xi * C + pc) * Op);
}

// 64 sampled values and the byte size, hashed (FNV-1a): tells a freed constant's reused address
// from the same weight.
template <typename T>
uint64_t sample_hash(const T* w, int64_t n) {
  uint64_t h = 1469598103934665603ull ^ uint64_t(n);
  for (int k = 0; k < 64; ++k) {
    uint32_t bits = 0;
    std::memcpy(&bits, w + (n - 1) * k / 63, std::min(sizeof(T), sizeof(bits)));
    h = (h ^ bits) * 1099511628211ull;
  }
  return h;
}

// Process-wide cache of the transformed constant weights (thread-safe; entries immutable).
struct WeightCache {
  struct Entry {
    const void* ptr;
    int64_t C, O;
    const std::type_info* type;
    uint64_t hash;
    std::shared_ptr<const PackedWeight> packed;
  };
  std::mutex mu;
  std::vector<Entry> entries;  // oldest first
  int64_t bytes = 0;

  // never destroyed: every generated library may hold this function (one shared object in
  // the end), and a static with a destructor crashed at exit when several were loaded
  static WeightCache& get() {
    static WeightCache* c = new WeightCache();
    return *c;
  }
  template <typename T>
  std::shared_ptr<const PackedWeight> lookup(const T* w, int64_t C, int64_t O) {
    const uint64_t h = sample_hash(w, O * 9 * C);
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const Entry& e : entries)
        if (e.ptr == w && e.C == C && e.O == O && *e.type == typeid(T) && e.hash == h) return e.packed;
    }
    auto p = std::make_shared<PackedWeight>();
    p->C = C, p->O = O, p->Op = round_up(O, kNR);
    float* d = static_cast<float*>(std::aligned_alloc(64, size_t(round_up(p->bytes(), 64))));
    if (!d) throw std::bad_alloc();
    p->data.reset(d);
    pack_weight<T>(w, C, O, p->Op, d);
    std::lock_guard<std::mutex> lock(mu);
    for (size_t i = 0; i < entries.size(); ++i)  // a stale entry for this address goes
      if (entries[i].ptr == w && entries[i].C == C && entries[i].O == O && *entries[i].type == typeid(T)) {
        bytes -= entries[i].packed->bytes();
        entries.erase(entries.begin() + std::ptrdiff_t(i));
        break;
      }
    entries.push_back(Entry{w, C, O, &typeid(T), h, p});
    bytes += p->bytes();
    while (bytes > AIT_WINOGRAD_CACHE_BYTES && entries.size() > 1) {
      bytes -= entries.front().packed->bytes();
      entries.erase(entries.begin());
    }
    return p;
  }
};

// Input transform of tile t (origin ih0, iw0 in image n) into V[xi][t][c], all channels.
template <typename T>
void input_tile(const T* x, int64_t n, int64_t H, int64_t W, int64_t C, int64_t ih0, int64_t iw0,
                float* V, int64_t xi_stride) {
  using VV = Vec::V;
  alignas(64) VV tmp[36];
  const T* rows[6];
  bool col_in[6];
  for (int i = 0; i < 6; ++i) {
    const int64_t ih = ih0 + i;
    rows[i] = ih >= 0 && ih < H ? x + (n * H + ih) * W * C : nullptr;
    col_in[i] = iw0 + i >= 0 && iw0 + i < W;
  }
  for (int64_t c0 = 0; c0 < C; c0 += kW) {
    const int rem = int(std::min<int64_t>(kW, C - c0));
    for (int i = 0; i < 6; ++i) {  // B^T along each row (j), into tmp[i][*]
      VV d[6];
      for (int j = 0; j < 6; ++j) {
        if (!rows[i] || !col_in[j]) { d[j] = Vec::zero(); continue; }
        const T* p = rows[i] + (iw0 + j) * C + c0;
        d[j] = rem == kW ? gemm_detail::vload<T>(p) : gemm_detail::vload_n<T>(p, rem);
      }
      input_1d<VV>(d[0], d[1], d[2], d[3], d[4], d[5], tmp + i * 6, 1);
    }
    for (int j = 0; j < 6; ++j) {  // then along each column (i)
      VV o[6];
      input_1d<VV>(tmp[j], tmp[6 + j], tmp[12 + j], tmp[18 + j], tmp[24 + j], tmp[30 + j], o, 1);
      for (int i = 0; i < 6; ++i) Vec::storeu(V + (i * 6 + j) * xi_stride + c0, o[i]);
    }
  }
}

// Output transform of tile t: M[xi][t][o] -> 16 pixels x O into obuf (row stride ldo).
inline void output_tile(const float* M, int64_t xi_stride, int64_t O, float* obuf, int64_t ldo) {
  using VV = Vec::V;
  alignas(64) VV tmp[24];
  for (int64_t o0 = 0; o0 < O; o0 += kW) {
    for (int j = 0; j < 6; ++j) {  // A^T along each column: tmp[4][6]
      const float* p = M + j * xi_stride + o0;
      output_1d<VV>(Vec::loadu(p), Vec::loadu(p + 6 * xi_stride), Vec::loadu(p + 12 * xi_stride),
                    Vec::loadu(p + 18 * xi_stride), Vec::loadu(p + 24 * xi_stride),
                    Vec::loadu(p + 30 * xi_stride), tmp + j, 6);
    }
    for (int i = 0; i < 4; ++i) {  // then along each row
      VV y[4];
      const VV* r = tmp + i * 6;
      output_1d<VV>(r[0], r[1], r[2], r[3], r[4], r[5], y, 1);
      for (int j = 0; j < 4; ++j) Vec::storeu(obuf + (i * 4 + j) * ldo + o0, y[j]);
    }
  }
}

}  // namespace winograd_detail

// Is the Winograd path worth it for this 3x3 / stride 1 / groups 1 conv? Measured on Zen 4 (2
// threads, vs im2col packing its weight per call): 1.5-3.5x faster from 12 input channels and 8
// outputs up, at 4 tiles and more. Its transformed weight is 4x the weight and streams from
// memory each call: on a Xeon with AMX-era cores (2 threads, 2026-12-06) ResNet-50's 7x7 maps
// (4 tiles, 512 channels) ran 1.0-1.1 ms as im2col over a weight packed at create against 1.7-2.3
// ms here, so from 8 tiles up (14x14 maps: Winograd stays ~290 GFLOP/s effective).
inline bool winograd_fits(int64_t N, int64_t C, int64_t O, int64_t OH, int64_t OW) {
  return AIT_CONV_WINOGRAD && C >= 16 && O >= 8 && N * ((OH + 3) / 4) * ((OW + 3) / 4) >= 8;
}

// 3x3, stride 1, dilation 1, groups 1 conv (see conv2d_nhwc for the layout and the epilogue).
template <typename T, typename Epi>
void conv2d_winograd(const T* x, const T* w, int64_t N, int64_t H, int64_t W, int64_t C, int64_t O,
                     int64_t pad_top, int64_t pad_left, int64_t OH, int64_t OW, bool const_weight,
                     Epi& epi) {
  using namespace winograd_detail;
  std::shared_ptr<const PackedWeight> cached;
  const float* U;
  const int64_t Op = round_up(O, kNR);
  static thread_local gemm_detail::Scratch wbuf, vbuf;
  if (const_weight) {
    cached = WeightCache::get().lookup<T>(w, C, O);
    U = cached->data.get();
  } else {
    float* u = wbuf.get(size_t(kXi * C * Op));
    pack_weight<T>(w, C, O, Op, u);
    U = u;
  }
  const int64_t TH = ceil_div(OH, 4), TW = ceil_div(OW, 4), tiles = N * TH * TW;
  const int64_t ldv = round_up(C, kW), ldm = Op;
  const int64_t per_tile = kXi * (ldv + ldm) * int64_t(sizeof(float));
  int64_t TB = std::max<int64_t>(gemm_detail::kMR, int64_t(AIT_CONV_WINOGRAD_BYTES) / per_tile);
  TB = std::min(tiles, round_up(TB, gemm_detail::kMR));
  float* V = vbuf.get(size_t(kXi * TB * (ldv + ldm)));
  float* M = V + kXi * TB * ldv;
  const int64_t KC = depth_block(C), MC = gemm_detail::kMC;
  int nth = num_threads();
#ifdef _OPENMP
  if (omp_in_parallel() || double(tiles) * C * O < 2e5) nth = 1;
#endif
  for (int64_t t0 = 0; t0 < tiles; t0 += TB) {
    const int64_t tb = std::min(TB, tiles - t0), nmb = ceil_div(tb, MC);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tb; ++t) {
        const int64_t g = t0 + t, n = g / (TH * TW), th = g / TW % TH, tw = g % TW;
        input_tile<T>(x, n, H, W, C, th * 4 - pad_top, tw * 4 - pad_left, V + t * ldv, tb * ldv);
      }
#pragma omp for schedule(static)
      for (int64_t task = 0; task < kXi * nmb; ++task) {
        const int64_t xi = task / nmb, ic = task % nmb * MC, mc = std::min(MC, tb - ic);
        const auto& kern = gemm_detail::kernels();
        float* apack = gemm_detail::thread_buffers().a.get(size_t(MC * KC));
        for (int64_t pc = 0; pc < C; pc += KC) {
          const int64_t kc = std::min(KC, C - pc);
          gemm_detail::pack_A<float>(V + (xi * tb + ic) * ldv + pc, ldv, 1, mc, kc, apack);
          for (int64_t jr = 0; jr < O; jr += kNR) {
            const int nv = int(ceil_div(std::min<int64_t>(kNR, O - jr), kW));
            const float* bp = U + (xi * C + pc) * Op + jr * kc;
            for (int64_t ir = 0; ir < mc; ir += gemm_detail::kMR) {
              const int mr = int(std::min<int64_t>(gemm_detail::kMR, mc - ir));
              float* out = M + (xi * tb + ic + ir) * ldm + jr;
              kern[mr - 1][nv - 1](kc, apack + ir * kc, bp, pc ? out : nullptr, ldm, out, ldm);
            }
          }
        }
      }
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tb; ++t) {
        const int64_t g = t0 + t, n = g / (TH * TW), th = g / TW % TH, tw = g % TW;
        const int64_t ldo = round_up(O, kW);
        float* obuf = gemm_detail::thread_buffers().c.get(size_t(16 * ldo));
        output_tile(M + t * ldm, tb * ldm, O, obuf, ldo);
        for (int i = 0; i < 4 && th * 4 + i < OH; ++i)
          for (int j = 0; j < 4 && tw * 4 + j < OW; ++j)
            epi(0, (n * OH + th * 4 + i) * OW + tw * 4 + j, 0, obuf + (i * 4 + j) * ldo, O);
      }
    }
  }
}

}  // namespace ait
