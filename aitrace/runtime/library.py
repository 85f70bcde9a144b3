"""The cffi binding of the generated library ABI (see backends/cpu/include/ait/runtime.h).

`Library` loads one compiled graph, uploads its constants once, keeps a pool of run contexts
(one workspace arena each) so several threads may call it at once, validates every argument
before any kernel runs, and returns outputs as arrays of the first input's library.
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
""")
ABI_VERSION = 1


class LibraryError(RuntimeError):
    """A failure reported by generated code (its message is the library's last error)."""


class Library:
    def __init__(self, path: str, consts, in_avals: list[ShapeDtype], out_avals: list[ShapeDtype],
                 device_type: int = dlpack.DL_CPU):
        self.path, self.in_avals, self.out_avals = str(path), in_avals, out_avals
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

    def _check(self, rc: int, what: str):
        if rc != 0:
            raise LibraryError(f"{what} failed: {ffi.string(self.lib.ait_last_error()).decode()}")

    def _context(self):
        try:
            return self._contexts.get_nowait()
        except queue.Empty:
            ctx = ffi.new("void**")
            self._check(self.lib.ait_context_create(self.model, ctx), "context create")
            return ffi.gc(ctx[0], self.lib.ait_context_destroy)

    def _bind(self, infos) -> dict:
        """Check inputs against the signature; return the sizes of the symbolic dims."""
        if len(infos) != len(self.in_avals):
            raise TypeError(f"expected {len(self.in_avals)} arguments, got {len(infos)}")
        env: dict = {}
        for i, (info, aval) in enumerate(zip(infos, self.in_avals)):
            got = f"{info.dtype}{list(info.shape)}"
            if info.device[0] != self.device_type:
                raise ValueError(f"argument {i} is on {dlpack.DEVICE_NAMES.get(info.device[0], info.device)}, "
                                 f"expected {dlpack.DEVICE_NAMES[self.device_type]}")
            if info.dtype != aval.dtype:
                raise TypeError(f"argument {i}: expected {aval}, got dtype {info.dtype} ({got})")
            if len(info.shape) != aval.ndim:
                raise ValueError(f"argument {i}: expected {aval}, got shape {list(info.shape)}")
            for axis, (d, n) in enumerate(zip(aval.shape, info.shape)):
                if isinstance(d, int):
                    ok = d == n
                elif d.is_Symbol:
                    ok = env.setdefault(d, n) == n
                    lo, hi = getattr(d, "min", 1), getattr(d, "max", None)
                    ok = ok and n >= lo and (hi is None or n <= hi)
                else:
                    ok = True  # an expression of other dims: checked once all are bound
                if not ok:
                    raise ValueError(f"argument {i}: expected {aval}, got shape {list(info.shape)} "
                                     f"(axis {axis})")
        for i, (info, aval) in enumerate(zip(infos, self.in_avals)):
            for axis, (d, n) in enumerate(zip(aval.shape, info.shape)):
                if not isinstance(d, int) and not d.is_Symbol and shapes.evaluate(d, env) != n:
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
        return [tuple(shapes.evaluate(d, env) for d in a.shape) for a in self.out_avals]

    def allocate_outputs(self, env: dict, arrays=()):
        """Output arrays for one call (numpy here; device backends allocate in the caller's library)."""
        return [np.empty(s, a.dtype) for s, a in zip(self.output_shapes(env), self.out_avals)]

    def wrap_outputs(self, arrays, outs):
        first = arrays[0] if arrays else None
        return [like(first, o) for o in outs]

    def default_stream(self, arrays):
        return None

    def __call__(self, *arrays, stream=None):
        infos = [dlpack.describe(a, f"argument {i}") for i, a in enumerate(arrays)]
        for i, (info, aval) in enumerate(zip(infos, self.in_avals)):
            if info.dtype == np.float64 and aval.dtype == np.float32 and info.device[0] == dlpack.DL_CPU:
                # float64 is canonicalized to float32 (one explicit copy), as tracing does
                infos[i] = dlpack.describe(to_numpy(arrays[i], f"argument {i}").astype(np.float32),
                                           f"argument {i}")
        env = self._bind(infos)
        outs = self.allocate_outputs(env, arrays)
        out_infos = [dlpack.describe(o, f"output {i}") for i, o in enumerate(outs)]
        keep: list = []
        ins = ffi.new("DLTensor[]", max(len(infos), 1))
        for i, info in enumerate(infos):
            ins[i] = self._dltensor(info, keep)[0]
        outs_dl = ffi.new("DLTensor[]", max(len(out_infos), 1))
        for i, info in enumerate(out_infos):
            outs_dl[i] = self._dltensor(info, keep)[0]
        if stream is None:
            stream = self.default_stream(arrays)
        ctx = self._context()
        try:
            rc = self.lib.ait_run(ctx, ins, len(infos), outs_dl, len(out_infos),
                                  ffi.NULL if stream is None else ffi.cast("void*", stream))
        finally:
            self._contexts.put(ctx)
        self._check(rc, "run")
        return self.wrap_outputs(arrays, outs)
