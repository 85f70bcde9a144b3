"""The cpu backend's runtime: zero-copy DLPack in/out, argument validation, the disk cache
(warm start, corruption, concurrent builds), thread safety and the sanitizer build."""
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import aitrace as ait
from aitrace.runtime import cache, dlpack
from aitrace.runtime.library import Library

pytestmark = pytest.mark.skipif("cpu" not in ait.backends.available(), reason="no C++ compiler")
REPO = Path(__file__).resolve().parents[1]


def chain(x, y):
    return ait.relu(x * 2.0 + y) - ait.sigmoid(y)


def expected(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    return np.maximum(x * 2 + y, 0) - 1 / (1 + np.exp(-y))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AITRACE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_numpy_output_is_the_buffer_the_library_wrote(cache_dir, monkeypatch):
    allocated = []
    orig = Library.allocate_outputs

    def spy(self, env, arrays=()):
        outs = orig(self, env, arrays)
        allocated.extend(outs)
        return outs
    monkeypatch.setattr(Library, "allocate_outputs", spy)
    x, y = np.random.rand(5, 3, 8).astype(np.float32), np.random.rand(3, 8).astype(np.float32)
    out = ait.jit(chain, backend="cpu")(x, y)
    assert out is allocated[0]  # no copy after run
    np.testing.assert_allclose(out, expected(x, y), rtol=1e-5, atol=1e-6)


def test_inputs_are_read_in_place():
    x = np.random.rand(4, 4).astype(np.float32)
    assert dlpack.describe(x, "x").ptr == x.ctypes.data
    xt = x.T  # not contiguous: made contiguous explicitly, by one copy
    info = dlpack.describe(xt, "x")
    assert info.ptr != x.ctypes.data and info.owner.flags.c_contiguous
    np.testing.assert_array_equal(info.owner, xt)


def test_non_contiguous_input_gives_right_answer(cache_dir):
    x = np.random.rand(8, 3, 5).astype(np.float32).transpose(2, 1, 0)[:, :, ::2]
    y = np.random.rand(3, 4).astype(np.float32)
    np.testing.assert_allclose(ait.jit(chain, backend="cpu")(x, y), expected(x, y), rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise_and_do_not_crash(cache_dir):
    f = ait.jit(chain, backend="cpu")
    x, y = np.zeros((2, 3, 8), np.float32), np.zeros((3, 8), np.float32)
    lib = f.lower(x, y).compile()
    with pytest.raises(TypeError, match=r"argument 1: expected f32\[3,8\], got dtype float16"):
        lib(x, y.astype(np.float16))
    with pytest.raises(ValueError, match=r"argument 0: expected f32\[2,3,8\], got shape \[2, 3, 9\]"):
        lib(np.zeros((2, 3, 9), np.float32), y)
    with pytest.raises(TypeError, match="expected 2 arguments, got 1"):
        lib(x)
    with pytest.raises(TypeError, match="argument 0: expected an array"):
        lib("not an array", y)


def test_library_checks_dltensors_itself(cache_dir):
    """The generated code validates what it is given too (defence against a bad caller)."""
    from aitrace.runtime.library import LibraryError, ffi
    x, y = np.zeros((2, 3, 8), np.float32), np.zeros((3, 8), np.float32)
    lib = ait.jit(chain, backend="cpu").lower(x, y).compile()
    keep = []
    ins = ffi.new("DLTensor[]", 2)
    ins[0] = lib._dltensor(dlpack.describe(x, "x"), keep)[0]
    ins[1] = lib._dltensor(dlpack.describe(np.zeros((3, 7), np.float32), "y"), keep)[0]
    outs = ffi.new("DLTensor[]", 1)
    o = np.zeros((2, 3, 8), np.float32)
    outs[0] = lib._dltensor(dlpack.describe(o, "o"), keep)[0]
    ctx = lib._context()
    assert lib.lib.ait_run(ctx, ins, 2, outs, 1, ffi.NULL) == 1
    msg = ffi.string(lib.lib.ait_last_error()).decode()
    assert "argument 1" in msg and "axis 1" in msg and "f32[3,8]" in msg
    with pytest.raises(LibraryError, match="run failed: argument 1"):
        lib._check(1, "run")


def test_dynamic_dims_one_library_serves_the_range(cache_dir):
    B = ait.Dim("B", min=1, max=64)
    f = ait.jit(chain, backend="cpu", dynamic={0: {0: B}})
    y = np.random.rand(3, 8).astype(np.float32)
    paths = set()
    for b in (1, 7, 64):
        x = np.random.rand(b, 3, 8).astype(np.float32)
        np.testing.assert_allclose(f(x, y), expected(x, y), rtol=1e-5, atol=1e-6)
        paths.add(f.lower(x, y).build())
    assert len(paths) == 1
    with pytest.raises(ValueError, match="outside the bounds"):
        f(np.zeros((65, 3, 8), np.float32), y)


def test_threads_share_one_compiled_function(cache_dir):
    f = ait.jit(chain, backend="cpu")
    y = np.random.rand(3, 64).astype(np.float32)
    xs = [np.random.rand(16, 3, 64).astype(np.float32) for _ in range(8)]
    f(xs[0], y)
    results = [None] * len(xs)

    def work(i):
        for _ in range(20):
            results[i] = f(xs[i], y)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    [t.start() for t in ts]
    [t.join() for t in ts]
    for x, r in zip(xs, results):
        np.testing.assert_allclose(r, expected(x, y), rtol=1e-5, atol=1e-6)


def test_torch_tensors_in_and_out(cache_dir):
    torch = pytest.importorskip("torch")
    f = ait.jit(chain, backend="cpu")
    x, y = torch.rand(4, 3, 8), torch.rand(3, 8)
    out = f(x, y)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), expected(x.numpy(), y.numpy()), rtol=1e-5, atol=1e-6)
    xb, yb = x.to(torch.bfloat16), y.to(torch.bfloat16)
    outb = f(xb, yb)
    assert outb.dtype == torch.bfloat16
    np.testing.assert_allclose(outb.float().numpy(), expected(xb.float().numpy(), yb.float().numpy()),
                               rtol=2e-2, atol=2e-2)
    if hasattr(torch, "device") and torch.device("meta"):
        with pytest.raises(ValueError, match="argument 0"):
            f.lower(x, y).compile()(x.to("meta"), y)


