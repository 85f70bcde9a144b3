#!/usr/bin/env bash
# What a GPU session runs on the device machine, in parts that each fit one 10-minute call:
#   source .whl/prelude.sh && bash benchmarks/gpu_session.sh tests-a   (then tests-b, models, profile)
# Logs and JSON go to $OUT (the device tool brings them back); every step has its own timeout so
# a hang still leaves the log of what ran.
#   tests-a   the GPU tests of the op suite, sm80 GEMMs/convs, ops, profiler and convs (issue 6)
#   tests-b   graphs, attention, fused forms, backend, GEMM compile+run, few-channel convs, compute-sanitizer
#   rerun     the GEMM compile+run and attention tests, and compute-sanitizer (after fixing tests-b)
#   models    gpu_models.py at batch 1 (heuristic configs) with per-kernel times, and gpu_gemm.py
#   profile   gpu_models.py with AITRACE_PROFILE=1 (split-K candidates for few-tile GEMMs) for BERT bs1, then
#             every candidate's time from the profile database
#   stems     the few-channel conv tests, then ResNet-50 and ViT-B/16 at batch 1 with kernel times
#   resnet    the conv-as-GEMM, conv (small tiles), few-channel and op GPU tests, then ResNet-50 bs1 with the profiler on
#             (kernel times, every candidate's time)
#   bert-vit  BERT-base and ViT-B/16 bs1 with the profiler on (kernel times, candidates' times)
#   large     the three models at their large batch (ResNet/ViT 128, BERT 64), heuristic configs,
#             with kernel times
#   pdl M     models M (resnet or bert,vit) bs1 with the profiler on and AITRACE_PDL=0 (a cold first call,
#             kernel times, torch peers), then again with AITRACE_PDL=1 (warm caches: its first call is
#             the warm compile); the profile database is copied to $OUT
#   trace M   models M bs1 with the profiler on (from an empty cache: the cold first call, every
#             candidate timed), a CUPTI trace of aitrace's and torch.compile's replays
#   resnet128 ResNet-50 at batch 128 with the profiler on (every config is a candidate there; its 1x1
#             convs are GEMMs now, more problems to profile: R128_LIMIT seconds, 540 by default)
#   convs     gpu_convs.py: every sm90 conv tile on ResNet-50 bs1's conv-kernel convs against cuDNN
#   gemms     gpu_gemm.py --quick with the profiler on (graph-timed candidates): the bs1 model GEMMs
#             and ResNet's slow bs1 convs as GEMMs over their patches, against cuBLAS
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/ait-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
step=${1:?usage: gpu_session.sh tests-a|tests-b|rerun|models|profile|stems|resnet|bert-vit|pdl M|trace M|resnet128|large|convs|gemms}
# compute-sanitizer over fixed-size tests (no hypothesis: its examples would multiply the run):
# flash attention at odd sizes, graph replay with new tensors, long-row fused norms, grouped GEMMs
sanitize() {
  for tool in memcheck racecheck; do
    AITRACE_PROFILE=0 timeout -s INT 150 compute-sanitizer --tool $tool --error-exitcode 3 \
      python -m pytest -q -m cuda tests/test_cuda_attention.py tests/test_cuda_graphs.py tests/test_cuda_fused_forms.py \
      -k "flash_odd_sizes or new_tensors or rows_too_long or grouped_matmuls" 2>&1 | tail -20 | tee "$out/sanitizer-$tool.log"
  done
}
# every profiled candidate's time, from the profile database
dump_db() {
  python - <<'PY' 2>&1 | tee "$out/$1.log"
import json, sqlite3
from aitrace.runtime.cache import cache_dir
for shape, config, ms, t in sqlite3.connect(cache_dir() / "profile.sqlite").execute(
        "SELECT shape, config, ms, timings FROM winners"):
    print(shape, "->", config, f"{ms * 1e3:.1f} us;", ", ".join(f"{k} {v * 1e3:.1f}" for k, v in sorted(json.loads(t).items(), key=lambda kv: kv[1])))
PY
}
case "$step" in
  tests-a)
    AITRACE_PROFILE=0 timeout -s INT 540 python -m pytest -q -m cuda -n 16 -rfE --durations=20 \
      tests/test_cuda_op_suite.py tests/test_cuda_gemm_sm80.py tests/test_cuda_ops.py \
      tests/test_cuda_profiler.py tests/test_cuda_conv.py tests/test_cuda_conv_sm80.py 2>&1 | tee "$out/tests-a.log" ;;
  tests-b)
    AITRACE_PROFILE=0 timeout -s INT 360 python -m pytest -q -m cuda -n 16 -rfE \
      tests/test_cuda_graphs.py tests/test_cuda_attention.py tests/test_cuda_fused_forms.py \
      tests/test_cuda_backend.py tests/test_cuda_gemm_compile.py tests/test_cuda_few_channels.py 2>&1 | tee "$out/tests-b.log"
    sanitize ;;
  rerun)   # after fixes: the GEMM compile+run tests, the attention tests without xdist, sanitizers
    AITRACE_PROFILE=0 timeout -s INT 300 python -m pytest -q -m cuda -n 8 -rfE tests/test_cuda_gemm_compile.py \
      > "$out/rerun-gemm.log" 2>&1 &
    AITRACE_PROFILE=0 timeout -s INT 300 python -m pytest -q -m cuda -rfE tests/test_cuda_attention.py \
      > "$out/rerun-attention.log" 2>&1 &
    sanitize
    wait; tail -5 "$out"/rerun-*.log ;;
  models)
    (cd benchmarks && AITRACE_PROFILE=0 timeout -s INT 420 python gpu_models.py --batches 1 --repeat 50 \
      --kernel-times 10 --json "$out/gpu_models_bs1.json" 2>&1 | tee "$out/models.log")
    (cd benchmarks && AITRACE_PROFILE=0 timeout -s INT 150 python gpu_gemm.py --quick --json "$out/gpu_gemm.json" 2>&1 | tee "$out/gemm.log") ;;
  profile)
    (cd benchmarks && AITRACE_PROFILE=1 timeout -s INT "${PROFILE_LIMIT:-540}" python gpu_models.py --models bert --batches 1 \
      --repeat 50 --kernel-times 10 --no-compile 2>&1 | tee "$out/profile.log")
    dump_db profile-db ;;
  stems)
    AITRACE_PROFILE=0 timeout -s INT 150 python -m pytest -q -m cuda -rfE tests/test_cuda_few_channels.py 2>&1 | tail -15 | tee "$out/few-channels.log"
    (cd benchmarks && AITRACE_PROFILE=0 timeout -s INT 240 python gpu_models.py --models resnet,vit --batches 1 --repeat 50 \
      --kernel-times 10 --json "$out/gpu_models_stems.json" 2>&1 | tee "$out/stems.log") ;;
  resnet)
    AITRACE_PROFILE=0 timeout -s INT 200 python -m pytest -q -m cuda -n 16 -rfE tests/test_cuda_conv_gemm.py \
      tests/test_cuda_conv.py tests/test_cuda_few_channels.py tests/test_cuda_ops.py 2>&1 | tail -15 | tee "$out/resnet-tests.log"
    (cd benchmarks && AITRACE_PROFILE=1 timeout -s INT 330 python gpu_models.py --models resnet --batches 1 --repeat 50 \
      --kernel-times 12 --json "$out/gpu_models_resnet.json" 2>&1 | tee "$out/resnet.log")
    dump_db resnet-db ;;
  bert-vit)
    (cd benchmarks && AITRACE_PROFILE=1 timeout -s INT 500 python gpu_models.py --models bert,vit --batches 1 --repeat 50 \
      --kernel-times 12 --json "$out/gpu_models_bert_vit.json" 2>&1 | tee "$out/bert-vit.log")
    dump_db bert-vit-db ;;
  pdl)
    models=${2:?usage: gpu_session.sh pdl resnet|bert,vit}; tag=${models/,/-}
    (cd benchmarks && AITRACE_PDL=0 AITRACE_PROFILE=1 timeout -s INT "${PDL_LIMIT:-360}" python gpu_models.py --models "$models" \
      --batches 1 --repeat 50 --kernel-times 12 --json "$out/pdl0-$tag.json" 2>&1 | tee "$out/pdl0-$tag.log")
    (cd benchmarks && AITRACE_PDL=1 AITRACE_PROFILE=1 timeout -s INT 120 python gpu_models.py --models "$models" \
      --batches 1 --repeat 50 --no-compile --json "$out/pdl1-$tag.json" 2>&1 | tee "$out/pdl1-$tag.log")
    dump_db "pdl-$tag-db"
    cp "$(python -c 'from aitrace.runtime.cache import cache_dir; print(cache_dir())')/profile.sqlite" "$out/profile-$tag.sqlite" ;;
  trace)
    models=${2:?usage: gpu_session.sh trace bert,vit}; tag=${models/,/-}
    (cd benchmarks && AITRACE_PROFILE=1 timeout -s INT "${TRACE_LIMIT:-400}" python gpu_models.py --models "$models" \
      --batches 1 --repeat 50 --trace 25 --json "$out/trace-$tag.json" 2>&1 | tee "$out/trace-$tag.log")
    dump_db "trace-$tag-db" ;;
  resnet128)
    (cd benchmarks && AITRACE_PROFILE=1 timeout -s INT "${R128_LIMIT:-540}" python gpu_models.py --models resnet --batches large --repeat 20 \
      --kernel-times 8 --json "$out/resnet128.json" 2>&1 | tee "$out/resnet128.log")
    dump_db resnet128-db ;;
  large)
    (cd benchmarks && AITRACE_PROFILE=0 timeout -s INT 540 python gpu_models.py --batches large --repeat 20 \
      --kernel-times 8 --json "$out/gpu_models_large.json" 2>&1 | tee "$out/large.log") ;;
  convs)
    (cd benchmarks && timeout -s INT 400 python gpu_convs.py --json "$out/gpu_convs.json" 2>&1 | tee "$out/convs.log") ;;
  gemms)
    (cd benchmarks && AITRACE_PROFILE=1 timeout -s INT 420 python gpu_gemm.py --quick --json "$out/gpu_gemm.json" 2>&1 | tee "$out/gemm.log")
    dump_db gemm-db ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
esac
