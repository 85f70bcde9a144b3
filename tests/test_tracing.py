"""Tracing: symbolic shapes, pytrees, constants and literals, DCE, and the errors a user meets."""
import collections

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core.ir import Literal, Var, typecheck
from conftest import random_array

B = ait.Dim("B", min=1, max=16)
F32 = ait.ShapeDtype((3,), "f32")
Pair = collections.namedtuple("Pair", "first second")


# ---------------------------------------------------------------- symbolic shapes
@pytest.mark.parametrize("reshape", [lambda x: x.reshape(2 * B, -1), lambda x: x.reshape(-1, 4),
                                     lambda x: ait.reshape(x, (2 * B, 4)), lambda x: x.reshape((-1, 4))])
def test_symbolic_reshape_keeps_2B(reshape):
    g = ait.trace(reshape)(ait.ShapeDtype((B, 2, 4), "f32"))
    typecheck(g)
    assert g.out_avals == [ait.ShapeDtype((2 * B, 4), "f32")]
    assert str(g.outvars[0].aval) == "f32[2*B,4]"
    assert g.eqns[0].params == {"new_sizes": (2 * B, 4)}


def test_symbolic_reshape_into_other_symbolic_forms():
    g = ait.trace(lambda x: (x.reshape(B, -1), x.reshape(B, 2, 2, 2), x.reshape(-1)))(
        ait.ShapeDtype((B, 2, 4), "f32"))
    assert [str(a) for a in g.out_avals] == ["f32[B,8]", "f32[B,2,2,2]", "f32[8*B]"]
    with pytest.raises(ValueError, match=r"cannot reshape \[B,2,4\] into \[B\+1,-1\]"):
        ait.trace(lambda x: x.reshape(B + 1, -1))(ait.ShapeDtype((B, 2, 4), "f32"))
    with pytest.raises(ValueError, match=r"cannot reshape \[B,2,4\] into \[B,7\]"):
        ait.trace(lambda x: x.reshape(B, 7))(ait.ShapeDtype((B, 2, 4), "f32"))


def test_symbolic_dims_propagate_through_broadcast_and_matmul():
    S = ait.Dim("S", max=128)
    w = np.ones((8, 5), np.float16)
    g = ait.trace(lambda x, m: (x + m) @ w)(ait.ShapeDtype((B, S, 8), "f16"), ait.ShapeDtype((S, 1), "f16"))
    typecheck(g)
    assert [str(a) for a in g.out_avals] == ["f16[B,S,5]"]
    with pytest.raises(ValueError, match=r"add: shapes \[B,8\], \[S,8\] are not broadcast-compatible"):
        ait.trace(lambda x, y: x + y)(ait.ShapeDtype((B, 8), "f32"), ait.ShapeDtype((S, 8), "f32"))


# ---------------------------------------------------------------- pytrees
def _leaves_in_order(g):
    return [str(v.aval) for v in g.invars]


def test_pytrees_in_and_out():
    def f(t, l, d, n, p):
        assert n is None and isinstance(p, Pair) and isinstance(l, list) and isinstance(t, tuple)
        return {"sum": t[0] + l[1], "nested": [d["b"], (p.second, None)], "pair": Pair(p.first, d["a"])}

    args = ((ait.ShapeDtype((2,), "f32"),), [ait.ShapeDtype((3,), "i32"), ait.ShapeDtype((2,), "f32")],
            {"b": ait.ShapeDtype((4,), "f16"), "a": ait.ShapeDtype((5,), "bool")}, None,
            Pair(ait.ShapeDtype((6,), "i64"), ait.ShapeDtype((7,), "bf16")))
    g = ait.trace(f)(*args)
    typecheck(g)
    # leaves in flattening order: dict keys sorted
    assert _leaves_in_order(g) == ["f32[2]", "i32[3]", "f32[2]", "bool[5]", "f16[4]", "i64[6]", "bf16[7]"]
    # output leaves: dict keys sorted ("nested", "pair", "sum")
    assert [str(a) for a in g.out_avals] == ["f16[4]", "bf16[7]", "i64[6]", "bool[5]", "f32[2]"]

    jf = ait.jit(f, backend="reference")
    vals = ((np.array([1.0, 2.0], np.float32),),
            [np.arange(3, dtype=np.int32), np.array([3.0, 4.0], np.float32)],
            {"b": np.ones(4, np.float16), "a": np.array([True, False, True, False, True])}, None,
            Pair(np.arange(6), np.ones(7, ait.bfloat16)))
    out = jf(*vals)
    assert set(out) == {"sum", "nested", "pair"}
    np.testing.assert_array_equal(out["sum"], [4.0, 6.0])
    assert isinstance(out["nested"], list) and out["nested"][1][1] is None
    assert isinstance(out["nested"][1], tuple) and out["nested"][1][0].dtype == ait.bfloat16
    assert isinstance(out["pair"], Pair)
    np.testing.assert_array_equal(out["pair"].first, np.arange(6))
    np.testing.assert_array_equal(out["pair"].second, vals[2]["a"])


