"""Random aitrace programs for testing passes and backends: `programs()` is a hypothesis strategy.

A program is 1-3 input arrays (rank 1-4, sizes 1..7, f32 mostly, f16 sometimes; shapes mostly
suffixes of one base shape with some dims 1, so they broadcast) and 3-12 steps, each applied to
values produced so far (the latest ones drawn most, so chains grow deep; any value may be used
again, so graphs branch). A step is an op:

  unary     exp(clip), tanh, relu, gelu (both), sigmoid, silu, abs, neg, sqrt(abs), rsqrt(abs + 1)
  binary    add sub mul maximum minimum div with another live value, a Python scalar (0 and 1
            included: simplify's identities) or a closed-over numpy array (a graph constant:
            random, ones or zeros, same or other float dtype), broadcast as numpy does; where
  other     cast, a value of constants alone (a constvar), matmul/linear by a constant weight
            (1/sqrt(K)-scaled; constant on either side), matmul of two live values, softmax (maybe
            of x * s + mask), layer_norm, batch_norm, sum/mean/max (keepdims or not), reshape,
            transpose, slicing (steps, negative steps, ints, None), concatenate, split, pad
or a pattern the fusion passes look for: conv2d (NHWC or written NCHW with transposes around
it, const weight, maybe bias, groups, stride, dilation) -> batch_norm with constant statistics
-> relu; 2-3 linears of one input (Q/K/V); linear -> activation -> linear (back-to-back GEMM);
two GEMMs meeting in one elementwise op (gated MLP); attention from three linears; x + y then
layer_norm, both used (pre-LN residual). 1-3 values are returned: the last, then preferably
values nothing else reads (else they would be dead code); an input or a constant may be one.

Each step is run eagerly (numpy) while the program is drawn: that gives the shapes the next
steps need, and keeps the numbers tame: a step whose result is not finite, exceeds MAX_ABS or
MAX_SIZE elements is dropped, and steps that amplify rounding (sqrt near 0, layer_norm of
near-constant rows) are only drawn where they do not. `Program.tol_dtype` is the least precise
float dtype anywhere in the program: a value rounded through f16 and cast back to f32 is only
as exact as f16. `repr(program)` lists its steps (hypothesis prints it for a failing example).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from hypothesis import strategies as st

import aitrace as ait

F32, F16 = np.dtype(np.float32), np.dtype(np.float16)
MAX_ABS = 100.0   # a step whose values leave [-MAX_ABS, MAX_ABS] is dropped
MAX_SIZE = 4096   # ... and one with more elements than this
MAX_RANK = 4
SCALARS = [0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 2]   # 0 and 1 meet simplify's identities; 2 is an int


class Step:
    def __init__(self, text: str, ins: tuple, fn: Callable):
        self.text, self.ins, self.fn = text, tuple(ins), fn
        self.n_out = 1

    def __call__(self, vals):
        out = self.fn(*[vals[i] for i in self.ins])
        return tuple(out) if isinstance(out, tuple) else (out,)


class Program:
    """`fn(*args)` returns a tuple of arrays; `repr` lists the steps, for failing examples."""

    def __init__(self, args, steps, outputs, values):
        self.args, self.steps, self.outputs = tuple(args), list(steps), tuple(outputs)
        self.avals = [(v.shape, v.dtype) for v in values]
        dts = {np.dtype(v.dtype) for v in values} | {np.dtype(a.dtype) for a in self.args}
        self.tol_dtype = F16 if F16 in dts else F32

    def fn(self, *args):
        vals = list(args)
        for s in self.steps:
            vals.extend(s(vals))
        return tuple(vals[i] for i in self.outputs)

    def __repr__(self):
        def ty(i):
            shape, dt = self.avals[i]
            return f"{'f16' if dt == F16 else 'f32'}{list(shape)}"
        lines = [f"  v{i}: {ty(i)}  (input)" for i in range(len(self.args))]
        k = len(self.args)
        for s in self.steps:
            outs = ", ".join(f"v{k + j}" for j in range(s.n_out))
            text = s.text.format(*[f"v{i}" for i in s.ins])
            lines.append(f"  {outs} = {text}   # {', '.join(ty(k + j) for j in range(s.n_out))}")
            k += s.n_out
        lines.append(f"  return ({', '.join(f'v{i}' for i in self.outputs)})")
        return "Program(\n" + "\n".join(lines) + "\n)"


def _bcast(*shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return None


class _Ctx:
    def __init__(self, draw, rng):
        self.draw, self.rng, self.values = draw, rng, []

    def pick(self, pred=lambda v: True):
        """Index of a live value satisfying `pred`, or None; the latest ones first (hypothesis
        leans to the first), so chains grow deep."""
        cands = [i for i, v in enumerate(self.values) if pred(v)][::-1]
        return self.draw(st.sampled_from(cands)) if cands else None

    def choose(self, options):
        return self.draw(st.sampled_from(options))

    def chance(self, p: float) -> bool:
        return self.draw(st.integers(0, 99)) < int(p * 100)

    def const(self, shape, dtype, scale=1.0, low=-1.0):
        return (self.rng.uniform(low, 1.0, size=shape) * scale).astype(dtype)

    def const_dtype(self, dtype):
        """Constants mostly share the operand's dtype; sometimes not (promotion, casts)."""
        return dtype if self.chance(0.8) else self.choose([F32, F16])


