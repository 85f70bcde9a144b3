"""Every primitive of `aitrace.ops` on the cuda backend against the numpy reference.

On a GPU (`pytest -m cuda`): each case draws shapes, dtypes and parameters with hypothesis
(odd sizes, sizes not a multiple of 8 or of a tile, and aligned ones that take CUTLASS), runs
the compiled library on torch CUDA tensors and compares with the `reference` backend on the
same values. Without a GPU (CI, nvcc present) the same cases are lowered for sm_90a, and built
into one library. `test_every_primitive_has_a_gpu_case` fails when an op is added without one.

Each example is one nvcc build (seconds; a CUTLASS GEMM about a minute), so the examples per
case are few and drawn from small ranges; `AITRACE_GPU_EXAMPLES=2` doubles them. Primitives the
backend cannot lower yet are listed in KNOWN_GAPS and must fail as such.
"""
from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core.ir import PRIMITIVES
from conftest import TOLERANCE, assert_close

S = ait.ShapeDtype
f16, bf16, f32 = ait.float16, ait.bfloat16, ait.float32
HALF, ALL_FLOATS = (f16, bf16), (f16, bf16, f32)
EXAMPLE_SCALE = float(os.environ.get("AITRACE_GPU_EXAMPLES", 1))
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")


class Draw:
    """Where a case's sizes and parameters come from: hypothesis on the GPU, a seeded
    random.Random for the compile-only checks."""

    def __init__(self, data=None, seed=0):
        self.data, self.rng = data, random.Random(seed)

    def int(self, lo, hi):
        return self.data.draw(st.integers(lo, hi)) if self.data else self.rng.randint(lo, hi)

    def pick(self, options):
        options = list(options)
        return self.data.draw(st.sampled_from(options)) if self.data else self.rng.choice(options)

    def odd_size(self, lo=1, hi=45):
        """A size that is not a multiple of 8 (keeps GEMMs on the SIMT kernel: TMA needs 16-byte rows)."""
        return self.pick([n for n in range(lo, hi + 1) if n % 8])


@dataclass
class Case:
    """`make(draw, dtype) -> (fn, args, atol)`: a function of the args (numpy arrays), and the
    absolute tolerance where the dtype's default (conftest.TOLERANCE) is not enough (0: exact)."""
    make: Callable
    dtypes: tuple
    examples: int         # per fp16/bf16 run; fp32 and integer runs get one
    passes: bool = True   # draw the pipeline too: default passes (fused kernels, views) or none


CASES: dict[str, Case] = {}
# Primitives the cuda backend cannot lower yet: their cases must fail with NotImplementedError
# (strict: a case that starts passing fails until its entry is removed here).
KNOWN_GAPS: dict = {}


def case(name, dtypes=ALL_FLOATS, examples=3, passes=True):
    def deco(make):
        CASES[name] = Case(make, dtypes, examples, passes)
        return make
    return deco


def data(rng, shape, dtype, scale=1.0):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-5, 6, size=shape).astype(dtype)
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(dtype)


def gemm_atol(dtype):
    """GEMM-like ops (matmul, conv, attention): the weights are scaled by 1/sqrt(K), so outputs have
    unit variance (|y| < 8) at any K and no K-scaled tolerance is needed. But the reference rounds
    the GEMM result to the dtype before an epilogue (bias, activation) and a fused epilogue does
    not: up to half a bf16 ulp of |y|, 2^-6 = 0.016 for |y| in [4, 8) (seen on the H100: 0.0166,
    benchmarks/RESULTS.md), beyond atol 1e-2 where the output is near 0. fp16 has 8x the margin."""
    return 2 * TOLERANCE[dtype] if dtype == bf16 else None


def rand_shape(draw, ndim_lo=1, ndim_hi=4, hi=9):
    return tuple(draw.int(1, hi) for _ in range(draw.int(ndim_lo, ndim_hi)))


# ------------------------------------------------------------------ elementwise
@case("unary", examples=2)
def _unary(draw, dtype):
    shape = rand_shape(draw, hi=70 if draw.int(0, 1) else 9)  # long flat rows take the vector path
    x = data(np.random.default_rng(draw.int(0, 999)), shape, dtype)

    def fn(x):
        pos = ait.abs(x) + 0.25
        return (ait.neg(x), ait.abs(x), ait.exp(x), ait.log(pos), ait.sqrt(pos), ait.rsqrt(pos),
                ait.tanh(x), ait.erf(x), ait.sigmoid(x), ait.relu(x), ait.silu(x), ait.gelu(x),
                ait.gelu(x, approximate="tanh"), -x)
    return fn, [x], None


