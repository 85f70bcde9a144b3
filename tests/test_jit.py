"""jit: the trace cache (what retraces and what doesn't), static and dynamic arguments, lower,
backends, and what comes back (numpy in -> numpy out, torch in -> torch out)."""
import collections

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core.ir import typecheck
from conftest import assert_close

B = ait.Dim("B", min=1, max=16)


def counted(fn):
    """fn with a side-effect counter: `.traces` grows by one per trace (jit runs Python only then)."""
    def wrapper(*args):
        wrapper.traces += 1
        return fn(*args)
    wrapper.traces = 0
    return wrapper


def f32(*shape, fill=1.0):
    return np.full(shape, fill, np.float32)


# ---------------------------------------------------------------- backends and the decorator forms
def test_backends_available_has_reference():
    avail = ait.backends.available()
    assert "reference" in avail and avail[0] == "reference"
    assert ait.backends.default() in avail
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        ait.jit(lambda x: x, backend="nope")


def test_jit_bare_decorator_and_with_arguments():
    @ait.jit
    def bare(x):
        """doc of bare"""
        return x + 1

    @ait.jit(backend="reference")
    def configured(x):
        return x * 3

    assert bare.__name__ == "bare" and bare.__doc__ == "doc of bare"
    assert bare.backend.name == ait.backends.default()
    assert configured.backend.name == "reference"
    np.testing.assert_array_equal(configured(f32(2)), [3.0, 3.0])
    if bare.backend.host:  # on a GPU host the default is cuda, which takes device arrays
        assert_close(bare(f32(2)), f32(2, fill=2.0))


def test_backend_none_picks_cuda_only_with_a_gpu_and_nvcc(monkeypatch):
    from aitrace.backends import cuda
    host_default = "cpu" if "cpu" in ait.backends.available() else "reference"
    monkeypatch.setattr(cuda, "nvcc", lambda: "/usr/local/cuda/bin/nvcc")
    monkeypatch.setattr(cuda, "gpu_arch", lambda: "sm_90a")
    assert ait.backends.default() == "cuda"
    assert ait.jit(lambda x: x + 1).backend.name == "cuda"
    monkeypatch.setattr(cuda, "gpu_arch", lambda: None)  # nvcc without a GPU (CI): builds only
    assert "cuda" in ait.backends.available() and ait.backends.default() == host_default
    assert ait.jit(lambda x: x + 1).backend.name == host_default
    monkeypatch.setattr(cuda, "gpu_arch", lambda: "sm_90a")
    monkeypatch.setattr(cuda, "nvcc", lambda: None)  # a GPU without nvcc
    assert "cuda" not in ait.backends.available() and ait.backends.default() == host_default


def test_jit_on_methods():
    class Scale:
        def __init__(self, k):
            self.k = k

        @ait.jit(backend="reference", static_argnums=0)
        def __call__(self, x):
            return x * self.k

    two, three = Scale(2.0), Scale(3.0)
    np.testing.assert_array_equal(two(f32(2)), [2.0, 2.0])
    np.testing.assert_array_equal(three(f32(2)), [3.0, 3.0])
    assert Scale.__call__.__name__ == "__call__", "looked up on the class: the jitted function"


def test_mlp_numerics(backend):
    rng = np.random.default_rng(1)
    w1, b1 = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    w2 = rng.standard_normal((8, 2)).astype(np.float32)
    f = ait.jit(lambda x: ait.relu(x @ w1 + b1) @ w2, backend=backend, dynamic={0: {0: B}})
    for n in (1, 3, 16):
        x = rng.standard_normal((n, 4)).astype(np.float32)
        y = f(x)
        assert type(y) is np.ndarray and y.dtype == np.float32
        assert_close(y, np.maximum(x @ w1 + b1, 0) @ w2)


