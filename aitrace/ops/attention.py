"""Scaled dot-product attention, as torch.nn.functional.scaled_dot_product_attention.

q `[B, H, Sq, D]`, k `[B, H, Sk, D]`, v `[B, H, Sk, Dv]` -> `[B, H, Sq, Dv]`:
softmax(q @ k^T * scale + bias) @ v, where the mask is boolean (True = attend) or additive
(same dtype as q), broadcastable to `[B, H, Sq, Sk]`, and `causal` keeps the top-left aligned
lower triangle (query i sees keys j <= i). A mask and causal may be combined: both apply.
A query row with every key masked out gives zeros (torch's math path, `_safe_softmax`).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..core import dtypes, shapes
from ..core.ir import Primitive, ShapeDtype
from ..core.shapes import shape_str
from ._common import as_array, aval, promote, up

MASK_KINDS = (None, "bool", "additive")


def _attention_abstract(q, k, v, *mask, causal, scale, mask_kind):
    def what():
        return (f"q {shape_str(q.shape)}, k {shape_str(k.shape)}, v {shape_str(v.shape)}"
                + (f", mask {shape_str(mask[0].shape)}" if mask else ""))
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention: q, k, v must be [batch, heads, seq, head_dim] (rank 4), "
                         f"got {what()}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"attention: q, k, v must share a dtype, got {q}, {k}, {v}")
    if not dtypes.is_float(q.dtype):
        raise TypeError(f"attention: q, k, v must be floating point, got {q}, {k}, {v}")
    for ax, name in ((0, "batch"), (1, "heads")):
        if not (shapes.equal(q.shape[ax], k.shape[ax]) and shapes.equal(k.shape[ax], v.shape[ax])):
            raise ValueError(f"attention: {name} dims differ: {what()}")
    if not shapes.equal(q.shape[3], k.shape[3]):
        raise ValueError(f"attention: q and k head_dim differ ({q.shape[3]} vs {k.shape[3]}): {what()}")
    if not shapes.equal(k.shape[2], v.shape[2]):
        raise ValueError(f"attention: k and v sequence lengths differ ({k.shape[2]} vs "
                         f"{v.shape[2]}): {what()}")
    if mask_kind not in MASK_KINDS or (mask_kind is None) != (not mask) or len(mask) > 1:
        raise ValueError(f"attention: mask_kind={mask_kind!r} with {len(mask)} mask operand(s)")
    if mask:
        m = mask[0]
        want = dtypes.bool_ if mask_kind == "bool" else q.dtype
        if m.dtype != want:
            raise TypeError(f"attention: {mask_kind} mask must be {dtypes.short_name(want)}, got {m}")
        target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        ok = m.ndim <= 4
        if ok:
            try:
                full = shapes.broadcast(m.shape, target, op="attention")
                ok = all(shapes.equal(a, b) for a, b in zip(full, target))
            except ValueError:
                ok = False
        if not ok:
            raise ValueError(f"attention: mask {shape_str(m.shape)} does not broadcast to "
                             f"[batch, heads, q_seq, k_seq] = {shape_str(target)}: {what()}")
    return ShapeDtype(q.shape[:3] + v.shape[3:], q.dtype)


def _attention_impl(q, k, v, *mask, causal, scale, mask_kind):
    qf, kf, vf = (up(a).astype(np.float32) for a in (q, k, v))
    s = np.matmul(qf, np.swapaxes(kf, -1, -2)) * np.float32(scale)
    if mask_kind == "bool":
        s = np.where(mask[0], s, np.float32(-np.inf))
    elif mask_kind == "additive":
        s = s + up(mask[0]).astype(np.float32)
    if causal:
        sq, sk = s.shape[-2:]
        s = np.where(np.tri(sq, sk, dtype=bool), s, np.float32(-np.inf))
    m = np.max(s, axis=-1, keepdims=True)
    dead = np.isneginf(m)  # every key masked out: the row's output is 0
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(s - np.where(dead, np.float32(0), m))
        p = e / np.where(dead, np.float32(1), e.sum(axis=-1, keepdims=True))
    p = np.where(dead, np.float32(0), p)
    return np.matmul(p, vf).astype(q.dtype)


attention_p = Primitive("attention", _attention_abstract, _attention_impl)


def attention(q, k, v, mask=None, causal=False, scale=None):
    """torch's scaled_dot_product_attention (no dropout): softmax(q k^T * scale + mask) v.

    q `[B, H, Sq, D]`, k `[B, H, Sk, D]`, v `[B, H, Sk, Dv]` -> `[B, H, Sq, Dv]`. `scale`
    defaults to 1/sqrt(D). `mask`: boolean (True attends) or additive float, broadcastable to
    `[B, H, Sq, Sk]`; `causal`: query i attends keys j <= i (top-left aligned, as torch).
    """
    q, k, v = promote("attention", q, k, v, to_float=True)
    qa = aval(q)
    if qa.ndim != 4:
        raise ValueError(f"attention: q must be [batch, heads, seq, head_dim] (rank 4), got "
                         f"q {shape_str(qa.shape)}, k {shape_str(aval(k).shape)}, "
                         f"v {shape_str(aval(v).shape)}")
    if scale is None:
        d = qa.shape[3]
        if not isinstance(d, int):
            raise ValueError(f"attention: default scale needs a static head_dim, q is "
                             f"{shape_str(qa.shape)}; pass scale=")
        scale = 1.0 / math.sqrt(d) if d else 1.0
    elif isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"attention: scale must be a float, got {scale!r}")
    operands, kind = [q, k, v], None
    if mask is not None:
        mask = as_array(mask, "attention")
        if isinstance(mask, (bool, int, float)):
            mask = np.asarray(mask)
        md = aval(mask).dtype
        if md == dtypes.bool_:
            kind = "bool"
        elif dtypes.is_float(md):
            kind = "additive"
            if md != qa.dtype:
                from .elementwise import cast
                mask = cast(mask, qa.dtype)
        else:
            raise TypeError(f"attention: mask must be boolean (True attends) or an additive "
                            f"float, got {aval(mask)}")
        operands.append(mask)
    return attention_p.bind(*operands, causal=bool(causal), scale=float(scale), mask_kind=kind)


__all__ = ["attention"]
