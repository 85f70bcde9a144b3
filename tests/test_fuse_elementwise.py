"""fuse_elementwise: same numbers before and after; chains become one kernel."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core.interpreter import eval_graph
from aitrace.core.tracing import trace_to_graph
from aitrace.passes.fuse_elementwise import fuse_elementwise
from conftest import assert_close

UNARY = [ait.relu, ait.exp, ait.tanh, ait.sigmoid, ait.neg, lambda a: a * 0.5, lambda a: a + 1.0,
         lambda a: ait.where(a > 0, a, a * 0.1)]


@given(st.lists(st.integers(0, len(UNARY) - 1), min_size=1, max_size=10), st.integers(0, 3))
def test_random_chains_keep_values_and_fuse_into_one_eqn(ops, keep_every):
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((5,)).astype(np.float32)

    def fn(a, b):
        outs, h = [], a + b
        for k, i in enumerate(ops):
            h = UNARY[i](h)
            if keep_every and k % keep_every == 0:
                outs.append(h)  # intermediate results needed outside the kernel
        return outs + [h]
    g, _ = trace_to_graph(fn, (x, y))
    f = fuse_elementwise(g)
    ait.typecheck(f)
    for before, after in zip(eval_graph(g, [x, y]), eval_graph(f, [x, y])):
        assert_close(after, before, ait.float32)
    assert [e.prim.name for e in f.eqns] == ["fused_elementwise"]
    assert len(f.eqns[0].outvars) == len(set(f.outvars))


def test_six_op_chain_is_one_cpu_kernel():
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    fn = lambda a, b: ait.tanh(ait.relu(a * 1.5 + b) - b * 0.5) * a  # noqa: E731
    low = ait.jit(fn, backend="cpu").lower(x, x)
    assert low.source_obj.info["kernels"] == ["k0_fused_elementwise"]
    assert low.source.count("#pragma omp simd") == 1
    assert_close(low.compile()(x, x)[0], ait.jit(fn, backend="reference", passes=())(x, x), ait.float32)


def test_shape_change_or_other_op_breaks_the_run():
    x = np.ones((4, 8), np.float32)
    g, _ = trace_to_graph(lambda a: ait.softmax(ait.exp(a) + 1.0) * 2.0 - 1.0, (x,))
    f = fuse_elementwise(g)
    assert [e.prim.name for e in f.eqns] == ["fused_elementwise", "softmax", "fused_elementwise"]


def test_visualize_boxes_fused_kernels(tmp_path, monkeypatch):
    x = np.ones((2, 4), np.float32)
    w = np.ones((4, 4), np.float32)
    v = ait.visualize(lambda a: ait.relu(a @ w + 1.0) * 2.0, x)
    page = v._repr_html_()
    assert "before passes" in page and "after passes" in page
    box = page[page.index('class="ait-k"'):]
    assert "fused_gemm" in box and "relu" in box and "add" in box
    v.save(tmp_path / "g.html")
    assert (tmp_path / "g.html").read_text().startswith("<!doctype html>")
    assert "matmul" in ait.trace(lambda a: a @ w)(x)._repr_html_()
    monkeypatch.setenv("AITRACE_DUMP", str(tmp_path / "dump"))
    ait.jit(lambda a: ait.relu(a * 2.0 + 1.0), backend="reference")(x)
    assert sorted(p.name for p in (tmp_path / "dump").iterdir()) == [
        "00-traced.txt", "01-simplify.txt", "02-layout.txt", "03-simplify.txt", "04-fuse_horizontal.txt",
        "05-simplify.txt", "06-fuse_elementwise.txt", "07-fuse_epilogue.txt", "08-fuse_b2b.txt",
        "09-fuse_prologue.txt", "10-fuse_memory.txt"]
    assert "fused_elementwise" in (tmp_path / "dump" / "06-fuse_elementwise.txt").read_text()


def test_chain_interrupted_by_an_unrelated_op_is_still_one_kernel():
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    w = np.ones((8, 8), np.float32)

    def fn(a, b):
        h = ait.relu(a * 2.0)
        m = b @ w            # unrelated to the chain on `a`
        return ait.tanh(h + 1.0), m
    g, _ = trace_to_graph(fn, (x, x))
    f = fuse_elementwise(g)
    ait.typecheck(f)
    assert [e.prim.name for e in f.eqns] == ["matmul", "fused_elementwise"]
    for before, after in zip(eval_graph(g, [x, x]), eval_graph(f, [x, x])):
        assert_close(after, before, ait.float32)


def test_independent_chains_stay_separate_kernels():
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    g, _ = trace_to_graph(lambda a, b: (ait.relu(a + 1.0), ait.tanh(b * 2.0)), (x, x))
    assert [e.prim.name for e in fuse_elementwise(g).eqns] == ["fused_elementwise", "fused_elementwise"]


def test_cheap_broadcast_producer_is_recomputed_inside_the_larger_loop():
    x = np.random.default_rng(0).standard_normal((2, 3, 16)).astype(np.float32)

    def fn(a):
        m = ait.mean(a, axis=-1, keepdims=True)
        v = ait.mean(a * a, axis=-1, keepdims=True) - m * m
        inv = ait.rsqrt(v + 1e-5)          # [2, 3, 1]
        return (a - m) * inv * 2.0 + 1.0   # [2, 3, 16]
    g, _ = trace_to_graph(fn, (x,))
    f = fuse_elementwise(g)
    ait.typecheck(f)
    names = [e.prim.name for e in f.eqns]
    assert names == ["reduce_mean", "mul", "reduce_mean", "fused_elementwise"]
    (fused,) = [e for e in f.eqns if e.prim.name == "fused_elementwise"]
    assert "rsqrt" in [e.prim.name for e in fused.params["graph"].eqns]
    assert_close(eval_graph(f, [x])[0], eval_graph(g, [x])[0], ait.float32)
    assert_close(ait.jit(fn, backend="cpu")(x), ait.jit(fn, backend="reference", passes=())(x), ait.float32)


def test_expensive_or_shared_broadcast_producer_is_not_recomputed():
    x = np.random.default_rng(0).standard_normal((2, 3, 16)).astype(np.float32)

    def fn(a):
        s = ait.exp(ait.max(a, axis=-1, keepdims=True) * 0.5)   # exp: not recomputed per element
        return a * s + 1.0
    f = fuse_elementwise(trace_to_graph(fn, (x,))[0])
    assert [e.prim.name for e in f.eqns][-2:] == ["fused_elementwise", "fused_elementwise"]

    def shared(a):
        s = ait.sum(a, axis=-1, keepdims=True) * 0.5               # also an output
        return a * s + 1.0, s
    f = fuse_elementwise(trace_to_graph(shared, (x,))[0])
    assert [e.prim.name for e in f.eqns] == ["reduce_sum", "mul", "fused_elementwise"]
