// aitrace CPU runtime: 2-D convolution on channels-last data, through ait::gemm.
//
//   x [N, H, W, C] (NHWC), w [O, KH, KW, C/groups]  ->  out [N, OH, OW, O]
//   OH = (H + pad_top + pad_bottom - dil_h*(KH-1) - 1) / stride_h + 1   (OW likewise)
//
// torch F.conv2d semantics (cross-correlation, zero padding). The output is never written by the
// kernel itself: as for gemm, the epilogue receives finished fp32 row segments of the output seen
// as a matrix [N*OH*OW, O]:
//
//   epi(int64_t b /* always 0 */, int64_t row, int64_t j0, const float* acc, int64_t n)
//     acc[t] = out[row][j0 + t], row = (n*OH + oh)*OW + ow, j0 + t = global output channel
//
// so ait::StoreEpilogue<T>{out, 0, O} stores it and a generated functor may fuse bias etc.
// Paths:
//   * 1x1, stride 1, no padding: a plain GEMM on x viewed as [N*H*W, C] (no copy);
//   * depthwise (groups == C == O): a direct loop, channels in registers, taps outer; it passes
//     whole output pixels (j0 = 0, n = O);
//   * 3x3, stride 1, dilation 1, groups 1 with enough channels (winograd_fits): Winograd
//     F(4x4, 3x3) (winograd.h); it passes whole output pixels too;
//   * few input channels (C <= 8, e.g. a 7x7 RGB stem), groups 1: implicit GEMM over one output
//     row at a time, the micro-kernel reading its A operand straight from x where the windows
//     allow (no im2col buffer, no packing), the weight packed once per call;
//   * otherwise: im2col of a chunk of output rows into a bounded thread-local buffer
//     (AIT_CONV_IM2COL_BYTES, default 8 MiB; at least 64 rows per chunk), then one batched GEMM
//     over the groups per chunk (gemm's batch = group). Grouped convs with few channels per
//     group (e.g. ResNeXt's 4) are correct but slow on this path (~6-11 GFLOP/s).
// The weight is used in place as B[k][j] = w[j][k] (k = (kh*KW + kw)*Cg + c): the GEMM packing
// reads it transposed.
#pragma once
#include "gemm.h"
#include "winograd.h"
#include <vector>

#ifndef AIT_CONV_IM2COL_BYTES
#define AIT_CONV_IM2COL_BYTES (8 << 20)
#endif

namespace ait {
namespace conv_detail {

// gemm batch index = group: (g, i, j) -> conv output (row0 + i, g*og + j)
template <typename Epi>
struct GroupEpi {
  Epi* epi;
  int64_t row0, og;
  AIT_GEMM_INLINE void operator()(int64_t g, int64_t i, int64_t j0, const float* acc, int64_t n) const {
    (*epi)(0, row0 + i, g * og + j0, acc, n);
  }
};

// Depthwise, one output pixel, channels [c0, c0 + NV*kW) (the last vector holds `tail` <= kW
// channels): out[c] = sum_t x_t[c] * w_t[c] over the valid taps t, accumulators in registers.
template <int NV, typename T>
AIT_GEMM_INLINE void dw_block(int ntaps, const T* const* xp, const float* const* wp, int64_t c0, int tail,
                              float* out) {
  using gemm_detail::Vec;
  constexpr int W = gemm_detail::kW;
  Vec::V acc[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) acc[v] = Vec::zero();
  for (int t = 0; t < ntaps; ++t) {
    const T* x = xp[t] + c0;
    const float* w = wp[t] + c0;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const Vec::V xv = (v == NV - 1 && tail < W) ? gemm_detail::vload_n<T>(x + v * W, tail)
                                                  : gemm_detail::vload<T>(x + v * W);
      acc[v] = Vec::fma(xv, Vec::loadu(w + v * W), acc[v]);
    }
  }
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) Vec::storeu(out + c0 + v * W, acc[v]);
}

