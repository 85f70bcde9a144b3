"""The `cuda` backend: CUDA C++ compiled by nvcc into one shared library per graph, called through
the shared cffi runtime with device arrays (torch CUDA tensors, cupy arrays) on the caller's stream.

The target is the GPU present (sm_90a on Hopper, sm_80 on Ampere) or `arch=` given to `ait.jit`,
so a library can be built on a machine without a GPU (`f.lower(...).build()`). `backend=None` picks
it where a GPU and nvcc are present. Each CUTLASS kernel of a model is compiled as its own
translation unit, in parallel (see split_units), and GEMM configurations come from profiler.py.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
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
    # sm_8x: the PTX too, which later GPUs (Hopper included) JIT-compile
    targets = f"[{arch},compute_{code}]" if arch.startswith("sm_8") else arch
    # -DNDEBUG: without it ptxas serializes wgmma (warning C7510)
    f = ["-std=c++17", "-O3", "-DNDEBUG", "--expt-relaxed-constexpr", f"-gencode=arch=compute_{code},code={targets}",
         "-Xcompiler", "-fPIC", "-shared", "-lineinfo"]
    if arch == "sm_90a":  # programmatic dependent launch of aitrace's own kernels (ait/cuda.h)
        f += ["-DAIT_PDL"]
    f += [f"-I{p}" for p in INCLUDES]
    from .gemm import cutlass_include_dir  # CUTLASS's headers (extra `cuda`), where installed
    if cutlass_include_dir():
        f.append(f"-I{cutlass_include_dir()}")
    from .gemm import cutlass_util_include_dir  # cutlass/util/packed_stride.hpp (sm90 conv)
    if cutlass_util_include_dir():
        f.append(f"-I{cutlass_util_include_dir()}")
    return f


_UNIT = re.compile(r"^// ait-unit-begin (\w+)\n(.*?)^// ait-unit-end \1\n", re.M | re.S)


def split_units(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(main source, [(name, source)]): each CUTLASS kernel definition (a block between
    `// ait-unit-begin NAME` and `// ait-unit-end NAME` lines, defining the host function NAME
    inside the model's anonymous namespace) moved into a translation unit of its own; the main
    source keeps a declaration of NAME at file scope. A block includes what it needs, so its unit
    is the same text in every model (and in the profiler): one cached object serves them all. A
    block's `// ait-unit-define MACRO` lines define MACRO before everything in its unit (a setting
    of the headers it includes that other units must not see)."""
    units = []

    def move(m):
        name, body = m.group(1), m.group(2)
        sig = re.search(r"\[\[maybe_unused\]\] static cudaError_t " + name + r"\((.*?)\) \{", body, re.S)
        defines = "".join(f"#define {d} 1\n" for d in re.findall(r"^// ait-unit-define (\w+)", body, re.M))
        units.append((name, defines + body.replace(sig.group(0), f"cudaError_t {name}({sig.group(1)}) {{")))
        return (f"}}  // namespace\ncudaError_t {name}({sig.group(1)});  // defined in its own translation unit\n"
                "namespace {\n")
    return _UNIT.sub(move, text), units


KERNELS_PER_PART = 16  # kernel functions per translation unit (a unit's fixed cost: the headers' parse)
_KERNEL = re.compile(r"^// ait-kernel-begin (\w+)\n(.*?)^// ait-kernel-end \1\n", re.M | re.S)


def split_kernels(main: str, parts: int) -> tuple[str, list[str]]:
    """(main source, [part sources]): the kernel functions of a main source (after split_units),
    dealt into `parts` translation units of about equal length that compile in parallel, each
    with the main source's prelude; the main source keeps their declarations. A kernel function
    is the last thing in its block: `static void NAME(...)`, made external (the library links
    with -Bsymbolic, so a model's kernels never bind to another's of the same name)."""
    blocks = list(_KERNEL.finditer(main))
    if parts <= 1 or len(blocks) < 2 * parts:
        return main, []
    # the CUTLASS kernels' declarations (split_units), for every part: kernels share them
    decls = "".join(re.findall(r"^cudaError_t \w+\(.*?\);  // defined in its own translation unit\n", main, re.M | re.S))
    prelude = main[:main.index("namespace {\n")] + decls
    bins, sizes = [[] for _ in range(parts)], [0] * parts

    def move(m):
        name, body = m.group(1), m.group(2)
        start = body.index(f"static void {name}(")
        sig = body[start + len("static "):body.index(") {", start) + 1]
        i = sizes.index(min(sizes))
        bins[i].append(f"{body[:start]}}}  // namespace\n{body[start + len('static '):]}namespace {{\n")
        sizes[i] += len(body)
        return f"}}  // namespace\n{sig};  // defined in a kernels unit\nnamespace {{\n"
    main = _KERNEL.sub(move, main)
    return main, [prelude + "namespace {\n" + "".join(b) + "}  // namespace\n" for b in bins if b]


