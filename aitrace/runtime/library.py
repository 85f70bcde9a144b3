"""The cffi binding of the generated library ABI (see backends/cpu/include/ait/runtime.h).

`Library` loads one compiled graph, uploads its constants once, keeps a pool of run contexts
(one workspace arena each) so several threads may call it at once, validates every argument
before any kernel runs, and returns outputs as arrays of the first input's library.
A call's Python work does not grow with the number of kernels: checks precomputed from the
signature, DLTensors reused with their run context, one ait_run.
"""
from __future__ import annotations

import queue

import cffi
import numpy as np

from ..core import shapes
from ..core.ir import ShapeDtype
from . import dlpack
from .interop import like, to_numpy

ffi = cffi.FFI()
ffi.cdef("""
typedef struct { int32_t device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct { void* data; DLDevice device; int32_t ndim; DLDataType dtype;
                 int64_t* shape; int64_t* strides; uint64_t byte_offset; } DLTensor;
int64_t ait_abi_version(void);
const char* ait_last_error(void);
int ait_create(void** model, const void* const* consts, int64_t n_consts);
int ait_context_create(void* model, void** ctx);
int ait_run(void* ctx, const DLTensor* inputs, int64_t n_in, DLTensor* outputs, int64_t n_out,
            void* stream);
void ait_context_destroy(void* ctx);
void ait_destroy(void* model);
int64_t ait_kernel_times(int64_t* ns, int64_t n);   /* only in libraries built with kernel timing */
""")
ABI_VERSION = 1


class LibraryError(RuntimeError):
    """A failure reported by generated code (its message is the library's last error)."""


class _Run:
    """One run context with DLTensor arrays laid out for the signature, reused call after call
    (a call only writes pointers and sizes); owned by one caller at a time through the pool."""

    def __init__(self, ctx, in_avals, out_avals, device_type):
        self.ctx = ctx
        self.ins = ffi.new("DLTensor[]", max(len(in_avals), 1))
        self.outs = ffi.new("DLTensor[]", max(len(out_avals), 1))
        self.in_shapes = [self._layout(t, a, device_type) for t, a in zip(self.ins, in_avals)]
        self.out_shapes = [self._layout(t, a, device_type) for t, a in zip(self.outs, out_avals)]

    @staticmethod
    def _layout(t, aval, device_type):
        shape = ffi.new("int64_t[]", max(aval.ndim, 1))
        t.device.device_type = device_type
        t.ndim = aval.ndim
        t.dtype.code, t.dtype.bits = dlpack.DL_CODES[aval.dtype]
        t.dtype.lanes = 1
        t.shape, t.strides, t.byte_offset = shape, ffi.NULL, 0
        return shape

    @staticmethod
    def fill(tensors, shapes, infos, cast=ffi.cast, void_p=ffi.typeof("void*")):
        for t, shape, info in zip(tensors, shapes, infos):
            t.data = cast(void_p, info.ptr)
            t.device.device_id = info.device[1]
            shape[0:len(info.shape)] = info.shape


