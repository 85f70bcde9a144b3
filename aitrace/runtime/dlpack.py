"""Arrays in: any `__dlpack__` producer (numpy, torch, cupy, ...) described as a DLTensor.

numpy and torch are read directly (pointer, shape, strides); anything else goes through its
DLPack capsule. Non-contiguous inputs are made contiguous explicitly (one copy) because the
generated kernels read row-major data.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from ..core import dtypes
from .interop import is_torch_tensor

# DLPack type codes
DL_INT, DL_UINT, DL_FLOAT, DL_BFLOAT, DL_BOOL = 0, 1, 2, 4, 6
DL_CPU, DL_CUDA, DL_CUDA_HOST, DL_ROCM = 1, 2, 3, 10
DEVICE_NAMES = {DL_CPU: "cpu", DL_CUDA: "cuda", DL_CUDA_HOST: "cuda_host", DL_ROCM: "rocm"}

DL_CODES = {dtypes.float16: (DL_FLOAT, 16), dtypes.bfloat16: (DL_BFLOAT, 16),
            dtypes.float32: (DL_FLOAT, 32), dtypes.int32: (DL_INT, 32), dtypes.int64: (DL_INT, 64),
            dtypes.bool_: (DL_BOOL, 8), np.dtype(np.float64): (DL_FLOAT, 64)}
FROM_DL = {v: k for k, v in DL_CODES.items()}
FROM_DL[(DL_UINT, 8)] = np.dtype(np.uint8)


@dataclass
class ArrayInfo:
    """What the runtime needs of one array; `owner` keeps the memory alive during a call."""
    ptr: int
    shape: tuple
    dtype: np.dtype
    device: tuple  # (DLPack device type, id)
    owner: object


def describe(x, name: str) -> ArrayInfo:
    """Read an array's pointer, shape, dtype and device, copying only to make it contiguous."""
    if isinstance(x, np.generic):
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        return ArrayInfo(x.__array_interface__["data"][0], x.shape, x.dtype, (DL_CPU, 0), x)
    if is_torch_tensor(x):
        if not x.is_contiguous():
            x = x.contiguous()
        dt = dtypes.dtype(str(x.dtype).removeprefix("torch.")) if x.dtype.is_floating_point or \
            str(x.dtype) in ("torch.int32", "torch.int64", "torch.bool") else None
        if dt is None or str(x.dtype) == "torch.float64":
            raise TypeError(f"{name}: unsupported torch dtype {x.dtype}")
        dev = {"cpu": DL_CPU, "cuda": DL_CUDA}.get(x.device.type, -1)
        return ArrayInfo(x.data_ptr(), tuple(x.shape), dt, (dev, x.device.index or 0), x)
    if hasattr(x, "__dlpack__"):
        return _from_capsule(x, name)
    raise TypeError(f"{name}: expected an array (numpy, torch, cupy or any __dlpack__ producer), "
                    f"got {type(x).__name__}")


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32),
                ("device_id", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype, _get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]


class _Capsule:
    """Holds a consumed DLPack capsule's producer alive; numpy-free path for any library."""
    def __init__(self, producer, capsule):
        self.producer, self.capsule = producer, capsule


def _from_capsule(x, name: str) -> ArrayInfo:
    try:
        dev = tuple(x.__dlpack_device__())
    except AttributeError:
        dev = (DL_CPU, 0)
    if dev[0] == DL_CPU:  # numpy reads host DLPack (and checks strides) for us
        try:
            return describe(np.from_dlpack(x), name)
        except (TypeError, BufferError, RuntimeError):
            pass  # e.g. bfloat16, which numpy cannot import: read the capsule ourselves
    capsule = x.__dlpack__()
    t = _DLTensor.from_address(_get_pointer(capsule, b"dltensor"))
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if t.strides:
        expected = 1
        for i in reversed(range(t.ndim)):
            if shape[i] != 1 and t.strides[i] != expected:
                raise ValueError(f"{name}: non-contiguous {type(x).__name__} through DLPack; "
                                 f"make it contiguous first")
            expected *= shape[i]
    key = (t.code, t.bits)
    if key not in FROM_DL or t.lanes != 1:
        raise TypeError(f"{name}: unsupported DLPack dtype code={t.code} bits={t.bits}")
    return ArrayInfo(t.data + t.byte_offset, shape, FROM_DL[key], (t.device_type, t.device_id),
                     _Capsule(x, capsule))
