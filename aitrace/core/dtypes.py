"""The six dtypes aitrace computes with, their short names, and the promotion rule.

Promotion follows numpy's lattice (bool < int < float) with two JAX-style choices, because
float64 is not a device dtype: Python scalars are *weak* (``x_f16 * 2.0`` stays f16) and
float64 arrays are canonicalized to float32 when they enter a trace or a call.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

float16 = np.dtype(np.float16)
bfloat16 = np.dtype(ml_dtypes.bfloat16)
float32 = np.dtype(np.float32)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

ALL = (float16, bfloat16, float32, int32, int64, bool_)
SHORT_NAMES = {float16: "f16", bfloat16: "bf16", float32: "f32", int32: "i32", int64: "i64", bool_: "bool"}
_ALIASES = {v: k for k, v in SHORT_NAMES.items()}
_ALIASES.update({"half": float16, "float": float32, "int": int32, "long": int64, "bool": bool_,
                 "bfloat16": bfloat16})
# Arrays of these dtypes are accepted and converted (a copy) rather than rejected, as JAX does.
_CANONICAL = {np.dtype(np.float64): float32}


def dtype(d) -> np.dtype:
    """Canonical numpy dtype for a dtype-like: numpy dtype or type, string, or torch dtype."""
    if d is None:  # numpy reads None as float64 (so float32 here): a missing dtype, not a choice
        raise TypeError("not a dtype: None")
    if isinstance(d, str) or type(d).__module__ == "torch":
        name = str(d).removeprefix("torch.")
        if name in _ALIASES:
            return _ALIASES[name]
        d = name
    try:
        nd = np.dtype(d)
    except TypeError as e:
        raise TypeError(f"not a dtype: {d!r}") from e
    nd = _CANONICAL.get(nd, nd)
    if nd not in SHORT_NAMES:
        raise TypeError(f"unsupported dtype {nd}; aitrace supports "
                        + ", ".join(str(t) for t in ALL))
    return nd


def short_name(d) -> str:
    return SHORT_NAMES[dtype(d)]


def is_float(d) -> bool:
    return dtype(d) in (float16, bfloat16, float32)


def is_int(d) -> bool:
    return dtype(d) in (int32, int64)


def _kind(d: np.dtype) -> int:
    return 0 if d == bool_ else 1 if is_int(d) else 2


def result_type(*operands) -> np.dtype:
    """The dtype binary/n-ary ops compute in. Operands are dtypes (strong) or Python
    scalars (weak: they only lift the category, never the width)."""
    strong = [dtype(o) for o in operands if not isinstance(o, (bool, int, float))]
    weak = [o for o in operands if isinstance(o, (bool, int, float))]
    if strong:
        kind = max(_kind(d) for d in strong)
        members = [d for d in strong if _kind(d) == kind]
        if kind == 2:
            res = members[0] if len(set(members)) == 1 else float32  # f16+bf16 -> f32
        elif kind == 1:
            res = int64 if int64 in members else int32
        else:
            res = bool_
    else:
        res, kind = bool_, 0
    for w in weak:
        wk = 0 if isinstance(w, bool) else 1 if isinstance(w, int) else 2
        if wk > kind:
            res, kind = (int32 if wk == 1 else float32), wk
    return res
