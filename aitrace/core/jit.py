"""`ait.jit`: trace once per abstract signature, lower and build with a backend, call natively.

A signature is (pytree structure, avals of the array leaves, static arguments); `dynamic` makes
chosen axes symbolic, so one trace and one build serve every size within the Dims' bounds.
"""
from __future__ import annotations

import functools
import numbers
from typing import Callable

from ..runtime.interop import check_host
from . import pytree
from .ir import Graph, ShapeDtype
from .shapes import Dim
from .tracing import abstractify, trace_to_graph


class Lowered:
    """One signature of a jitted function: the graph after passes and the backend's source."""

    def __init__(self, backend, graph: Graph, out_tree: pytree.TreeDef, bounds: dict, options=None):
        self.backend, self.graph, self.out_tree, self.bounds = backend, graph, out_tree, bounds
        self.source_obj = backend.lower(graph, **(options or {}))
        self._path, self._run = None, None

    @property
    def source(self) -> str | None:
        """The generated code text (None for the reference backend, which runs the graph)."""
        return self.source_obj.text

    @property
    def arena_bytes(self):
        """Peak bytes of the intermediate-buffer arena (native backends; sympy expression when
        shapes are dynamic), or None for `reference`."""
        return self.source_obj.info.get("arena_bytes")

    def build(self):
        """Compile the source; returns the shared library's path (None for `reference`)."""
        if self._path is None:
            self._path = self.backend.build(self.source_obj)
        return self._path

    def compile(self) -> Callable:
        if self._run is None:
            self._run = self.backend.load(self.source_obj, self.build())
        return self._run


