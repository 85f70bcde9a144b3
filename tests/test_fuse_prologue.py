"""fuse_prologue: the elementwise work producing a softmax's (last axis) or layer norm's input
runs in the norm kernel (one fused_norm eqn, one cpu kernel); values unchanged."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core.tracing import trace_to_graph
from aitrace.passes import run_pipeline
from aitrace.passes.fuse_elementwise import fuse_elementwise
from aitrace.passes.fuse_epilogue import fuse_epilogue
from aitrace.passes.fuse_prologue import fuse_prologue
from aitrace.passes.simplify import simplify
from conftest import FLOAT_DTYPES, TOLERANCE, assert_close, random_array

PASSES = (simplify, fuse_elementwise, fuse_epilogue, fuse_prologue)
rng = np.random.default_rng(0)
W8 = rng.standard_normal((8, 8)).astype(np.float32) / 4


def fused(fn, *args):
    """The graph of fn after the passes, typechecked."""
    g, _ = trace_to_graph(fn, args)
    f = run_pipeline(g, PASSES)
    ait.typecheck(f)
    return f


def names(g):
    return [e.prim.name for e in g.eqns]


def cpu_kernels(fn, *args):
    return ait.jit(fn, backend="cpu", passes=PASSES).lower(*args).source_obj.info["kernels"]


def check_values(fn, backend, dtype, *args):
    """fn under the passes on `backend` equals the unfused reference."""
    got = ait.jit(fn, backend=backend, passes=PASSES)(*args)
    want = ait.jit(fn, backend="reference", passes=())(*args)
    got, want = (got, want) if isinstance(want, (tuple, list)) else ((got,), (want,))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert_close(a, b, dtype)


# ---------------------------------------------------------------- softmax
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_scaled_masked_softmax_is_one_kernel(backend, dtype):
    s = random_array(rng, (2, 3, 5, 6), dtype)
    mask = random_array(rng, (2, 1, 1, 6), dtype)  # additive, broadcast over heads and queries
    fn = lambda s, m: ait.softmax(s * 0.125 + m)  # noqa: E731
    g = fused(fn, s, mask)
    assert names(g) == ["fused_norm"]
    (e,) = g.eqns
    assert e.params["base"] == "softmax" and names(e.params["prologue"]) == ["mul", "add"]
    text = str(g)
    assert "fused_norm[base=softmax" in text and "prologue={ lambda" in text
    if backend == "cpu":
        assert cpu_kernels(fn, s, mask) == ["k0_fused_norm"]
    check_values(fn, backend, dtype, s, mask)


def test_boolean_causal_mask_and_scalar_operand(backend):
    s = random_array(rng, (2, 2, 6, 6), ait.float32)
    causal = np.tril(np.ones((6, 6), bool))          # [S, S] onto [B, H, S, S]
    scale = np.array(0.3, np.float32)                  # a 0-d runtime operand

    def fn(s, c, k):
        return ait.softmax(ait.where(c, s * k, -np.inf))
    g = fused(fn, s, causal, scale)
    assert names(g) == ["fused_norm"]
    if backend == "cpu":
        assert cpu_kernels(fn, s, causal, scale) == ["k0_fused_norm"]
    check_values(fn, backend, ait.float32, s, causal, scale)


def test_cast_prologue_changes_the_dtype(backend):
    s = random_array(rng, (3, 9), ait.float16)
    fn = lambda s: ait.softmax(s.astype(ait.float32) * 2.0)  # noqa: E731
    assert names(fused(fn, s)) == ["fused_norm"]
    check_values(fn, backend, ait.float32, s)


# ---------------------------------------------------------------- layer norm
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_pre_ln_residual_is_one_kernel_with_two_outputs(backend, dtype):
    a, b = random_array(rng, (2, 5, 8), dtype), random_array(rng, (2, 5, 8), dtype)
    w, c = random_array(rng, (8,), dtype), random_array(rng, (8,), dtype)

    def fn(a, b):
        h = a + b
        return ait.layer_norm(h, w, c), h
    g = fused(fn, a, b)
    assert names(g) == ["fused_norm"]
    assert len(g.eqns[0].outvars) == 2 and g.eqns[0].outvars == g.outvars
    if backend == "cpu":
        assert cpu_kernels(fn, a, b) == ["k0_fused_norm"]
    check_values(fn, backend, dtype, a, b)


def test_residual_stream_read_after_the_norm(backend):
    x, r = random_array(rng, (6, 8), ait.float32), random_array(rng, (6, 8), ait.float32)

    def fn(x, r):
        h = x + r
        y = ait.layer_norm(h)
        return h + ait.relu(y @ W8)   # the residual stream goes on with h
    g = fused(fn, x, r)
    assert names(g) == ["fused_norm", "fused_gemm"]
    assert len(g.eqns[0].outvars) == 2
    check_values(fn, backend, ait.float32, x, r)


def test_read_before_the_norm_places_it_at_the_producer(backend):
    a, b = random_array(rng, (4, 8), ait.float32), random_array(rng, (4, 8), ait.float32)
    w = random_array(rng, (8,), ait.float32)

    def fn(a, b):
        h = a + b
        m = h @ W8                       # reads h before the norm runs
        return ait.layer_norm(h, w, None), m
    g = fused(fn, a, b)
    assert names(g) == ["fused_norm", "matmul"]
    check_values(fn, backend, ait.float32, a, b)


def test_one_producer_feeding_two_norms_fuses_into_one():
    s = random_array(rng, (3, 7), ait.float32)

    def fn(s):
        x = s * 2.0 + 1.0
        return ait.softmax(x), ait.layer_norm(x)
    g = fused(fn, s)
    assert names(g) == ["fused_norm", "layer_norm"]
    assert g.eqns[0].outvars[1] is g.eqns[1].invars[0]   # x comes out of the fused kernel too
    check_values(fn, "cpu", ait.float32, s)


def test_dynamic_batch(backend):
    B = ait.Dim("B", min=1, max=8)
    fn = lambda s, m: ait.softmax(s * 0.5 - m)  # noqa: E731
    f = ait.jit(fn, backend=backend, passes=PASSES, dynamic={0: {0: B}, 1: {0: B}})
    for b in (1, 3):
        s, m = random_array(rng, (b, 2, 4, 5), ait.float32), random_array(rng, (b, 1, 1, 5), ait.float32)
        assert_close(f(s, m), ait.jit(fn, backend="reference", passes=())(s, m), ait.float32)
    assert names(f.lower(s, m).graph) == ["fused_norm"]


# ---------------------------------------------------------------- not fused
def test_not_fused():
    s = random_array(rng, (3, 4, 5), ait.float32)
    x2 = random_array(rng, (4, 8), ait.float32)
    wv = random_array(rng, (8,), ait.float32)
    # softmax over a non-last axis
    assert names(fused(lambda s: ait.softmax(s * 2.0, axis=1), s)) == ["mul", "softmax"]
    # x produced by a non-elementwise op
    assert names(fused(lambda a: ait.softmax(a @ W8), x2)) == ["matmul", "softmax"]
    assert names(fused(lambda s: ait.layer_norm(ait.transpose(s, (0, 2, 1))), s)) == ["transpose", "layer_norm"]

    # h read before the norm, and the norm's weight computed after the producer: no place for it
    def nowhere(a, wv):
        h = a + 1.0
        m = h @ W8
        return ait.layer_norm(h, wv * 2.0), m
    assert names(fused(nowhere, x2, wv)) == ["add", "matmul", "mul", "layer_norm"]
    # a layer norm of its own weight (1-d): the weight is the prologue's result
    assert names(fused(lambda v: ait.layer_norm(v + 1.0, v + 1.0), wv)) == ["add", "layer_norm"]


def test_pass_is_pure():
    s = random_array(rng, (3, 5), ait.float32)
    g, _ = trace_to_graph(lambda s: ait.softmax(ait.relu(s) * 3.0), (s,))
    before = str(g)
    f = fuse_prologue(fuse_elementwise(g))
    assert str(g) == before and names(f) == ["fused_norm"]
    ait.typecheck(f)


# ---------------------------------------------------------------- random prologues
# (y, operand) -> y; operands are drawn in [-1, 1] so a chain keeps values of order one
CHAIN = [lambda y, o: y * 0.5, lambda y, o: y + o, lambda y, o: y - o, lambda y, o: y * o,
         lambda y, o: ait.maximum(y, o), lambda y, o: ait.tanh(y), lambda y, o: ait.gelu(y),
         lambda y, o: ait.silu(y), lambda y, o: ait.where(o > 0, y, -y), lambda y, o: -y,
         lambda y, o: ait.sigmoid(y) * 2.0]


@st.composite
def prologue_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3))) + (draw(st.integers(3, 12)),)
    ops = draw(st.lists(st.tuples(st.integers(0, len(CHAIN) - 1),
                                  st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)),
                                  st.integers(0, len(shape))), min_size=1, max_size=4))
    # an operand's shape: some axes of the result's broadcast (size 1), some leading ones dropped
    op_shapes = [tuple(1 if b else d for b, d in zip(bcast, shape))[drop:] for _, bcast, drop in ops]
    return (shape, [k for k, _, _ in ops], op_shapes, draw(st.sampled_from(FLOAT_DTYPES)),
            draw(st.sampled_from(["softmax", "layer_norm", "layer_norm_affine"])),
            draw(st.booleans()), draw(st.integers(0, 2**31 - 1)))


@given(prologue_cases())
def test_random_prologues_keep_values(backend, case):
    shape, ops, op_shapes, dtype, base, keep_h, seed = case
    r = np.random.default_rng(seed)
    x = random_array(r, shape, dtype, -1, 1)
    operands = [random_array(r, s, dtype, -1, 1) for s in op_shapes]
    w, b = random_array(r, shape[-1:], dtype), random_array(r, shape[-1:], dtype)

    def chain(x, *os):
        y = x
        for k, o in zip(ops, os):
            y = CHAIN[k](y, o)
        return y

    def fn(x, *os):
        h = chain(x, *os)
        if base == "softmax":
            y = ait.softmax(h)
        else:
            y = ait.layer_norm(h, w, b) if base == "layer_norm_affine" else ait.layer_norm(h)
        return (y, h) if keep_h else y
    # The fused loop keeps the prologue's values in fp32 where the unfused reference rounds each
    # to fp16/bf16, and fp32 math differs by an ulp or so between the two: keep to cases where
    # that stays inside the tolerance after the norm (layer norm divides it by the row's spread).
    ref = lambda *a: np.asarray(ait.jit(chain, backend="reference", passes=())(*a), np.float64)  # noqa: E731
    h32 = ref(*(a.astype(np.float32) for a in (x, *operands)))
    noise = np.abs(ref(x, *operands) - h32).max(-1) + 4e-7 * np.abs(h32).max(-1)
    if base != "softmax":
        noise = noise / np.sqrt(h32.var(-1) + 1e-5) * (2 if base == "layer_norm_affine" else 1)
    assume(np.all(noise <= TOLERANCE[dtype] / 4))
    g = fused(fn, x, *operands)
    fused_eqns = [e for e in g.eqns if e.prim.name == "fused_norm"]
    assert len(fused_eqns) == 1 and "softmax" not in names(g) and "layer_norm" not in names(g)
    check_values(fn, backend, dtype, x, *operands)
