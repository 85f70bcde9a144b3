"""Array interchange for host (CPU) arrays: any __dlpack__ producer in, the caller's library out.

numpy cannot import bfloat16 through DLPack, so torch's bfloat16 tensors travel as int16 views
(same bits, no copy) and are reinterpreted as ml_dtypes.bfloat16.
"""
from __future__ import annotations

import sys

import numpy as np

from ..core import dtypes


def is_torch_tensor(x):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def check_host(x, name: str = "argument") -> None:
    """Raise ValueError naming `name` unless `x` lives in host (CPU) memory."""
    if isinstance(x, (np.ndarray, np.generic)):
        return
    if is_torch_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name} is on device {x.device}, expected a CPU array")
    elif hasattr(x, "__dlpack__"):
        dev = x.__dlpack_device__() if hasattr(x, "__dlpack_device__") else (1, 0)
        if dev[0] not in (1, 3):  # kDLCPU, kDLCUDAHost
            raise ValueError(f"{name} lives on DLPack device {tuple(dev)}, expected a CPU array")


def to_numpy(x, name: str = "argument") -> np.ndarray:
    """A host array as a numpy array sharing its memory where the source allows."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, np.generic):
        return np.asarray(x)
    check_host(x, name)
    if is_torch_tensor(x):
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            import torch
            return x.view(torch.int16).numpy().view(dtypes.bfloat16)
        return x.numpy()
    if hasattr(x, "__dlpack__"):
        return np.from_dlpack(x)
    try:
        return np.asarray(x)
    except Exception as e:
        raise TypeError(f"{name}: cannot read a {type(x).__name__} as an array") from e


def like(ref, a: np.ndarray):
    """Return numpy array `a` as an array of `ref`'s library (torch in -> torch out), no copy."""
    if is_torch_tensor(ref):
        import torch
        if a.dtype == dtypes.bfloat16:
            return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(np.ascontiguousarray(a))
    return a
