// Correctness tests for ait::gemm (gemm.h) and ait::conv2d_nhwc (conv.h) against naive loops.
// Prints the max normalized error per case; exits non-zero on any failure.
//   g++ -std=c++17 -O3 -march=native -fopenmp -fPIC -I../../aitrace/backends/cpu/include
//   test_kernels.cpp -o test_kernels && ./test_kernels
#include "ait/conv.h"
#include "ait/gemm.h"
#include <atomic>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using ait::bfloat16;
using ait::half;

static int failures = 0, cases = 0;
static std::mt19937 rng(1234);

template <typename T> const char* tname();
template <> const char* tname<float>() { return "f32"; }
template <> const char* tname<half>() { return "f16"; }
template <> const char* tname<bfloat16>() { return "bf16"; }

template <typename T> std::vector<T> random_vec(size_t n) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<T> v(n);
  for (auto& x : v) x = ait::from_float<T>(d(rng));
  return v;
}

static void report(const std::string& name, double err, double tol, bool extra_ok = true) {
  ++cases;
  bool ok = err <= tol && extra_ok;
  if (!ok) ++failures;
  printf("%-4s %-78s max err %.2e%s\n", ok ? "ok" : "FAIL", name.c_str(), err,
         extra_ok ? "" : "  (epilogue coverage wrong)");
}

// Records every epilogue call: value and call count per output element.
struct CheckEpi {
  float* out;
  std::atomic<int>* count;
  int64_t bs, ld;
  void operator()(int64_t b, int64_t i, int64_t j0, const float* acc, int64_t n) const {
    for (int64_t t = 0; t < n; ++t) {
      out[b * bs + i * ld + j0 + t] = acc[t];
      count[b * bs + i * ld + j0 + t].fetch_add(1, std::memory_order_relaxed);
    }
  }
};

// A given as batch x M x K logical with strides; B likewise K x N. Storage sizes computed from strides.
template <typename TA, typename TB>
void test_gemm(const char* what, int64_t batch, int64_t M, int64_t N, int64_t K, int64_t abs_, int64_t ars,
               int64_t acs, int64_t bbs, int64_t brs, int64_t bcs) {
  const size_t asz = size_t((batch - 1) * abs_ + (M - 1) * ars + (K - 1) * acs + 1);
  const size_t bsz = size_t((batch - 1) * bbs + (K - 1) * brs + (N - 1) * bcs + 1);
  auto A = random_vec<TA>(asz);
  auto B = random_vec<TB>(bsz);
  std::vector<float> C(size_t(batch * M * N), NAN);
  std::vector<std::atomic<int>> cnt(size_t(batch * M * N));
  for (auto& c : cnt) c = 0;
  ait::gemm(batch, M, N, K, A.data(), abs_, ars, acs, B.data(), bbs, brs, bcs,
            CheckEpi{C.data(), cnt.data(), M * N, N});
  double err = 0;
  bool cover = true;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0, sa = 1e-30;
        for (int64_t k = 0; k < K; ++k) {
          double x = ait::to_float(A[b * abs_ + i * ars + k * acs]) * double(ait::to_float(B[b * bbs + k * brs + j * bcs]));
          s += x;
          sa += std::fabs(x);
        }
        size_t o = size_t((b * M + i) * N + j);
        double e = std::fabs(C[o] - s) / sa;
        if (!(e <= 1.0)) e = 1e30;  // NaN: never written
        err = std::max(err, e);
        cover &= cnt[o] == 1;
      }
  char name[200];
  snprintf(name, sizeof name, "gemm %s A=%s B=%s b=%lld M=%lld N=%lld K=%lld", what, tname<TA>(), tname<TB>(),
           (long long)batch, (long long)M, (long long)N, (long long)K);
  report(name, err, 1e-5, cover);
}

template <typename TA, typename TB = TA>
void gemm_layouts(int64_t batch, int64_t M, int64_t N, int64_t K) {
  test_gemm<TA, TB>("NN", batch, M, N, K, M * K, K, 1, K * N, N, 1);
  test_gemm<TA, TB>("TN", batch, M, N, K, M * K, 1, M, K * N, N, 1);       // A stored [K, M]
  test_gemm<TA, TB>("NT", batch, M, N, K, M * K, K, 1, K * N, 1, K);       // B stored [N, K]
  test_gemm<TA, TB>("TT", batch, M, N, K, M * K, 1, M, K * N, 1, K);
}

