#!/bin/bash
# Build and run the kernel tests (default blocking; tiny blocks / im2col and Winograd chunks so every
# multi-block path runs on small shapes; the AVX2 and scalar micro-kernels), at 1 and 2+ threads.
# Exit status: non-zero on any failure.
set -e
cd "$(dirname "$0")"
CXX=${CXX:-g++}
FLAGS="-std=c++17 -O3 -march=native -fopenmp -fPIC -Wall -Wextra -I../../aitrace/backends/cpu/include"
OUT=${TMPDIR:-/tmp}/ait_gemm_tests
mkdir -p "$OUT"
$CXX $FLAGS test_kernels.cpp -o "$OUT/test_kernels"
$CXX $FLAGS -DAIT_GEMM_KC=40 -DAIT_GEMM_MC=28 -DAIT_GEMM_NC=64 "-DAIT_GEMM_CBUF_FLOATS=(64*64)" \
    "-DAIT_CONV_IM2COL_BYTES=4096" "-DAIT_CONV_WINOGRAD_BYTES=4096" test_kernels.cpp -o "$OUT/test_kernels_small_blocks"
# the other micro-kernels: AVX2+FMA (8-wide), and the portable scalar one (baseline x86-64)
$CXX ${FLAGS/-march=native/-march=native -mno-avx512f} test_kernels.cpp -o "$OUT/test_kernels_avx2"
$CXX ${FLAGS/-march=native/-march=x86-64} test_kernels.cpp -o "$OUT/test_kernels_scalar"
rc=0
for bin in test_kernels test_kernels_small_blocks test_kernels_avx2 test_kernels_scalar; do
  for t in 1 ${THREADS:-2}; do
    echo "== $bin OMP_NUM_THREADS=$t"
    OMP_NUM_THREADS=$t "$OUT/$bin" | grep -v '^ok' || true
    OMP_NUM_THREADS=$t "$OUT/$bin" > /dev/null || rc=1
  done
done
exit $rc