@case("binary_broadcast", examples=2)
def _binary(draw, dtype):
    shape = rand_shape(draw, 2, 4)
    # the second operand broadcasts: some of its axes are 1 and it may have fewer dims
    other = tuple(1 if draw.int(0, 2) == 0 else d for d in shape)[draw.int(0, len(shape) - 1):]
    rng = np.random.default_rng(draw.int(0, 999))
    x, y = data(rng, shape, dtype), data(rng, other, dtype)

    def fn(x, y):
        nz = ait.where(ait.abs(y) < 0.25, 1.0, y)    # keeps division and pow away from 0
        return (x + y, x - y, x * y, x / nz, ait.maximum(x, y), ait.minimum(x, y),
                ait.pow(ait.abs(x) + 0.5, y), x * 3.0 - 1.5, 2.0 / nz)
    return fn, [x, y], None


@case("compare_logical_where_cast", dtypes=ALL_FLOATS + (ait.int32,), examples=2)
def _compare(draw, dtype):
    shape = rand_shape(draw, 1, 3, hi=11)
    rng = np.random.default_rng(draw.int(0, 999))
    x, y = data(rng, shape, dtype), data(rng, shape[-1:], dtype)
    y = np.where(rng.random(y.shape) < 0.3, x.reshape(-1, shape[-1])[0], y)  # some ties: eq/le/ge
    targets = [t for t in (f16, bf16, f32, ait.int32, ait.int64, ait.bool_) if t != dtype]

    def fn(x, y):
        a, b = x > y, x <= y
        return (x == y, x != y, x < y, b, a, x >= y, a & b, a | (x == y), ~a, ait.logical_not(a),
                ait.where(a, x, y), ait.where(b, x, 0), *[ait.cast(x, t) for t in targets],
                ait.cast(a, dtype))
    return fn, [x, y], None


# ------------------------------------------------------------------ reductions
def _axes(draw, ndim):
    k = draw.int(0, ndim)
    return None if k == 0 else tuple(sorted(draw.rng.sample(range(ndim), k) if not draw.data else
                                            draw.data.draw(st.sets(st.integers(0, ndim - 1), min_size=1))))


@case("reductions", dtypes=ALL_FLOATS + (ait.int32,), examples=3)
def _reductions(draw, dtype):
    big = draw.int(0, 1)   # rows longer than a block, or many short ones
    shape = rand_shape(draw, 1, 3, hi=40) if big else rand_shape(draw, 1, 4, hi=5)
    axes, keep = _axes(draw, len(shape)), bool(draw.int(0, 1))
    x = data(np.random.default_rng(draw.int(0, 999)), shape, dtype)

    def fn(x):
        out = [ait.sum(x, axes, keep), ait.max(x, axes, keep), ait.min(x, axes, keep)]
        if dtype != ait.int32:
            out += [ait.mean(x, axes, keep), ait.var(x, axes, keep)]
        return tuple(out)
    # a sum of n values rounds once in the reference and once on the GPU, in another order: the
    # fp32 partial sums differ by ~n * 2^-24 |x|, far below an fp16/bf16 ulp
    return fn, [x], None


@case("argmax", examples=1)
def _argmax(draw, dtype):
    shape = rand_shape(draw, 1, 3, hi=13)
    axis, keep = draw.int(0, len(shape) - 1), bool(draw.int(0, 1))
    x = data(np.random.default_rng(draw.int(0, 999)), shape, dtype)
    return (lambda x: (ait.argmax(x, axis, keep), ait.argmax(x))), [x], None


# ------------------------------------------------------------------ matmul / linear
@case("matmul_odd_sizes", examples=3)
def _matmul(draw, dtype):
    m, k, n = draw.int(1, 40), draw.odd_size(), draw.odd_size()
    rng = np.random.default_rng(draw.int(0, 999))
    batch_a = draw.pick([(), (3,), (2, 1)])
    batch_b = draw.pick([(), (1,), (3,)]) if len(batch_a) != 2 else draw.pick([(), (4,)])
    a, b = data(rng, batch_a + (m, k), dtype), data(rng, batch_b + (k, n), dtype, k ** -0.5)
    at, w = data(rng, (k, m), dtype), data(rng, (n, k), dtype, k ** -0.5)  # transposed operands
    bias, v = data(rng, (n,), dtype), data(rng, (k,), dtype)

    def fn(a, b, at, w, bias, v):
        return (a @ b, at.T @ w.T, ait.linear(at.T, w, bias), ait.relu(ait.linear(a, w) + bias),
                ait.matmul(v, b), ait.matmul(a, v * k ** -0.5))
    return fn, [a, b, at, w, bias, v], gemm_atol(dtype)


