"""The IR: the printer's text, typecheck, dce, ShapeDtype, Dim and dtype handling."""
import pickle

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core import dtypes
from aitrace.core.interpreter import eval_graph
from aitrace.core.ir import Eqn, Graph, Literal, Primitive, ShapeDtype, Var, dce, typecheck

B = ait.Dim("B", min=1, max=16)


def _mlp_weights():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32),
            rng.standard_normal((8, 2)).astype(np.float32))


# ---------------------------------------------------------------- printer
def test_print_mlp_with_symbolic_batch():
    w1, b1, w2 = _mlp_weights()

    def mlp(x):
        return ait.relu(x @ w1 + b1) @ w2

    g = ait.trace(mlp)(ait.ShapeDtype((B, 4), ait.float32))
    assert str(g) == (
        "{ lambda a:f32[4,8] b:f32[8] c:f32[8,2] ; d:f32[B,4]. let\n"
        "    e:f32[B,8] = matmul d a\n"
        "    f:f32[B,8] = add e b\n"
        "    g:f32[B,8] = relu f\n"
        "    h:f32[B,2] = matmul g c\n"
        "  in (h) }")
    assert repr(g) == str(g)
    assert [c is w for c, w in zip(g.consts, (w1, b1, w2))] == [True, True, True]
    typecheck(g)


def test_print_params_literals_and_symbolic_dims():
    def f(x):
        y = x.reshape(2 * B, -1) * 2.0 + 1
        return y.astype(ait.float32), y.T

    g = ait.trace(f)(ait.ShapeDtype((B, 2, 4), "f16"))
    assert str(g) == (
        "{ lambda ; a:f16[B,2,4]. let\n"
        "    b:f16[2*B,4] = reshape[new_sizes=(2*B,4)] a\n"
        "    c:f16[2*B,4] = mul b 2.0\n"
        "    d:f16[2*B,4] = add c 1.0\n"
        "    e:f32[2*B,4] = cast[dtype=f32] d\n"
        "    f:f16[4,2*B] = transpose[perm=(1,0)] d\n"
        "  in (e f) }")


def test_print_graph_without_eqns_or_consts():
    g = ait.trace(lambda x, y: (y, x))(ait.ShapeDtype((3,), "i32"), ait.ShapeDtype((), "bool"))
    assert str(g) == "{ lambda ; a:i32[3] b:bool[]. let\n  in (b a) }"
    assert g.eqns == [] and g.constvars == []


def test_print_names_go_past_z():
    def chain(x):
        for _ in range(27):
            x = ait.exp(x)
        return x

    lines = str(ait.trace(chain)(ait.ShapeDtype((2,), "f32"))).splitlines()
    assert lines[26] == "    aa:f32[2] = exp z"
    assert lines[27] == "    ab:f32[2] = exp aa"
    assert lines[-1] == "  in (ab) }"


def _fused_gemm():
    """A stand-in fused kernel: an Eqn whose `epilogue` param is a sub-Graph."""
    def abstract(x, w, b, epilogue):
        return ShapeDtype(x.shape[:-1] + w.shape[-1:], x.dtype)

    def impl(x, w, b, epilogue):
        return eval_graph(epilogue, [x @ w, b])[0]
    return Primitive("fused_gemm_test", abstract, impl)


def _fused_graph():
    epilogue = ait.trace(lambda a, c: ait.relu(a + c))(ait.ShapeDtype((B, 8), "f32"),
                                                       ait.ShapeDtype((8,), "f32"))
    x, w, b = Var(ShapeDtype((B, 8), "f32")), Var(ShapeDtype((8, 8), "f32")), Var(ShapeDtype((8,), "f32"))
    y = Var(ShapeDtype((B, 8), "f32"))
    consts = [np.eye(8, dtype=np.float32), np.full(8, -1.0, np.float32)]
    return Graph([x], [w, b], consts, [Eqn(_fused_gemm(), [x, w, b], [y], {"epilogue": epilogue})], [y])


def test_print_nested_graph_param():
    g = _fused_graph()
    assert str(g) == (
        "{ lambda a:f32[8,8] b:f32[8] ; c:f32[B,8]. let\n"
        "    d:f32[B,8] = fused_gemm_test[epilogue={ lambda ; e:f32[B,8] f:f32[8]. let\n"
        "        g:f32[B,8] = add e f\n"
        "        h:f32[B,8] = relu g\n"
        "      in (h) }] c a b\n"
        "  in (d) }")
    typecheck(g)
    x = np.array([[0.5, 2.0, -3.0, 1.0, 0, 0, 0, 4.0]], np.float32)
    np.testing.assert_array_equal(eval_graph(g, [x])[0], np.maximum(x - 1, 0))


def test_repr_html_escapes():
    ident = Primitive("ident_test", lambda a, note: a, lambda x, note: x)
    x, y = Var(ShapeDtype((B,), "f32")), Var(ShapeDtype((B,), "f32"))
    g = Graph([x], [], [], [Eqn(ident, [x], [y], {"note": "a<b&c"})], [y])
    assert "ident_test[note=a<b&c] a" in str(g)
    page = g._repr_html_()
    assert "b:f32[B] = ident_test[note=a&lt;b&amp;c] a" in page and "a<b&c" not in page
    assert "inputs: a:f32[B]" in page and "outputs: b" in page


