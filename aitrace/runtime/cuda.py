"""The runtime of libraries built by the cuda backend: arguments and results are device arrays
(torch CUDA tensors or cupy arrays), exchanged by pointer with no copy; each call runs on the
caller's current stream (torch's or cupy's) unless `stream=` names another.

A call's host work is a few attribute reads per tensor, one allocation per output and one
ait_run, which replays the whole model as one CUDA graph: torch tensors skip the generic DLPack
path, and what depends only on the signature (torch dtypes, the stream getter) is looked up once.
"""
from __future__ import annotations

import sys

from ..core import dtypes
from . import dlpack
from .library import Library

TORCH_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "int32": "int32",
                "int64": "int64", "bool": "bool"}


def _torch_of(arrays):
    torch = sys.modules.get("torch")
    if torch is not None and arrays and isinstance(arrays[0], torch.Tensor):
        return torch
    return None


class _Torch:
    """What a call needs of torch, resolved once: dtype maps and the current-stream getter."""

    def __init__(self, torch, out_avals):
        self.torch = torch
        self.Tensor = torch.Tensor
        self.to_numpy = {getattr(torch, t): dtypes.dtype(n) for n, t in TORCH_DTYPES.items()}
        self.out_dtypes = [getattr(torch, TORCH_DTYPES[str(a.dtype)]) for a in out_avals]
        raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # what torch's compiled code calls
        self.stream = raw if raw is not None else lambda i: torch.cuda.current_stream(i).cuda_stream

    def describe(self, x, name: str) -> dlpack.ArrayInfo:
        """A torch tensor read directly; anything unusual (non-contiguous, another dtype or
        device) goes through dlpack.describe, which copies or names the problem."""
        dt = self.to_numpy.get(x.dtype)
        dev = x.device
        if dt is None or dev.type != "cuda" or not x.is_contiguous():
            return dlpack.describe(x, name)
        return dlpack.ArrayInfo(x.data_ptr(), tuple(x.shape), dt, (dlpack.DL_CUDA, dev.index or 0), x)


class CudaLibrary(Library):
    def __init__(self, path, consts, in_avals, out_avals, kernel_names=None):
        super().__init__(path, consts, in_avals, out_avals, device_type=dlpack.DL_CUDA, kernel_names=kernel_names)
        self._torch: _Torch | None = None

    def _torch_for(self, arrays) -> _Torch | None:
        torch = _torch_of(arrays)
        if torch is None:
            return None
        if self._torch is None:
            self._torch = _Torch(torch, self.out_avals)
        return self._torch

    def describe_inputs(self, arrays):
        t = self._torch_for(arrays)
        if t is None:
            return super().describe_inputs(arrays)
        Tensor = t.Tensor
        return [t.describe(a, f"argument {i}") if isinstance(a, Tensor) else dlpack.describe(a, f"argument {i}")
                for i, a in enumerate(arrays)]

    def describe_outputs(self, outs):
        if self._torch is not None and outs and isinstance(outs[0], self._torch.Tensor):
            return [self._torch.describe(o, f"output {i}") for i, o in enumerate(outs)]
        return super().describe_outputs(outs)

    def allocate_outputs(self, env: dict, arrays=()):
        t = self._torch_for(arrays)
        shapes = self.output_shapes(env)
        if t is not None:
            dev, empty = arrays[0].device, t.torch.empty
            return [empty(s, dtype=d, device=dev) for s, d in zip(shapes, t.out_dtypes)]
        cupy = sys.modules.get("cupy")
        if cupy is not None:
            if str(self.out_avals[0].dtype) == "bfloat16" if self.out_avals else False:
                raise TypeError("cupy has no bfloat16: pass torch tensors for bfloat16 outputs")
            return [cupy.empty(s, dtype=a.dtype) for s, a in zip(shapes, self.out_avals)]
        raise TypeError("the cuda backend returns arrays of the inputs' library: pass torch CUDA tensors "
                        "or cupy arrays")

    def wrap_outputs(self, arrays, outs):
        return outs  # already arrays of the inputs' library, on their device

    def default_stream(self, arrays):
        t = self._torch_for(arrays)
        if t is not None:
            return t.stream(arrays[0].device.index or 0)
        cupy = sys.modules.get("cupy")
        if cupy is not None:
            return cupy.cuda.get_current_stream().ptr
        return None