// StoreEpilogue into each storage type, compared with a float reference rounded the same way
template <typename TC>
void test_store(int64_t M, int64_t N, int64_t K) {
  auto A = random_vec<float>(size_t(M * K));
  auto B = random_vec<float>(size_t(K * N));
  std::vector<TC> C(size_t(M * N));
  ait::gemm(1, M, N, K, A.data(), 0, K, 1, B.data(), 0, N, 1, ait::StoreEpilogue<TC>{C.data(), 0, N});
  double err = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(A[i * K + k]) * B[k * N + j];
      err = std::max(err, std::fabs(ait::to_float(C[i * N + j]) - s) / (std::fabs(s) + 1.0));
    }
  char name[200];
  snprintf(name, sizeof name, "StoreEpilogue<%s> M=%lld N=%lld K=%lld", tname<TC>(), (long long)M, (long long)N,
           (long long)K);
  report(name, err, std::is_same<TC, float>::value ? 1e-5 : std::is_same<TC, half>::value ? 2e-3 : 1e-2);
}

template <typename T>
void test_conv(int64_t N, int64_t H, int64_t W, int64_t C, int64_t O, int64_t KH, int64_t KW, int64_t sh,
               int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t dh, int64_t dw,
               int64_t groups, bool const_weight = false) {
  const int64_t Cg = C / groups, Og = O / groups;
  const int64_t OH = (H + pt + pb - dh * (KH - 1) - 1) / sh + 1, OW = (W + pl + pr - dw * (KW - 1) - 1) / sw + 1;
  auto x = random_vec<T>(size_t(N * H * W * C));
  auto w = random_vec<T>(size_t(O * KH * KW * Cg));
  const int64_t M = N * OH * OW;
  std::vector<float> out(size_t(M * O), NAN);
  std::vector<std::atomic<int>> cnt(size_t(M * O));
  for (auto& c : cnt) c = 0;
  ait::conv2d_nhwc<T>(x.data(), w.data(), N, H, W, C, O, KH, KW, sh, sw, pt, pb, pl, pr, dh, dw, groups,
                      CheckEpi{out.data(), cnt.data(), 0, O}, const_weight);
  double err = 0;
  bool cover = true;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t o = 0; o < O; ++o) {
          const int64_t g = o / Og;
          double s = 0, sa = 1e-30;
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t ih = oh * sh - pt + kh * dh, iw = ow * sw - pl + kw * dw;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              for (int64_t c = 0; c < Cg; ++c) {
                double p = ait::to_float(x[((n * H + ih) * W + iw) * C + g * Cg + c]) *
                           double(ait::to_float(w[((o * KH + kh) * KW + kw) * Cg + c]));
                s += p;
                sa += std::fabs(p);
              }
            }
          size_t idx = size_t(((n * OH + oh) * OW + ow) * O + o);
          double e = std::fabs(out[idx] - s) / sa;
          if (!(e <= 1.0)) e = 1e30;
          err = std::max(err, e);
          cover &= cnt[idx] == 1;
        }
  char name[240];
  snprintf(name, sizeof name, "conv%s %s x[%lld,%lld,%lld,%lld] w[%lld,%lld,%lld,%lld] s%lld,%lld p%lld,%lld,%lld,%lld d%lld,%lld g%lld",
           const_weight ? "(const w)" : "", tname<T>(), (long long)N, (long long)H, (long long)W, (long long)C,
           (long long)O, (long long)KH,
           (long long)KW, (long long)Cg, (long long)sh, (long long)sw, (long long)pt, (long long)pb, (long long)pl,
           (long long)pr, (long long)dh, (long long)dw, (long long)groups);
  report(name, err, 1e-5, cover);
}

