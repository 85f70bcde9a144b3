"""simplify: every rewrite keeps the numbers (reference before == after) and does what it claims."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core.interpreter import eval_graph
from aitrace.core.tracing import trace_to_graph
from aitrace.passes.simplify import simplify
from conftest import assert_close

rng = np.random.default_rng(0)


def simplified(fn, *args):
    g, _ = trace_to_graph(fn, args)
    s = simplify(g)
    ait.typecheck(s)
    for before, after in zip(eval_graph(g, list(args)), eval_graph(s, list(args))):
        assert_close(after, before, ait.float32, rtol=1e-5, atol=1e-5)
    return g, s


def prims(g):
    return [e.prim.name for e in g.eqns]


def test_batch_norm_folds_into_conv_weights():
    w, bias = rng.standard_normal((8, 3, 3, 4)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    mean, var, gamma, beta = (rng.standard_normal(8).astype(np.float32) for _ in range(4))
    var = np.abs(var) + 0.5
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    for b in (None, bias):
        _, s = simplified(lambda x: ait.relu(ait.batch_norm(ait.conv2d(x, w, b, padding=1), mean, var,
                                                            gamma, beta)), x)
        assert prims(s) == ["conv2d", "add", "relu"]


def test_identities_cse_and_constant_folding():
    x = rng.standard_normal((3, 4)).astype(np.float32)
    c = np.arange(4, dtype=np.float32)
    _, s = simplified(lambda x: (x * 1.0 + 0.0, x.T.T, ait.exp(x) + ait.exp(x), x + ait.exp(c) * 2.0,
                                 x.reshape(12).reshape(4, 3)), x)
    assert prims(s) == ["exp", "add", "add", "reshape"]
    assert s.outvars[0] is s.invars[0] and s.outvars[1] is s.invars[0]


def test_identities_never_change_shape_or_dtype():
    x = rng.standard_normal((3, 1)).astype(np.float16)
    _, s = simplified(lambda x: (x * np.ones((1, 4), np.float16), x + 0.0, x * np.float32(1)), x)
    assert [v.aval for v in s.outvars] == [ait.ShapeDtype((3, 4), ait.float16), ait.ShapeDtype((3, 1), ait.float16),
                                           ait.ShapeDtype((3, 1), ait.float32)]


OPS = [lambda a: a * 1.0, lambda a: a + 0.0, lambda a: ait.exp(a * 0.1), lambda a: a.T.T,
       lambda a: ait.relu(a) - ait.relu(a), lambda a: a.reshape(-1).reshape(a.shape),
       lambda a: a * np.float32(2.0) + np.ones(a.shape[-1], np.float32)]


@given(st.lists(st.integers(0, len(OPS) - 1), min_size=1, max_size=8),
       st.tuples(st.integers(1, 4), st.integers(1, 5)))
def test_random_chains_keep_their_values(ops, shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)

    def fn(a):
        outs = []
        for i in ops:
            a = OPS[i](a)
            outs.append(a)
        return outs
    g, s = simplified(fn, x)
    assert len(s.eqns) <= len(g.eqns)


def test_concatenate_of_a_split_is_the_value():
    x = np.random.default_rng(0).standard_normal((3, 10)).astype(np.float32)

    def fn(a):
        y = ait.relu(a)
        p, q, r = ait.split(y, [2, 5, 3], axis=1)
        return ait.concatenate([p, q, r], axis=1) * 2.0, ait.concatenate([q, p], axis=1)
    g = simplify(ait.trace(fn)(x))
    ait.typecheck(g)
    assert [e.prim.name for e in g.eqns].count("concatenate") == 1  # the reordered one stays
    for a, b in zip(eval_graph(g, [x]), ait.jit(fn, backend="reference", passes=())(x)):
        np.testing.assert_allclose(a, b)
