"""Elementwise primitives: unary math, binary arithmetic and comparisons, where, cast.

Primitives are strict (operands share a dtype; shapes broadcast as numpy does); the user
functions promote first, so `x_f16 * 2.0` binds `mul` on two f16 operands.
"""
from __future__ import annotations

import math

import numpy as np

from ..core import dtypes, shapes
from ..core.ir import Primitive, ShapeDtype
from ..core.tracing import Tracer
from ._common import as_array, aval, compute_dtype, promote, same_dtype, up


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf
        return erf(x)
    except ImportError:
        # np.asarray: a ufunc on a 0-d operand returns a bare Python float
        return np.asarray(np.frompyfunc(math.erf, 1, 1)(x.astype(np.float64)),
                          dtype=np.float64).astype(x.dtype)


# name -> numpy formula on fp32 (or integer) values
UNARY = {
    "neg": np.negative,
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x),
    "tanh": np.tanh,
    "erf": _erf,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0).astype(x.dtype),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(np.float32(2)))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.float32(math.sqrt(2 / math.pi))
                                                  * (x + np.float32(0.044715) * x ** 3))),
    "logical_not": np.logical_not,
}
FLOAT_ONLY = {"exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "silu", "gelu", "gelu_tanh"}
BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "maximum": np.maximum, "minimum": np.minimum, "pow": np.power,
    "logical_and": np.logical_and, "logical_or": np.logical_or,
}
COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
           "gt": np.greater, "ge": np.greater_equal}


def _unary_prim(name, fn):
    def impl(x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(up(x))).astype(x.dtype)
    return Primitive(name, lambda a: a, impl)


def _binary_prim(name, fn, out_dtype=None):
    def abstract_eval(a, b):
        dt = same_dtype(name, a, b)
        return ShapeDtype(shapes.broadcast(a.shape, b.shape, op=name), out_dtype or dt)

    def impl(a, b):
        with np.errstate(all="ignore"):
            return np.asarray(fn(up(a), up(b))).astype(out_dtype or a.dtype)
    return Primitive(name, abstract_eval, impl)


UNARY_PRIMS = {n: _unary_prim(n, f) for n, f in UNARY.items()}
BINARY_PRIMS = {n: _binary_prim(n, f) for n, f in BINARY.items()}
BINARY_PRIMS.update({n: _binary_prim(n, f, dtypes.bool_) for n, f in COMPARE.items()})


def _where_abstract(c, a, b):
    if c.dtype != dtypes.bool_:
        raise TypeError(f"where: condition must be bool, got {c}")
    dt = same_dtype("where", a, b)
    return ShapeDtype(shapes.broadcast(c.shape, a.shape, b.shape, op="where"), dt)


where_p = Primitive("where", _where_abstract, lambda c, a, b: np.where(c, a, b))
cast_p = Primitive("cast", lambda a, dtype: ShapeDtype(a.shape, dtype),
                   lambda x, dtype: np.asarray(x).astype(compute_dtype(x.dtype)).astype(dtype))


def cast(x, dtype):
    """`x` converted to `dtype` (floats to ints truncate toward zero, as numpy and torch)."""
    dtype = dtypes.dtype(dtype)
    if isinstance(x, (bool, int, float)):
        return np.asarray(x, dtype=dtype)
    if x.dtype == dtype:
        return x
    return cast_p.bind(x, dtype=dtype)


def _no_bool(name, x):
    if x.dtype == dtypes.bool_:  # numpy and torch reject these too; fail while tracing
        raise TypeError(f"{name}: not supported on bool operands (use logical_not / "
                        f"logical_and / logical_or, or cast first)")


def _unary(name):
    def fn(x):
        (x,) = promote(name, x, to_float=name in FLOAT_ONLY)
        if name == "neg":
            _no_bool(name, x)
        if name == "logical_not":
            x = cast(x, dtypes.bool_)
        return UNARY_PRIMS[name].bind(x)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name}."
    return fn


def _binary(name, to_float=False):
    def fn(a, b):
        if name.startswith("logical_"):
            a, b = cast(a, dtypes.bool_), cast(b, dtypes.bool_)
        a, b = promote(name, a, b, to_float=to_float)
        if name == "sub":
            _no_bool(name, a)
        return BINARY_PRIMS[name].bind(a, b)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} with numpy broadcasting and dtype promotion."
    return fn


neg, abs, exp, log, sqrt, rsqrt, tanh, erf, sigmoid, relu, silu, logical_not = map(
    _unary, ["neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "relu", "silu",
             "logical_not"])
add, sub, mul, maximum, minimum, pow, logical_and, logical_or = map(
    _binary, ["add", "sub", "mul", "maximum", "minimum", "pow", "logical_and", "logical_or"])
div = _binary("div", to_float=True)  # true division: int / int -> float32, as numpy and torch
equal, not_equal, less, less_equal, greater, greater_equal = map(
    _binary, ["eq", "ne", "lt", "le", "gt", "ge"])


def gelu(x, approximate: str = "none"):
    """GELU as torch.nn.functional.gelu: exact (erf) or the tanh approximation."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    (x,) = promote("gelu", x, to_float=True)
    return UNARY_PRIMS["gelu" if approximate == "none" else "gelu_tanh"].bind(x)


def where(condition, x, y):
    """Elementwise `x` where `condition` else `y`, broadcast together."""
    (c,) = promote("where", condition)
    c = cast(c, dtypes.bool_)
    x, y = promote("where", x, y)
    return where_p.bind(c, x, y)


def _swap(f):
    return lambda a, b: f(b, a)


for _name, _fn in {"add": add, "sub": sub, "mul": mul, "truediv": div, "pow": pow}.items():
    setattr(Tracer, f"__{_name}__", _fn)
    setattr(Tracer, f"__r{_name}__", _swap(_fn))
for _name, _fn in {"lt": less, "le": less_equal, "gt": greater, "ge": greater_equal,
                   "eq": equal, "ne": not_equal}.items():
    setattr(Tracer, f"__{_name}__", _fn)


def _bool_operator(sym, f):
    """`& | ~` are logical on bool operands only: on ints numpy makes them bitwise, which
    aitrace does not have, so refuse rather than compute something else."""
    def op(*xs):
        for x in xs:
            x = as_array(x, sym)
            if not isinstance(x, bool) and aval(x).dtype != dtypes.bool_:
                raise TypeError(f"operator {sym} needs bool operands (numpy makes it bitwise on "
                                f"integers, which aitrace lacks); got {aval(x)}")
        return f(*xs)
    return op


Tracer.__and__, Tracer.__or__ = _bool_operator("&", logical_and), _bool_operator("|", logical_or)
Tracer.__rand__ = _bool_operator("&", _swap(logical_and))
Tracer.__ror__ = _bool_operator("|", _swap(logical_or))
Tracer.__neg__ = neg
Tracer.__abs__ = abs
Tracer.__invert__ = _bool_operator("~", logical_not)
Tracer.astype = cast

__all__ = ["neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "relu", "silu",
           "gelu", "add", "sub", "mul", "div", "maximum", "minimum", "pow", "where", "cast",
           "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
           "logical_and", "logical_or", "logical_not"]