def test_interpreter_checks_impl_against_abstract_eval():
    bad = Primitive("bad_shape_test", lambda a: ShapeDtype(a.shape, a.dtype), lambda x: x[..., :1])
    x, y = Var(ShapeDtype((B, 3), "f32")), Var(ShapeDtype((B, 3), "f32"))
    g = Graph([x], [], [], [Eqn(bad, [x], [y], {})], [y])
    typecheck(g)  # the graph is well typed: only running it shows the primitive's bug
    with pytest.raises(TypeError, match=r"bad_shape_test: the reference gives shape \[2, 1\] but "
                                        r"abstract eval says \[B,3\] \(at B=2\)"):
        eval_graph(g, [np.zeros((2, 3), np.float32)])
    with pytest.raises(TypeError, match="bad_shape_test"):
        ait.jit(lambda a: bad.bind(a), backend="reference")(np.zeros((2, 3), np.float32))


# ---------------------------------------------------------------- typecheck and dce
def _traced():
    w1, b1, w2 = _mlp_weights()
    return ait.trace(lambda x: ait.relu(x @ w1 + b1) @ w2)(ait.ShapeDtype((B, 4), "f32"))


def test_typecheck_rejects_changed_outvar_aval():
    g = _traced()
    typecheck(g)
    g.eqns[-1].outvars[0].aval = ShapeDtype((B, 3), "f32")
    with pytest.raises(TypeError, match=r"matmul: outvars \['f32\[B,3\]'\] but abstract eval gives "
                                        r"\['f32\[B,2\]'\]"):
        typecheck(g)


def test_typecheck_rejects_changed_dtype():
    g = _traced()
    g.eqns[2].outvars[0].aval = ShapeDtype((B, 8), "f16")
    with pytest.raises(TypeError, match="relu"):
        typecheck(g)


def test_typecheck_rejects_use_before_definition():
    g = _traced()
    g.eqns[0], g.eqns[1] = g.eqns[1], g.eqns[0]
    with pytest.raises(TypeError, match="add: operand .* used before definition"):
        typecheck(g)


def test_typecheck_rejects_double_definition():
    g = _traced()
    g.eqns[1].outvars = [g.eqns[0].outvars[0]]
    with pytest.raises(TypeError, match="defined twice"):
        typecheck(g)


def test_typecheck_rejects_bad_consts():
    g = _traced()
    g.consts[1] = np.zeros(9, np.float32)
    with pytest.raises(TypeError, match=r"const of f32\[9\] bound to f32\[8\]"):
        typecheck(g)
    g = _traced()
    g.consts.pop()
    with pytest.raises(TypeError, match="differ in length"):
        typecheck(g)


def test_typecheck_rejects_undefined_output():
    g = _traced()
    g.outvars = [Var(ShapeDtype((B, 2), "f32"))]
    with pytest.raises(TypeError, match="output .* is not defined"):
        typecheck(g)


def test_typecheck_descends_into_sub_graphs():
    g = _fused_graph()
    g.eqns[0].params["epilogue"].eqns[0].outvars[0].aval = ShapeDtype((B, 8), "f16")
    with pytest.raises(TypeError, match="add"):
        typecheck(g)


def test_dce_drops_dead_eqns_and_consts():
    w = np.ones(3, np.float32)
    x = Var(ShapeDtype((3,), "f32"))
    g = ait.trace(lambda x: x + 1)(ait.ShapeDtype((3,), "f32"))
    add = g.eqns[0].prim
    c, live, dead1, dead2 = Var(x.aval), Var(x.aval), Var(x.aval), Var(x.aval)
    eqns = [Eqn(add, [x, c], [dead1], {}), Eqn(add, [x, x], [live], {}), Eqn(add, [dead1, x], [dead2], {})]
    out = dce(Graph([x], [c], [w], eqns, [live]))
    typecheck(out)
    assert out.eqns == [eqns[1]] and out.constvars == [] and out.consts == []
    assert out.invars == [x], "inputs are the signature: dce never drops them"
    kept = dce(Graph([x], [c], [w], eqns, [dead2, c]))
    assert kept.eqns == [eqns[0], eqns[2]] and kept.constvars == [c]


def test_graph_avals_and_literals():
    g = ait.trace(lambda x: (x * 3, x.reshape(-1)))(ait.ShapeDtype((B, 2), "i32"))
    assert g.in_avals == [ShapeDtype((B, 2), "i32")]
    assert g.out_avals == [ShapeDtype((B, 2), "i32"), ShapeDtype((2 * B,), "i32")]
    lit = g.eqns[0].invars[1]
    assert isinstance(lit, Literal) and lit.value == 3 and lit.aval == ShapeDtype((), "i32")
    assert Literal(True, "bool").aval.dtype == ait.bool_


