"""CUTLASS 2.x sm80 GEMMs (backends/cuda/gemm_sm80.py): the EVT built from each epilogue, the
dispatch by target, one nvcc compile of a model holding the representative GEMMs (compile-only:
CI has nvcc but no GPU; skipped where nvcc or the CUTLASS headers are absent), and on a GPU
(`-m cuda`; Hopper runs the compute_80 PTX) each against the numpy reference."""
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.backends.cuda import flags, gemm_sm80, nvcc, split_units
from aitrace.backends.cuda.gemm import cutlass_include_dir
from aitrace.passes import DEFAULT_PIPELINE, fuse_horizontal
from conftest import assert_close
from test_cuda_backend import tiny_models

S = ait.ShapeDtype
M = ait.Dim("rows", max=4096)  # (a Dim named M would clash with the SIMT kernel's locals)
K, N = 256, 512
f16, bf16 = ait.float16, ait.bfloat16
# Independent GEMMs would become one grouped kernel: keep them apart, one kernel each.
APART = tuple(p for p in DEFAULT_PIPELINE if p is not fuse_horizontal)


def _w(dtype, *shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) / np.sqrt(shape[-1])).astype(dtype)


W1, W2, B2, W3, B3 = _w(f16, N, K), _w(f16, N, K, seed=1), _w(f16, N, seed=2), _w(f16, N, K, seed=3), _w(f16, N, seed=4)


def representative(x, wt, y, z, r, qa, qb):
    """Plain (B a transposed runtime view: K-major), bias+gelu, bias+residual+relu (fp16), batched
    (bf16)."""
    return x @ wt.T, ait.gelu(ait.linear(y, W2, B2)), ait.relu(ait.linear(z, W3, B3) + r), qa @ qb


REPRESENTATIVE_ARGS = (S((M, K), f16), S((N, K), f16), S((M, K), f16), S((M, K), f16), S((M, N), f16),
                       S((4, M, 64), bf16), S((4, 64, 128), bf16))


@pytest.fixture(scope="module")
def lowered():
    if cutlass_include_dir() is None:
        pytest.skip("the CUTLASS headers (nvidia-cutlass) are absent")
    return ait.jit(representative, backend="cuda", arch="sm_80", passes=APART).lower(*REPRESENTATIVE_ARGS)


def _gemm_eqn(fn, *args):
    (e,) = ait.jit(fn, backend="reference").lower(*args).graph.eqns
    return e


def test_evt_of_each_epilogue():
    x, r = S((M, K), f16), S((M, N), f16)
    k = gemm_sm80.gemm_kernel("k", _gemm_eqn(lambda x: ait.gelu(ait.linear(x, W2, B2)), x))
    assert k.evt == "gelu(add(acc, RowBroadcast(x0)))" and [o.kind for o in k.operands] == ["row"]
    assert "tb::VisitorRowBroadcast<OutputTileThreadMap, cutlass::half_t" in k.definition
    assert "cutlass::arch::Sm80" in k.definition and "DefaultGemmWithVisitor" in k.definition
    assert "using EVT = tb::Sm80EVT<EpiStoreD, EpiN1>;" in k.definition
    k = gemm_sm80.gemm_kernel("k", _gemm_eqn(lambda x, r: ait.relu(ait.linear(x, W3, B3) + r), x, r))
    assert k.evt == "relu(add(add(acc, RowBroadcast(x0)), AuxLoad(x1)))"
    assert "int64_t ld_x1" in k.params and "tb::VisitorAuxLoad<OutputTileThreadMap, cutlass::half_t, StrideMNL>" \
        in k.definition
    # a DAG (y read twice) is one compute node; a one-element operand a scalar broadcast
    k = gemm_sm80.gemm_kernel("k", _gemm_eqn(lambda x, s: (lambda y: y * ait.sigmoid(y) * s)(
        ait.linear(x, W2, B2)), x, S((1,), f16)))
    assert k.evt.startswith("fused(acc, RowBroadcast(x0), ScalarBroadcast(x1)") and k.info["nodes"] == 1
    k = gemm_sm80.gemm_kernel("k", _gemm_eqn(lambda x: (x @ W1.T * 0.125).astype(ait.float32), x), b_major="k")
    assert k.evt == "cast(mul(acc, 0.125))" and "using ElementD = float;" in k.definition
    assert "using LayoutB = cutlass::layout::ColumnMajor;" in k.definition
    assert "constexpr int AlignmentD = 4;" in k.definition  # 16 bytes of fp32


def test_refusals_are_named():
    e = _gemm_eqn(lambda x: x @ np.ones((16, 16), np.float32), S((8, 16), ait.float32))
    assert "fp16/bf16" in gemm_sm80.unsupported_reason(e)
    with pytest.raises(NotImplementedError, match="sm80.*fp16/bf16"):
        gemm_sm80.gemm_kernel("k", e)
    e = _gemm_eqn(lambda x: x @ np.ones((12, 16), np.float16), S((8, 12), f16))
    assert "K=12" in gemm_sm80.unsupported_reason(e)
    e = _gemm_eqn(lambda x: x @ np.ones((16, 16), np.float16), S((8, 16), f16))
    with pytest.raises(ValueError, match="b_major"):
        gemm_sm80.gemm_kernel("k", e, b_major="m")
    with pytest.raises(ValueError, match="warp tile"):
        gemm_sm80.gemm_kernel("k", e, gemm_sm80.Sm80Config((128, 128, 32), (48, 64, 32)))