@case("matmul_aligned_cutlass", dtypes=HALF, examples=1, passes=False)
def _matmul_cutlass(draw, dtype):
    m, k, n = draw.pick([1, 40, 128]), draw.pick([64, 136]), draw.pick([128, 72])
    rng = np.random.default_rng(draw.int(0, 999))
    x, w, b = data(rng, (2, m, k), dtype), data(rng, (n, k), dtype, k ** -0.5), data(rng, (n,), dtype)
    y = data(rng, (3, 1, k, n), dtype, k ** -0.5)

    def fn(x, w, b, y):
        # default passes: the bias + gelu go into the CUTLASS kernel's epilogue (an EVT); each
        # CUTLASS kernel is ~1 min of nvcc, so the batch-broadcast GEMM is built in fp16 only
        return (ait.gelu(ait.linear(x, w, b)),) + ((x @ y,) if dtype == f16 else ())
    return fn, [x, w, b, y], gemm_atol(dtype)


# ------------------------------------------------------------------ convolution and pooling
@case("conv2d", examples=3)
def _conv2d(draw, dtype):
    groups = draw.pick([1, 1, 2, 3, "depthwise"])
    c = 1 if groups == "depthwise" else draw.int(1, 5)
    g = draw.int(2, 7) if groups == "depthwise" else groups
    kh, kw = draw.pick([1, 3, 5]), draw.pick([1, 2, 3])
    stride, dilation = draw.pick([1, 2, (2, 1)]), draw.pick([1, 1, 2])
    padding = draw.pick([0, 1, (2, 1), "same"]) if stride == 1 else draw.pick([0, 1, (1, 0)])
    h, wd = draw.int(dilation * (kh - 1) + 1, 12), draw.int(dilation * (kw - 1) + 1, 12)
    cout = g * draw.int(1, 3)
    rng = np.random.default_rng(draw.int(0, 999))
    x = data(rng, (draw.int(1, 2), h, wd, c * g), dtype)
    w = data(rng, (cout, kh, kw, c), dtype, (c * kh * kw) ** -0.5)
    b = data(rng, (cout,), dtype)

    def fn(x, w, b):
        y = ait.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=g)
        return (y, ait.relu(ait.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=g)),
                ait.ops.conv2d_patches(x, (kh, kw), stride, padding, dilation))
    return fn, [x, w, b], gemm_atol(dtype)