class Library:
    def __init__(self, path: str, consts, in_avals: list[ShapeDtype], out_avals: list[ShapeDtype],
                 device_type: int = dlpack.DL_CPU, kernel_names=None):
        self.path, self.in_avals, self.out_avals = str(path), in_avals, out_avals
        self.kernel_names = list(kernel_names or ())
        self.device_type = device_type
        self.lib = ffi.dlopen(self.path)
        if self.lib.ait_abi_version() != ABI_VERSION:
            raise LibraryError(f"{path}: ABI version {self.lib.ait_abi_version()}, expected {ABI_VERSION}")
        consts = [np.ascontiguousarray(c) for c in consts]
        ptrs = ffi.new("void*[]", [ffi.cast("void*", c.__array_interface__["data"][0]) for c in consts] or 1)
        model = ffi.new("void**")
        self._check(self.lib.ait_create(model, ptrs, len(consts)), "create")
        self.model = ffi.gc(model[0], self.lib.ait_destroy)
        self._contexts: queue.SimpleQueue = queue.SimpleQueue()
        self._runs: queue.SimpleQueue = queue.SimpleQueue()
        self._ait_run = self.lib.ait_run
        # What a call checks, worked out once: per input its dtype, rank, and either its whole
        # static shape or (axis, int | Symbol | expression, lower bound, upper bound) per axis.
        self._symbols = sorted({s for a in in_avals for s in shapes.symbols(a.shape)}, key=str)
        self._in_specs = []
        for a in in_avals:
            static = tuple(a.shape) if all(isinstance(d, int) for d in a.shape) else None
            axes = [(axis, d, getattr(d, "min", 1), getattr(d, "max", None))
                    for axis, d in enumerate(a.shape)] if static is None else []
            self._in_specs.append((a, a.dtype, a.ndim, static, axes))
        self._has_exprs = any(not isinstance(d, int) and not d.is_Symbol for a in in_avals for d in a.shape)
        self._out_shapes: dict = {}  # sizes of the symbols -> output shapes

    def _check(self, rc: int, what: str):
        if rc != 0:
            raise LibraryError(f"{what} failed: {ffi.string(self.lib.ait_last_error()).decode()}")

    def kernel_times(self) -> list[tuple[str, float]]:
        """(kernel, milliseconds) per kernel in call order, summed over the calls since the last
        read, which resets them. Needs a library built with kernel timing
        (AITRACE_KERNEL_TIMES=1, or `kernel_times=True` among jit's options)."""
        try:
            read = self.lib.ait_kernel_times
        except AttributeError:
            raise RuntimeError(f"{self.path} was built without kernel timing: set AITRACE_KERNEL_TIMES=1 "
                               "(or pass kernel_times=True to ait.jit)") from None
        n = read(ffi.NULL, 0)
        ns = ffi.new("int64_t[]", max(n, 1))
        read(ns, n)
        names = self.kernel_names if len(self.kernel_names) == n else [f"kernel {i}" for i in range(n)]
        return [(name, ns[i] / 1e6) for i, name in enumerate(names)]

    def _context(self):
        try:
            return self._contexts.get_nowait()
        except queue.Empty:
            ctx = ffi.new("void**")
            self._check(self.lib.ait_context_create(self.model, ctx), "context create")
            return ffi.gc(ctx[0], self.lib.ait_context_destroy)

    def _run(self) -> _Run:
        try:
            return self._runs.get_nowait()
        except queue.Empty:
            return _Run(self._context(), self.in_avals, self.out_avals, self.device_type)

    def _bind(self, infos) -> dict:
        """Check inputs against the signature; return the sizes of the symbolic dims."""
        if len(infos) != len(self._in_specs):
            raise TypeError(f"expected {len(self._in_specs)} arguments, got {len(infos)}")
        env: dict = {}
        device_type = self.device_type
        for i, (info, (aval, dtype, ndim, static, axes)) in enumerate(zip(infos, self._in_specs)):
            if info.device[0] != device_type:
                raise ValueError(f"argument {i} is on {dlpack.DEVICE_NAMES.get(info.device[0], info.device)}, "
                                 f"expected {dlpack.DEVICE_NAMES[device_type]}")
            if info.dtype != dtype:
                raise TypeError(f"argument {i}: expected {aval}, got dtype {info.dtype} "
                                f"({info.dtype}{list(info.shape)})")
            if info.shape == static:
                continue
            if len(info.shape) != ndim:
                raise ValueError(f"argument {i}: expected {aval}, got shape {list(info.shape)}")
            if static is not None:
                axis = next(k for k, (d, n) in enumerate(zip(static, info.shape)) if d != n)
                raise ValueError(f"argument {i}: expected {aval}, got shape {list(info.shape)} (axis {axis})")
            for axis, d, lo, hi in axes:
                n = info.shape[axis]
                if isinstance(d, int):
                    ok = d == n
                elif d.is_Symbol:
                    ok = env.setdefault(d, n) == n and n >= lo and (hi is None or n <= hi)
                else:
                    ok = True  # an expression of other dims: checked once all are bound
                if not ok:
                    raise ValueError(f"argument {i}: expected {aval}, got shape {list(info.shape)} "
                                     f"(axis {axis})")
        if self._has_exprs:
            for i, (info, (aval, _, _, _, axes)) in enumerate(zip(infos, self._in_specs)):
                for axis, d, _, _ in axes:
                    if not isinstance(d, int) and not d.is_Symbol and shapes.evaluate(d, env) != info.shape[axis]:
                        raise ValueError(f"argument {i}: expected {aval}, got shape {list(info.shape)}")
        return env

    @staticmethod
    def _dltensor(info, keep: list):
        t = ffi.new("DLTensor*")
        shape = ffi.new("int64_t[]", list(info.shape) or [0])
        keep += [t, shape]
        t.data = ffi.cast("void*", info.ptr)
        t.device.device_type, t.device.device_id = info.device
        t.ndim = len(info.shape)
        t.dtype.code, t.dtype.bits = dlpack.DL_CODES[info.dtype]
        t.dtype.lanes = 1
        t.shape, t.strides, t.byte_offset = shape, ffi.NULL, 0
        return t

    def output_shapes(self, env: dict) -> list[tuple]:
        key = tuple(env.get(s) for s in self._symbols)
        out = self._out_shapes.get(key)
        if out is None:
            out = [tuple(shapes.evaluate(d, env) for d in a.shape) for a in self.out_avals]
            if len(self._out_shapes) >= 64:
                self._out_shapes.clear()
            self._out_shapes[key] = out
        return out

    def allocate_outputs(self, env: dict, arrays=()):
        """Output arrays for one call (numpy here; device backends allocate in the caller's library)."""
        return [np.empty(s, a.dtype) for s, a in zip(self.output_shapes(env), self.out_avals)]

    def describe_outputs(self, outs):
        return [dlpack.describe(o, f"output {i}") for i, o in enumerate(outs)]

    def wrap_outputs(self, arrays, outs):
        first = arrays[0] if arrays else None
        return [like(first, o) for o in outs]

    def default_stream(self, arrays):
        return None

    def describe_inputs(self, arrays):
        infos = [dlpack.describe(a, f"argument {i}") for i, a in enumerate(arrays)]
        for i, (info, aval) in enumerate(zip(infos, self.in_avals)):
            if info.dtype == np.float64 and aval.dtype == np.float32 and info.device[0] == dlpack.DL_CPU:
                # float64 is canonicalized to float32 (one explicit copy), as tracing does
                infos[i] = dlpack.describe(to_numpy(arrays[i], f"argument {i}").astype(np.float32),
                                           f"argument {i}")
        return infos

    def __call__(self, *arrays, stream=None):
        # No Python work per kernel: one ait_run per call, whatever the graph.
        infos = self.describe_inputs(arrays)
        env = self._bind(infos)
        outs = self.allocate_outputs(env, arrays)
        out_infos = self.describe_outputs(outs)
        if stream is None:
            stream = self.default_stream(arrays)
        run = self._run()
        try:
            run.fill(run.ins, run.in_shapes, infos)
            run.fill(run.outs, run.out_shapes, out_infos)
            rc = self._ait_run(run.ctx, run.ins, len(infos), run.outs, len(out_infos),
                               ffi.NULL if stream is None else ffi.cast("void*", stream))
        finally:
            self._runs.put(run)
        self._check(rc, "run")
        return self.wrap_outputs(arrays, outs)