# ---------------------------------------------------------------- retracing
def test_no_retrace_on_repeated_signature():
    fn = counted(lambda x, y: x * 2 + y)
    f = ait.jit(fn, backend="reference")
    for _ in range(3):
        np.testing.assert_array_equal(f(f32(2, 3), f32(2, 3)), f32(2, 3, fill=3.0))
    assert fn.traces == 1
    f(f32(2, 3, fill=5.0), np.zeros((2, 3), np.float32))  # new values, same signature
    assert fn.traces == 1
    f(np.zeros((2, 3), np.float64), f32(2, 3))  # float64 is canonicalized to float32
    assert fn.traces == 1


def test_retrace_on_new_shape_dtype_structure():
    fn = counted(lambda t: t[0] + t[1])
    f = ait.jit(fn, backend="reference")
    f((f32(2), f32(2)))
    f((f32(3), f32(3)))  # shape
    assert fn.traces == 2
    out = f((np.ones(3, np.float16), np.ones(3, np.float16)))  # dtype
    assert fn.traces == 3 and out.dtype == np.float16
    f([f32(3), f32(3)])  # list, not tuple: structure
    assert fn.traces == 4
    f((f32(3), f32(3), f32(3)))  # one more leaf
    assert fn.traces == 5
    for args in [(f32(2), f32(2)), (f32(3), f32(3)), [f32(3), f32(3)]]:
        f(args)
    assert fn.traces == 5, "every signature seen before hits the cache"


def test_retrace_on_new_dict_keys_and_namedtuple_type():
    P = collections.namedtuple("P", "a b")
    Q = collections.namedtuple("Q", "a b")
    fn = counted(lambda d: d["a"] - d["b"] if isinstance(d, dict) else d.a - d.b)
    f = ait.jit(fn, backend="reference")
    f({"a": f32(2), "b": f32(2)})
    f({"a": f32(2), "b": f32(2)})
    assert fn.traces == 1
    f({"a": f32(2), "c": f32(2), "b": f32(2)})
    f(P(f32(2), f32(2)))
    f(Q(f32(2), f32(2)))
    assert fn.traces == 4


@st.composite
def _calls(draw):
    shapes = [(2,), (3,), (2, 2)]
    dts = [np.float32, np.float16, np.int32]
    return draw(st.lists(st.tuples(st.sampled_from(shapes), st.sampled_from(dts), st.integers(0, 2)),
                         min_size=1, max_size=12))


@given(_calls())
def test_trace_count_equals_distinct_signatures(calls):
    fn = counted(lambda x, k: x * k)
    f = ait.jit(fn, backend="reference", static_argnums=1)
    for shape, dt, k in calls:
        x = np.arange(np.prod(shape), dtype=dt).reshape(shape)
        y = f(x, k)
        assert y.shape == shape and y.dtype == np.dtype(dt)
        np.testing.assert_array_equal(y, x * dt(k))
    assert fn.traces == len({(s, d, k) for s, d, k in calls})


# ---------------------------------------------------------------- static arguments
def test_static_argnums():
    fn = counted(lambda x, n, mode: ait.relu(x) * n if mode == "relu" else x * n)
    f = ait.jit(fn, backend="reference", static_argnums=(1, 2))
    x = np.array([-1.0, 2.0], np.float32)
    np.testing.assert_array_equal(f(x, 3, "relu"), [0.0, 6.0])
    np.testing.assert_array_equal(f(x, 3, "relu"), [0.0, 6.0])
    assert fn.traces == 1
    np.testing.assert_array_equal(f(x, 3, "id"), [-3.0, 6.0])
    np.testing.assert_array_equal(f(x, 4, "relu"), [0.0, 8.0])
    assert fn.traces == 3
    g = ait.jit(lambda n, x: x + n, backend="reference", static_argnums=0)  # a bare int works too
    np.testing.assert_array_equal(g(1, x), [0.0, 3.0])


def test_static_args_equal_but_of_other_types_retrace():
    fn = counted(lambda x, k: x * k)
    f = ait.jit(fn, backend="reference", static_argnums=1)
    x = np.arange(3, dtype=np.int32)
    assert f(x, 2).dtype == np.int32
    assert f(x, 2.0).dtype == np.float32  # 2 == 2.0, but a float scalar promotes int32 to float32
    assert f(x, True).dtype == np.int32
    assert fn.traces == 3


