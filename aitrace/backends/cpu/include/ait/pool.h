// aitrace CPU kernels: 2-D pooling on channels-last (NHWC) data, torch semantics (ceil_mode=False).
//
//   max_pool2d<T>(x, y, N, H, W, C, KH, KW, SH, SW, PT, PL, OH, OW)
//   avg_pool2d<T>(x, y, N, H, W, C, KH, KW, SH, SW, PT, PL, OH, OW, count_include_pad)
// x [N, H, W, C] and y [N, OH, OW, C] contiguous. Output (oh, ow) covers input rows
// oh*SH - PT .. + KH and columns ow*SW - PL .. + KW; PT/PL are the top/left padding and the
// bottom/right padding is whatever OH/OW imply (PB = max(0, (OH-1)*SH + KH - H - PT)).
// max: padding is -inf (ints: the type's lowest), NaN propagates (numpy maximum); a window with
// no real input gives -inf / lowest. avg: the fp32 sum of the real inputs divided by, with
// count_include_pad, the window size clipped to the padded extent (torch: KH*KW whenever the
// padding is at most half the kernel), else the number of real inputs (0 of them: NaN).
// T: float, ait::half, ait::bfloat16 (fp32 compute); max_pool2d also int32_t/int64_t.
// Vectorized over C (blocks of 256 channels), parallel over N*OH*OW output pixels.
// x and y must not overlap.
#pragma once
#include "reduce.h"

namespace ait {
namespace detail {

struct PoolGeom {
  int64_t N, H, W, C, KH, KW, SH, SW, PT, PL, OH, OW;
};

// Calls f(n, oh, ow, hs, ws, h0, h1, w0, w1) for every output pixel: (hs, ws) is the window's
// top-left corner (may be negative, in the padding), [h0,h1) x [w0,w1) its real input rows/cols.
template <class F>
void pool_pixels(const PoolGeom& g, F f) {
  const int64_t pixels = g.N * g.OH * g.OW;
  const bool par = pixels * g.C * g.KH * g.KW >= kParallelMin && pixels > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t ow = p % g.OW, oh = (p / g.OW) % g.OH, n = p / (g.OW * g.OH);
    const int64_t hs = oh * g.SH - g.PT, ws = ow * g.SW - g.PL;
    const int64_t h0 = std::max<int64_t>(hs, 0), h1 = std::min(hs + g.KH, g.H);
    const int64_t w0 = std::max<int64_t>(ws, 0), w1 = std::min(ws + g.KW, g.W);
    f(n, oh, ow, hs, ws, h0, h1, w0, w1);
  }
}

}  // namespace detail

template <typename T>
void max_pool2d(const T* x, T* y, int64_t N, int64_t H, int64_t W, int64_t C, int64_t KH,
                int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH, int64_t OW) {
  using In = detail::in_t<T>;
  using detail::kBlk;
  if (N <= 0 || OH <= 0 || OW <= 0 || C <= 0) return;
  const detail::PoolGeom g{N, H, W, C, KH, KW, SH, SW, PT, PL, OH, OW};
  detail::pool_pixels(g, [&](int64_t n, int64_t oh, int64_t ow, int64_t, int64_t, int64_t h0,
                             int64_t h1, int64_t w0, int64_t w1) {
    alignas(64) float tmp[kBlk];
    alignas(64) In acc[kBlk];
    T* yp = y + ((n * OH + oh) * OW + ow) * C;
    for (int64_t c0 = 0; c0 < C; c0 += kBlk) {
      const int64_t m = std::min(kBlk, C - c0);
      for (int64_t c = 0; c < m; ++c) acc[c] = detail::lowest<In>();
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) {
          const In* AIT_RESTRICT p = detail::as_in(x + ((n * H + ih) * W + iw) * C + c0, tmp, m);
          for (int64_t c = 0; c < m; ++c) acc[c] = detail::max_nan(acc[c], p[c]);
        }
      if constexpr (detail::is_lowp<T>::value) detail::from_f32(acc, yp + c0, m);
      else std::memcpy(yp + c0, acc, size_t(m) * sizeof(T));
    }
  });
}

template <typename T>
void avg_pool2d(const T* x, T* y, int64_t N, int64_t H, int64_t W, int64_t C, int64_t KH,
                int64_t KW, int64_t SH, int64_t SW, int64_t PT, int64_t PL, int64_t OH, int64_t OW,
                bool count_include_pad) {
  using detail::kBlk;
  if (N <= 0 || OH <= 0 || OW <= 0 || C <= 0) return;
  const detail::PoolGeom g{N, H, W, C, KH, KW, SH, SW, PT, PL, OH, OW};
  const int64_t PB = std::max<int64_t>(0, (OH - 1) * SH + KH - H - PT);
  const int64_t PR = std::max<int64_t>(0, (OW - 1) * SW + KW - W - PL);
  detail::pool_pixels(g, [&](int64_t n, int64_t oh, int64_t ow, int64_t hs, int64_t ws, int64_t h0,
                             int64_t h1, int64_t w0, int64_t w1) {
    alignas(64) float tmp[kBlk], acc[kBlk];
    int64_t cnt;
    if (count_include_pad)  // torch: the window clipped to the padded input
      cnt = (std::min(hs + KH, H + PB) - hs) * (std::min(ws + KW, W + PR) - ws);
    else
      cnt = std::max<int64_t>(h1 - h0, 0) * std::max<int64_t>(w1 - w0, 0);
    const float div = float(cnt);
    T* yp = y + ((n * OH + oh) * OW + ow) * C;
    for (int64_t c0 = 0; c0 < C; c0 += kBlk) {
      const int64_t m = std::min(kBlk, C - c0);
      for (int64_t c = 0; c < m; ++c) acc[c] = 0.f;
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) {
          const auto* AIT_RESTRICT p = detail::as_in(x + ((n * H + ih) * W + iw) * C + c0, tmp, m);
          for (int64_t c = 0; c < m; ++c) acc[c] += float(p[c]);
        }
      for (int64_t c = 0; c < m; ++c) acc[c] = acc[c] / div;
      detail::from_f32(acc, yp + c0, m);
    }
  });
}

}  // namespace ait