def test_empty_outputs():
    g = ait.trace(lambda x: (None, (), {}))(F32)
    assert g.outvars == [] and str(g) == "{ lambda ; a:f32[3]. let\n  in () }"
    assert ait.jit(lambda x: None, backend="reference")(np.ones(3, np.float32)) is None


class Affine:
    """A user class registered as a pytree node: two array children, a Python attribute as aux."""

    def __init__(self, w, b, name):
        self.w, self.b, self.name = w, b, name


ait.register_pytree_node(Affine, lambda a: ([a.w, a.b], a.name), lambda name, c: Affine(c[0], c[1], name))


def test_register_pytree_node_custom_class():
    calls = []

    def f(layer, x):
        calls.append(layer.name)
        return Affine(x * layer.w + layer.b, layer.b, layer.name + "'")

    g = ait.trace(f)(Affine(ait.ShapeDtype((3,), "f32"), ait.ShapeDtype((3,), "f32"), "lin"), F32)
    assert calls == ["lin"] and _leaves_in_order(g) == ["f32[3]"] * 3
    assert len(g.eqns) == 2 and g.outvars[1] is g.invars[1]

    jf = ait.jit(f, backend="reference")
    layer = Affine(np.array([1.0, 2.0, 3.0], np.float32), np.ones(3, np.float32), "lin")
    out = jf(layer, np.full(3, 2.0, np.float32))
    assert isinstance(out, Affine) and out.name == "lin'"
    np.testing.assert_array_equal(out.w, [3.0, 5.0, 7.0])
    np.testing.assert_array_equal(out.b, [1.0, 1.0, 1.0])
    jf(Affine(layer.w, layer.b, "other"), np.zeros(3, np.float32))
    assert calls == ["lin", "lin", "other"], "aux data is part of the jit signature"


# ---------------------------------------------------------------- constants, literals, DCE
def test_closed_over_arrays_become_constvars():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones(3, np.float32)

    def f(x):
        return (x + b) * b + w  # b used twice: one constvar

    g = ait.trace(f)(ait.ShapeDtype((2, 3), "f32"))
    typecheck(g)
    assert [str(v.aval) for v in g.constvars] == ["f32[3]", "f32[2,3]"]
    assert g.consts[0] is b and g.consts[1] is w
    assert g.eqns[0].invars[1] is g.constvars[0] and g.eqns[1].invars[1] is g.constvars[0]
    assert g.eqns[2].invars[1] is g.constvars[1]


def test_closed_over_float64_and_0d_arrays():
    w64 = np.array([0.5, 1.5, 2.5])
    s = np.array(2.0, np.float32)
    g = ait.trace(lambda x: x * s + w64)(F32)
    assert len(g.constvars) == 1 and g.consts[0].dtype == np.float32
    np.testing.assert_array_equal(g.consts[0], w64.astype(np.float32))
    assert isinstance(g.eqns[0].invars[1], Literal) and g.eqns[0].invars[1].value == 2.0