def test_static_argnums_errors():
    with pytest.raises(TypeError, match="static arguments must be hashable"):
        ait.jit(lambda x, s: x, backend="reference", static_argnums=1)(f32(2), [1, 2])
    with pytest.raises(TypeError, match="static_argnums names argument 2 but only 2 given"):
        ait.jit(lambda x, s: x, backend="reference", static_argnums=2)(f32(2), 1)
    with pytest.raises(ValueError, match="non-negative"):
        ait.jit(lambda x, s: x, backend="reference", static_argnums=-1)
    with pytest.raises(ValueError, match="argument 0 is both static and dynamic"):
        ait.jit(lambda x: x, backend="reference", static_argnums=0, dynamic={0: {0: B}})
    with pytest.raises(TypeError, match=r"argument 1 is a float .*static_argnums"):
        ait.jit(lambda x, s: x * s, backend="reference")(f32(2), 2.0)


# ---------------------------------------------------------------- dynamic dims
def test_dynamic_batch_one_trace_many_sizes(backend):
    fn = counted(lambda x, w: (x @ w).reshape(-1))
    f = ait.jit(fn, backend=backend, dynamic={0: {0: ait.Dim("B", min=1, max=16)}})
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    for n in (1, 2, 7, 16, 2):
        x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
        y = f(x, w)
        assert y.shape == (2 * n,)
        assert_close(y, (x @ w).reshape(-1))
    assert fn.traces == 1
    assert str(f.lower(f32(5, 3), w).graph.outvars[0].aval) == "f32[2*B]"


@pytest.mark.parametrize("n", [0, 17, 100])
def test_dynamic_out_of_bounds(n):
    f = ait.jit(lambda x: x + 1, backend="reference", dynamic={0: {1: ait.Dim("seq", min=1, max=16)}})
    f(f32(2, 4))
    with pytest.raises(ValueError, match=rf"argument 0 axis 1: size {n} is outside the bounds "
                                         r"\[1, 16\] of Dim 'seq'"):
        f(f32(2, n))


def test_dynamic_negative_axis_and_unbounded_dim():
    N = ait.Dim("N", min=2)
    fn = counted(lambda x: x * 2)
    f = ait.jit(fn, backend="reference", dynamic={0: {-1: N}})
    assert f(f32(3, 1000)).shape == (3, 1000) and f(f32(3, 2)).shape == (3, 2)
    assert fn.traces == 1
    with pytest.raises(ValueError, match=r"argument 0 axis 1: size 1 is outside the bounds "
                                         r"\[2, inf\] of Dim 'N'"):
        f(f32(3, 1))
    f(f32(4, 9))  # a static axis changed: a new signature
    assert fn.traces == 2


@given(st.lists(st.integers(0, 20), min_size=1, max_size=8))
def test_dynamic_sizes_in_and_out_of_bounds(sizes):
    fn = counted(lambda x: x.reshape(-1, 2) + 1)
    f = ait.jit(fn, backend="reference", dynamic={0: {0: ait.Dim("n", min=2, max=12)}})
    for n in sizes:
        x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
        if 2 <= n <= 12:
            np.testing.assert_array_equal(f(x), x + 1)
        else:
            with pytest.raises(ValueError, match=rf"argument 0 axis 0: size {n} .*Dim 'n'"):
                f(x)
    assert fn.traces <= 1


def test_shared_dim_must_agree():
    f = ait.jit(lambda x, y: x + y, backend="reference", dynamic={0: {0: B}, 1: {0: B}})
    np.testing.assert_array_equal(f(f32(4, 2), f32(4, 2)), f32(4, 2, fill=2.0))
    with pytest.raises(ValueError, match=r"argument 1 axis 0: size 5 differs from 4 at argument 0 "
                                         r"axis 0, which share Dim 'B'"):
        f(f32(4, 2), f32(5, 2))