class Jitted:
    def __init__(self, fn: Callable, backend=None, dynamic=None, static_argnums=(), passes=None,
                 **backend_options):
        from .. import backends
        self.fn = fn
        self.backend_options = backend_options  # e.g. arch="sm_90a" for cuda
        self.backend = backends.get(backend)
        self.static_argnums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        if any(not isinstance(i, int) or i < 0 for i in self.static_argnums):
            raise ValueError(f"jit: static_argnums must be non-negative ints, got {static_argnums!r}")
        self.dynamic = {int(k): dict(v) for k, v in (dynamic or {}).items()}
        for argnum, axes in self.dynamic.items():
            if argnum < 0:
                raise ValueError(f"jit: dynamic argument numbers must be non-negative, got {argnum}")
            if argnum in self.static_argnums:
                raise ValueError(f"jit: argument {argnum} is both static and dynamic")
            for axis, d in axes.items():
                if not isinstance(d, Dim):
                    raise TypeError(f"jit: dynamic[{argnum}][{axis}] must be an ait.Dim, got {d!r}")
        self.passes = passes
        self._cache: dict = {}
        self._fast_cache: dict = {}  # _fast_key -> Lowered, for calls with plain array arguments
        functools.update_wrapper(self, fn, updated=())

    def __get__(self, obj, objtype=None):  # a jitted method: the instance is argument 0
        return self if obj is None else functools.partial(self, obj)

    def _signature(self, args):
        """(cache key, traced args, their avals, dims to check at call) for these arguments."""
        for i in self.static_argnums:
            if i >= len(args):
                raise TypeError(f"jit: static_argnums names argument {i} but only {len(args)} given")
        # the type is part of the key: 2 == 2.0 == True hash alike but trace differently
        static = tuple((i, type(args[i]), args[i]) for i in self.static_argnums)
        dyn = [(i, a) for i, a in enumerate(args) if i not in self.static_argnums]
        avals, checks = [], []
        for i, a in dyn:
            leaves, _ = pytree.flatten(a)
            if i in self.dynamic:
                if len(leaves) != 1 or isinstance(a, (tuple, list, dict)):
                    raise TypeError(f"jit: dynamic axes need argument {i} to be one array")
                aval = abstractify(a, f"argument {i}")
                shape = list(aval.shape)
                for axis, d in self.dynamic[i].items():
                    if not isinstance(axis, numbers.Integral) or not -len(shape) <= axis < len(shape):
                        raise ValueError(f"jit: argument {i} has rank {len(shape)}, no axis {axis} "
                                         f"for Dim {d.name!r}")
                    checks.append((i, axis % len(shape), d))
                    shape[axis] = d
                avals.append(ShapeDtype(tuple(shape), aval.dtype))
            else:
                avals.extend(abstractify(x, f"argument {i}") for x in leaves)
        _, treedef = pytree.flatten(tuple(a for _, a in dyn))
        try:
            key = (treedef, tuple(avals), static)
            hash(key)
        except TypeError as e:
            raise TypeError(f"jit: static arguments must be hashable: {e}") from None
        return key, [a for _, a in dyn], avals, checks

    @staticmethod
    def _check_bounds(args, checks):
        sizes: dict = {}
        for i, axis, d in checks:
            n = args[i].shape[axis]
            if n < d.min or (d.max is not None and n > d.max):
                raise ValueError(f"argument {i} axis {axis}: size {n} is outside the bounds "
                                 f"{d.bounds_str()} of Dim {d.name!r}")
            if sizes.setdefault(d, (n, i, axis))[0] != n:
                n0, i0, a0 = sizes[d]
                raise ValueError(f"argument {i} axis {axis}: size {n} differs from {n0} at "
                                 f"argument {i0} axis {a0}, which share Dim {d.name!r}")

    def lower(self, *args) -> Lowered:
        """Trace, run the passes and lower for these arguments (arrays or ShapeDtype)."""
        key, dyn_args, avals, checks = self._signature(args)
        if key not in self._cache:
            static = {i: v for i, _, v in key[2]}

            def with_static(*dyn):
                it = iter(dyn)
                return self.fn(*[static[i] if i in static else next(it)
                                 for i in range(len(dyn) + len(static))])
            graph, out_tree = trace_to_graph(with_static, dyn_args, avals)
            from ..passes import lowering_options, run_pipeline
            graph = run_pipeline(graph, self.passes)
            self._cache[key] = Lowered(self.backend, graph, out_tree, checks,
                                       {**lowering_options(self.passes), **self.backend_options})
        return self._cache[key]

    def _fast_key(self, args):
        """A cheap key for calls whose arguments are all plain arrays (no static arguments, no
        containers): their types, shapes and dtypes. None where the full signature is needed."""
        if self.static_argnums:
            return None
        try:
            return tuple((type(a), tuple(a.shape), a.dtype) for a in args)
        except (AttributeError, TypeError):
            return None

    def __call__(self, *args):
        fast = self._fast_key(args)
        low = self._fast_cache.get(fast) if fast is not None else None
        if low is not None:  # seen before: skip flattening and the full signature
            if self.backend.host:
                for i, x in enumerate(args):
                    check_host(x, f"argument {i}")
            self._check_bounds(args, low.bounds)
            return pytree.unflatten(low.out_tree, low.compile()(*args))
        leaves, names = [], []  # the array leaves, each named as errors call it
        for i, a in enumerate(args):
            if i not in self.static_argnums:
                arg_leaves, _ = pytree.flatten(a)
                leaves += arg_leaves
                names += [f"argument {i}" if len(arg_leaves) == 1 else f"argument {i} leaf {j}"
                          for j in range(len(arg_leaves))]
        for x, name in zip(leaves, names):
            if isinstance(x, ShapeDtype):
                raise TypeError(f"{name} is a ShapeDtype, which has no data: f.lower(...) traces "
                                "abstract arguments; a call needs arrays")
            if self.backend.host:
                check_host(x, name)
        low = self.lower(*args)
        self._check_bounds(args, low.bounds)
        out = pytree.unflatten(low.out_tree, low.compile()(*leaves))
        if fast is not None and len(leaves) == len(args) and len(self._fast_cache) < 64:
            self._fast_cache[fast] = low  # only after a call that succeeded
        return out


def jit(fn: Callable | None = None, *, backend: str | None = None, dynamic=None,
        static_argnums=(), passes=None, **backend_options):
    """Compile `fn` for the backend (default: cuda/hip where present, else cpu); usable bare
    (`@ait.jit`) or with options (`@ait.jit(backend="cpu")`)."""
    if fn is None:
        return lambda f: Jitted(f, backend, dynamic, static_argnums, passes, **backend_options)
    return Jitted(fn, backend, dynamic, static_argnums, passes, **backend_options)