# ------------------------------------------------------------------------------------ steps
# Each takes the context and returns a Step, or None where it does not apply.

def _sqrt_abs(x_value):
    if np.min(np.abs(x_value.astype(np.float32))) >= 0.05:
        return "sqrt(abs({}))", lambda x: ait.sqrt(ait.abs(x))
    return "sqrt(abs({}) + 0.1)", lambda x: ait.sqrt(ait.abs(x) + 0.1)


UNARY = {
    "exp": ("exp(clip({}, -3, 3))", lambda x: ait.exp(ait.minimum(ait.maximum(x, -3.0), 3.0))),
    "tanh": ("tanh({})", ait.tanh),
    "relu": ("relu({})", ait.relu),
    "gelu": ("gelu({})", ait.gelu),
    "gelu_tanh": ("gelu({}, approximate='tanh')", lambda x: ait.gelu(x, approximate="tanh")),
    "sigmoid": ("sigmoid({})", ait.sigmoid),
    "silu": ("silu({})", ait.silu),
    "abs": ("abs({})", ait.abs),
    "neg": ("-{}", lambda x: -x),
    "sqrt_abs": None,
    "rsqrt": ("rsqrt(abs({}) + 1)", lambda x: ait.rsqrt(ait.abs(x) + 1.0)),
}


def unary(c: _Ctx):
    i = c.pick()
    name = c.choose(list(UNARY))
    text, fn = _sqrt_abs(c.values[i]) if name == "sqrt_abs" else UNARY[name]
    return Step(text, (i,), fn)


BINARY = {"add": ait.add, "sub": ait.sub, "mul": ait.mul, "maximum": ait.maximum,
          "minimum": ait.minimum, "div": ait.div}


def _const_shape(c: _Ctx, shape):
    """A shape broadcasting against `shape`: a suffix of it with some dims 1, sometimes with a
    leading dim more (the result grows a dim)."""
    k = c.draw(st.integers(0, len(shape)))
    out = [d if c.chance(0.6) else 1 for d in shape[len(shape) - k:]]
    if len(shape) < MAX_RANK and c.chance(0.15):
        out = [c.draw(st.integers(1, 3))] + [d for d in shape]
    return tuple(out)


def binary(c: _Ctx):
    i = c.pick()
    x = c.values[i]
    op = c.choose(list(BINARY))
    f = BINARY[op]
    kind = c.choose(["value", "value", "value", "scalar", "const"])
    if kind == "value":
        j = c.pick(lambda v: _bcast(v.shape, x.shape) is not None)
        if op == "div":
            return Step("div({}, abs({}) + 1)", (i, j), lambda a, b: ait.div(a, ait.abs(b) + 1.0))
        return Step(f"{op}({{}}, {{}})", (i, j), f)
    if kind == "scalar":
        s = c.choose([v for v in SCALARS if not (op == "div" and v == 0)])
        if c.chance(0.3) and op != "div":
            return Step(f"{op}({s!r}, {{}})", (i,), lambda a: f(s, a))
        return Step(f"{op}({{}}, {s!r})", (i,), lambda a: f(a, s))
    shape = _const_shape(c, x.shape)
    dt = c.const_dtype(x.dtype)
    fill = c.choose(["random", "random", "random", "ones", "zeros"])
    if fill == "random":
        k = c.const(shape, dt)
        if op == "div":
            k = (np.abs(k) + 0.5).astype(dt)
    else:
        k = (np.ones if fill == "ones" or op == "div" else np.zeros)(shape, dt)
    desc = f"const {fill} {'f16' if dt == F16 else 'f32'}{list(shape)}"
    if c.chance(0.2) and op != "div":
        return Step(f"{op}({desc}, {{}})", (i,), lambda a: f(k, a))
    return Step(f"{op}({{}}, {desc})", (i,), lambda a: f(a, k))