template <typename T, typename Epi>
void depthwise(const T* x, const T* w, int64_t N, int64_t H, int64_t W, int64_t C, int64_t KH,
               int64_t KW, int64_t OH, int64_t OW, int64_t sh, int64_t sw, int64_t pt, int64_t pl,
               int64_t dh, int64_t dw, Epi& epi) {
  using gemm_detail::kW;
  constexpr int64_t kBlk = 4 * kW;  // channels per register block
  // weights as [KH*KW][Cp] floats (zero-padded to whole vectors): contiguous along channels
  const int64_t Cp = gemm_detail::round_up(C, kW), taps = KH * KW;
  gemm_detail::Scratch wt_buf;
  float* wt = wt_buf.get(size_t(taps * Cp));
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t c = 0; c < Cp; ++c) wt[t * Cp + c] = c < C ? to_float(w[c * taps + t]) : 0.f;
  const int64_t rows = N * OH;
  int nth = num_threads();
#ifdef _OPENMP
  if (omp_in_parallel() || double(rows) * OW * C * taps < 1e5) nth = 1;
#endif
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    gemm_detail::Scratch buf;
    float* out = buf.get(size_t(Cp));
    std::vector<const T*> xp(static_cast<size_t>(taps));
    std::vector<const float*> wp(static_cast<size_t>(taps));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = r / OH, oh = r % OH;
      for (int64_t ow = 0; ow < OW; ++ow) {
        int nt = 0;
        for (int64_t kh = 0; kh < KH; ++kh) {
          const int64_t ih = oh * sh - pt + kh * dh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t kw = 0; kw < KW; ++kw) {
            const int64_t iw = ow * sw - pl + kw * dw;
            if (iw < 0 || iw >= W) continue;
            xp[size_t(nt)] = x + ((n * H + ih) * W + iw) * C;
            wp[size_t(nt++)] = wt + (kh * KW + kw) * Cp;
          }
        }
        int64_t c0 = 0;
        for (; c0 + kBlk <= C; c0 += kBlk) dw_block<4, T>(nt, xp.data(), wp.data(), c0, int(kW), out);
        if (c0 < C) {
          const int64_t rem = C - c0, nv = gemm_detail::ceil_div(rem, kW);
          const int tail = int(rem - (nv - 1) * kW);
          switch (nv) {
            case 1: dw_block<1, T>(nt, xp.data(), wp.data(), c0, tail, out); break;
            case 2: dw_block<2, T>(nt, xp.data(), wp.data(), c0, tail, out); break;
            case 3: dw_block<3, T>(nt, xp.data(), wp.data(), c0, tail, out); break;
            default: dw_block<4, T>(nt, xp.data(), wp.data(), c0, tail, out); break;
          }
        }
        epi(0, r * OW + ow, 0, out, C);
      }
    }
  }
}

// Few input channels, dilation 1 along w: the micro-kernel of gemm.h for kMR output pixels,
// broadcasting its A operand straight from rows of input (pixel r's window row kh is
// src[kh][off + r*ps + (0 .. seg)]), so nothing is packed. src[kh]: the zero-padded input row of
// window row kh, nullptr where the whole row is padding. b: one B panel [KH*seg][kNR].
template <int NVK>
void window_kernel(const float* const* src, int64_t off, int64_t KH, int64_t seg, int64_t ps,
                   const float* b, float* out, int64_t ldo) {
  using gemm_detail::Vec;
  constexpr int MR = gemm_detail::kMR, W = gemm_detail::kW, NR = gemm_detail::kNR;
  Vec::V acc[MR][NVK];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NVK; ++v) acc[r][v] = Vec::zero();
  for (int64_t kh = 0; kh < KH; ++kh, b += seg * NR) {
    if (!src[kh]) continue;
    const float* s = src[kh] + off;
    for (int64_t j = 0; j < seg; ++j) {
      Vec::V bv[NVK];
#pragma GCC unroll 4
      for (int v = 0; v < NVK; ++v) bv[v] = Vec::load(b + j * NR + v * W);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const Vec::V av = Vec::bcast(s + r * ps + j);
#pragma GCC unroll 4
        for (int v = 0; v < NVK; ++v) acc[r][v] = Vec::fma(av, bv[v], acc[r][v]);
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NVK; ++v) Vec::storeu(out + r * ldo + v * W, acc[r][v]);
}