@pytest.mark.parametrize("dtype, scalar, expected", [
    ("f16", 2.5, np.float16(2.5)), ("i32", 3, np.int32(3)), ("bf16", 1, ait.bfloat16.type(1)),
    ("bool", True, np.True_)])
def test_python_scalars_become_literals(dtype, scalar, expected):
    g = ait.trace(lambda x: x * scalar)(ait.ShapeDtype((4,), dtype))
    (eqn,) = g.eqns
    lit = eqn.invars[1]
    assert isinstance(lit, Literal) and g.constvars == []
    assert lit.aval == ait.ShapeDtype((), dtype) and lit.value == expected
    assert lit.value.dtype == np.dtype(expected.dtype)


def test_unused_eqns_and_consts_are_dropped():
    dead_w = np.ones(3, np.float32)

    def f(x):
        ait.exp(x) * dead_w  # never used
        y = x + 1
        _ = ait.tanh(y)  # nor this
        return y * 2

    g = ait.trace(f)(F32)
    assert [e.prim.name for e in g.eqns] == ["add", "mul"]
    assert g.constvars == [] and g.consts == []
    typecheck(g)


def test_outputs_that_are_inputs_or_constants():
    w = np.array([[1, 2]], np.int32)
    g = ait.trace(lambda x, y: (y, w, x, np.float32(7), w))(F32, ait.ShapeDtype((2,), "i64"))
    assert g.eqns == []
    assert g.outvars[0] is g.invars[1] and g.outvars[2] is g.invars[0]
    assert g.outvars[1] is g.constvars[0] and g.outvars[4] is g.constvars[0]
    assert g.consts[0] is w and g.consts[1].shape == () and g.consts[1] == 7
    assert g.outvars[3] is g.constvars[1]
    typecheck(g)
    assert str(g) == "{ lambda a:i32[1,2] b:f32[] ; c:f32[3] d:i64[2]. let\n  in (d a c b a) }"


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("leaf, kind", [(1, "int"), (2.0, "float"), ("s", "str"), (object(), "object")])
def test_non_array_leaves_raise(leaf, kind):
    with pytest.raises(TypeError, match=rf"argument leaf 1 is a {kind} .*pass arrays or ShapeDtype"):
        ait.trace(lambda x, y: x)(F32, leaf)
    with pytest.raises(TypeError, match=rf"argument leaf 2 is a {kind}"):
        ait.trace(lambda x, y: x)(F32, {"a": F32, "b": leaf})


def test_non_array_outputs_raise():
    with pytest.raises(TypeError, match="output leaf 1 is a str; a traced function must return arrays"):
        ait.trace(lambda x: (x, "nope"))(F32)
    with pytest.raises(TypeError, match="output leaf 0 is a float"):
        ait.trace(lambda x: 1.0)(F32)


def test_unsupported_dtype_argument_names_it():
    with pytest.raises(TypeError, match="argument leaf 1: unsupported dtype uint8"):
        ait.trace(lambda x, y: x)(F32, np.zeros(3, np.uint8))


def test_python_control_flow_on_traced_values():
    def f(x):
        if x > 0:
            return x
        return -x

    with pytest.raises(TypeError, match=r"no concrete truth value: use ait.where\(cond, a, b\)"):
        ait.trace(f)(F32)
    with pytest.raises(TypeError, match=r"traced value \(f32\[\]\) has no concrete value.*static_argnums"):
        ait.trace(lambda x: x * int(x))(ait.ShapeDtype((), "f32"))
    with pytest.raises(TypeError, match="no concrete value"):
        ait.trace(lambda x: x * float(x))(ait.ShapeDtype((), "f32"))
    with pytest.raises(TypeError, match="no concrete value"):
        ait.trace(lambda x: x * range(x)[0])(ait.ShapeDtype((), "i32"))
    with pytest.raises(TypeError, match="cannot be converted to a numpy array"):
        ait.trace(lambda x: np.asarray(x))(F32)


def test_where_is_the_traceable_branch():
    g = ait.trace(lambda x: ait.where(x > 0, x, -x))(F32)
    assert [e.prim.name for e in g.eqns] == ["gt", "neg", "where"]


