"""Whole-run CUDA graphs of the cuda backend (ait::GraphCache): the generated library captures its
kernels once per tuple of dynamic dims and replays them, staging inputs and outputs through the
arena so that new tensors every call are right. CI builds it for sm_90a; on a GPU (`pytest -m
cuda`) the graph path must agree with the launch-by-launch path (AITRACE_CUDA_GRAPHS=0)."""
import shutil
import threading

import numpy as np
import pytest

import aitrace as ait
from conftest import assert_close

S = ait.ShapeDtype
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
B = ait.Dim("b", min=1, max=64)
W = np.linspace(-1, 1, 32, dtype=np.float32)


def small(x, y):
    """Elementwise chain, a row reduction, and an output that is a copy of an input view."""
    h = ait.relu(x * W + y)
    return h, ait.sum(h, axis=-1), ait.reshape(x, (-1,))


def jitted(**options):
    return ait.jit(small, backend="cuda", dynamic={0: {0: B}, 1: {0: B}}, **options)


@needs_nvcc
def test_generated_source_replays_a_graph_and_builds_for_sm90a():
    low = jitted(arch="sm_90a").lower(S((B, 32), ait.float32), S((B, 32), ait.float32))
    src = low.source
    assert "constexpr bool kGraphsEnabled = true;" in src
    assert "ctx->graphs.run(dims, 1," in src          # one graph per value of the dynamic dim b
    assert 'std::getenv("AITRACE_CUDA_GRAPHS")' in src
    # the kernels are issued by one lambda, which a capture and the direct path share
    assert src.index("auto launch = [&]") < src.index("AIT_LAUNCHED") < src.index("ctx->graphs.run(")
    off = jitted(arch="sm_90a", cuda_graphs=False).lower(S((B, 32), ait.float32), S((B, 32), ait.float32))
    assert "constexpr bool kGraphsEnabled = false;" in off.source
    path = low.build()
    assert path.exists() and path.suffix == ".so"


# ------------------------------------------------------------------ on the GPU
def torch_or_skip():
    return pytest.importorskip("torch")


def inputs(rng, n):
    torch = torch_or_skip()
    return [torch.from_numpy(rng.standard_normal((n, 32)).astype(np.float32)).cuda() for _ in range(2)]


def expected(x, y):
    return ait.jit(small, backend="reference")(x.cpu().numpy(), y.cpu().numpy())


def assert_results(got, x, y):
    for g, w in zip(got, expected(x, y)):
        assert_close(g.cpu().numpy(), w)


@pytest.fixture
def graphless(monkeypatch):
    """A compiled `small` that launches kernel by kernel (read at create: its first call)."""
    monkeypatch.setenv("AITRACE_CUDA_GRAPHS", "0")
    f = jitted()
    f(*inputs(np.random.default_rng(1), 3))
    monkeypatch.delenv("AITRACE_CUDA_GRAPHS")
    return f


@pytest.mark.cuda
def test_new_tensors_every_call_match_the_launch_by_launch_path(graphless):
    torch = torch_or_skip()
    f, rng = jitted(), np.random.default_rng(0)
    kept = []  # every output stays alive: each call writes to new memory
    for _ in range(5):
        x, y = inputs(rng, 8)
        got, want = f(x, y), graphless(x, y)
        for g, w in zip(got, want):
            assert torch.equal(g, w)
        kept.append(got)
    # the same input tensors with new contents: the graph reads them, not a stale copy
    x.mul_(-1.0)
    assert_results(f(x, y), x, y)
    assert_results(f(x, y), x, y)


@pytest.mark.cuda
def test_two_sizes_alternating_each_replay_their_own_graph(graphless):
    torch = torch_or_skip()
    f, rng = jitted(), np.random.default_rng(2)
    for n in (3, 17, 3, 17, 64, 3):
        x, y = inputs(rng, n)
        got = f(x, y)
        assert got[0].shape == (n, 32) and got[2].shape == (n * 32,)
        for g, w in zip(got, graphless(x, y)):
            assert torch.equal(g, w)


@pytest.mark.cuda
def test_runs_on_a_non_default_torch_stream():
    torch = torch_or_skip()
    f, rng = jitted(), np.random.default_rng(3)
    f(*inputs(rng, 4))  # captured first, on the default stream
    s = torch.cuda.Stream()
    for n in (4, 9):
        x, y = inputs(rng, n)
        new_x = torch.from_numpy(rng.standard_normal((n, 32)).astype(np.float32)).cuda()
        torch.cuda.synchronize()
        with torch.cuda.stream(s):
            torch.cuda._sleep(50_000_000)  # keeps s busy: x is rewritten late, and f must wait
            x.copy_(new_x)
            got = f(x, y)
            got2 = [g * 1 for g in f(x * 2, y * 2)]
        s.synchronize()
        assert_results(got, x, y)
        assert_results(got2, x * 2, y * 2)