// Few input channels (implicit GEMM): one output row (n, oh) per task, in panels of kMR pixels.
// With dilation 1 along w, the KH input rows of the task are copied as float with their zero
// padding (and enough zeros after for whole panels) and window_kernel reads them in place;
// otherwise each panel is gathered into micro-kernel A layout (k = (kh*KW + kw)*C + c).
// Bp: the weight packed as gemm B panels ([ceil(O/NR)][K][NR]).
template <typename T, typename Epi>
void small_channels(const T* x, const float* Bp, int64_t N, int64_t H, int64_t W, int64_t C,
                    int64_t O, int64_t KH, int64_t KW, int64_t OH, int64_t OW, int64_t sh, int64_t sw,
                    int64_t pt, int64_t pl, int64_t dh, int64_t dw, Epi& epi) {
  using gemm_detail::kMR;
  using gemm_detail::kNR;
  using gemm_detail::kNV;
  const int64_t K = KH * KW * C, Op = gemm_detail::round_up(O, kNR);
  const int64_t panels = gemm_detail::ceil_div(OW, kMR), rows = N * OH;
  const int64_t row_cols = (panels * kMR - 1) * sw + KW;  // padded row length, in pixels
  int nth = num_threads();
#ifdef _OPENMP
  if (omp_in_parallel() || double(rows) * OW * O * K < 1e5) nth = 1;
#endif
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    gemm_detail::ThreadBuffers& tb = gemm_detail::thread_buffers();
    float* a = tb.a.get(size_t(dw == 1 ? KH * row_cols * C : kMR * K));
    float* cbuf = tb.c.get(size_t(panels * kMR * Op));
    std::vector<const float*> src(static_cast<size_t>(KH));
    const auto& kern = gemm_detail::kernels();
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = r / OH, oh = r % OH;
      if (dw == 1) {
        for (int64_t kh = 0; kh < KH; ++kh) {
          const int64_t ih = oh * sh - pt + kh * dh;
          float* d = a + kh * row_cols * C;
          src[size_t(kh)] = ih < 0 || ih >= H ? nullptr : d;
          if (ih < 0 || ih >= H) continue;
          const int64_t lo = std::min(pl, row_cols), in = std::max<int64_t>(0, std::min(W, row_cols - pl));
          std::memset(d, 0, size_t(lo * C) * sizeof(float));
          gemm_detail::load_contig<T>(x + (n * H + ih) * W * C, in * C, d + lo * C);
          std::memset(d + (lo + in) * C, 0, size_t((row_cols - lo - in) * C) * sizeof(float));
        }
        constexpr int half_nv = (kNV + 1) / 2;  // a narrow last column panel: fewer vectors
        for (int64_t p = 0; p < panels; ++p)
          for (int64_t jr = 0; jr < O; jr += kNR) {
            float* out = cbuf + p * kMR * Op + jr;
            if (O - jr > half_nv * gemm_detail::kW)
              window_kernel<kNV>(src.data(), p * kMR * sw * C, KH, KW * C, sw * C, Bp + jr * K, out, Op);
            else
              window_kernel<half_nv>(src.data(), p * kMR * sw * C, KH, KW * C, sw * C, Bp + jr * K, out, Op);
          }
      } else {
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t ow0 = p * kMR;
          const int np = int(std::min<int64_t>(kMR, OW - ow0));
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t ih = oh * sh - pt + kh * dh;
            for (int64_t kw = 0; kw < KW; ++kw)
              for (int i = 0; i < kMR; ++i) {
                const int64_t iw = (ow0 + i) * sw - pl + kw * dw;
                const bool in = i < np && ih >= 0 && ih < H && iw >= 0 && iw < W;
                for (int64_t c = 0; c < C; ++c)
                  a[((kh * KW + kw) * C + c) * kMR + i] = in ? to_float(x[((n * H + ih) * W + iw) * C + c]) : 0.f;
              }
          }
          for (int64_t jr = 0; jr < O; jr += kNR) {
            const int nv = int(gemm_detail::ceil_div(std::min<int64_t>(kNR, O - jr), gemm_detail::kW));
            kern[np - 1][nv - 1](K, a, Bp + jr * K, nullptr, 0, cbuf + ow0 * Op + jr, Op);
          }
        }
      }
      for (int64_t ow = 0; ow < OW; ++ow) epi(0, r * OW + ow, 0, cbuf + ow * Op, O);
    }
  }
}

}  // namespace conv_detail