def where(c: _Ctx):
    i = c.pick()
    x = c.values[i]
    j = c.pick(lambda v: _bcast(v.shape, x.shape) is not None)
    thr = c.choose([0.0, 0.5])
    return Step(f"where({{0}} > {thr}, {{0}}, {{1}} * 0.1)", (i, j),
                lambda a, b: ait.where(a > thr, a, b * 0.1))


def cast(c: _Ctx):
    i = c.pick()
    dt = c.choose([F16, F32, c.values[i].dtype])
    name = "f16" if dt == F16 else "f32"
    return Step(f"cast({{}}, {name})", (i,), lambda a: ait.cast(a, dt))


def const_only(c: _Ctx):
    """A value computed from constants alone: evaluated at trace time, a constvar in the graph."""
    k = c.const(c.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)),
                c.choose([F32, F32, F16]))
    return Step(f"tanh(const {list(k.shape)}) * 2", (), lambda: ait.tanh(k) * 2.0)


def matmul_const(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 1 and v.shape[-1] <= 256)
    if i is None:
        return None
    x = c.values[i]
    kdim, n = x.shape[-1], c.draw(st.integers(1, 7))
    dt = c.const_dtype(x.dtype)
    w = (c.rng.standard_normal((n, kdim)) / math.sqrt(kdim)).astype(dt)
    b = c.const((n,), dt, 0.5)
    form = c.choose(["linear", "linear_bias", "matmul", "matmul_left"])
    if form == "linear":
        return Step(f"linear({{}}, W[{n},{kdim}])", (i,), lambda a: ait.linear(a, w))
    if form == "linear_bias":
        return Step(f"linear({{}}, W[{n},{kdim}], b)", (i,), lambda a: ait.linear(a, w, b))
    if form == "matmul" or x.ndim < 2:
        wt = np.ascontiguousarray(w.T)
        return Step(f"{{}} @ W[{kdim},{n}]", (i,), lambda a: a @ wt)
    m = x.shape[-2]
    wl = (c.rng.standard_normal((n, m)) / math.sqrt(m)).astype(dt)
    return Step(f"matmul(W[{n},{m}], {{}})", (i,), lambda a: ait.matmul(wl, a))


def matmul_values(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 2)
    if i is None:
        return None
    x = c.values[i]
    j = c.pick(lambda v: v.ndim >= 2 and v.shape[-2] == x.shape[-1]
               and _bcast(v.shape[:-2], x.shape[:-2]) is not None)
    if j is None or c.chance(0.3):  # x @ x^T, as attention scores
        perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
        return Step("{} @ swap_last_two({})", (i, i), lambda a, b: ait.matmul(a, ait.transpose(b, perm)))
    return Step("matmul({}, {})", (i, j), ait.matmul)


def qkv(c: _Ctx):
    """Two or three linears of one input, same output width (horizontal fusion's pattern)."""
    i = c.pick(lambda v: v.ndim >= 1 and v.shape[-1] <= 256)
    if i is None:
        return None
    x = c.values[i]
    kdim, n, heads = x.shape[-1], c.draw(st.integers(1, 7)), c.draw(st.integers(2, 3))
    with_bias = c.chance(0.5)
    ws = [(c.rng.standard_normal((n, kdim)) / math.sqrt(kdim)).astype(x.dtype) for _ in range(heads)]
    bs = [c.const((n,), x.dtype, 0.5) if with_bias else None for _ in range(heads)]
    step = Step(f"{heads} x linear({{}}, W[{n},{kdim}]{', b' if with_bias else ''})", (i,),
                lambda a: tuple(ait.linear(a, w, b) for w, b in zip(ws, bs)))
    return step