@case("pools", examples=2)
def _pools(draw, dtype):
    k = (draw.int(1, 4), draw.int(1, 3))
    stride = draw.pick([None, 1, 2, (1, 2)])
    pad = (draw.int(0, k[0] // 2), draw.int(0, k[1] // 2))
    x = data(np.random.default_rng(draw.int(0, 999)), (draw.int(1, 2), draw.int(k[0], 11), draw.int(k[1], 11),
                                                        draw.int(1, 13)), dtype)

    def fn(x):
        return (ait.max_pool2d(x, k, stride, pad), ait.avg_pool2d(x, k, stride, pad),
                ait.avg_pool2d(x, k, stride, pad, count_include_pad=False), ait.global_avg_pool2d(x),
                ait.global_avg_pool2d(x, keepdims=True))
    return fn, [x], None


# ------------------------------------------------------------------ normalization
@case("softmax_layer_norm_batch_norm", examples=2)
def _norms(draw, dtype):
    shape = rand_shape(draw, 1, 4, hi=draw.pick([6, 40]))
    shape = shape[:-1] + (draw.pick([shape[-1], 33, 64, 1000]),)  # rows shorter and longer than a warp
    rng = np.random.default_rng(draw.int(0, 999))
    n = shape[-1]
    x, w, b = data(rng, shape, dtype, 3.0), data(rng, (n,), dtype), data(rng, (n,), dtype)
    mean, var = data(rng, (n,), f32), np.abs(data(rng, (n,), f32)) + 0.5
    eps = draw.pick([1e-5, 1e-3])

    def fn(x, w, b, mean, var):
        return (ait.softmax(x), ait.softmax(x * 0.5 + 1.0, axis=-1), ait.layer_norm(x, w, b, eps=eps),
                ait.layer_norm(x, None, None), ait.layer_norm(x, w, None),
                ait.batch_norm(x, mean, var, None, None, eps=eps), ait.batch_norm(x, mean, var, w, b))
    return fn, [x, w, b, mean, var], None


@case("softmax_inner_axis", examples=1)
def _softmax_inner(draw, dtype):
    shape = rand_shape(draw, 2, 4, hi=9)
    axis = draw.int(0, len(shape) - 2)
    x = data(np.random.default_rng(draw.int(0, 999)), shape, dtype, 3.0)
    return (lambda x: ait.softmax(x, axis=axis)), [x], None


# ------------------------------------------------------------------ attention
@case("attention", examples=4)
def _attention(draw, dtype):
    b, h = draw.int(1, 2), draw.int(1, 3)
    sq, sk = draw.pick([1, 7, 13, 64, 77]), draw.pick([1, 9, 17, 64, 130])
    d = draw.pick([64, 128, 40, 7])
    dv = draw.pick([d, d, 24])
    kind, causal = draw.pick([None, "bool", "additive"]), bool(draw.int(0, 1))
    mshape = draw.pick([(b, h, sq, sk), (b, 1, 1, sk), (sq, sk), (1, h, sq, 1)])
    scale = draw.pick([None, 0.3])
    rng = np.random.default_rng(draw.int(0, 999))
    q, k, v = data(rng, (b, h, sq, d), dtype), data(rng, (b, h, sk, d), dtype), data(rng, (b, h, sk, dv), dtype)
    args = [q, k, v]
    if kind == "bool":
        m = rng.random(mshape) < 0.7
        m[..., 0] = True   # every row attends somewhere (causal keeps key 0 too)
        args.append(m)
    elif kind == "additive":
        args.append(data(rng, mshape, dtype, 3.0))

    def fn(q, k, v, *mask):
        return ait.attention(q, k, v, mask=mask[0] if mask else None, causal=causal, scale=scale)
    # flash kernels round the probabilities to the dtype before the P @ V product
    return fn, args, gemm_atol(dtype)


# ------------------------------------------------------------------ layout
@case("layout", dtypes=ALL_FLOATS + (ait.int64,), examples=3)
def _layout(draw, dtype):
    shape = (draw.int(1, 5), draw.int(2, 9), draw.int(1, 11))
    rng = np.random.default_rng(draw.int(0, 999))
    x, y = data(rng, shape, dtype), data(rng, shape[:1] + (draw.int(1, 4),) + shape[2:], dtype)
    perm = draw.pick([(0, 2, 1), (2, 0, 1), (1, 0, 2), (2, 1, 0)])
    step = draw.pick([1, 2, -1, -3])
    pw = tuple((draw.int(0, 2), draw.int(0, 3)) for _ in shape)
    idx = rng.integers(-shape[1], shape[1], size=draw.pick([(4,), (2, 3)])).astype(draw.pick([np.int32, np.int64]))
    sizes = draw.pick([1, 2, 3])

    def fn(x, y, idx):
        return (ait.reshape(x, (-1, shape[2])), ait.transpose(x, perm), x.T,
                ait.concatenate([x, y, x], axis=1), *ait.split(x, sizes, axis=1),
                x[:, ::step], x[::-1, 1:, -2::-2], x[0, :, None], ait.pad(x, pw, value=1.5),
                ait.take(x, idx, axis=1), x[:, idx], ait.broadcast_to(x[:, :1], shape),
                ait.squeeze(ait.expand_dims(x, 1), 1), ait.transpose(x, perm) * 2)
    return fn, [x, y, idx], 0   # data movement only (and an exact * 2): bit-exact


# ------------------------------------------------------------------ running a case
def cuda_array(a):
    torch = pytest.importorskip("torch")
    if a.dtype == bf16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).cuda()
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


def host(t):
    torch = pytest.importorskip("torch")
    if t.dtype == torch.bfloat16:
        return t.cpu().view(torch.int16).numpy().view(bf16)
    return t.cpu().numpy()


def listed(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def run_case(name, draw, dtype, backend="cuda"):
    """One drawn example of a case on `backend` (cuda: torch CUDA tensors in and out) against the
    reference backend, unfused, on the same values."""
    c = CASES[name]
    fn, args, atol = c.make(draw, dtype)
    passes = draw.pick([None, ()]) if c.passes else None
    on_gpu = backend == "cuda"
    want = listed(ait.jit(fn, backend="reference", passes=())(*args))
    got = listed(ait.jit(fn, backend=backend, passes=passes)(*[cuda_array(a) if on_gpu else a for a in args]))
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        g = host(g) if on_gpu else np.asarray(g)
        assert g.dtype == w.dtype, (i, g.dtype, w.dtype)
        if atol == 0 or w.dtype in (np.int32, np.int64, np.bool_):
            np.testing.assert_array_equal(g.astype(np.float64), w.astype(np.float64), err_msg=f"output {i}")
        else:
            assert_close(g, w, w.dtype, atol=atol)


def expect_gap(name):
    """A context that expects the case to fail as a known gap (see KNOWN_GAPS)."""
    if name in KNOWN_GAPS:
        return pytest.raises(NotImplementedError)
    from contextlib import nullcontext
    return nullcontext()


SHORT = {f16: "fp16", bf16: "bf16", f32: "fp32", ait.int32: "i32", ait.int64: "i64"}  # -k fp16 is not bf16
RUNS = [pytest.param(n, d, id=f"{n}-{SHORT[d]}") for n, c in CASES.items() for d in c.dtypes]


@pytest.mark.cuda
@pytest.mark.parametrize("name, dtype", RUNS)
def test_op_matches_reference_on_gpu(name, dtype):
    n = CASES[name].examples if dtype in HALF else 1
    # no shrinking: each shrink step is another nvcc build; the failing draws are printed as drawn
    @settings(max_examples=max(1, round(n * EXAMPLE_SCALE)), deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate])
    @given(st.data())
    def run(hyp):
        with expect_gap(name):
            run_case(name, Draw(hyp), dtype)
    run()


# ------------------------------------------------------------------ without a GPU
def lower_sample(name, dtype, seed=0, passes=None):
    fn, args, _ = CASES[name].make(Draw(seed=seed), dtype)
    return ait.jit(fn, backend="cuda", arch="sm_90a", passes=passes).lower(*[S(a.shape, a.dtype) for a in args])


@needs_nvcc
@pytest.mark.parametrize("passes", [None, ()], ids=["fused", "unfused"])
@pytest.mark.parametrize("name, dtype", RUNS)
def test_case_lowers_for_sm90a(name, dtype, passes):
    with expect_gap(name):
        for seed in range(3):
            assert lower_sample(name, dtype, seed, passes).source_obj.info["kernels"]


def all_cases(dtype, names):
    """One function running a sample of every named case: one nvcc build checks them all."""
    made = [CASES[n].make(Draw(seed=1), dtype) for n in names]

    def fn(*flat):
        out, i = [], 0
        for f, args, _ in made:
            out += listed(f(*flat[i:i + len(args)]))
            i += len(args)
        return tuple(out)
    return fn, [a for _, args, _ in made for a in args]


@needs_nvcc
@pytest.mark.parametrize("dtype, passes", [(f16, None), (bf16, None), (bf16, ())],
                         ids=["fp16", "bf16", "bf16-unfused"])
def test_every_case_builds_for_sm90a(dtype, passes, monkeypatch):
    """One library holding a sample of every case (10-20 s of nvcc on CI's two cores); fp32 shares
    the templates, its lowering is checked above.
    SIMT GEMMs only: each CUTLASS kernel takes ~45 s to compile there, and they are compile-checked
    in test_cuda_gemm_compile.py. AITRACE_BUILD_EACH_CASE=1 builds each case as its own library
    instead, CUTLASS included (minutes)."""
    names = [n for n, c in CASES.items() if dtype in c.dtypes and n not in KNOWN_GAPS]
    if os.environ.get("AITRACE_BUILD_EACH_CASE"):
        for n in names:
            assert lower_sample(n, dtype, passes=passes).build().exists(), n
        return
    monkeypatch.setenv("AITRACE_CUTLASS_INCLUDE", "/nonexistent")
    fn, args = all_cases(dtype, names)
    low = ait.jit(fn, backend="cuda", arch="sm_90a", passes=passes).lower(*[S(a.shape, a.dtype) for a in args])
    assert low.build().exists()


def prims_of(graph, seen):
    for e in graph.eqns:
        seen.add(e.prim.name)
        for p in e.params.values():
            if hasattr(p, "eqns"):
                prims_of(p, seen)
    return seen


def test_every_primitive_has_a_gpu_case():
    user_facing = {n for n, p in PRIMITIVES.items() if p.abstract_eval.__module__.startswith("aitrace.ops.")}
    covered = set()
    for name, c in CASES.items():
        for dtype in c.dtypes:
            fn, args, _ = c.make(Draw(seed=0), dtype)
            prims_of(ait.trace(fn)(*args), covered)
    missing = user_facing - covered
    assert not missing, f"primitives without a case in tests/test_cuda_op_suite.py: {sorted(missing)}"