def test_the_target_picks_the_kernels(lowered):
    src = lowered.source
    assert len(re.findall(r"static cudaError_t cutlass_gemm_\w+\(", src)) == 4
    assert src.count("DefaultGemmWithVisitor<") == 4 and "CollectiveBuilder" not in src
    assert '#include "ait/cutlass_sm80.h"' in src and "cutlass_sm90.h" not in src
    assert src.count("using LayoutB = cutlass::layout::ColumnMajor;") == 1  # x @ wt.T
    assert "-gencode=arch=compute_80,code=[sm_80,compute_80]" in flags("sm_80")
    assert "-gencode=arch=compute_90a,code=sm_90a" in flags("sm_90a")
    # the same GEMM twice: one definition; unaligned K: the SIMT kernel only
    twice = ait.jit(lambda x, y: (ait.gelu(ait.linear(x, W2, B2)), ait.gelu(ait.linear(y, W2, B2))),
                    backend="cuda", arch="sm_80", passes=APART).lower(S((M, K), f16), S((M, K), f16))
    assert len(re.findall(r"static cudaError_t cutlass_gemm_\w+\(", twice.source)) == 1
    assert twice.source.count("cutlass_status = cutlass_gemm_") == 2
    odd = ait.jit(lambda x: x @ np.ones((12, 16), np.float16), backend="cuda", arch="sm_80").lower(S((M, 12), f16))
    assert "cutlass" not in odd.source and "gemm_simt" in odd.source


# ---------------------------------------------------------------------------------------------
# nvcc: the model of representative GEMMs, one translation unit, with the PTX kept

needs_toolchain = pytest.mark.skipif(nvcc() is None or cutlass_include_dir() is None,
                                     reason="nvcc or the CUTLASS headers (nvidia-cutlass) are absent")


@needs_toolchain
def test_a_model_of_sm80_gemms_compiles_to_mma_sync(lowered, tmp_path):
    cu = tmp_path / "model.cu"
    cu.write_text("".join(u for _, u in split_units(lowered.source)[1]))  # the CUTLASS kernels' units, as one
    cmd = [nvcc(), *flags("sm_80"), "-Xptxas", "-v", "-keep", f"-keep-dir={tmp_path}", str(cu),
           "-o", str(tmp_path / "model.so")]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    print(f"\nnvcc: a model of 4 CUTLASS sm80 GEMMs in {time.time() - t0:.0f} s", file=sys.stderr)
    gemms = re.findall(r"Compiling entry function '\w*DefaultGemmWithVisitor\w*' for 'sm_80'(.*?)Used (\d+) registers",
                       out, re.S)
    assert len(gemms) == 4
    print(f"ptxas: registers {[int(r) for _, r in gemms]}", file=sys.stderr)
    assert all(" 0 bytes spill stores, 0 bytes spill loads" in info for info, _ in gemms), out[-3000:]
    ptx = "".join(f.read_text() for f in tmp_path.glob("*.ptx"))
    assert ptx.count(".entry") >= 4
    for m in re.finditer(r"\.entry (\w*DefaultGemmWithVisitor\w*)\(", ptx):  # each GEMM: tensor cores, cp.async
        body = ptx[m.end():ptx.find("\n}\n", m.end())]
        assert "mma.sync.aligned.m16n8k16" in body and "cp.async" in body, m.group(1)[:120]


# ---------------------------------------------------------------------------------------------
# On a GPU: built for sm_80 (Hopper JIT-compiles the compute_80 PTX), against the reference

def _torch():
    return pytest.importorskip("torch")


def _device(a):
    torch = _torch()
    if a.dtype == bf16:
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16).cuda()
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


def _host(t):
    torch = _torch()
    t = t.cpu()
    return t.view(torch.int16).numpy().view(bf16) if t.dtype == torch.bfloat16 else t.numpy()


def _data(shape, dtype, seed):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32).astype(dtype)


def _check(make, args, dtype, dynamic=None, cutlass=None):
    """make(dtype, store) -> fn whose constants are `dtype` values stored as `store`. Built for
    sm_80 in `dtype`; the reference runs the same values in fp32 (the kernel keeps its epilogue in
    fp32), compared at `dtype`'s tolerance. `cutlass`: whether a CUTLASS sm80 kernel must have
    run (seen by the profiler), None: either. Returns the jitted function."""
    torch = _torch()
    f = ait.jit(make(dtype, dtype), backend="cuda", arch="sm_80", dynamic=dynamic, passes=APART)
    dev = [_device(a) for a in args]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        got = f(*dev)
        torch.cuda.synchronize()
    ran = [e.name for e in prof.events() if "Kernel" in e.name or "gemm" in e.name.lower()]
    if cutlass is not None and ran:  # (no kernel seen at all: a profiler without CUPTI)
        assert any("DefaultGemmWithVisitor" in n for n in ran) == cutlass, [n[:100] for n in ran]
    want = ait.jit(make(dtype, np.float32), backend="reference")(*[a.astype(np.float32) for a in args])
    got, want = (got, want) if isinstance(got, (tuple, list)) else ((got,), (want,))
    for g, w in zip(got, want):
        assert_close(_host(g).astype(np.float32), np.asarray(w, np.float32), dtype)
    return f