def softmax(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 1)
    if i is None:
        return None
    x = c.values[i]
    axis = -1 if c.chance(0.8) else c.draw(st.integers(0, x.ndim - 1))
    if c.chance(0.5):
        return Step(f"softmax({{}}, axis={axis})", (i,), lambda a: ait.softmax(a, axis=axis))
    mask = c.const(_const_shape(c, x.shape), c.const_dtype(x.dtype), 2.0)
    return Step(f"softmax({{}} * 0.5 + mask{list(mask.shape)}, axis={axis})", (i,),
                lambda a: ait.softmax(a * 0.5 + mask, axis=axis))


def _rows_spread(v) -> bool:
    """layer_norm divides by the rows' std: only where that does not amplify rounding."""
    if v.shape[-1] == 1:
        return True
    x = v.astype(np.float64)
    std = x.std(axis=-1)
    scale = np.maximum(1.0, np.abs(x).max(axis=-1))
    return bool(np.all(std >= 0.05 * scale))


def layer_norm(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 1 and _rows_spread(v))
    if i is None:
        return None
    x = c.values[i]
    n, dt = x.shape[-1], c.const_dtype(x.dtype)
    w = c.const((n,), dt, 0.2) + dt.type(1) if c.chance(0.7) else None
    b = c.const((n,), dt, 0.5) if c.chance(0.7) else None
    return Step(f"layer_norm({{}}, {'w' if w is not None else None}, {'b' if b is not None else None})",
                (i,), lambda a: ait.layer_norm(a, w, b))


def _bn_consts(c: _Ctx, n, dt):
    mean, var = c.const((n,), dt, 0.5), c.const((n,), dt, 1.0, low=0.5)
    w = c.const((n,), dt, 0.5) + dt.type(1) if c.chance(0.7) else None
    b = c.const((n,), dt, 0.5) if c.chance(0.7) else None
    return mean, var, w, b


def batch_norm(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 1)
    if i is None:
        return None
    x = c.values[i]
    mean, var, w, b = _bn_consts(c, x.shape[-1], x.dtype)
    return Step("batch_norm({}, consts)", (i,), lambda a: ait.batch_norm(a, mean, var, w, b))


