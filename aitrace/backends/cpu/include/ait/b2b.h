// aitrace CPU runtime: back-to-back GEMM (fused_b2b_gemm) with a small middle dimension.
//
//   mid[r][m] = epi1(r, sum_k X[r][k] * W1[k][m])        r < rows, k < K, m < N1 (N1 small)
//   Y[r][n]   = epi2(r, sum_m mid[r][m] * W2[m][n])      n < N2
//
// X rows are taken in blocks of a few micro-tile rows; each block runs on one thread, which keeps
// the block's middle tile [rows_in_block, N1] in a thread-local fp32 buffer: the middle tensor
// never goes to memory, and the second GEMM starts while the rows are still in L1/L2.
// Both weights are packed once per call into the micro-kernel's panel layout (ait/gemm.h), as
// fp32, and read by every block; X blocks and middle tiles are packed per block.
//
// Epilogue functors (generated per kernel):
//   mid_epi(int64_t r, float* acc, int64_t n)                 in place on row r of the middle
//   out_epi(int64_t r, int64_t j0, const float* acc, int64_t n)   stores Y[r][j0 .. j0+n)
// Rows r are global (0 <= r < rows); calls for different rows may come from different threads.
// X: [rows, K] with row stride ldx (unit column stride); W1: [K, N1], W2: [N1, N2], row-major.
// TX / TW2 may be float, ait::half or ait::bfloat16 (converted to fp32 while packing).
#pragma once
#include "gemm.h"

namespace ait {

// The middle has no epilogue: the fp32 product is used as it is.
struct B2BKeep {
  void operator()(int64_t, float*, int64_t) const {}
};

// The output has no epilogue: round each fp32 row segment to TY and store it.
template <typename TY>
struct B2BStore {
  TY* out;
  int64_t ld;
  void operator()(int64_t r, int64_t j0, const float* acc, int64_t n) const {
    store_row<TY>(out + r * ld + j0, acc, n);
  }
};

namespace b2b_detail {
using namespace gemm_detail;

struct Buffers {
  Scratch w1, w2, a, mid;
};
inline Buffers& buffers() {
  static thread_local Buffers b;
  return b;
}

// Rows per block: whole micro-tiles, at most 16 of them (the packed X block stays in L2), and
// at least 4 blocks per thread where the rows allow, their count a multiple of the threads'.
inline int64_t block_rows(int64_t rows, int64_t nth) {
  const int64_t tiles = ceil_div(rows, int64_t(kMR));
  int64_t nblk = std::max(ceil_div(tiles, int64_t(16)), std::min(tiles, 4 * nth));
  if (round_up(nblk, nth) <= tiles) nblk = round_up(nblk, nth);
  return kMR * ceil_div(tiles, nblk);
}

}  // namespace b2b_detail

template <typename TX, typename TW2, typename MidEpi, typename OutEpi>
void b2b_gemm(int64_t rows, int64_t K, int64_t N1, int64_t N2, const TX* X, int64_t ldx,
              const TX* W1, const TW2* W2, const MidEpi& mid_epi, const OutEpi& out_epi) {
  using namespace b2b_detail;
  if (rows <= 0 || N2 <= 0) return;
  const auto& kern = kernels();
  // depth blocks of the first GEMM, balanced as gemm_region does
  const int64_t nkb = std::max<int64_t>(1, ceil_div(K, kKC));
  const int64_t KC = round_up(ceil_div(std::max<int64_t>(K, 1), nkb), 8);
  const int64_t N1p = round_up(std::max<int64_t>(N1, 1), kNR), N2p = round_up(N2, kNR);

  // weights, once per call: W1 as nkb depth blocks of [kc][N1p] panels, W2 as [N1][N2p] panels
  Buffers& own = buffers();
  float* w1p = own.w1.get(size_t(std::max<int64_t>(K, 1) * N1p));
  float* w2p = own.w2.get(size_t(std::max<int64_t>(N1, 1) * N2p));
  for (int64_t pc = 0; pc < K; pc += KC)
    pack_B<TX>(W1 + pc * N1, N1, 1, std::min(KC, K - pc), N1, w1p + pc * N1p);
  pack_B<TW2>(W2, N2, 1, N1, N2, w2p);

  int64_t nth = num_threads();
  const double flops = 2.0 * double(rows) * double(N1) * double(K + N2);
  if (flops < 2.0e5) nth = 1;
  const int64_t R = block_rows(rows, nth), nblk = ceil_div(rows, R);

  auto block = [&](int64_t blk) {
    const int64_t r0 = blk * R, nr = std::min(R, rows - r0);
    Buffers& tb = buffers();
    float* apack = tb.a.get(size_t(R * std::max(KC, N1p)));
    float* mid = tb.mid.get(size_t(R * N1p));
    alignas(64) float tile[kMR * kNR];
    // 1. mid = X[r0 : r0+nr] @ W1, accumulated over depth blocks in the fp32 tile
    if (K <= 0) std::fill(mid, mid + nr * N1p, 0.f);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      pack_A<TX>(X + r0 * ldx + pc, ldx, 1, nr, kc, apack);
      for (int64_t jr = 0; jr < N1; jr += kNR) {
        const int nv = int(ceil_div(std::min<int64_t>(kNR, N1 - jr), kW));
        const float* bp = w1p + pc * N1p + jr * kc;
        for (int64_t ir = 0; ir < nr; ir += kMR) {
          const int mr = int(std::min<int64_t>(kMR, nr - ir));
          float* c = mid + ir * N1p + jr;
          kern[mr - 1][nv - 1](kc, apack + ir * kc, bp, pc == 0 ? nullptr : c, N1p, c, N1p);
        }
      }
    }
    // 2. first epilogue, in place on each middle row
    for (int64_t i = 0; i < nr; ++i) mid_epi(r0 + i, mid + i * N1p, N1);
    // 3. Y[r0 : r0+nr] = epi2(mid @ W2), one micro-tile at a time
    pack_A<float>(mid, N1p, 1, nr, N1, apack);
    for (int64_t jr = 0; jr < N2; jr += kNR) {
      const int64_t n = std::min<int64_t>(kNR, N2 - jr);
      const int nv = int(ceil_div(n, kW));
      const float* bp = w2p + jr * N1;
      for (int64_t ir = 0; ir < nr; ir += kMR) {
        const int mr = int(std::min<int64_t>(kMR, nr - ir));
        kern[mr - 1][nv - 1](N1, apack + ir * N1, bp, nullptr, 0, tile, kNR);
        for (int r = 0; r < mr; ++r) out_epi(r0 + ir + r, jr, tile + r * kNR, n);
      }
    }
  };
#ifdef _OPENMP
  if (nth > 1 && nblk > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(int(std::min(nth, nblk)))
    for (int64_t b = 0; b < nblk; ++b) block(b);
    return;
  }
#endif
  for (int64_t b = 0; b < nblk; ++b) block(b);
}

}  // namespace ait