// The cached Winograd transform of a constant weight: new values at the same address (a freed
// model's constants reused) must not give the old result.
void test_winograd_cache() {
  const int64_t N = 1, H = 9, W = 8, C = 32, O = 40;
  auto x = random_vec<float>(size_t(N * H * W * C));
  auto w = random_vec<float>(size_t(O * 9 * C));
  std::vector<float> got(size_t(N * H * W * O)), want(got.size());
  std::vector<std::atomic<int>> cnt(got.size());
  double err = 0;
  for (int round = 0; round < 2; ++round) {
    if (round) for (auto& v : w) v = 0.5f * v + 0.25f;
    for (auto& c : cnt) c = 0;
    ait::conv2d_nhwc<float>(x.data(), w.data(), N, H, W, C, O, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                            CheckEpi{got.data(), cnt.data(), 0, O}, true);
    ait::conv2d_nhwc<float>(x.data(), w.data(), N, H, W, C, O, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                            ait::StoreEpilogue<float>{want.data(), 0, O}, false);
    for (size_t k = 0; k < got.size(); ++k) err = std::max(err, double(std::fabs(got[k] - want[k])));
  }
  report("winograd cache: same address, new weight values", err, 1e-6);
}

int main() {
  printf("threads: %d, micro-tile %dx%d, KC %lld MC %lld NC %lld\n", ait::num_threads(), ait::gemm_detail::kMR,
         ait::gemm_detail::kNR, (long long)ait::gemm_detail::kKC, (long long)ait::gemm_detail::kMC,
         (long long)ait::gemm_detail::kNC);
  // ---- gemm: shapes (edges of every blocking level), all four layouts
  const int64_t shapes[][3] = {{1, 1, 1},    {1, 1, 7},     {1, 33, 5},    {7, 1, 3},     {2, 3, 4},
                               {13, 17, 19}, {14, 32, 1},   {15, 33, 2},   {29, 65, 31},  {64, 64, 64},
                               {100, 50, 200}, {127, 129, 193}, {200, 300, 400}, {337, 31, 385},
                               {3, 1000, 17}, {1000, 3, 700}, {450, 97, 1000}};
  for (auto& s : shapes) gemm_layouts<float>(1, s[0], s[1], s[2]);
  // wide N (several NC blocks), deep K (several KC blocks and partial-sum passes)
  test_gemm<float, float>("NN", 1, 20, 9000, 40, 0, 40, 1, 0, 9000, 1);
  test_gemm<float, float>("NN", 1, 70, 50, 3000, 0, 3000, 1, 0, 50, 1);
  test_gemm<float, float>("NT", 1, 700, 300, 1500, 0, 1500, 1, 0, 1, 1500);
  // general (non-unit) strides on both axes: every other element of a bigger array
  test_gemm<float, float>("strided", 1, 37, 45, 53, 0, 2 * 53 * 2, 2, 0, 3 * 45 * 2, 3);
  test_gemm<float, float>("strided", 2, 37, 45, 53, 37 * 53 * 5, 3, 37 * 3, 53 * 45 * 3, 1, 53);
  // batches: attention-like, broadcast operand (batch stride 0), odd batch counts
  gemm_layouts<float>(12, 128, 64, 128);
  gemm_layouts<float>(3, 45, 70, 33);
  test_gemm<float, float>("bcastB", 5, 40, 24, 30, 40 * 30, 30, 1, 0, 24, 1);
  test_gemm<float, float>("bcastA", 4, 40, 24, 30, 0, 30, 1, 30 * 24, 24, 1);
  test_gemm<float, float>("bcastAB", 3, 9, 10, 11, 0, 11, 1, 0, 10, 1);
  test_gemm<float, float>("NN", 7, 1, 1, 300, 300, 300, 1, 300, 1, 1);
  // reduced-precision storage
  gemm_layouts<half>(1, 45, 70, 33);
  gemm_layouts<bfloat16>(1, 45, 70, 33);
  gemm_layouts<half, bfloat16>(2, 130, 66, 257);
  gemm_layouts<bfloat16, float>(1, 31, 40, 500);
  gemm_layouts<float, half>(3, 17, 90, 50);
  gemm_layouts<half, bfloat16>(2, 3, 300, 37);   // thin paths (M or N <= 4) with conversion
  gemm_layouts<bfloat16, half>(3, 300, 2, 37);
  gemm_layouts<float>(5, 4, 4, 100);
  test_gemm<float, float>("strided-thin", 2, 3, 70, 20, 3 * 20 * 2, 40, 2, 20 * 70 * 2, 140, 2);
  test_store<float>(37, 70, 50);
  test_store<half>(37, 70, 50);
  test_store<bfloat16>(37, 70, 50);

  // ---- conv2d: N,H,W,C, O,KH,KW, sh,sw, pt,pb,pl,pr, dh,dw, groups
  test_conv<float>(2, 9, 11, 16, 24, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1);     // 1x1: plain gemm
  test_conv<float>(1, 9, 11, 16, 24, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1);     // 1x1 stride 2
  test_conv<float>(2, 10, 10, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);     // 3x3 same
  test_conv<float>(1, 11, 13, 5, 7, 3, 3, 2, 2, 0, 1, 0, 1, 1, 1, 1);      // asymmetric pad
  test_conv<float>(2, 12, 12, 6, 10, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1);     // dilation
  test_conv<float>(1, 9, 10, 8, 12, 3, 2, 2, 1, 1, 0, 0, 1, 1, 3, 1);      // KH != KW, mixed
  test_conv<float>(1, 23, 23, 3, 16, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1, 1);     // stem-like
  test_conv<float>(2, 8, 8, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4);      // groups
  test_conv<float>(1, 8, 9, 12, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 3);       // grouped 1x1
  test_conv<float>(1, 7, 7, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2);      // groups 2
  test_conv<float>(2, 10, 9, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 32);    // depthwise
  test_conv<float>(1, 11, 11, 24, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 24);   // depthwise s2
  test_conv<float>(1, 12, 12, 19, 19, 5, 5, 1, 2, 2, 1, 3, 0, 2, 1, 19);   // depthwise odd C, dil
  test_conv<float>(1, 6, 6, 4, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4);        // groups==C, O=2C (im2col)
  test_conv<float>(4, 16, 16, 12, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);    // many im2col chunks
  test_conv<float>(1, 5, 5, 3, 4, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1);        // 1x1 output
  test_conv<half>(2, 10, 10, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
  test_conv<bfloat16>(1, 11, 13, 5, 7, 3, 3, 2, 2, 0, 1, 0, 1, 1, 1, 1);
  test_conv<half>(2, 8, 8, 16, 32, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1);
  test_conv<half>(1, 12, 12, 40, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 40);
  test_conv<bfloat16>(1, 12, 12, 19, 19, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 19);
  // Winograd F(4x4, 3x3): 3x3 stride 1 groups 1, C >= 16, O >= 8, >= 4 tiles (partial tiles at odd H/W)
  test_conv<float>(1, 9, 11, 32, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
  test_conv<float>(1, 5, 5, 16, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);      // smallest: 4 tiles
  test_conv<float>(2, 13, 10, 40, 35, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1);    // pad 0, C/O % 16 != 0
  test_conv<float>(1, 10, 12, 33, 50, 3, 3, 1, 1, 2, 0, 0, 1, 1, 1, 1);    // asymmetric pad
  test_conv<float>(1, 8, 9, 200, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);     // two depth blocks
  test_conv<float>(2, 60, 59, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);    // several row blocks
  test_conv<float>(1, 7, 7, 64, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true);
  test_conv<float>(1, 7, 7, 64, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true);  // new w, maybe same address
  test_conv<float>(3, 14, 14, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true);
  test_conv<half>(1, 9, 9, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
  test_conv<bfloat16>(2, 8, 11, 48, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true);
  // few input channels (implicit GEMM, windows packed straight into A panels)
  test_conv<float>(2, 37, 41, 3, 64, 7, 7, 2, 2, 3, 3, 3, 3, 1, 1, 1);     // stem, two panels wide
  test_conv<half>(1, 30, 33, 4, 20, 5, 5, 1, 2, 2, 1, 0, 2, 1, 1, 1);
  test_conv<float>(1, 20, 40, 1, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 2, 1);     // C=1, dilation in w

  test_winograd_cache();

  printf("%d/%d cases passed\n", cases - failures, cases);
  return failures ? 1 : 0;
}