def unit_object(cc: str, arch: str, name: str, text: str) -> Path:
    """The object file of a translation unit from split_units, built once per text and kept in the
    build cache: models sharing a kernel (and the profiler's timing of it) compile it once."""
    fl = [f for f in flags(arch) if f != "-shared"] + ["-c"]
    key = cache.key_of(text, nvcc_identity(cc), " ".join(fl), headers_key())
    return cache.cached_build("cuda-unit", key, lambda out: _nvcc(cc, [*fl, str(out.parent / f"{name}.cu")], out),
                              files={f"{name}.cu": text}, filename="unit.o")


@lru_cache(maxsize=None)
def headers_key() -> str:
    """A hash of aitrace's own headers (ait/*.h, *.cuh), which a build's key must cover."""
    return cache.key_of("".join(p.read_text() for d in INCLUDES for p in sorted(d.rglob("*.*h"))))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _nvcc(cc: str, args: list[str], out: Path) -> Path:
    r = subprocess.run([cc, *args, "-o", str(out)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"nvcc failed ({' '.join(a for a in args if not a.startswith('-I'))}):\n{r.stderr[-6000:]}")
    return out


@register
class CudaBackend(Backend):
    name = "cuda"
    host = False
    complete = True

    @classmethod
    def is_available(cls) -> bool:
        return nvcc() is not None

    @classmethod
    def can_run(cls) -> bool:
        return cls.is_available() and gpu_arch() is not None

    def lower(self, graph, memory_fusion: bool = True, arch: str | None = None, cuda_graphs: bool = True,
              kernel_times: bool = False, **options) -> Source:
        """kernel_times: the library times every kernel with CUDA events (and runs without CUDA
        graphs), read back by its `kernel_times()`; AITRACE_KERNEL_TIMES=1 when a library is
        created does the same without a rebuild."""
        arch = arch or gpu_arch() or "sm_90a"
        from . import profiler

        def gen():
            return generate(graph, "cuda", TEMPLATES, CudaDialect(arch), memory_fusion=memory_fusion,
                            model_template="model.cu.j2", arch=arch, cuda_graphs=cuda_graphs,
                            kernel_times=kernel_times)
        with profiler.collecting() as pending:  # GEMMs to profile: all of them in one parallel batch
            src = gen()
        if pending:
            # the first pass's kernel units (the profiled GEMMs with heuristic configs, the rest as
            # they will stay) compile into the build cache beside the candidates
            cc = nvcc()
            prebuild = [lambda u=u: unit_object(cc, arch, *u) for u in split_units(src.text)[1]] if cc else []
            profiler.profile_all(pending, prebuild)
            src = gen()
        src.info["arch"] = arch
        return src

    def build(self, source: Source) -> Path:
        cc = nvcc()
        if cc is None:
            raise RuntimeError("the cuda backend needs nvcc (set CUDA_HOME or put nvcc on PATH)")
        arch = source.info["arch"]
        fl = flags(arch)
        key = cache.key_of(source.text, nvcc_identity(cc), " ".join(fl), headers_key())
        n = len(source.info.get("kernels", ()))
        main, units = split_units(source.text)
        main, parts = split_kernels(main, min(os.cpu_count() or 1, n // KERNELS_PER_PART))

        def compile_(out: Path):
            if not units and not parts:
                return _nvcc(cc, [*fl, str(_write(out.with_suffix(".cu"), main))], out)
            # the CUTLASS kernels (most of the nvcc time, each cached on its own) compile in
            # parallel with the main unit and the kernel parts, then one link
            obj = [f for f in fl if f != "-shared"] + ["-c"]
            local = [(f"{out.stem}.main", main)] + [(f"{out.stem}.part{i}", p) for i, p in enumerate(parts)]
            jobs = [lambda f=f: _nvcc(cc, [*obj, str(_write(out.parent / f"{f[0]}.cu", f[1]))], out.parent / f"{f[0]}.o")
                    for f in local]
            jobs += [lambda u=u: unit_object(cc, arch, *u) for u in units]
            with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
                objs = list(pool.map(lambda job: job(), jobs))
            try:
                _nvcc(cc, ["-shared", "-Xlinker", "-Bsymbolic", *[f for f in fl if f.startswith("-gencode")],
                           *map(str, objs)], out)
            finally:
                for name, _ in local:
                    (out.parent / f"{name}.o").unlink(missing_ok=True)
                    (out.parent / f"{name}.cu").unlink(missing_ok=True)
        how = f" ({len(units) + len(parts) + 1} translation units in parallel)" if units or parts else ""
        with progress(f"compiling {n} kernels for {source.info['arch']} with nvcc{how}"):
            return cache.cached_build("cuda", key, compile_, files={"model.cu": source.text})

    def load(self, source: Source, path):
        from ...runtime.cuda import CudaLibrary
        g = source.graph
        return CudaLibrary(path, g.consts, [v.aval for v in g.invars], [v.aval for v in g.outvars],
                           kernel_names=source.info.get("kernels"))