SCRIPT = textwrap.dedent("""
    import sys, numpy as np, aitrace as ait
    def chain(x, y):
        return ait.relu(x * 2.0 + y) - ait.sigmoid(y)
    x, y = np.ones((2, 3, 8), np.float32), np.ones((3, 8), np.float32)
    out = ait.jit(chain, backend="cpu")(x, y)
    assert abs(float(out[0, 0, 0]) - (3.0 - 1 / (1 + np.exp(-1.0)))) < 1e-5
    print("ok")
""")


def _run(env, **kw):
    return subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _counting_compiler(tmp_path):
    log = tmp_path / "compiler.log"
    wrapper = tmp_path / "cxx"
    # log every build (not the --version queries that identify the compiler)
    wrapper.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] || echo build >> {log}\nexec g++ \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper, log


def test_two_processes_build_once_then_warm_start_needs_no_compiler(tmp_path):
    wrapper, log = _counting_compiler(tmp_path)
    env = dict(os.environ, AITRACE_CACHE_DIR=str(tmp_path / "c"), AITRACE_CXX=str(wrapper))
    procs = [_run(env), _run(env)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    # --version runs once per process for the cache key; the build itself runs once in all
    # one build each of the precompiled kernels, the precompiled header and the model, in all
    builds = log.read_text().count("build")
    assert builds == 3
    # warm start: another process finds the entry and builds nothing
    assert len(list((tmp_path / "c" / "cpu").iterdir())) == 1
    env_warm = env
    p = _run(env_warm)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "ok" in out, err
    assert log.read_text().count("build") == builds  # no new build


def test_corrupted_entry_is_detected_and_rebuilt(cache_dir):
    x, y = np.ones((2, 3, 8), np.float32), np.ones((3, 8), np.float32)
    path = Path(ait.jit(chain, backend="cpu").lower(x, y).build())
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated, as by a crash mid-write elsewhere
    assert not cache.is_valid(path)
    f = ait.jit(chain, backend="cpu")
    np.testing.assert_allclose(f(x, y), expected(x, y), rtol=1e-5)
    assert cache.is_valid(path)


def test_cache_key_ignores_constant_values(cache_dir):
    def make(c):
        return ait.jit(lambda x: x * c, backend="cpu")
    x = np.ones((4, 8), np.float32)
    c1, c2 = np.full((4, 8), 2, np.float32), np.full((4, 8), 3, np.float32)
    f1, f2 = make(c1), make(c2)
    assert f1.lower(x).build() == f2.lower(x).build()
    np.testing.assert_array_equal(f1(x), 2 * x)
    np.testing.assert_array_equal(f2(x), 3 * x)


SANITIZE_SCRIPT = REPO / "tests" / "sanitize_subset.py"


@pytest.mark.skipif(not Path(subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                                            text=True).stdout.strip()).is_file(), reason="no libasan")
def test_generated_code_is_clean_under_asan_and_ubsan(tmp_path):
    libs = [subprocess.run(["gcc", f"-print-file-name={n}"], capture_output=True, text=True).stdout.strip()
            for n in ("libasan.so", "libubsan.so")]
    env = dict(os.environ, AITRACE_CACHE_DIR=str(tmp_path / "c"), AITRACE_SANITIZE="1",
               LD_PRELOAD=" ".join(libs), ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1", OMP_NUM_THREADS="2")
    p = subprocess.run([sys.executable, str(SANITIZE_SCRIPT)], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr
    assert "all ok" in p.stdout


def test_dims_named_like_generated_locals(cache_dir):
    """Dim names are prefixed in generated code, so `M`, `N`, `K` or `dims` clash with nothing."""
    M, K, dims = ait.Dim("M", max=64), ait.Dim("K", max=64), ait.Dim("dims", max=8)
    f = ait.jit(lambda x, w: ait.relu(x @ w).sum(axis=0), backend="cpu",
                dynamic={0: {0: dims, 1: M, 2: K}, 1: {0: K}})
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 7, 9)).astype(np.float32), rng.standard_normal((9, 5)).astype(np.float32)
    np.testing.assert_allclose(f(x, w), np.maximum(x @ w, 0).sum(axis=0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="outside the bounds"):
        f(np.zeros((9, 7, 9), np.float32), w)