# ---------------------------------------------------------------- ShapeDtype, dtypes, Dim
@pytest.mark.parametrize("spec, expected", [
    (np.float16, ait.float16), (np.dtype("float32"), ait.float32), ("float16", ait.float16),
    ("f16", ait.float16), ("bf16", ait.bfloat16), ("bfloat16", ait.bfloat16), ("f32", ait.float32),
    ("i32", ait.int32), ("int64", ait.int64), ("bool", ait.bool_), (ait.bfloat16, ait.bfloat16),
    (np.float64, ait.float32), ("half", ait.float16), (bool, ait.bool_)])
def test_shapedtype_accepts_dtype_likes(spec, expected):
    sd = ait.ShapeDtype((2, B), spec)
    assert sd.dtype == expected and sd.shape == (2, B)
    assert str(sd) == f"{dtypes.SHORT_NAMES[expected]}[2,B]"


@pytest.mark.parametrize("spec", ["uint8", np.int8, "complex64", np.complex128, "float8", "foo",
                                  object, None])
def test_shapedtype_rejects_unsupported_dtypes(spec):
    with pytest.raises(TypeError, match="dtype"):
        ait.ShapeDtype((2,), spec)


@pytest.mark.parametrize("shape, err", [((-1,), ValueError), ((2.0,), TypeError), ((True,), TypeError),
                                        (("3",), TypeError), ((sympy.Rational(1, 2),), ValueError)])
def test_shapedtype_rejects_bad_dims(shape, err):
    with pytest.raises(err, match="dimension"):
        ait.ShapeDtype(shape, "f32")


def test_shapedtype_symbolic_equality_and_properties():
    a = ait.ShapeDtype((B + B, 3), "f32")
    b = ait.ShapeDtype((2 * B, np.int64(3)), np.float32)
    assert a == b and hash(a) == hash(b) and b.shape[1].__class__ is int
    assert a != ait.ShapeDtype((2 * B, 3), "f16") and a != ait.ShapeDtype((B, 3), "f32")
    assert a.ndim == 2 and a.size == 6 * B and not a.is_static
    assert ait.ShapeDtype(5, "i64").shape == (5,) and ait.ShapeDtype((2, 3), "i64").is_static
    assert repr(a) == "ShapeDtype((2*B, 3), float32)"
    C = ait.Dim("C")
    c, d = ait.ShapeDtype(((B + 1) * (C + 2),), "f32"), ait.ShapeDtype((B * C + 2 * B + C + 2,), "f32")
    assert c == d and hash(c) == hash(d), "equal avals hash alike (jit's cache relies on it)"


@given(st.lists(st.integers(0, 9), max_size=4), st.sampled_from(sorted(dtypes._ALIASES)))
def test_shapedtype_roundtrip_any_alias(shape, alias):
    sd = ait.ShapeDtype(tuple(shape), alias)
    assert sd.dtype in dtypes.ALL and sd.shape == tuple(shape)
    assert ait.ShapeDtype(sd.shape, sd.dtype) == sd
    assert ShapeDtype.of(np.zeros(shape, sd.dtype)) == sd


@pytest.mark.parametrize("name", ["", "2b", "a b", "b-1", 3, None])
def test_dim_rejects_bad_names(name):
    with pytest.raises(ValueError, match="identifier"):
        ait.Dim(name)


@pytest.mark.parametrize("lo, hi", [(5, 4), (0, 4), (-1, None)])
def test_dim_rejects_bad_bounds(lo, hi):
    with pytest.raises(ValueError, match="min <= max"):
        ait.Dim("n", min=lo, max=hi)


def test_dim_basics():
    d = ait.Dim("batch", min=2, max=64)
    assert (d.name, d.min, d.max, d.bounds_str()) == ("batch", 2, 64, "[2, 64]")
    assert ait.Dim("batch").bounds_str() == "[1, inf]"
    assert d == ait.Dim("batch", min=2, max=64) and d.is_integer and d.is_positive
    assert str(2 * d + 1) == "2*batch + 1"
    # other bounds: another symbol, so sympy's expression cache cannot mix the two up
    wide, narrow = ait.Dim("b", max=256), ait.Dim("b", max=32)
    assert wide != narrow and 2 * wide != 2 * narrow
    assert [s.max for s in (2 * narrow).free_symbols] == [32]
    e = pickle.loads(pickle.dumps(d))
    assert isinstance(e, ait.Dim) and (e.name, e.min, e.max) == ("batch", 2, 64)


def test_result_type_weak_scalars_and_lattice():
    assert dtypes.result_type(ait.float16, 2.0) == ait.float16
    assert dtypes.result_type(ait.int32, 2.0) == ait.float32
    assert dtypes.result_type(ait.bool_, 1) == ait.int32
    assert dtypes.result_type(ait.float16, ait.bfloat16) == ait.float32
    assert dtypes.result_type(ait.int32, ait.int64) == ait.int64
    assert dtypes.result_type(ait.int64, ait.float16) == ait.float16
