"""Choosing the CUTLASS configuration of each GEMM: profiled on the GPU, remembered in the
profiling database, or picked by a size heuristic.

    gemm_choices(eqn, geo, arch) -> [(rows_bound, GemmConfig), ...]

For a static problem the list has one entry (rows_bound None). Where the rows of the problem
(M x batch: the batch and sequence dims of inference) are dynamic, there is one entry per size
bucket, the kernel for the first bound >= the runtime rows runs (the last bound is None).

Profiling (on when a GPU of the target arch is present, off with AITRACE_PROFILE=0): every
candidate of gemm.CONFIGS (that fits the problem) is compiled, in parallel, into a small timing
library around the same generated kernel, run on random data of the real size (the bucket's
upper bound for dynamic rows), and timed with CUDA events (median of 5 rounds of 20 launches);
the winner lands in runtime/profile_db keyed by GPU name, kernel signature (dtypes, layout,
epilogue structure) and size. Without profiling, known winners are still read from the database,
and the heuristic serves the rest.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ...core import shapes
from ...runtime import cache
from ...runtime.profile_db import ProfileDB
from ...runtime.progress import progress
from .gemm import CONFIGS, DEFAULT_CONFIG, FEW_TILE_CONFIGS, GemmConfig, gemm_kernel, named_kernel

SMS = 132                       # H100 SXM; only the heuristic's wave arithmetic uses it
ROW_BUCKETS = (128, 512, 2048, 8192)
PINGPONG_64x128 = GemmConfig((64, 128, 64), (1, 1, 1), "pingpong")
PINGPONG_64x96 = GemmConfig((64, 96, 64), (1, 1, 1), "pingpong")   # ptxas: 168 registers, no spills


def ctas(rows: int, n: int, tm: int, tn: int) -> int:
    """CTAs of tm x tn output tiles over rows x n outputs (also the conv kernel's tile rule)."""
    return -(-rows // tm) * -(-n // tn)


def heuristic(rows: int, n: int) -> GemmConfig:
    """The config for rows x n outputs by waves of CTAs: big tiles where they fill
    the GPU (128 wide at most where n <= 64), smaller ones (more CTAs, ping-pong to overlap the
    epilogue) where they would leave SMs idle. Where even 64x128 tiles fill under half the SMs,
    64x32 if its CTAs still fit one half-wave, else 64x64: the profiler's winner on all eight
    few-tile BERT/ViT bs1 problems timed on the H100 (2026-12-07; 64x128 lost them by 1.2-1.5x).
    (Stream-K 128x64 lost to ping-pong 64x128 on every batch-1 ResNet GEMM the profiler timed on
    the H100, so the heuristic never picks it.)"""
    if n <= 64 and ctas(rows, n, 128, 64) >= SMS // 2:  # wider tiles would be half padding
        return GemmConfig((128, 64, 64), (1, 1, 1), "cooperative")
    if ctas(rows, n, 128, 256) >= SMS:
        return DEFAULT_CONFIG
    if ctas(rows, n, 128, 128) >= SMS // 2:
        return GemmConfig((128, 128, 64), (1, 1, 1), "cooperative")
    if ctas(rows, n, 64, 128) >= SMS // 2:
        return PINGPONG_64x128
    return FEW_TILE_CONFIGS[1] if ctas(rows, n, 64, 32) <= SMS // 2 else FEW_TILE_CONFIGS[0]


def critical_work(rows: int, n: int, config: GemmConfig) -> int:
    """Output elements one SM computes on the critical path: its waves of CTAs times a tile."""
    tm, tn = config.tile[:2]
    return -(-ctas(rows, n, tm, tn) // SMS) * tm * tn


def enabled() -> bool:
    return os.environ.get("AITRACE_PROFILE", "1") != "0"


@functools.cache
def device_name() -> str | None:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else None


def signature(eqn, b_major: str) -> str:
    """What the kernel is apart from its sizes: a hash of its definition under a fixed name."""
    text = gemm_kernel("k", eqn, DEFAULT_CONFIG, b_major=b_major).definition
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _static(*ds) -> bool:
    return all(shapes.is_static(d) for d in ds)


def problems(geo, dims=()) -> list[tuple]:
    """[(rows_bound, launch args as ints)] to profile: the real geometry when static, else one
    contiguous problem per rows bucket (rows as M, batch 1). `dims`: the graph's input Dims,
    whose bounds win over those of equal-named symbols inside sympy-cached expressions."""
    args = geo.args()
    if all(shapes.is_static(a) for a in args):
        return [(None, [int(a) for a in args])]
    if not _static(geo.N, geo.K):
        return []
    n, k = int(geo.N), int(geo.K)
    lo = hi = None
    syms = shapes.symbols([geo.M, geo.batch])
    bound = {d.name: d for d in dims}
    syms = {s: bound.get(s.name, s) for s in syms}
    if syms and all(getattr(d, "max", None) is not None for d in syms.values()):
        rows = shapes.prod([geo.M, geo.batch])
        lo = shapes.evaluate(rows, {s: d.min for s, d in syms.items()})
        hi = shapes.evaluate(rows, {s: d.max for s, d in syms.items()})
    bounds = [b for b in ROW_BUCKETS if (lo is None or b >= lo) and (hi is None or b < hi)]
    out = []
    for b in bounds + [None]:
        m = b if b is not None else (hi or 2 * ROW_BUCKETS[-1])
        out.append((b, [m, n, k, 1, k, n if geo.b_major == "n" else k, n, 0, 0, 0] + [n, 0] * len(geo.extra)))
    return out


def gemm_choices(eqn, geo, arch: str, dims=()) -> list[tuple]:
    """[(rows_bound, GemmConfig)]: see the module docstring."""
    probs = problems(geo, dims)
    if not probs:  # N or K dynamic: one kernel, sized by the heuristic at a middle size
        return [(None, heuristic(1024, 1024))]
    dev = device_name()
    live = enabled() and dev is not None and _gpu_arch_matches(arch)
    db = ProfileDB() if dev is not None else None
    op = signature(eqn, geo.b_major) if dev is not None else ""
    out = []
    for bound, args in probs:
        rows, n = args[0] * args[3], args[1]
        key = "x".join(map(str, args))
        hit = db.get(dev, op, key) if db else None
        if hit is None and live:
            only = candidates(args)
            if len(only) == 1:  # nothing to choose between: no timing
                out.append((bound, only[0]))
                continue
            job = (eqn, geo.b_major, args, dev, op, key)
            if _pending is not None:  # profiled with the model's other GEMMs; the heuristic for now
                _pending.append(job)
            else:
                profile_all([job])
                hit = db.get(dev, op, key)
        out.append((bound, GemmConfig.parse(hit.config) if hit else heuristic(rows, n)))
    return out


def _gpu_arch_matches(arch: str) -> bool:
    from . import gpu_arch
    return gpu_arch() == arch


# ---------------------------------------------------------------------------------------------
# Timing harness: the generated kernel, buffers of the problem's size, CUDA-event timing.

_HARNESS = r"""
#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>
#include <algorithm>
#include <cstdint>
#include <vector>
{{DECLARATION}}  // in its own unit, linked in
template <typename T>
__global__ void ait_profile_fill(T* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15; h *= 2246822519u; h ^= h >> 13;
    p[i] = T(float(h & 0xffff) / 32768.0f - 1.0f);  // in [-1, 1)
  }
}
template <typename T>
static void* ait_profile_buffer(size_t n, uint32_t seed) {
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)) != cudaSuccess) return nullptr;
  ait_profile_fill<T><<<256, 256>>>(static_cast<T*>(p), n, seed);
  return p;
}
// Median over `rounds` of the mean time of `iters` launches, in ms; returns a cudaError_t. The
// launches are captured into a CUDA graph and the graph is timed, as a model runs them: timed
// one by one from the host, a small GEMM measures its host-side launch (TMA descriptors, cluster
// attributes: ~9 us on the H200 for every BERT bs1 GEMM alike, 2026-12-06), not the kernel.
extern "C" int ait_profile(int rounds, int iters, float* ms) {
  std::vector<void*> bufs;
  {{ALLOC}}
  for (void* p : bufs) if (!p) return int(cudaErrorMemoryAllocation);
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  auto launch = [&] { return {{LAUNCH}}; };
  cudaError_t err = launch();  // also the warm-up
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  if (err == cudaSuccess) err = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (err == cudaSuccess) {
    cudaError_t inner = cudaSuccess;
    for (int i = 0; i < iters && inner == cudaSuccess; ++i) inner = launch();
    err = cudaStreamEndCapture(stream, &graph);
    if (inner != cudaSuccess) err = inner;
  }
  if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
  if (err == cudaSuccess) err = cudaGraphLaunch(exec, stream);
  std::vector<float> times;
  for (int r = 0; err == cudaSuccess && r < rounds; ++r) {
    cudaEventRecord(t0, stream);
    err = cudaGraphLaunch(exec, stream);
    cudaEventRecord(t1, stream);
    cudaEventSynchronize(t1);
    float t = 0;
    cudaEventElapsedTime(&t, t0, t1);
    times.push_back(t / iters);
  }
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  std::sort(times.begin(), times.end());
  *ms = times.empty() ? -1.f : times[times.size() / 2];
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  cudaStreamDestroy(stream);
  for (void* p : bufs) cudaFree(p);
  return int(err);
}
"""


def harness_source(eqn, b_major: str, config: GemmConfig, args: list):
    """(kernel, timing source): the kernel of `eqn` with `config` under its model name (its
    translation unit and cached object are the model's), and a timing library for launch args
    `args` that calls it, to be linked with that object."""
    from .gemm import CUTLASS_TYPES
    k = named_kernel(gemm_kernel, eqn, config, b_major)
    M, N, K, batch, lda, ldb, ldd, bsa, bsb, bsd = args[:10]
    extra = args[10:]
    a, b = eqn.invars[:2]
    (out,) = eqn.outvars
    # elements spanned by each operand's view
    spans = [("A", a.aval.dtype, bsa * (batch - 1) + lda * (M - 1) + K),
             ("B", b.aval.dtype, bsb * (batch - 1) + (ldb * (K - 1) + N if b_major == "n" else ldb * (N - 1) + K))]
    full = iter(zip(extra[0::2], extra[1::2]))
    for o, v in zip(k.operands, eqn.params["epilogue"].invars[1:] if eqn.prim.name == "fused_gemm" else []):
        if o.kind == "full":
            ld, bs = next(full)
            n_el = bs * (batch - 1) + ld * (M - 1) + N
        else:
            n_el = N * batch if o.kind == "row" else 1
        spans.append((f"x{o.index}", v.aval.dtype, n_el))
    spans.append(("D", out.aval.dtype, bsd * (batch - 1) + ldd * (M - 1) + N))
    alloc = "\n  ".join(f"void* {name} = ait_profile_buffer<{CUTLASS_TYPES[dt]}>({n}, {i + 1}u); bufs.push_back({name});"
                        for i, (name, dt, n) in enumerate(spans))
    ptrs = ", ".join(name for name, _, _ in spans)
    dims = ", ".join(map(str, args))
    nulls = ", ".join(["nullptr"] * len(spans))
    alloc += (f"\n  size_t workspace_bytes = 0;  // stream-K / split-K configs reduce through it"
              f"\n  {k.name}({nulls}, {dims}, false, nullptr, nullptr, 0, &workspace_bytes);"
              "\n  void* workspace = nullptr;"
              "\n  if (workspace_bytes && cudaMalloc(&workspace, workspace_bytes) != cudaSuccess) return int(cudaErrorMemoryAllocation);"
              "\n  if (workspace) bufs.push_back(workspace);")
    launch = f"{k.name}({ptrs}, {dims}, false, stream, workspace, workspace_bytes, nullptr)"  # as a model launches it
    harness = (_HARNESS.replace("{{DECLARATION}}", f"cudaError_t {k.name}({', '.join(k.params)});")
               .replace("{{ALLOC}}", alloc).replace("{{LAUNCH}}", launch))
    return k, harness


def _build(kernel, harness: str, arch: str):
    """The timing library: the harness linked with the kernel's unit object (built into the cache,
    where the model's build then finds it)."""
    from . import flags, nvcc, nvcc_identity, split_units, unit_object
    cc, fl = nvcc(), flags(arch)
    ((name, unit),) = split_units(kernel.definition)[1]
    key = cache.key_of(harness, unit, nvcc_identity(cc), " ".join(fl))

    def compile_(out):
        obj = unit_object(cc, arch, name, unit)
        cu = out.with_suffix(".cu")
        cu.write_text(harness)
        r = subprocess.run([cc, *fl, str(cu), str(obj), "-o", str(out)], capture_output=True, text=True)
        cu.unlink(missing_ok=True)
        if r.returncode != 0:
            raise RuntimeError(f"nvcc failed on a profiling candidate {name}:\n{r.stderr[-3000:]}")
    return cache.cached_build("cuda-profile", key, compile_, files={"harness.cu": harness, f"{name}.cu": unit})


def candidates(args: list) -> list[GemmConfig]:
    """The configs worth timing for a problem: those of CONFIGS whose critical-path work is
    within 1.3x of the least, the heuristic's pick, FEW_TILE_CONFIGS and 64x128 where 64x128 tiles
    would fill under half the SMs, and 64x96 where they would fill half to one wave (the work
    measure ignores each CTA's K loop and a small tile's lower efficiency: by it alone only the
    smallest tile would be timed). At batch 1 the big tiles leave
    SMs idle and lost every problem timed on the H100 by 1.3-3x (2026-12-07); at large sizes all
    stay in. (Split-K through CUTLASS's stream-K scheduler lost all 14 few-tile BERT/ViT/ResNet
    problems it was tried on, by 1.3-2x: its partial tiles reduce one after another.)"""
    rows, n = args[0] * args[3], args[1]
    pick = heuristic(rows, n)
    tiles = ctas(rows, n, 64, 128)
    few = ()
    if tiles < SMS // 2:
        few = (*FEW_TILE_CONFIGS, PINGPONG_64x128)
    elif tiles < SMS:  # half to one wave: 64x96 tiles (ViT's 197 x 3072: 128 CTAs)
        few = (PINGPONG_64x96,)
    configs = list(dict.fromkeys([*CONFIGS, *few, pick]))
    least = min(critical_work(rows, n, c) for c in configs)
    return [c for c in configs if c == pick or c in few or critical_work(rows, n, c) <= 1.3 * least]


@contextlib.contextmanager
def collecting():
    """Within it, problems without a known winner are collected instead of profiled one by one
    (the heuristic answers meanwhile): `profile_all` then builds every candidate of all of them
    in one parallel batch, and the caller generates its code again."""
    global _pending
    prev, _pending = _pending, []
    try:
        yield _pending
    finally:
        _pending = prev


_pending: list | None = None


def profile_all(jobs: list, prebuild=()) -> None:
    """Profile (eqn, b_major, args, device, op, key) jobs: all candidates built in parallel, then
    timed one at a time on the GPU; each job's winner goes into the database. `prebuild`: more
    build calls for the same pool (the model's kernel units), their failures left to the model's
    build to report."""
    from . import gpu_arch
    jobs = list({(j[4], j[5]): j for j in jobs}.values())
    work = [(j, c) for j in jobs for c in candidates(j[2])]
    arch = gpu_arch()
    with progress(f"profiling {len(work)} GEMM candidates for {len(jobs)} problem(s)"):
        pool = ThreadPoolExecutor(max_workers=max(1, min(len(work) + len(prebuild), os.cpu_count() or 1)))
        builds = [pool.submit(_try, lambda w=w: _build(*harness_source(w[0][0], w[0][1], w[1], w[0][2]), arch))
                  for w in work]
        for build in prebuild:
            pool.submit(_try, build)
        libs = [b.result() for b in builds]
        pool.shutdown(wait=False)  # the prebuilds go on while the candidates are timed (the build waits on their locks)
        timings: dict = {}
        for (job, cfg), lib in zip(work, libs):
            if isinstance(lib, Exception):
                continue
            ms = ctypes.c_float(-1)
            fn = ctypes.CDLL(str(lib)).ait_profile
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
            if fn(5, 20, ctypes.byref(ms)) == 0 and ms.value > 0:
                timings.setdefault(job[4:6], {})[cfg.name] = round(float(ms.value), 5)
    db = ProfileDB()
    for (eqn, b_major, args, dev, op, key) in jobs:
        t = timings.get((op, key))
        if t:
            best = min(t, key=t.get)
            db.put(dev, op, key, best, t[best], t)


def _try(fn):
    try:
        return fn()
    except Exception as e:  # a candidate that does not build is skipped, not fatal
        return e
