"""The `cuda` backend: CUDA C++ compiled by nvcc into one shared library per graph, called through
the shared cffi runtime with device arrays (torch CUDA tensors, cupy arrays) on the caller's stream.

The target is the GPU present (sm_90a on Hopper, sm_80 on Ampere) or `arch=` given to `ait.jit`,
so a library can be built on a machine without a GPU (`f.lower(...).build()`). Under construction:
`backend=None` does not pick it until it lowers every primitive; `backend="cuda"` uses it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from ...runtime import cache
from ...runtime.progress import progress
from ..base import Backend, Source, register
from ..codegen import generate, templates
from ..lowering import load_lowerings
from .dialect import CudaDialect

HERE = Path(__file__).parent
TEMPLATES = templates(HERE / "templates")
INCLUDES = [HERE / "include", HERE.parent / "cpu" / "include"]  # cuda.h, and runtime.h (the ABI)
load_lowerings(__name__, __path__)


def nvcc() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / "nvcc").exists():
        return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


@lru_cache(maxsize=None)
def nvcc_identity(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout else path


@lru_cache(maxsize=None)
def gpu_arch() -> str | None:
    """The present GPU's target (sm_90a for compute capability 9.0, sm_80 for 8.x), or None."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    major, minor = out.stdout.split()[0].split(".")
    return "sm_90a" if major == "9" else f"sm_{major}{minor}"


def flags(arch: str) -> list[str]:
    code = arch.replace("sm_", "")
    # -DNDEBUG: without it ptxas serializes wgmma (warning C7510)
    f = ["-std=c++17", "-O3", "-DNDEBUG", "--expt-relaxed-constexpr", f"-gencode=arch=compute_{code},code={arch}",
         "-Xcompiler", "-fPIC", "-shared", "-lineinfo"]
    f += [f"-I{p}" for p in INCLUDES]
    from .gemm import cutlass_include_dir  # CUTLASS's headers (extra `cuda`), where installed
    if cutlass_include_dir():
        f.append(f"-I{cutlass_include_dir()}")
    return f


@register
class CudaBackend(Backend):
    name = "cuda"
    host = False
    complete = False

    @classmethod
    def is_available(cls) -> bool:
        return nvcc() is not None

    def lower(self, graph, memory_fusion: bool = True, arch: str | None = None, **options) -> Source:
        arch = arch or gpu_arch() or "sm_90a"
        src = generate(graph, "cuda", TEMPLATES, CudaDialect(arch), memory_fusion=memory_fusion,
                       model_template="model.cu.j2", arch=arch)
        src.info["arch"] = arch
        return src

    def build(self, source: Source) -> Path:
        cc = nvcc()
        if cc is None:
            raise RuntimeError("the cuda backend needs nvcc (set CUDA_HOME or put nvcc on PATH)")
        fl = flags(source.info["arch"])
        headers = "".join(p.read_text() for d in INCLUDES for p in sorted(d.rglob("*.h")))
        key = cache.key_of(source.text, nvcc_identity(cc), " ".join(fl), cache.key_of(headers))
        n = len(source.info.get("kernels", ()))

        def compile_(out: Path):
            cu = out.with_suffix(".cu")
            cu.write_text(source.text)
            r = subprocess.run([cc, *fl, str(cu), "-o", str(out)], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"nvcc failed on {cu}:\n{r.stderr[-6000:]}")
        with progress(f"compiling {n} kernels for {source.info['arch']} with nvcc"):
            return cache.cached_build("cuda", key, compile_, files={"model.cu": source.text})

    def load(self, source: Source, path):
        from ...runtime.cuda import CudaLibrary
        g = source.graph
        return CudaLibrary(path, g.consts, [v.aval for v in g.invars], [v.aval for v in g.outvars])