def test_tracer_leaking_into_a_later_trace_raises():
    leaked = []
    ait.trace(lambda x: leaked.append(x * 2) or x)(F32)
    with pytest.raises(ValueError, match="leaked"):
        ait.trace(lambda x: x + leaked[0])(F32)
    with pytest.raises(ValueError, match="escaped"):
        ait.trace(lambda x: leaked[0] + x)(F32)
    with pytest.raises(ValueError, match="escaped"):
        ait.exp(leaked[0])  # used outside any trace


def test_tracer_leaked_from_a_failed_trace_raises():
    leaked = []

    def bad(x):
        leaked.append(x)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        ait.trace(bad)(F32)
    with pytest.raises(ValueError, match="escaped"):
        leaked[0] * 2


def test_nested_trace_of_a_tracer_is_rejected():
    with pytest.raises(TypeError, match="nested tracing"):
        ait.trace(lambda x: ait.trace(lambda y: y)(x))(F32)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \[3,4\], \[5,4\] are not broadcast-compatible"):
        ait.trace(lambda x, y: x + y)(ait.ShapeDtype((3, 4), "f32"), ait.ShapeDtype((5, 4), "f32"))
    with pytest.raises(ValueError, match=r"\[3,4\].*\[5,4\]"):
        ait.trace(lambda x: x * np.ones((5, 4), np.float32))(ait.ShapeDtype((3, 4), "f32"))


# ---------------------------------------------------------------- hypothesis: traced == numpy
_NUMERIC = [ait.float32, ait.float16, ait.bfloat16, ait.int32, ait.int64]


@st.composite
def _broadcast_pair(draw):
    shape = draw(st.lists(st.integers(1, 5), min_size=0, max_size=3))
    other = [draw(st.sampled_from([d, 1])) for d in shape][draw(st.integers(0, len(shape))):]
    shapes = (tuple(shape), tuple(other)) if draw(st.booleans()) else (tuple(other), tuple(shape))
    return (*shapes, draw(st.sampled_from(_NUMERIC)), draw(st.sampled_from(_NUMERIC)))


@given(_broadcast_pair(), st.integers(0, 2**32 - 1))
def test_traced_binary_ops_match_numpy(case, seed):
    sa, sb, da, db = case
    rng = np.random.default_rng(seed)
    a, b = random_array(rng, sa, da), random_array(rng, sb, db)

    def f(x, y):
        return {"sum": x + y, "scaled": x * 2 - y, "max": ait.maximum(x, y)}

    g = ait.trace(f)(ait.ShapeDtype(sa, da), ait.ShapeDtype(sb, db))
    typecheck(g)
    expected_dtype = ait.core.dtypes.result_type(da, db)
    out_shape = np.broadcast_shapes(sa, sb)
    assert all(v.aval == ait.ShapeDtype(out_shape, expected_dtype) for v in g.outvars)
    out = ait.jit(f, backend="reference")(a, b)
    ref_a, ref_b = a.astype(np.float64), b.astype(np.float64)
    refs = {"sum": ref_a + ref_b, "scaled": ref_a * 2 - ref_b, "max": np.maximum(ref_a, ref_b)}
    for key, ref in refs.items():
        assert out[key].dtype == expected_dtype and out[key].shape == out_shape
        tol = 1e-2 if expected_dtype in (ait.float16, ait.bfloat16) else 1e-6
        np.testing.assert_allclose(out[key].astype(np.float64), ref, rtol=tol, atol=tol)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.sampled_from(["f32", "f16", "i32", "bool"]))
def test_trace_of_arrays_equals_trace_of_shapedtypes(shape, dtype):
    x = np.zeros(shape, ait.ShapeDtype((), dtype).dtype)
    g1 = ait.trace(lambda a: (a, a.reshape(-1)))(x)
    g2 = ait.trace(lambda a: (a, a.reshape(-1)))(ait.ShapeDtype(tuple(shape), dtype))
    assert str(g1) == str(g2)
    assert all(isinstance(v, Var) for v in g1.invars) and g1.in_avals == g2.in_avals
