// Throughput of the CPU kernels on realistic sizes, at 1 thread and at all threads.
// Build and run: ./run.sh bench        (prints one line per kernel; best of 10 runs each)
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "ait/attention.h"
#include "ait/layout.h"
#include "ait/norm.h"
#include "ait/pool.h"
#include "ait/reduce.h"

template <class F> double best(F f, int reps = 10) {
  f();
  double b = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    b = std::min(b, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return b;
}

static int g_threads[2];
// Times f at 1 thread and at all threads; `amount` is bytes (GB/s) or flops (GFLOP/s).
template <class F> void report(const char* name, double amount, bool flops, F f) {
  std::printf("%-46s", name);
  for (int nt : g_threads) {
    omp_set_num_threads(nt);
    const double t = best(f);
    std::printf("  %2dT %8.3f ms %7.1f %s", nt, t * 1e3, amount / t * 1e-9, flops ? "GFLOP/s" : "GB/s");
  }
  std::printf("\n");
}

template <class T> void suite(const char* tn) {
  const int64_t N = 1 << 24;
  const double E = sizeof(T);
  std::vector<T> x(N), y(N);
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& e : x) e = ait::from_float<T>(u(g));
  std::vector<T> s(1 << 16);
  std::vector<int64_t> si(1 << 16);
  char nm[128];
#define NAME(...) (std::snprintf(nm, sizeof nm, __VA_ARGS__), nm)
  report(NAME("%s memcpy 16M", tn), 2 * N * E, false, [&] { std::memcpy(y.data(), x.data(), N * sizeof(T)); });
  report(NAME("%s reduce_sum all 16M", tn), N * E, false, [&] { ait::reduce_sum<T, T>(x.data(), s.data(), 1, N, 1); });
  report(NAME("%s reduce_sum rows 4096x4096", tn), N * E, false, [&] { ait::reduce_sum<T, T>(x.data(), s.data(), 4096, 4096, 1); });
  report(NAME("%s reduce_mean axis0 16Kx1024", tn), N * E, false, [&] { ait::reduce_mean<T, T>(x.data(), s.data(), 1, N / 1024, 1024); });
  report(NAME("%s reduce_mean gap [32,196,2048]", tn), 32 * 196 * 2048 * E, false, [&] { ait::reduce_mean<T, T>(x.data(), s.data(), 32, 196, 2048); });
  report(NAME("%s reduce_max rows 4096x4096", tn), N * E, false, [&] { ait::reduce_max<T, T>(x.data(), s.data(), 4096, 4096, 1); });
  report(NAME("%s argmax rows 16Kx1024", tn), N * E, false, [&] { ait::argmax<T>(x.data(), si.data(), N / 1024, 1024, 1); });
  report(NAME("%s argmax axis0 16Kx1024", tn), N * E, false, [&] { ait::argmax<T>(x.data(), si.data(), 1, N / 1024, 1024); });
  report(NAME("%s softmax 16Kx1024", tn), 2 * N * E, false, [&] { ait::softmax<T>(x.data(), y.data(), N / 1024, 1024, 1); });
  report(NAME("%s softmax axis1 [16,1024,1024]", tn), 2 * N * E, false, [&] { ait::softmax<T>(x.data(), y.data(), 16, 1024, 1024); });
  std::vector<T> w(4096, ait::from_float<T>(1.f)), b(4096, ait::from_float<T>(0.f));
  report(NAME("%s layer_norm 16Kx1024", tn), 2 * N * E, false, [&] { ait::layer_norm<T>(x.data(), w.data(), b.data(), y.data(), N / 1024, 1024, 1e-5f); });
  report(NAME("%s batch_norm 64Kx256", tn), 2 * N * E, false, [&] { ait::batch_norm<T>(x.data(), b.data(), w.data(), w.data(), b.data(), y.data(), N / 256, 256, 1e-5f); });
  report(NAME("%s max_pool 8x112x112x64 k3s2p1", tn), (8.0 * 112 * 112 * 64 + 8.0 * 56 * 56 * 64) * E, false,
         [&] { ait::max_pool2d<T>(x.data(), y.data(), 8, 112, 112, 64, 3, 3, 2, 2, 1, 1, 56, 56); });
  report(NAME("%s avg_pool 8x112x112x64 k3s2p1", tn), (8.0 * 112 * 112 * 64 + 8.0 * 56 * 56 * 64) * E, false,
         [&] { ait::avg_pool2d<T>(x.data(), y.data(), 8, 112, 112, 64, 3, 3, 2, 2, 1, 1, 56, 56, false); });
  {
    int64_t ss[2] = {1, 4096}, ds[2] = {4096, 1}, sh[2] = {4096, 4096};
    report(NAME("%s transpose 4096x4096", tn), 2 * N * E, false, [&] { ait::copy_strided<T>(x.data(), ss, y.data(), ds, sh, 2); });
  }
  {
    int64_t ss[4] = {512 * 64 * 64, 64, 64 * 64, 1}, ds[4] = {512 * 64 * 64, 512 * 64, 64, 1}, sh[4] = {8, 64, 512, 64};
    report(NAME("%s [B,S,H,D]->[B,H,S,D] 8x512x64x64", tn), 2 * N * E, false, [&] { ait::copy_strided<T>(x.data(), ss, y.data(), ds, sh, 4); });
  }
  {
    const int64_t C = 3, H = 224, W = 224, Nn = 64;
    int64_t ss[4] = {C * H * W, W, 1, H * W}, ds[4] = {H * W * C, W * C, C, 1}, sh[4] = {Nn, H, W, C};
    report(NAME("%s NCHW->NHWC 64x3x224x224", tn), 2.0 * Nn * C * H * W * E, false, [&] { ait::copy_strided<T>(x.data(), ss, y.data(), ds, sh, 4); });
  }
  {
    std::vector<int64_t> idx(8192);
    for (auto& e : idx) e = int64_t(g() % 16384);
    report(NAME("%s take 8192 rows of 1024", tn), 2.0 * 8192 * 1024 * E, false, [&] { ait::take<T, int64_t>(x.data(), idx.data(), y.data(), 1, 16384, 1024, 8192); });
  }
  {
    int64_t sh[2] = {4000, 4000}, lo[2] = {1, 2}, hi[2] = {3, 4};
    report(NAME("%s pad 4000x4000", tn), 2 * 16e6 * E, false, [&] { ait::pad_constant<T>(x.data(), y.data(), sh, lo, hi, 2, ait::from_float<T>(0.f)); });
  }
  // attention: BERT-base-like and long sequences
  struct A { int64_t B, H, S, D; bool causal; };
  for (A a : {A{8, 12, 128, 64, false}, A{1, 8, 1024, 64, false}, A{1, 8, 1024, 64, true}, A{1, 8, 1024, 128, false}}) {
    const int64_t n = a.B * a.H * a.S * a.D;
    std::vector<T> q(x.begin(), x.begin() + n), k(x.begin() + n, x.begin() + 2 * n), v(x.begin() + 2 * n, x.begin() + 3 * n), o(n);
    const double fl = 4.0 * a.B * a.H * a.S * a.S * a.D * (a.causal ? 0.5 : 1.0);
    report(NAME("%s attention B%lld H%lld S%lld D%lld%s", tn, (long long)a.B, (long long)a.H, (long long)a.S, (long long)a.D, a.causal ? " causal" : ""),
           fl, true, [&] {
             ait::attention_contiguous<T, T>(q.data(), k.data(), v.data(), o.data(), a.B, a.H, a.S, a.S, a.D, a.D, 0.125f,
                                             a.causal, 0, static_cast<const T*>(nullptr), 0, 0, 0, 0);
           });
  }
}

int main() {
  g_threads[0] = 1;
  g_threads[1] = omp_get_max_threads();
  std::printf("threads: 1 and %d\n", g_threads[1]);
  suite<float>("f32");
  suite<ait::half>("f16");
  suite<ait::bfloat16>("bf16");
}