def test_dynamic_spec_errors():
    with pytest.raises(TypeError, match=r"dynamic\[0\]\[0\] must be an ait.Dim"):
        ait.jit(lambda x: x, backend="reference", dynamic={0: {0: "B"}})
    with pytest.raises(ValueError, match="argument 0 has rank 1, no axis 3 for Dim 'B'"):
        ait.jit(lambda x: x, backend="reference", dynamic={0: {3: B}})(f32(2))
    with pytest.raises(TypeError, match="dynamic axes need argument 0 to be one array"):
        ait.jit(lambda t: t[0], backend="reference", dynamic={0: {0: B}})((f32(2), f32(2)))


def test_dynamic_shape_mismatch_with_static_operand_names_shapes():
    f = ait.jit(lambda x, y: x + y, backend="reference", dynamic={0: {0: B}})
    with pytest.raises(ValueError, match=r"add: shapes \[B,3\], \[2,3\] are not broadcast-compatible"):
        f(f32(2, 3), f32(2, 3))


def test_shape_mismatch_error_names_both_shapes():
    f = ait.jit(lambda x, y: x + y, backend="reference")
    with pytest.raises(ValueError, match=r"\[3,4\], \[5,4\]"):
        f(f32(3, 4), f32(5, 4))


# ---------------------------------------------------------------- lower
def test_lower_returns_graph_and_source():
    w = np.ones((4, 2), np.float32)
    fn = counted(lambda x: ait.relu(x @ w))
    f = ait.jit(fn, backend="reference", dynamic={0: {0: B}})
    low = f.lower(ait.ShapeDtype((3, 4), "f32"))
    typecheck(low.graph)  # whatever the passes did, the result is well typed
    assert low.source is None
    assert low.graph.in_avals == [ait.ShapeDtype((B, 4), "f32")]
    assert low.graph.out_avals == [ait.ShapeDtype((B, 2), "f32")]
    assert f.lower(f32(7, 4)) is low and fn.traces == 1, "lower and call share one cache"
    f(f32(2, 4))
    assert fn.traces == 1


def test_lower_with_passes_off_keeps_the_traced_graph():
    w = np.ones((4, 2), np.float32)
    f = ait.jit(lambda x: ait.relu(x @ w), backend="reference", dynamic={0: {0: B}}, passes=())
    low = f.lower(f32(3, 4))
    assert str(low.graph) == ("{ lambda a:f32[4,2] ; b:f32[B,4]. let\n"
                              "    c:f32[B,2] = matmul b a\n"
                              "    d:f32[B,2] = relu c\n"
                              "  in (d) }")
    assert low.graph.consts[0] is w


# ---------------------------------------------------------------- outputs
def test_numpy_in_numpy_out_and_fresh_outputs(backend):
    w = np.array([1.0, 2.0], np.float32)
    f = ait.jit(lambda x: (x, w, x.reshape(-1), x + w), backend=backend)
    x = np.array([[3.0, 4.0]], np.float32)
    outs = f(x)
    assert all(type(o) is np.ndarray for o in outs)
    np.testing.assert_array_equal(outs[0], x)
    np.testing.assert_array_equal(outs[1], w)
    np.testing.assert_array_equal(outs[2], [3.0, 4.0])
    np.testing.assert_array_equal(outs[3], [[4.0, 6.0]])
    for o in outs[:3]:
        assert not np.shares_memory(o, x) and not np.shares_memory(o, w)
        o[...] = -1  # the caller owns what comes back
    np.testing.assert_array_equal(x, [[3.0, 4.0]])
    np.testing.assert_array_equal(f(x)[1], [1.0, 2.0])


def test_constant_only_outputs(backend):
    w = np.arange(4, dtype=np.int32)
    f = ait.jit(lambda x: {"w": w, "scalar": np.float32(0.5)}, backend=backend)
    out = f(f32(3))
    np.testing.assert_array_equal(out["w"], w)
    assert out["scalar"].shape == () and out["scalar"].dtype == np.float32 and out["scalar"] == 0.5


def test_unsupported_input_dtype_names_argument():
    f = ait.jit(lambda x, y: x, backend="reference")
    with pytest.raises(TypeError, match="argument 1: unsupported dtype uint8"):
        f(f32(2), np.zeros(2, np.uint8))
    with pytest.raises(TypeError, match="argument 1 leaf 1 is a ShapeDtype, which has no data"):
        f(f32(2), [f32(2), ait.ShapeDtype((2,), "f32")])