def conv_bn(c: _Ctx):
    """conv2d (NHWC, constant weight, maybe bias) -> batch_norm (constant stats) -> relu; a
    value of rank < 4 is first reshaped to [1, ..., *shape]. Sometimes written NCHW, as a
    PyTorch model would be: transposed to NHWC before the conv and back after (layout's pattern)."""
    i = c.pick()
    x = c.values[i]
    shape = (1,) * (4 - x.ndim) + x.shape
    nchw = c.chance(0.3)
    _, h, wd, ch = (shape[0], shape[2], shape[3], shape[1]) if nchw else shape
    groups = c.choose([1, 1, 1, 2]) if ch % 2 == 0 else 1
    o = groups * c.draw(st.integers(1, 4))
    kh, kw = c.choose([1, 2, 3]), c.choose([1, 3])
    stride = c.choose([1, 1, 2])
    dilation = c.choose([1, 1, 1, 2])
    padding = c.choose(["same", 0, 1]) if stride == 1 else c.choose([0, 1])
    pad = 0 if padding == "same" else padding
    if padding != "same" and any(n + 2 * pad < dilation * (k - 1) + 1 for n, k in ((h, kh), (wd, kw))):
        return None
    dt = x.dtype
    fan_in = kh * kw * ch // groups
    wc = (c.rng.standard_normal((o, kh, kw, ch // groups)) / math.sqrt(fan_in)).astype(dt)
    bias = c.const((o,), dt, 0.5) if c.chance(0.4) else None
    bn = _bn_consts(c, o, dt) if c.chance(0.8) else None
    relu = c.chance(0.5)

    def fn(a):
        a = ait.reshape(a, shape)
        if nchw:
            a = ait.transpose(a, (0, 2, 3, 1))
        y = ait.conv2d(a, wc, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
        if bn is not None:
            y = ait.batch_norm(y, *bn)
        y = ait.relu(y) if relu else y
        return ait.transpose(y, (0, 3, 1, 2)) if nchw else y
    text = f"reshape({{}}, {list(shape)})"
    text = f"nchw_to_nhwc({text})" if nchw else text
    text = (f"conv2d({text}, W[{o},{kh},{kw},{ch // groups}]{', b' if bias is not None else ''}, "
            f"stride={stride}, padding={padding!r}, dilation={dilation}, groups={groups})")
    text = f"batch_norm({text}, consts)" if bn is not None else text
    text = f"relu({text})" if relu else text
    return Step(f"nhwc_to_nchw({text})" if nchw else text, (i,), fn)


def reduce(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 1)
    if i is None:
        return None
    x = c.values[i]
    op = c.choose(["sum", "mean", "max"])
    keepdims = c.chance(0.6)
    how = c.choose(["one", "one", "one", "two", "all"])
    if how == "all" and x.size <= 64:
        axis = None
    elif how == "two" and x.ndim >= 2:
        axis = tuple(sorted(c.draw(st.lists(st.integers(0, x.ndim - 1), min_size=2, max_size=2,
                                             unique=True))))
    else:
        axis = c.draw(st.integers(-x.ndim, x.ndim - 1))
    f = {"sum": ait.sum, "mean": ait.mean, "max": ait.max}[op]
    return Step(f"{op}({{}}, axis={axis}, keepdims={keepdims})", (i,),
                lambda a: f(a, axis=axis, keepdims=keepdims))


def _factor(c: _Ctx, n: int):
    primes, p = [], 2
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    rank = c.draw(st.integers(1, MAX_RANK))
    dims = [1] * rank
    for q in primes:
        dims[c.draw(st.integers(0, rank - 1))] *= q
    return dims


def reshape(c: _Ctx):
    i = c.pick()
    x = c.values[i]
    form = c.choose(["flatten", "factor", "factor", "unit"])
    if form == "flatten":
        new = (-1,)
    elif form == "unit" and x.ndim < MAX_RANK:
        k = c.draw(st.integers(0, x.ndim))
        new = x.shape[:k] + (1,) + x.shape[k:]
    else:
        dims = _factor(c, x.size)
        if c.chance(0.3):
            dims[c.draw(st.integers(0, len(dims) - 1))] = -1
        new = tuple(dims)
    return Step(f"reshape({{}}, {new})", (i,), lambda a: ait.reshape(a, new))


def transpose(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 2)
    if i is None:
        return None
    perm = tuple(c.draw(st.permutations(range(c.values[i].ndim))))
    return Step(f"transpose({{}}, {perm})", (i,), lambda a: ait.transpose(a, perm))


def slicing(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 1)
    if i is None:
        return None
    x = c.values[i]
    idx = []
    for n in x.shape:
        kind = c.choose(["all", "all", "range", "range", "step", "int", "neg"])
        if kind == "all":
            idx.append(slice(None))
        elif kind == "int":
            idx.append(c.draw(st.integers(-n, n - 1)))
        else:
            start = c.draw(st.integers(-n, n - 1))
            stop = c.draw(st.one_of(st.none(), st.integers(-n, n)))
            step = {"range": None, "step": c.choose([2, 3]), "neg": c.choose([-1, -2])}[kind]
            idx.append(slice(start, stop, step))
    if x.ndim < MAX_RANK and c.chance(0.15):
        idx.insert(c.draw(st.integers(0, len(idx))), None)
    idx = tuple(idx)
    return Step(f"{{}}[{_index_str(idx)}]", (i,), lambda a: a[idx])


def _index_str(idx):
    def one(s):
        if s is None:
            return "None"
        if isinstance(s, int):
            return str(s)
        return (f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}"
                f"{'' if s.step is None else ':' + str(s.step)}")
    return ", ".join(map(one, idx))


def concatenate(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 1)
    if i is None:
        return None
    x = c.values[i]
    axis = c.draw(st.integers(-x.ndim, x.ndim - 1))
    ax = axis % x.ndim

    def fits(v):
        return v.ndim == x.ndim and all(d == e for k, (d, e) in enumerate(zip(v.shape, x.shape)) if k != ax)
    j = c.pick(fits)
    ins = (i, j, c.pick(fits)) if c.chance(0.2) else (i, j)
    return Step(f"concatenate([{', '.join('{}' for _ in ins)}], axis={axis})", ins,
                lambda *xs: ait.concatenate(list(xs), axis=axis))


def split(c: _Ctx):
    i = c.pick(lambda v: any(d >= 2 for d in v.shape))
    if i is None:
        return None
    x = c.values[i]
    axis = c.choose([k for k, d in enumerate(x.shape) if d >= 2])
    n = x.shape[axis]
    if c.chance(0.5):
        size = c.draw(st.integers(max(1, -(-n // 4)), n - 1))
        arg = size
    else:
        cut = sorted(c.draw(st.lists(st.integers(1, n - 1), min_size=1, max_size=2, unique=True)))
        arg = [b - a for a, b in zip([0] + cut, cut + [n])]
    if c.chance(0.3):
        axis -= x.ndim
    return Step(f"split({{}}, {arg}, axis={axis})", (i,), lambda a: ait.split(a, arg, axis=axis))


def pad(c: _Ctx):
    i = c.pick(lambda v: v.ndim >= 1)
    if i is None:
        return None
    x = c.values[i]
    widths = tuple((c.draw(st.integers(0, 2)), c.draw(st.integers(0, 2))) for _ in x.shape)
    value = c.choose([0, 0.0, 1.5, -1.0])
    return Step(f"pad({{}}, {widths}, value={value})", (i,), lambda a: ait.pad(a, widths, value))


def mlp(c: _Ctx):
    """linear -> activation -> linear through a small middle (back-to-back GEMM's pattern)."""
    i = c.pick(lambda v: v.ndim >= 1 and v.shape[-1] <= 256)
    if i is None:
        return None
    x = c.values[i]
    k, mid, n = x.shape[-1], c.draw(st.integers(1, 8)), c.draw(st.integers(1, 7))
    dt = x.dtype
    w1 = (c.rng.standard_normal((mid, k)) / math.sqrt(k)).astype(dt)
    w2 = (c.rng.standard_normal((n, mid)) / math.sqrt(mid)).astype(dt)
    b1 = c.const((mid,), dt, 0.5) if c.chance(0.6) else None
    b2 = c.const((n,), dt, 0.5) if c.chance(0.6) else None
    act = c.choose(["relu", "gelu", "gelu_tanh", "silu", "tanh", "none"])
    f = {"none": lambda h: h, "gelu_tanh": UNARY["gelu_tanh"][1]}.get(act) or UNARY[act][1]
    return Step(f"linear({act}(linear({{}}, W[{mid},{k}]{', b' if b1 is not None else ''})), "
                f"W[{n},{mid}]{', b' if b2 is not None else ''})", (i,),
                lambda a: ait.linear(f(ait.linear(a, w1, b1)), w2, b2))


def gemm_pair(c: _Ctx):
    """act(linear(x, W1)) op linear(y, W2): two GEMMs meeting in one elementwise op (a gated
    MLP's x W1 * silu(x W2), or a sum of two projections); y may be x."""
    i = c.pick(lambda v: v.ndim >= 1 and v.shape[-1] <= 256)
    if i is None:
        return None
    x = c.values[i]
    j = c.pick(lambda v: v.ndim >= 1 and v.shape[-1] <= 256 and v.dtype == x.dtype
               and _bcast(v.shape[:-1], x.shape[:-1]) is not None)
    y, n = c.values[j], c.draw(st.integers(1, 7))
    w1 = (c.rng.standard_normal((n, x.shape[-1])) / math.sqrt(x.shape[-1])).astype(x.dtype)
    w2 = (c.rng.standard_normal((n, y.shape[-1])) / math.sqrt(y.shape[-1])).astype(x.dtype)
    act = c.choose(["silu", "gelu", "relu", "none"])
    f = (lambda h: h) if act == "none" else UNARY[act][1]
    op = c.choose(["mul", "add"])
    return Step(f"{op}({act}(linear({{}}, W1)), linear({{}}, W2))", (i, j),
                lambda a, b: BINARY[op](f(ait.linear(a, w1)), ait.linear(b, w2)))


def attention_block(c: _Ctx):
    """q, k, v = three linears of x [..., S, K]; softmax(q @ k^T * scale [+ mask]) @ v."""
    i = c.pick(lambda v: v.ndim >= 2 and v.shape[-1] <= 256)
    if i is None:
        return None
    x = c.values[i]
    kdim, d, s = x.shape[-1], c.draw(st.integers(1, 7)), x.shape[-2]
    dt = x.dtype
    ws = [(c.rng.standard_normal((d, kdim)) / math.sqrt(kdim)).astype(dt) for _ in range(3)]
    bs = [c.const((d,), dt, 0.5) for _ in range(3)] if c.chance(0.5) else [None] * 3
    mask = c.const((1,) * (x.ndim - 1) + (s,), dt, 2.0) if c.chance(0.5) else None
    scale = 1.0 / math.sqrt(d)
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)

    def fn(a):
        q, kk, v = (ait.linear(a, w, b) for w, b in zip(ws, bs))
        scores = ait.matmul(q, ait.transpose(kk, perm)) * scale
        if mask is not None:
            scores = scores + mask
        return ait.matmul(ait.softmax(scores, axis=-1), v)
    return Step(f"attention(qkv=3 x linear({{}}, W[{d},{kdim}]{', b' if bs[0] is not None else ''})"
                f"{', additive mask' if mask is not None else ''})", (i,), fn)


def residual_norm(c: _Ctx):
    """h = x + y; (h, layer_norm(h)) -- a pre-LN residual stream, h used again later."""
    i = c.pick(lambda v: v.ndim >= 1)
    if i is None:
        return None
    x = c.values[i]
    j = c.pick(lambda v: _bcast(v.shape, x.shape) == x.shape)
    with np.errstate(all="ignore"):
        if not _rows_spread(np.asarray(c.values[i] + c.values[j], np.float32)):
            return None
    n, dt = x.shape[-1], x.dtype
    w, b = c.const((n,), dt, 0.2) + dt.type(1), c.const((n,), dt, 0.5)

    def fn(a, r):
        h = a + r
        return h, ait.layer_norm(h, w, b)
    return Step("h = {} + {}; h, layer_norm(h, w, b)", (i, j), fn)


STEPS = ([unary] * 4 + [binary] * 4 + [where, cast, const_only, matmul_const, matmul_const,
         matmul_values, qkv, softmax, layer_norm, batch_norm, conv_bn, reduce, reduce, reshape,
         reshape, transpose, transpose, slicing, slicing, concatenate, split, pad, mlp, mlp,
         qkv, gemm_pair, attention_block, residual_norm, residual_norm])


def _tame(outs) -> bool:
    for o in outs:
        o = np.asarray(o)
        if o.size == 0 or o.size > MAX_SIZE or o.ndim > MAX_RANK:
            return False
        if not np.all(np.isfinite(o)) or np.max(np.abs(o.astype(np.float64))) > MAX_ABS:
            return False
    return True


@st.composite
def programs(draw, min_ops: int = 3, max_ops: int = 12, steps=None):
    """A random `Program` (see the module docstring). `steps` restricts the step kinds."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = _Ctx(draw, rng)
    base = draw(st.lists(st.integers(1, 7), min_size=1, max_size=MAX_RANK))
    args = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:   # an unrelated shape
            shape = draw(st.lists(st.integers(1, 7), min_size=1, max_size=MAX_RANK))
        else:                              # the base shape, maybe a suffix, some dims 1 (broadcasts)
            k = draw(st.integers(1, len(base)))
            shape = [d if draw(st.integers(0, 3)) else 1 for d in base[len(base) - k:]]
        dt = F16 if draw(st.integers(0, 4)) == 0 else F32
        args.append(rng.uniform(-2.0, 2.0, size=tuple(shape)).astype(dt))
    c.values = list(args)
    chosen = []
    for _ in range(draw(st.integers(min_ops, max_ops))):
        make = draw(st.sampled_from(steps or STEPS))
        step = make(c)
        if step is None:
            continue
        with np.errstate(all="ignore"):
            outs = step(c.values)
        if not _tame(outs):
            continue
        step.n_out = len(outs)
        c.values.extend(np.asarray(o) for o in outs)
        chosen.append(step)
    # outputs: the last value, then values nothing reads (else they would be dead code) first
    n = len(c.values)
    read = {i for s in chosen for i in s.ins}
    sinks = [i for i in range(len(args), n - 1) if i not in read][::-1]
    others = sinks + [i for i in range(n - 1) if i not in sinks]
    outputs = [n - 1] + [others[k] for k in draw(st.lists(st.integers(0, len(others) - 1), max_size=2))] \
        if others else [n - 1]
    return Program(args, chosen, outputs, c.values)