@pytest.mark.cuda
def test_two_threads_share_one_compiled_function():
    torch = torch_or_skip()
    f = jitted()
    f(*inputs(np.random.default_rng(6), 5))  # built and loaded before the threads start
    results, errors = {0: [], 1: []}, []

    def work(k):
        try:
            rng = np.random.default_rng(10 + k)
            s = torch.cuda.Stream()
            with torch.cuda.stream(s):
                for i in range(20):
                    x, y = inputs(rng, 5 + (i + k) % 3)  # sizes alternate: both threads capture
                    results[k].append((x, y, f(x, y)))
            s.synchronize()
        except Exception as e:  # noqa: BLE001 -- reported by the main thread
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for x, y, got in results[0] + results[1]:  # the reference traces: in this thread only
        assert_results(got, x, y)


@pytest.mark.cuda
def test_bad_calls_raise_and_leave_the_function_usable():
    from aitrace.runtime import dlpack
    from aitrace.runtime.library import ffi
    f, rng = jitted(), np.random.default_rng(4)
    x, y = inputs(rng, 6)
    assert_results(f(x, y), x, y)  # the graph for b=6 exists
    lib = f.lower(x, y).compile()  # what f calls; its checks come before any capture
    with pytest.raises(ValueError, match=r"argument 1: expected f32\[b,32\], got shape \[6, 16\]"):
        lib(x, y[:, :16].contiguous())
    with pytest.raises(TypeError, match=r"argument 0: expected f32\[b,32\], got dtype float16"):
        lib(x.half(), y)
    with pytest.raises(ValueError, match="argument 0 is on cpu, expected cuda"):
        lib(x.cpu(), y)
    with pytest.raises(ValueError, match="outside the bounds"):
        f(*inputs(rng, 65))
    # the library's own checks, for a caller past the Python ones
    keep, ins, outs = [], ffi.new("DLTensor[]", 2), ffi.new("DLTensor[]", 3)
    for i, t in enumerate((x, y[:5].contiguous())):
        ins[i] = lib._dltensor(dlpack.describe(t, "t"), keep)[0]
    for i, t in enumerate(f(x, y)):
        outs[i] = lib._dltensor(dlpack.describe(t, "t"), keep)[0]
    assert lib.lib.ait_run(lib._context(), ins, 2, outs, 3, ffi.NULL) == 1
    assert "argument 1" in ffi.string(lib.lib.ait_last_error()).decode()
    assert_results(f(x, y), x, y)
    x2, y2 = inputs(rng, 7)
    assert_results(f(x2, y2), x2, y2)


@pytest.mark.cuda
def test_the_option_and_a_callers_own_capture_run_without_our_graph():
    torch = torch_or_skip()
    rng = np.random.default_rng(5)
    x, y = inputs(rng, 8)
    assert_results(jitted(cuda_graphs=False)(x, y), x, y)
    f = jitted()
    f(x, y)  # warm: built and loaded outside the capture
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):  # the kernels join the caller's graph
        out = f(x, y)
    x.copy_(torch.from_numpy(rng.standard_normal((8, 32)).astype(np.float32)))
    g.replay()
    torch.cuda.synchronize()
    assert_results(out, x, y)


# ------------------------------------------------------------------ per-kernel timing
@needs_nvcc
def test_kernel_timing_has_event_pairs_and_no_graph():
    low = jitted(arch="sm_90a", kernel_times=True).lower(S((B, 32), ait.float32), S((B, 32), ait.float32))
    src = low.source
    n = len(low.source_obj.info["kernels"])
    assert "constexpr bool kKernelTimes = true;" in src and "int64_t ait_kernel_times(" in src
    assert "!m->timed" in src   # a timed model runs without graphs
    assert src.count("if (timed) ctx->timer.mark(") == 2 * n and f"ctx->timer.collect({n}, g_kernel_ns)" in src
    assert "constexpr bool kKernelTimes = false;" in jitted(arch="sm_90a").lower(
        S((B, 32), ait.float32), S((B, 32), ait.float32)).source  # AITRACE_KERNEL_TIMES=1 at create
    assert low.build().exists()


@pytest.mark.cuda
def test_kernel_times_on_the_gpu():
    f = jitted(kernel_times=True)
    x, y = inputs(np.random.default_rng(3), 5)
    for _ in range(3):
        assert_results(f(x, y), x, y)
    lib = f.lower(x, y).compile()
    times = lib.kernel_times()
    assert [k for k, _ in times] == f.lower(x, y).source_obj.info["kernels"]
    assert all(ms > 0 for _, ms in times)
    assert all(ms == 0 for _, ms in lib.kernel_times())