def test_no_array_arguments():
    w = np.arange(3, dtype=np.float32)
    f = ait.jit(lambda: w * 2, backend="reference")
    np.testing.assert_array_equal(f(), [0.0, 2.0, 4.0])
    assert type(f()) is np.ndarray


# ---------------------------------------------------------------- torch interop
def test_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    f = ait.jit(lambda x, y: (x * 2 + y, ait.relu(x)), backend="reference")
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        x = torch.tensor([[-1.0, 2.0, 3.5]], dtype=dt)
        y = torch.ones(1, 3, dtype=dt)
        a, b = f(x, y)
        assert isinstance(a, torch.Tensor) and a.dtype == dt and a.device.type == "cpu"
        torch.testing.assert_close(a, x * 2 + y)
        torch.testing.assert_close(b, torch.relu(x))
    xi = torch.arange(4, dtype=torch.int64)
    r = ait.jit(lambda x: x * 3, backend="reference")(xi)
    assert r.dtype == torch.int64 and r.tolist() == [0, 3, 6, 9]
    g = ait.jit(lambda x: x, backend="reference")
    t = torch.ones(3, requires_grad=True)
    out = g(t)
    assert isinstance(out, torch.Tensor) and out.data_ptr() != t.data_ptr()


def test_torch_output_library_follows_first_input():
    torch = pytest.importorskip("torch")
    f = ait.jit(lambda x, y: x + y, backend="reference")
    assert isinstance(f(torch.ones(2), np.ones(2, np.float32)), torch.Tensor)
    assert isinstance(f(np.ones(2, np.float32), torch.ones(2)), np.ndarray)


def test_torch_bfloat16_values_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((3, 5)).astype(np.float32)).to(torch.bfloat16)
    w = torch.from_numpy(rng.standard_normal((5, 2)).astype(np.float32)).to(torch.bfloat16)
    y = ait.jit(lambda a, b: a @ b, backend="reference")(x, w)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), (x.float() @ w.float()), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("device", ["meta"])
def test_torch_tensor_off_cpu_names_argument(device):
    torch = pytest.importorskip("torch")
    fn = counted(lambda x, y: x + y)
    f = ait.jit(fn, backend="reference")
    with pytest.raises(ValueError, match=f"argument 1 is on device {device}, expected a CPU array"):
        f(torch.ones(2), torch.ones(2, device=device))
    assert fn.traces == 0, "the device is checked before tracing"
    g = ait.jit(lambda s, p: p[0] * s + p[1], backend="reference", static_argnums=0)
    with pytest.raises(ValueError, match=f"argument 1 leaf 1 is on device {device}"):
        g(2.0, (torch.ones(2), torch.ones(2, device=device)))
    h = ait.jit(lambda s, x: x * s, backend="reference", static_argnums=0)
    with pytest.raises(ValueError, match=f"argument 1 is on device {device}"):
        h(2.0, torch.ones(2, device=device))


def test_torch_cuda_tensor_names_argument():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device for torch")
    f = ait.jit(lambda x: x + 1, backend="reference")
    with pytest.raises(ValueError, match="argument 0 is on device cuda:0, expected a CPU array"):
        f(torch.ones(2, device="cuda"))


def test_repeat_calls_take_the_fast_path_and_still_check():
    B = ait.Dim("B", max=4)
    f = ait.jit(lambda x, y: x * 2 + y, backend="reference", dynamic={0: {0: B}, 1: {0: B}})
    x, y = np.ones((3, 2), np.float32), np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(f(x, y), x * 2 + y)
    assert len(f._fast_cache) == 1
    np.testing.assert_array_equal(f(y, x), y * 2 + x)     # served by the fast cache
    assert len(f._fast_cache) == 1
    with pytest.raises(ValueError, match="outside the bounds"):
        f(np.ones((5, 2), np.float32), np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match="differs from"):
        f(np.ones((2, 2), np.float32), np.ones((3, 2), np.float32))
    assert len(f._fast_cache) == 1                         # failed calls are not remembered
