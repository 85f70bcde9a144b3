// Standalone timing of ait::gemm for tuning.
//   ./bench_gemm [n ...]                      square row-major sgemm
//   ./bench_gemm -s batch M N K transB ...    one batched shape (transB: B stored [N, K])
// Reports wall time and process CPU time / threads (robust to being descheduled on a busy box).
#include "ait/gemm.h"
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

static void bench(int64_t batch, int64_t M, int64_t N, int64_t K, bool tb) {
  std::vector<float> A(batch * M * K), B(batch * K * N), C(batch * M * N);
  for (auto& x : A) x = float(rand()) / RAND_MAX;
  for (auto& x : B) x = float(rand()) / RAND_MAX;
  auto run = [&] {
    if (tb)
      ait::gemm(batch, M, N, K, A.data(), M * K, K, 1, B.data(), K * N, 1, K,
                ait::StoreEpilogue<float>{C.data(), M * N, N});
    else
      ait::gemm(batch, M, N, K, A.data(), M * K, K, 1, B.data(), K * N, N, 1,
                ait::StoreEpilogue<float>{C.data(), M * N, N});
  };
  run();
  const double f = 2.0 * batch * M * N * K / 1e9;
  const int reps = std::max(5, std::min(200, int(2.0 / f)));
  std::vector<double> ts, cs;
  for (int r = 0; r < reps; ++r) {
    timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    auto t0 = std::chrono::steady_clock::now();
    run();
    ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    cs.push_back((c1.tv_sec - c0.tv_sec + 1e-9 * (c1.tv_nsec - c0.tv_nsec)) / ait::num_threads());
  }
  std::sort(ts.begin(), ts.end());
  std::sort(cs.begin(), cs.end());
  printf("%4lldx%5lldx%5lldx%5lld%s  wall: best %7.1f median %7.1f GFLOP/s   cpu-time: best %7.1f median %7.1f\n",
         (long long)batch, (long long)M, (long long)N, (long long)K, tb ? " NT" : " NN", f / ts[0],
         f / ts[reps / 2], f / cs[0], f / cs[reps / 2]);
}

int main(int argc, char** argv) {
  if (argc > 1 && !strcmp(argv[1], "-s")) {
    for (int i = 2; i + 4 < argc; i += 5)
      bench(atoll(argv[i]), atoll(argv[i + 1]), atoll(argv[i + 2]), atoll(argv[i + 3]), atoi(argv[i + 4]));
    return 0;
  }
  std::vector<int64_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(atoll(argv[i]));
  if (sizes.empty()) sizes = {256, 512, 1024, 2048};
  for (int64_t n : sizes) bench(1, n, n, n, false);
}
