// Standalone timing of ait::conv2d_nhwc on ResNet / MobileNet-like layers (GFLOP/s, 2*MACs).
//   g++ -std=c++17 -O3 -march=native -fopenmp -fPIC -I../../aitrace/backends/cpu/include bench_conv.cpp
// (-DAIT_CONV_WINOGRAD=0: 3x3 convs through im2col instead, for comparison)
#include "ait/conv.h"
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

struct Layer { const char* name; int64_t N, H, W, C, O, KH, KW, s, p, g; };

template <typename T>
static void bench(const Layer& L) {
  const int64_t OH = (L.H + 2 * L.p - L.KH) / L.s + 1, OW = (L.W + 2 * L.p - L.KW) / L.s + 1;
  std::vector<T> x(L.N * L.H * L.W * L.C), w(L.O * L.KH * L.KW * (L.C / L.g)), y(L.N * OH * OW * L.O);
  for (auto& v : x) v = ait::from_float<T>(float(rand()) / RAND_MAX - 0.5f);
  for (auto& v : w) v = ait::from_float<T>(float(rand()) / RAND_MAX - 0.5f);
  auto run = [&] {
    ait::conv2d_nhwc<T>(x.data(), w.data(), L.N, L.H, L.W, L.C, L.O, L.KH, L.KW, L.s, L.s, L.p, L.p, L.p, L.p,
                        1, 1, L.g, ait::StoreEpilogue<T>{y.data(), 0, L.O}, /*const_weight=*/true);
  };
  run();
  const double f = 2.0 * L.N * OH * OW * L.O * L.KH * L.KW * (L.C / L.g) / 1e9;
  const int reps = std::max(5, std::min(200, int(1.0 / f)));
  std::vector<double> ts, cs;  // wall, process cpu time (less sensitive to a busy machine)
  for (int r = 0; r < reps; ++r) {
    timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    auto t0 = std::chrono::steady_clock::now();
    run();
    ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    cs.push_back(double(c1.tv_sec - c0.tv_sec) + 1e-9 * double(c1.tv_nsec - c0.tv_nsec));
  }
  std::sort(ts.begin(), ts.end());
  std::sort(cs.begin(), cs.end());
  printf("%-28s %-5s %8.3f ms  %7.1f GFLOP/s   cpu-time %8.3f ms\n", L.name, sizeof(T) == 4 ? "f32" : "16bit",
         ts[reps / 2] * 1e3, f / ts[reps / 2], cs[reps / 2] * 1e3);
}

int main(int argc, char** argv) {  // argv[1]: only layers whose name contains it
  const Layer layers[] = {
      {"stem 7x7/2 3->64 224", 1, 224, 224, 3, 64, 7, 7, 2, 3, 1},
      {"3x3 64->64 56", 1, 56, 56, 64, 64, 3, 3, 1, 1, 1},
      {"1x1 64->256 56", 1, 56, 56, 64, 256, 1, 1, 1, 0, 1},
      {"1x1 256->64 56", 1, 56, 56, 256, 64, 1, 1, 1, 0, 1},
      {"3x3/2 128->128 56", 1, 56, 56, 128, 128, 3, 3, 2, 1, 1},
      {"3x3 128->128 28", 1, 28, 28, 128, 128, 3, 3, 1, 1, 1},
      {"3x3 256->256 14", 1, 14, 14, 256, 256, 3, 3, 1, 1, 1},
      {"3x3 32->32 56", 1, 56, 56, 32, 32, 3, 3, 1, 1, 1},
      {"3x3 64->64 14 (N=4)", 4, 14, 14, 64, 64, 3, 3, 1, 1, 1},
      {"3x3 512->512 7", 1, 7, 7, 512, 512, 3, 3, 1, 1, 1},
      {"3x3 512->512 7 (N=8)", 8, 7, 7, 512, 512, 3, 3, 1, 1, 1},
      {"1x1/2 256->512 56", 1, 56, 56, 256, 512, 1, 1, 2, 0, 1},
      {"grouped 3x3 g32 128 56", 1, 56, 56, 128, 128, 3, 3, 1, 1, 32},
      {"dw 3x3 32 112", 1, 112, 112, 32, 32, 3, 3, 1, 1, 32},
      {"dw 3x3/2 96 112", 1, 112, 112, 96, 96, 3, 3, 2, 1, 96},
      {"dw 3x3 512 14", 1, 14, 14, 512, 512, 3, 3, 1, 1, 512},
  };
  printf("threads: %d\n", ait::num_threads());
  const char* only = argc > 1 ? argv[1] : nullptr;
  for (const auto& L : layers)
    if (!only || strstr(L.name, only)) bench<float>(L);
  if (!only) {
    bench<ait::half>(layers[1]);
    bench<ait::bfloat16>(layers[5]);
  }
}
