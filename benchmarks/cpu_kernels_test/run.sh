#!/usr/bin/env bash
# Build and run the CPU kernel tests.  ./run.sh [asan|noavx512|bench]
#   (default) g++ -std=c++17 -O3 -march=native -fopenmp -fPIC, as the generated code is built
#   asan      the same plus -fsanitize=address,undefined -g
#   noavx512  -march=native -mno-avx512f: the portable (non-AVX-512) code paths
#   bench     build and run bench_kernels.cpp instead (throughput at 1 and all threads)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
inc="$here/../../aitrace/backends/cpu/include"
out="${TMPDIR:-/tmp}/ait_cpu_kernels_test_${1:-default}"
flags=(-std=c++17 -O3 -march=native -fopenmp -fPIC -fno-math-errno -fno-trapping-math -Wall -Wextra)
case "${1:-}" in
  asan) flags+=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -g) ;;
  noavx512) flags+=(-mno-avx512f) ;;
  bench) src=bench_kernels.cpp ;;
  "") ;;
  *) echo "usage: $0 [asan|noavx512|bench]" >&2; exit 2 ;;
esac
g++ "${flags[@]}" -I"$inc" "$here/${src:-test_kernels.cpp}" -o "$out"
"$out"
