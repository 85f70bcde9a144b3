"""Every pass of the default pipeline on random programs (tests/random_graphs.py).

For each pass (parametrized over `DEFAULT_PIPELINE`, so passes added later are covered with no
edit here): applied alone to the traced graph, and after all its predecessors in the pipeline,
its output typechecks, keeps the graph's signature, leaves its input graph untouched and
computes the traced graph's numbers under the reference interpreter. The whole pipeline
likewise (and run twice), and compiled by the cpu backend against the reference with no passes.

Tolerance: that of the least precise dtype in the program (conftest.TOLERANCE). A program with
f16 values also gets its own rounding noise as slack: a rewrite that rounds differently (batch
norm folded into f16 conv weights; a cpu kernel keeping a fused chain in fp32) moves each
result by up to about what f16 rounding moves it, and a long chain of f16 ops compounds that
past 1e-2. The noise is measured as |g - g widened to f32| under the reference interpreter.
"""
import numpy as np
import pytest
from hypothesis import given, note, settings

import aitrace as ait
from aitrace.core.interpreter import eval_graph
from aitrace.core.ir import Eqn, Graph, Literal, ShapeDtype, Var
from aitrace.core.tracing import trace_to_graph
from aitrace.passes import DEFAULT_PIPELINE, run_pipeline
from conftest import TOLERANCE, assert_close
from random_graphs import F16, F32, programs

NOISE_FACTOR = 4


def _name(p) -> str:
    return getattr(p, "__name__", repr(p))


PASSES = list(dict.fromkeys(DEFAULT_PIPELINE))          # each pass once (simplify recurs)
POSITIONS = list(range(1, len(DEFAULT_PIPELINE)))      # position 0 has no predecessors


def traced(prog):
    g, _ = trace_to_graph(prog.fn, prog.args)
    ait.typecheck(g)
    note(f"traced:\n{g}")
    return g


def widened(g: Graph) -> Graph:
    """g with every f16 value (inputs, constants, literals, cast targets) made f32."""
    new: dict = {}

    def wide(dt):
        return F32 if dt == F16 else dt

    def var(v):
        if v not in new:
            new[v] = Var(ShapeDtype(v.aval.shape, wide(v.aval.dtype)))
        return new[v]

    def atom(a):
        return Literal(a.value, wide(a.aval.dtype)) if isinstance(a, Literal) else var(a)

    eqns = [Eqn(e.prim, [atom(a) for a in e.invars], [var(v) for v in e.outvars],
                {k: wide(p) if isinstance(p, np.dtype) else p for k, p in e.params.items()})
            for e in g.eqns]
    return Graph([var(v) for v in g.invars], [var(v) for v in g.constvars],
                 [np.asarray(c).astype(wide(np.asarray(c).dtype)) for c in g.consts], eqns,
                 [atom(v) for v in g.outvars])


def reference(g, prog):
    """g's outputs under the reference, and the slack (absolute, per element) to allow for each."""
    args = list(prog.args)
    outs = eval_graph(g, args)
    if prog.tol_dtype != F16:
        return outs, [0.0] * len(outs)
    wide = eval_graph(widened(g), [np.asarray(a).astype(F32) for a in args])
    return outs, [NOISE_FACTOR * np.abs(o.astype(np.float64) - w.astype(np.float64))
                  for o, w in zip(outs, wide)]


def compare(got, want, slack, prog):
    """got == want within the dtype's tolerance, widened by `slack` where that is larger."""
    assert len(got) == len(want)
    tol = TOLERANCE[prog.tol_dtype]
    for k, (a, b, s) in enumerate(zip(got, want, slack)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype, f"output {k}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"output {k}: shape {a.shape} != {b.shape}"
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        with np.errstate(invalid="ignore"):
            ok = ((a64 == b64) | (np.abs(a64 - b64) <= tol + tol * np.abs(b64) + s)
                  | (np.isnan(a64) & np.isnan(b64)))
        if not ok.all():
            bad = np.flatnonzero(~ok)[:5]
            note(f"output {k}: {int((~ok).sum())} elements off by more than tolerance + f16 rounding "
                 f"noise; first at {bad}: got {a64.flat[bad]}, want {b64.flat[bad]}, "
                 f"noise slack {np.broadcast_to(s, b.shape).flat[bad]}")
            assert_close(a, b, prog.tol_dtype)  # fails (its bound is tighter): numpy's report
            raise AssertionError(f"output {k} differs")


def check_same(g, h, prog, what):
    """`h` (the output of `what`) typechecks, has g's signature and computes g's numbers."""
    note(f"after {what}:\n{h}")
    ait.typecheck(h)
    assert h.in_avals == g.in_avals, f"{what} changed the inputs"
    assert h.out_avals == g.out_avals, f"{what} changed the outputs' types"
    compare(eval_graph(h, list(prog.args)), *reference(g, prog), prog)


def apply(p, g):
    """p(g), checking that p leaves its input graph as it was."""
    text = str(g)
    out = p(g)
    assert str(g) == text, f"{_name(p)} modified its input graph"
    return out


@pytest.mark.parametrize("p", PASSES, ids=[_name(p) for p in PASSES])
@given(prog=programs())
def test_pass_alone_keeps_values(p, prog):
    g = traced(prog)
    check_same(g, apply(p, g), prog, _name(p))


@pytest.mark.parametrize("i", POSITIONS, ids=[f"{i}-{_name(DEFAULT_PIPELINE[i])}" for i in POSITIONS])
@given(prog=programs())
def test_pass_after_its_predecessors_keeps_values(i, prog):
    g = traced(prog)
    names = [_name(p) for p in DEFAULT_PIPELINE[:i]]
    before = run_pipeline(g, DEFAULT_PIPELINE[:i])
    check_same(g, before, prog, f"{names}")
    check_same(g, apply(DEFAULT_PIPELINE[i], before), prog, f"{names} then {_name(DEFAULT_PIPELINE[i])}")


@given(prog=programs())
def test_whole_pipeline_keeps_values_and_is_stable(prog):
    g = traced(prog)
    out = run_pipeline(g)
    check_same(g, out, prog, "the pipeline")
    check_same(g, run_pipeline(out), prog, "the pipeline twice")


# each case compiles a library (~0.5 s): fewer examples, scaled with the profile's count
CPU_EXAMPLES = max(1, settings.default.max_examples * 2 // 5)


@pytest.mark.skipif("cpu" not in ait.backends.available(), reason="no C++ compiler for the cpu backend")
@settings(max_examples=CPU_EXAMPLES, deadline=None)
@given(prog=programs())
def test_cpu_backend_runs_the_pipeline_output(prog):
    g = traced(prog)
    note(f"after the pipeline:\n{run_pipeline(g)}")
    want = ait.jit(prog.fn, backend="reference", passes=())(*prog.args)
    slack = reference(g, prog)[1]
    try:
        compare(ait.jit(prog.fn, backend="cpu")(*prog.args), want, slack, prog)
    except Exception:  # say whether the cpu backend gets it right without the passes
        try:
            compare(ait.jit(prog.fn, backend="cpu", passes=())(*prog.args), want, slack, prog)
            note("the cpu backend with passes=() computes it right")
        except Exception as e:
            note(f"the cpu backend with passes=() fails too: {type(e).__name__}: {str(e)[:500]}")
        raise