// Which path conv2d_nhwc takes (see the top of this file).
enum class ConvPath { kDepthwise, kPointwise, kWinograd, kFewChannels, kIm2col };
inline ConvPath conv2d_path(int64_t N, int64_t C, int64_t O, int64_t KH, int64_t KW, int64_t OH,
                            int64_t OW, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                            int64_t pad_bottom, int64_t pad_left, int64_t pad_right, int64_t dil_h,
                            int64_t dil_w, int64_t groups) {
  const int64_t Kg = KH * KW * (C / groups);
  if (groups == C && O == C && groups > 1) return ConvPath::kDepthwise;
  if (KH == 1 && KW == 1 && stride_h == 1 && stride_w == 1 && pad_top == 0 && pad_bottom == 0 &&
      pad_left == 0 && pad_right == 0)
    return ConvPath::kPointwise;
  if (groups == 1 && KH == 3 && KW == 3 && stride_h == 1 && stride_w == 1 && dil_h == 1 &&
      dil_w == 1 && winograd_fits(N, C, O, OH, OW))
    return ConvPath::kWinograd;
  if (groups == 1 && C <= 8 && Kg <= 512) return ConvPath::kFewChannels;
  return ConvPath::kIm2col;
}

// Whether a conv of these sizes reads a weight packed by pack_conv_weight (groups 1, through
// the GEMM: pointwise and im2col paths), so that a model packs its constant weight at create.
inline bool conv2d_takes_packed_weight(int64_t N, int64_t C, int64_t O, int64_t KH, int64_t KW,
                                       int64_t OH, int64_t OW, int64_t stride_h, int64_t stride_w,
                                       int64_t pad_top, int64_t pad_bottom, int64_t pad_left,
                                       int64_t pad_right, int64_t dil_h, int64_t dil_w, int64_t groups) {
  const ConvPath p = conv2d_path(N, C, O, KH, KW, OH, OW, stride_h, stride_w, pad_top, pad_bottom,
                                 pad_left, pad_right, dil_h, dil_w, groups);
  return groups == 1 && (p == ConvPath::kPointwise || p == ConvPath::kIm2col);
}

// Floats of a packed [O, KH, KW, C] weight (groups 1): the GEMM's B [KH*KW*C, O].
inline int64_t packed_conv_weight_floats(int64_t O, int64_t KH, int64_t KW, int64_t C) {
  return packed_b_floats(KH * KW * C, O);
}
template <typename T>
void pack_conv_weight(const T* w, int64_t O, int64_t KH, int64_t KW, int64_t C, float* dst) {
  const int64_t Kg = KH * KW * C;
  pack_gemm_b<T>(w, 1, Kg, Kg, O, dst);  // B[k][j] = w[j][k]
}

