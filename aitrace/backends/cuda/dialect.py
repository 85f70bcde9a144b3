"""CUDA C++ for the shared C emitter: CUDA's half types, device math, and kernels' host
functions taking the stream."""
from __future__ import annotations

from ...core import dtypes
from ..cemit import Dialect


class CudaDialect(Dialect):
    name = "cuda"
    storage_types = {dtypes.float16: "__half", dtypes.bfloat16: "__nv_bfloat16", dtypes.float32: "float",
                     dtypes.int32: "int32_t", dtypes.int64: "int64_t", dtypes.bool_: "bool"}
    math = {"exp": "expf", "log": "logf", "sqrt": "sqrtf", "tanh": "tanhf", "erf": "erff",
            "one_plus_erf": "ait::gpu::one_plus_erf", "abs": "fabsf", "pow": "powf", "max": "ait::gpu::cmax",
            "min": "ait::gpu::cmin"}
    # every kernel's host function takes the run's stream and its GEMM workspace (a region of
    # the arena; stream-K GEMMs reduce partial tiles there, see cuda/gemm.py)
    host_params = ["const int64_t* dims", "cudaStream_t stream", "void* workspace", "size_t workspace_bytes"]
    host_args = ["dims", "stream", "workspace", "workspace_bytes"]
    device_type = 2  # kDLCUDA

    def __init__(self, arch: str = "sm_90a"):
        self.arch = arch  # the target: lowerings pick kernels by it (CUTLASS sm90 on sm_90a)
