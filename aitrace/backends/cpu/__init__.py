"""The `cpu` backend: C++17 with OpenMP, compiled by the system compiler into one shared
library per graph, called through the shared cffi runtime."""
from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from ...runtime import cache
from ...runtime.library import Library
from ...runtime.progress import progress
from ..base import Backend, Source, register
from ..codegen import generate, templates
from ..lowering import load_lowerings

INCLUDE = Path(__file__).parent / "include"
TEMPLATES = templates(Path(__file__).parent / "templates")
load_lowerings(__name__, __path__)


def compiler() -> str:
    """`AITRACE_CXX`, else `CXX`, else g++ (clang++ works too)."""
    return os.environ.get("AITRACE_CXX") or os.environ.get("CXX") or "g++"


@lru_cache(maxsize=None)
def compiler_identity(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else cxx


def flags() -> list[str]:
    f = ["-std=c++17", "-O3", "-march=native", "-fopenmp", "-fPIC", "-shared",
         "-fno-math-errno", "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas",
         # no FP exception ever traps here: without this, gcc keeps a compare-and-select such as
         # exp's underflow to 0 a branch on CPUs without AVX-512 masks (AVX2), and every loop
         # calling exp / erf / tanh stays scalar there; results (NaN, inf) are unchanged
         "-fno-trapping-math"]
    if platform.machine() in ("x86_64", "AMD64"):
        # gcc/clang vectorize loops with 256-bit registers on AVX-512 CPUs unless told otherwise:
        # the generated elementwise loops and GEMM epilogues (exact gelu 1.5 -> 1.0 ns per element
        # on one Xeon core) want all 512 (ignored where the CPU has no AVX-512)
        f.append("-mprefer-vector-width=512")
    if os.environ.get("AITRACE_SANITIZE"):  # tests: AddressSanitizer + UBSan over generated code
        # -O1: instrumented GEMM templates take minutes to build at -O3; the checks are the same
        f += ["-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    return f + shlex.split(os.environ.get("AITRACE_CXXFLAGS", ""))


@lru_cache(maxsize=None)
def headers_digest() -> str:
    return cache.key_of(*(p.read_text() for p in sorted(INCLUDE.rglob("*.h"))))


class BuildError(RuntimeError):
    pass


def _compile(cxx: str, fl: list[str], text: str, out: Path, extra=(), compile_only=False) -> None:
    src = out.with_suffix(".cpp")
    src.write_text(text)
    fl = [f for f in fl if f != "-shared"] + ["-c"] if compile_only else fl
    cmd = [cxx, *fl, f"-I{INCLUDE}", str(src), *map(str, extra), "-o", str(out)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        src.unlink(missing_ok=True)
    if res.returncode != 0:
        raise BuildError(f"C++ compile failed ({' '.join(cmd)}):\n{res.stderr[-4000:]}")


# Every kernel header, parsed once into a precompiled header: a generated file then compiles in
# about 0.1 s plus its own kernels, instead of re-reading the headers (0.6 s) each time.
PCH_TEXT = "".join(f'#include "ait/{p.name}"\n' for p in sorted((INCLUDE / "ait").glob("*.h"))) + "#include <vector>\n"


@lru_cache(maxsize=None)
def precompiled_header(cxx: str, fl: tuple) -> Path:
    """Path of the header to -include; its .gch (gcc) or .pch (clang) lies beside it."""
    ext = ".pch" if "clang" in compiler_identity(cxx) else ".gch"
    fl = [f for f in fl if f != "-shared"] + ["-x", "c++-header"]
    key = cache.key_of(PCH_TEXT, compiler_identity(cxx), " ".join(fl), headers_digest())

    def build(out: Path):
        cmd = [cxx, *fl, f"-I{INCLUDE}", str(out.parent / "ait_all.h"), "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise BuildError(f"precompiled header failed ({' '.join(cmd)}):\n{res.stderr[-4000:]}")
    gch = cache.cached_build("cpu-pch", key, build, files={"ait_all.h": PCH_TEXT}, filename="ait_all.h" + ext)
    return gch.with_suffix("")


@lru_cache(maxsize=None)
def precompiled_kernels(cxx: str, fl: tuple) -> Path:
    """The object file of ait/precompiled.h's instantiations (GEMM, conv, attention): built once
    per compiler, flags and headers, then linked into every generated library."""
    text = KERNELS_CPP.read_text()
    return cache.cached_build("cpu-kernels", _kernels_entry(cxx, fl).parent.name,
                              lambda out: _compile(cxx, list(fl), text, out, compile_only=True),
                              filename="kernels.o")


KERNELS_CPP = Path(__file__).parent / "kernels.cpp"


def _kernels_entry(cxx: str, fl: tuple) -> Path:
    key = cache.key_of(KERNELS_CPP.read_text(), compiler_identity(cxx), " ".join(fl), headers_digest())
    return cache.cache_dir() / "cpu-kernels" / key / "kernels.o"


@register
class CpuBackend(Backend):
    name = "cpu"

    @classmethod
    def is_available(cls) -> bool:
        return shutil.which(compiler()) is not None

    def lower(self, graph, memory_fusion: bool = True, kernel_times: bool | None = None, **options) -> Source:
        """kernel_times (default: AITRACE_KERNEL_TIMES=1): time every kernel call, read back by
        the library's `kernel_times()`."""
        if kernel_times is None:
            kernel_times = os.environ.get("AITRACE_KERNEL_TIMES") == "1"
        return generate(graph, "cpu", TEMPLATES, memory_fusion=memory_fusion, kernel_times=kernel_times)

    def build(self, source: Source) -> Path:
        cxx, fl = compiler(), flags()
        key = cache.key_of(source.text, compiler_identity(cxx), " ".join(fl), headers_digest())
        n = len(source.info.get("kernels", ()))
        first = "" if cache.is_valid(_kernels_entry(cxx, tuple(fl))) else \
            " and, once per machine, the shared kernel library"
        with progress(f"compiling {n} kernels for the cpu{first}"):
            kernels = precompiled_kernels(cxx, tuple(fl))
            pch = ["-include", str(precompiled_header(cxx, tuple(fl))), "-Winvalid-pch"]
            return cache.cached_build("cpu", key, lambda out: _compile(cxx, fl + pch, source.text, out, [kernels]),
                                      files={"model.cpp": source.text})

    def load(self, source: Source, path) -> Library:
        g = source.graph
        return Library(path, g.consts, [v.aval for v in g.invars], [v.aval for v in g.outvars],
                       kernel_names=source.info.get("kernels"))