// x: [N, H, W, C], w: [O, KH, KW, C/groups], both T (float, half, bfloat16); requires
// groups | C, groups | O, strides >= 1, dilations >= 1, pads >= 0. Parallel (OpenMP) inside.
// const_weight: w is a model constant (its Winograd transform may be cached, see winograd.h).
// packed_w: w as pack_conv_weight packed it, or null (read where conv2d_takes_packed_weight).
template <typename T, typename Epi>
void conv2d_nhwc(const T* x, const T* w,
                 int64_t N, int64_t H, int64_t W, int64_t C,
                 int64_t O, int64_t KH, int64_t KW,
                 int64_t stride_h, int64_t stride_w,
                 int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
                 int64_t dil_h, int64_t dil_w, int64_t groups, Epi epi, bool const_weight = false,
                 const float* packed_w = nullptr) {
  const int64_t OH = (H + pad_top + pad_bottom - dil_h * (KH - 1) - 1) / stride_h + 1;
  const int64_t OW = (W + pad_left + pad_right - dil_w * (KW - 1) - 1) / stride_w + 1;
  if (N <= 0 || OH <= 0 || OW <= 0 || O <= 0) return;
  const int64_t Cg = C / groups, Og = O / groups, Kg = KH * KW * Cg;
  const int64_t M = N * OH * OW;
  if (groups != 1) packed_w = nullptr;
  const ConvPath path = conv2d_path(N, C, O, KH, KW, OH, OW, stride_h, stride_w, pad_top,
                                    pad_bottom, pad_left, pad_right, dil_h, dil_w, groups);

  if (path == ConvPath::kDepthwise) {
    conv_detail::depthwise<T, Epi>(x, w, N, H, W, C, KH, KW, OH, OW, stride_h, stride_w, pad_top,
                                   pad_left, dil_h, dil_w, epi);
    return;
  }
  if (path == ConvPath::kPointwise) {
    gemm(groups, M, Og, Cg, x, Cg, C, 1, w, Og * Kg, 1, Kg,
         conv_detail::GroupEpi<Epi>{&epi, 0, Og}, packed_w);
    return;
  }
  if (path == ConvPath::kWinograd) {
    conv2d_winograd<T, Epi>(x, w, N, H, W, C, O, pad_top, pad_left, OH, OW, const_weight, epi);
    return;
  }
  if (path == ConvPath::kFewChannels) {
    static thread_local gemm_detail::Scratch wbuf;
    float* Bp = wbuf.get(size_t(gemm_detail::round_up(O, gemm_detail::kNR) * Kg));
    gemm_detail::pack_B<T>(w, 1, Kg, Kg, O, Bp);  // B[k][j] = w[j][k]
    conv_detail::small_channels<T, Epi>(x, Bp, N, H, W, C, O, KH, KW, OH, OW, stride_h, stride_w,
                                        pad_top, pad_left, dil_h, dil_w, epi);
    return;
  }

  // im2col in chunks of R output rows: buf[g][r][(kh*KW + kw)*Cg + c]
  const int64_t row_bytes = groups * Kg * int64_t(sizeof(T));
  const int64_t R = std::min(M, std::max<int64_t>(64, int64_t(AIT_CONV_IM2COL_BYTES) / row_bytes));
  static thread_local gemm_detail::Scratch buf_scratch;
  T* buf = reinterpret_cast<T*>(buf_scratch.get(size_t((R * row_bytes + 3) / 4)));
  int nth = num_threads();
#ifdef _OPENMP
  if (omp_in_parallel()) nth = 1;
#endif
  for (int64_t r0 = 0; r0 < M; r0 += R) {
    const int64_t rows = std::min(R, M - r0);
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1 && rows * row_bytes > (64 << 10))
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t m = r0 + r, ow = m % OW, oh = (m / OW) % OH, n = m / (OW * OH);
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t ih = oh * stride_h - pad_top + kh * dil_h;
        const int64_t iw0 = ow * stride_w - pad_left;
        if (groups == 1 && dil_w == 1 && ih >= 0 && ih < H && iw0 >= 0 && iw0 + KW <= W) {
          // the whole kernel row is inside and contiguous in x: one copy of KW*C elements
          std::memcpy(buf + r * Kg + kh * KW * C, x + ((n * H + ih) * W + iw0) * C, size_t(KW * C) * sizeof(T));
          continue;
        }
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t iw = ow * stride_w - pad_left + kw * dil_w;
          const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
          const T* src = inside ? x + ((n * H + ih) * W + iw) * C : x;
          for (int64_t g = 0; g < groups; ++g) {
            T* dst = buf + (g * R + r) * Kg + (kh * KW + kw) * Cg;
            if (Cg < 16) {  // tiny pieces (grouped convs): a library call per piece costs more
              for (int64_t c = 0; c < Cg; ++c) dst[c] = inside ? src[g * Cg + c] : T{};
            } else if (inside) {
              std::memcpy(dst, src + g * Cg, size_t(Cg) * sizeof(T));
            } else {
              std::memset(dst, 0, size_t(Cg) * sizeof(T));
            }
          }
        }
      }
    }
    gemm(groups, rows, Og, Kg, buf, R * Kg, Kg, 1, w, Og * Kg, 1, Kg,
         conv_detail::GroupEpi<Epi>{&epi, r0, Og}, packed_w);
  }
}

}  // namespace ait
