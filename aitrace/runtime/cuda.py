"""The runtime of libraries built by the cuda backend: arguments and results are device arrays
(torch CUDA tensors or cupy arrays), exchanged by pointer with no copy; each call runs on the
caller's current stream (torch's or cupy's) unless `stream=` names another."""
from __future__ import annotations

import sys

from . import dlpack
from .library import Library

TORCH_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "int32": "int32",
                "int64": "int64", "bool": "bool"}


def _torch_of(arrays):
    torch = sys.modules.get("torch")
    if torch is not None and arrays and isinstance(arrays[0], torch.Tensor):
        return torch
    return None


class CudaLibrary(Library):
    def __init__(self, path, consts, in_avals, out_avals):
        super().__init__(path, consts, in_avals, out_avals, device_type=dlpack.DL_CUDA)

    def allocate_outputs(self, env: dict, arrays=()):
        torch = _torch_of(arrays)
        shapes = self.output_shapes(env)
        if torch is not None:
            dev = arrays[0].device
            return [torch.empty(s, dtype=getattr(torch, TORCH_DTYPES[str(a.dtype)]), device=dev)
                    for s, a in zip(shapes, self.out_avals)]
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
        torch = _torch_of(arrays)
        if torch is not None:
            return torch.cuda.current_stream(arrays[0].device).cuda_stream
        cupy = sys.modules.get("cupy")
        if cupy is not None:
            return cupy.cuda.get_current_stream().ptr
        return None
