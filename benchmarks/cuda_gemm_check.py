"""Run one generated CUTLASS sm90a GEMM (backends/cuda/gemm.py) on a Hopper GPU: y = gelu(x @ w + b),
fp16, M=N=K=4096 by default. Compiles the kernel into a small shared library with a C entry point
(one nvcc call), runs it on torch CUDA tensors through ctypes on torch's current stream, checks it
against torch (rtol/atol 1e-2) and times it with CUDA events (median of --iters after warmup)
against torch.matmul + bias + gelu. Prints TFLOP/s (2*M*N*K / time).

    python benchmarks/cuda_gemm_check.py [--m 4096 --n 4096 --k 4096] [--dtype bf16]
        [--configs cooperative_128x256x64_c2x1x1,pingpong_128x128x64_c2x1x1 | all] [--b-major k]

Needs: an sm_90 GPU, torch with CUDA, nvcc (PATH or CUDA_HOME), the CUTLASS headers (the
nvidia-cutlass wheel, or --cutlass-include / AITRACE_CUTLASS_INCLUDE), and aitrace importable
(this script puts the checkout it lives in on sys.path).
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from timing import cuda_ms  # noqa: E402  (benchmarks/, the script's own folder)


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def find_nvcc() -> str:
    found = shutil.which("nvcc")
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    if not found and os.path.isfile(os.path.join(home, "bin", "nvcc")):
        found = os.path.join(home, "bin", "nvcc")
    if not found:
        die("nvcc not found (put it on PATH or set CUDA_HOME)")
    return found


ENTRY = """
extern "C" int {entry}(const void* A, const void* B, const void* bias, void* D, int M, int N, int K,
                       long long ldb, void* stream, void* workspace, size_t workspace_bytes) {{
  return (int){kernel}(A, B, {bias}D, M, N, K, 1, K, ldb, N, 0, 0, 0,
                       (cudaStream_t)stream, workspace, workspace_bytes);
}}
"""
TAIL = """
extern "C" const char* ait_error_string(int e) { return cudaGetErrorString((cudaError_t)e); }
"""


def build(kernels, args, workdir: str) -> str:
    """One translation unit with every kernel, one nvcc call -> path of the shared library."""
    from aitrace.backends.cuda import gemm as cg
    src = "\n".join(k.definition + ENTRY.format(entry=f"run_{k.name}", kernel=k.name,
                                                           bias="bias, " if k.operands else "") for k in kernels) + TAIL
    tag = hashlib.sha256(src.encode()).hexdigest()[:12]
    cu, so = os.path.join(workdir, f"gemm_{tag}.cu"), os.path.join(workdir, f"gemm_{tag}.so")
    if os.path.exists(so) and not args.rebuild:
        print(f"using cached {so}")
        return so
    with open(cu, "w") as f:
        f.write(src)
    cmd = cg.nvcc_command([cu], so, args.cutlass_include,
                          extra=("-shared", "-Xcompiler", "-fPIC", "-Xptxas", "-v"))
    cmd[0] = find_nvcc()
    print(f"compiling {len(kernels)} kernel(s): {' '.join(cmd)}", flush=True)
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        print(out[-8000:], file=sys.stderr)
        die(f"nvcc failed (exit {p.returncode}); source kept at {cu}")
    print(f"compiled in {time.time() - t0:.1f} s")
    for line in out.splitlines():
        if "registers" in line or "spill" in line or "C7510" in line or "warning" in line.lower():
            print("  " + line.strip())
    return so


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--dtype", choices=["f16", "bf16"], default="f16")
    ap.add_argument("--configs", default="", help="comma-separated GemmConfig names (e.g. "
                    "cooperative_128x256x64_c2x1x1_s4), or 'all' candidates (default: the default config)")
    ap.add_argument("--epilogue", choices=["bias_gelu", "none"], default="bias_gelu",
                    help="none: a plain GEMM (x @ w), to see the epilogue's cost")
    ap.add_argument("--b-major", choices=["n", "k"], default="n",
                    help="n: B is [K, N] row-major (as the IR holds it); k: B^T [N, K] row-major")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--cutlass-include", default=None)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "aitrace_cuda_gemm_check"))
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--build-only", action="store_true", help="compile (into --workdir's cache) and stop")
    args = ap.parse_args()

    if not args.build_only:
        try:
            import torch
        except ImportError:
            die("torch is not installed")
        if not torch.cuda.is_available():
            die("no CUDA device visible to torch")
        cap = torch.cuda.get_device_capability()
        if cap != (9, 0):
            die(f"this kernel is built for sm_90a (Hopper); the device is sm_{cap[0]}{cap[1]}")
    import aitrace as ait
    from aitrace.backends.cuda import gemm as cg
    args.cutlass_include = args.cutlass_include or cg.cutlass_include_dir()
    if args.cutlass_include is None:
        die("CUTLASS headers not found: pip install nvidia-cutlass, or pass --cutlass-include")
    names = [c.name for c in cg.CONFIGS] if args.configs == "all" else \
        [s for s in args.configs.split(",") if s] or [cg.DEFAULT_CONFIG.name]
    try:
        configs = [cg.GemmConfig.parse(s) for s in names]
    except ValueError as e:
        die(f"{e}; candidates: {', '.join(c.name for c in cg.CONFIGS)}")

    M, N, K = args.m, args.n, args.k
    adt = ait.float16 if args.dtype == "f16" else ait.bfloat16
    plain = args.epilogue == "none"
    fn = (lambda x, w, b: x @ w) if plain else (lambda x, w, b: ait.gelu(x @ w + b))
    graph = ait.jit(fn, backend="reference").lower(
        ait.ShapeDtype((M, K), adt), ait.ShapeDtype((K, N), adt), ait.ShapeDtype((N,), adt)).graph
    (eqn,) = graph.eqns
    assert eqn.prim.name == ("matmul" if plain else "fused_gemm"), graph
    kernels = [cg.gemm_kernel(f"gemm_{c.name}", eqn, c, b_major=args.b_major) for c in configs]
    what = f"x[{M},{K}] @ w[{K},{N}]" if plain else f"gelu(x[{M},{K}] @ w[{K},{N}] + b[{N}])"
    print(f"problem: {what} {args.dtype}, B {args.b_major}-major; EVT {kernels[0].evt}")
    os.makedirs(args.workdir, exist_ok=True)
    so = build(kernels, args, args.workdir)
    if args.build_only:
        return
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    tdt = torch.float16 if args.dtype == "f16" else torch.bfloat16
    lib = ctypes.CDLL(so)
    lib.ait_error_string.restype = ctypes.c_char_p
    lib.ait_error_string.argtypes = [ctypes.c_int]

    torch.manual_seed(0)
    x = torch.randn(M, K, device="cuda", dtype=tdt)
    w = (torch.randn(K, N, device="cuda") / K ** 0.5).to(tdt)
    b = torch.randn(N, device="cuda", dtype=tdt)
    w_arg = w if args.b_major == "n" else w.t().contiguous()  # [N, K] row-major for "k"
    ldb = N if args.b_major == "n" else K
    y = torch.empty(M, N, device="cuda", dtype=tdt)
    stream = torch.cuda.current_stream().cuda_stream
    ref = x.float() @ w.float() if plain else torch.nn.functional.gelu(x.float() @ w.float() + b.float())
    flop = 2.0 * M * N * K

    def torch_fn():
        return torch.matmul(x, w) if plain else torch.nn.functional.gelu(torch.matmul(x, w) + b)
    t_torch = cuda_ms(torch_fn, args.iters, args.warmup)
    err_torch = (torch_fn().float() - ref).abs().max().item()
    print(f"{'torch.matmul' if plain else 'torch.matmul + bias + gelu':34s}: {t_torch * 1e3:8.1f} us  "
          f"{flop / t_torch / 1e9:7.1f} TFLOP/s  (max |err| {err_torch:.3g})")
    if not plain:
        t_mm = cuda_ms(lambda: torch.matmul(x, w), args.iters, args.warmup)
        print(f"{'torch.matmul alone':34s}: {t_mm * 1e3:8.1f} us  {flop / t_mm / 1e9:7.1f} TFLOP/s")

    failed = False
    for k in kernels:
        fn = getattr(lib, f"run_{k.name}")
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 3 + [ctypes.c_longlong, ctypes.c_void_p,
                                                                     ctypes.c_void_p, ctypes.c_size_t]

        def run(fn=fn):
            return fn(x.data_ptr(), w_arg.data_ptr(), b.data_ptr(), y.data_ptr(), M, N, K, ldb, stream, None, 0)
        y.fill_(float("nan"))
        rc = run()
        torch.cuda.synchronize()
        if rc != 0:
            print(f"{k.config.name}: launch returned {rc} ({lib.ait_error_string(rc).decode()})")
            failed = True
            continue
        err = (y.float() - ref).abs().max().item()
        ok = torch.allclose(y.float(), ref, rtol=1e-2, atol=1e-2)
        t = cuda_ms(run, args.iters, args.warmup)
        print(f"{k.config.name:34s}: {t * 1e3:8.1f} us  {flop / t / 1e9:7.1f} TFLOP/s  "
              f"x{t_torch / t:.2f} vs torch  max |err| {err:.3g}  {'OK' if ok else 'MISMATCH'}")
        failed |= not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
