"""The C-like emitter shared by the CPU, CUDA and HIP backends.

A `Dialect` supplies what differs between them (type names, math functions, qualifiers); the
expression printers here are written once: sympy dims to C integer expressions, and each
elementwise primitive to a C expression over its operands' values (in compute precision).
"""
from __future__ import annotations

import numpy as np
import sympy

from ..core import dtypes


class Dialect:
    """C++ on the host. GPU dialects override names (`__expf`, `__device__`, ...)."""
    name = "cpu"
    storage_types = {dtypes.float16: "ait::half", dtypes.bfloat16: "ait::bfloat16",
                     dtypes.float32: "float", dtypes.int32: "int32_t", dtypes.int64: "int64_t",
                     dtypes.bool_: "bool"}
    compute_types = {dtypes.float16: "float", dtypes.bfloat16: "float", dtypes.float32: "float",
                     dtypes.int32: "int32_t", dtypes.int64: "int64_t", dtypes.bool_: "bool"}
    math = {"exp": "ait::vexp", "log": "std::log", "sqrt": "std::sqrt", "tanh": "ait::vtanh",
            "erf": "ait::verf", "one_plus_erf": "ait::one_plus_erf", "abs": "std::abs",
            "pow": "std::pow", "max": "std::max", "min": "std::min"}

    # the trailing parameters / arguments of every kernel's host function (the dynamic dims;
    # GPU dialects add the stream)
    host_params = ["const int64_t* dims"]
    host_args = ["dims"]
    device_type = 1  # DLPack's kDLCPU: where the library's arrays live

    def storage(self, dt) -> str:
        return self.storage_types[np.dtype(dt)]

    def compute(self, dt) -> str:
        return self.compute_types[np.dtype(dt)]

    def literal(self, value, dt) -> str:
        dt = np.dtype(dt)
        if dt == dtypes.bool_:
            return "true" if bool(value) else "false"
        if dtypes.is_int(dt):
            return f"{int(value)}" + ("LL" if dt == dtypes.int64 else "")
        v = float(value)
        if np.isnan(v):
            return "NAN"
        if np.isinf(v):
            return "INFINITY" if v > 0 else "-INFINITY"
        return repr(np.float32(v).item()) + "f"


def elementwise_expr(d: Dialect, prim: str, args: list[str], out_dtype, params: dict) -> str:
    """C expression for one elementwise primitive applied to operand expressions (compute type)."""
    m, a = d.math, args
    ct = d.compute(out_dtype)
    unary = {
        "neg": lambda: f"(-{a[0]})",
        "abs": lambda: f"{m['abs']}({a[0]})",
        "exp": lambda: f"{m['exp']}({a[0]})",
        "log": lambda: f"{m['log']}({a[0]})",
        "sqrt": lambda: f"{m['sqrt']}({a[0]})",
        "rsqrt": lambda: f"(1.0f / {m['sqrt']}({a[0]}))",
        "tanh": lambda: f"{m['tanh']}({a[0]})",
        "erf": lambda: f"{m['erf']}({a[0]})",
        "sigmoid": lambda: f"(1.0f / (1.0f + {m['exp']}(-{a[0]})))",
        "relu": lambda: f"{m['max']}({a[0]}, {ct}(0))",
        "silu": lambda: f"({a[0]} / (1.0f + {m['exp']}(-{a[0]})))",
        "gelu": lambda: f"(0.5f * {a[0]} * {m['one_plus_erf']}({a[0]} * 0.70710678118654752f))",
        "gelu_tanh": lambda: (f"(0.5f * {a[0]} * (1.0f + {m['tanh']}(0.79788456080286536f * "
                              f"({a[0]} + 0.044715f * {a[0]} * {a[0]} * {a[0]}))))"),
        "logical_not": lambda: f"(!{a[0]})",
        "cast": lambda: f"static_cast<{ct}>({a[0]})",
    }
    binary = {"add": "+", "sub": "-", "mul": "*", "div": "/", "logical_and": "&&",
              "logical_or": "||", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">",
              "ge": ">="}
    if prim in unary:
        return unary[prim]()
    if prim in binary:
        return f"({a[0]} {binary[prim]} {a[1]})"
    if prim in ("maximum", "minimum"):
        f = m["max"] if prim == "maximum" else m["min"]
        return f"{f}({a[0]}, {a[1]})"
    if prim == "pow":
        return f"static_cast<{ct}>({m['pow']}({a[0]}, {a[1]}))"
    if prim == "where":
        return f"({a[0]} ? {a[1]} : {a[2]})"
    raise NotImplementedError(f"no C expression for elementwise primitive {prim!r}")


ELEMENTWISE = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "relu", "silu",
               "gelu", "gelu_tanh", "logical_not", "cast", "add", "sub", "mul", "div",
               "logical_and", "logical_or", "eq", "ne", "lt", "le", "gt", "ge", "maximum",
               "minimum", "pow", "where"}


def dim_expr(e) -> str:
    """A symbolic dim as a C int64 expression (exact integer floor/ceil division)."""
    if isinstance(e, int):
        return str(e)
    e = sympy.sympify(e)
    if e.is_Integer:
        return str(int(e))
    if e.is_Symbol:  # prefixed: a Dim may be named like a local of the generated code (M, N, ...)
        return f"dim_{e.name}"
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        inner = sympy.together(e.args[0])
        num, den = sympy.fraction(inner)
        f = "ait::floordiv" if isinstance(e, sympy.floor) else "ait::ceildiv"
        return f"{f}({dim_expr(sympy.expand(num))}, {dim_expr(den)})"
    if e.is_Add:
        return "(" + " + ".join(dim_expr(t) for t in e.args) + ")"
    if e.is_Mul:
        coeff, rest = e.as_coeff_Mul()
        if not coeff.is_Integer:
            num, den = sympy.fraction(e)
            if den != 1:  # exact by construction (e.g. a reshape's -1): divide last
                return f"({dim_expr(num)} / {dim_expr(den)})"
        return "(" + " * ".join(dim_expr(t) for t in e.args) + ")"
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        return "(" + " * ".join([dim_expr(e.base)] * int(e.exp)) + ")"
    if isinstance(e, (sympy.Max, sympy.Min)):
        f = "std::max" if isinstance(e, sympy.Max) else "std::min"
        out = dim_expr(e.args[0])
        for t in e.args[1:]:
            out = f"{f}<int64_t>({out}, {dim_expr(t)})"
        return out
    raise NotImplementedError(f"cannot print dim expression {e}")