EPILOGUES = {
    "plain": lambda h, b, r: h,
    "bias_gelu": lambda h, b, r: ait.gelu(h + b),
    "bias_gelu_tanh": lambda h, b, r: ait.gelu(h + b, approximate="tanh"),
    "bias_silu": lambda h, b, r: ait.silu(h + b),
    "sigmoid": lambda h, b, r: ait.sigmoid(h),
    "tanh_scale": lambda h, b, r: ait.tanh(h) * 0.5,
    "bias_residual_relu": lambda h, b, r: ait.relu(h + b + r),
    "scale_cast_f32": lambda h, b, r: (h * 0.125).astype(ait.float32),
}


def _linear_model(epilogue, k, n):
    w32, b32 = _w(np.float32, n, k, seed=11), _w(np.float32, n, seed=12)

    def make(dtype, store):
        w, b = w32.astype(dtype).astype(store), b32.astype(dtype).astype(store)
        return lambda x, r: EPILOGUES[epilogue](ait.linear(x, w, None), b, r)
    return make


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [f16, bf16])
@pytest.mark.parametrize("epilogue", list(EPILOGUES))
def test_epilogues_against_the_reference(epilogue, dtype):
    k, n = 96, 200  # aligned, not multiples of the 128x128x32 tile
    make = _linear_model(epilogue, k, n)
    for rows in (1, 77, 300):   # M is dynamic: one build serves them all
        f = _check(make, [_data((rows, k), dtype, 1), _data((rows, n), dtype, 2)], dtype,
                   dynamic={0: {0: M}, 1: {0: M}}, cutlass=True)
    assert "DefaultGemmWithVisitor" in f.lower(S((M, k), dtype), S((M, n), dtype)).source


@pytest.mark.cuda
@given(rows=st.integers(1, 700), dtype=st.sampled_from([f16, bf16]))
def test_odd_rows_random(rows, dtype):
    make = _linear_model("bias_residual_relu", K, N)
    _check(make, [_data((rows, K), dtype, rows), _data((rows, N), dtype, rows + 1)], dtype,
           dynamic={0: {0: M}, 1: {0: M}})


@pytest.mark.cuda
@pytest.mark.parametrize("k,n", [(36, 100), (13, 8), (8, 3)])
def test_unaligned_sizes_take_the_simt_kernel(k, n):
    make = _linear_model("bias_gelu", k, n)
    f = _check(make, [_data((33, k), f16, 3), _data((33, n), f16, 4)], f16, cutlass=False)
    assert "DefaultGemmWithVisitor" not in f.lower(S((33, k), f16), S((33, n), f16)).source


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [f16, bf16])
def test_batched_and_shared_operands(dtype):
    def make(dtype, store):
        return lambda a, b, c: (a @ b, a @ c)  # a batch of B; one C shared by the batch (rows folded)
    for rows in (5, 128):
        _check(make, [_data((3, rows, 64), dtype, 5), _data((3, 64, 40), dtype, 6), _data((64, 24), dtype, 7)],
               dtype, dynamic={0: {1: M}}, cutlass=True)


@pytest.mark.cuda
def test_sizes_cutlass_refuses_at_run_time_fall_back():
    # K dynamic: 64 takes the CUTLASS kernel, 13 (rows not 16-byte aligned) the SIMT one
    Kd = ait.Dim("depth", max=1024)

    def make(dtype, store):
        return lambda a, b: ait.relu(a @ b)
    for k in (64, 13):
        f = _check(make, [_data((50, k), f16, 8), _data((k, 48), f16, 9)], f16, dynamic={0: {1: Kd}, 1: {0: Kd}},
                   cutlass=k % 8 == 0)
    assert "DefaultGemmWithVisitor" in f.lower(S((50, Kd), f16), S((Kd, 48), f16)).source


@pytest.mark.cuda
def test_bert_built_for_sm80_matches_the_cpu():
    model, args = tiny_models(f16)["bert"]
    want = ait.jit(model, backend="cpu")(*args)
    f = ait.jit(model, backend="cuda", arch="sm_80")
    got = f(*[_device(a) for a in args])
    assert "DefaultGemmWithVisitor" in f.lower(*args).source
    for g, w in zip(got, want):
        g, w = _host(g).astype(np.float64), np.asarray(w, np.float64)
        assert np.abs(g - w).max() / max(np.abs(w).max(), 1e-30) < 2e-2
