"""fuse_memory: layout ops become views, concatenations are written in place; same numbers."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.passes import fuse_elementwise, fuse_epilogue, fuse_memory, simplify
from aitrace.passes.fuse_memory import contiguous_strides, reshape_strides
from conftest import assert_close

rng = np.random.default_rng(0)
B, S, H, D = 2, 5, 4, 8
E = H * D
WQKV = (rng.standard_normal((E, 3 * E)) / 6).astype(np.float32)
W1, W2 = (rng.standard_normal((E, 24)) / 6).astype(np.float32), (rng.standard_normal((E, 40)) / 6).astype(np.float32)
BIAS = rng.standard_normal(40).astype(np.float32)


def cpu(fn, *args, **kw):
    low = ait.jit(fn, backend="cpu", **kw).lower(*args)
    expected = ait.jit(fn, backend="reference", passes=())(*args)
    got = low.compile()(*args)
    for g, e in zip(got if isinstance(got, (list, tuple)) else [got],
                    expected if isinstance(expected, (list, tuple)) else [expected]):
        assert_close(g, e, ait.float32)
    return [k.split("_", 1)[1] for k in low.source_obj.info["kernels"]], low


def self_attention(x, b=B, s=S):
    y = x @ WQKV
    q, k, v = y[..., :E], y[..., E:2 * E], y[..., 2 * E:]
    heads = lambda t: ait.transpose(ait.reshape(t, (b, s, H, D)), (0, 2, 1, 3))  # noqa: E731
    o = ait.attention(heads(q), heads(k), heads(v))
    return ait.relu(ait.reshape(ait.transpose(o, (0, 2, 1, 3)), (b, s, E))) * 2.0


def test_qkv_slices_head_split_and_merge_cost_no_copy():
    x = rng.standard_normal((B, S, E)).astype(np.float32)
    kernels, low = cpu(self_attention, x)
    assert kernels == ["matmul", "attention", "fused_elementwise"]
    assert "view of" in low.source
    # without the pass every layout op is a copy kernel
    plain, _ = cpu(self_attention, x, passes=(simplify, fuse_elementwise, fuse_epilogue))
    assert plain.count("slice") == 3 and plain.count("transpose") == 4


def test_two_gemms_feeding_a_concatenate_write_their_slots():
    x, z = rng.standard_normal((2, 3, 7, E)).astype(np.float32)
    fn = lambda a, b: ait.concatenate([ait.relu(a @ W1), b @ W2 + BIAS], axis=-1)  # noqa: E731
    assert cpu(fn, x, z)[0] == ["grouped"]  # the two GEMMs as one grouped kernel, both into their slots
    kernels, _ = cpu(fn, x, z, passes=(simplify, fuse_elementwise, fuse_epilogue, fuse_memory))
    assert kernels == ["fused_gemm", "fused_gemm"]
    # one input: fuse_horizontal makes it one GEMM, and the concatenation of its halves is it
    fn2 = lambda a: ait.concatenate([a @ W1, a @ W2], axis=-1) * 0.5  # noqa: E731
    assert cpu(fn2, x)[0] == ["fused_gemm"]


def test_concatenate_copies_only_what_was_not_computed_in_place():
    x = rng.standard_normal((4, 6)).astype(np.float32)
    kernels, low = cpu(lambda a, b: ait.concatenate([a, ait.tanh(b), b * 2.0], axis=1), x, x)
    assert kernels == ["tanh", "mul", "concatenate"]
    assert low.source.count("ait::copy_strided") == 1  # the input a; tanh and mul wrote their slots
    kernels, _ = cpu(lambda a: ait.concatenate([ait.exp(a), ait.exp(a)], axis=0), x)  # one value twice
    assert "concatenate" in kernels


def test_reshaped_result_written_into_its_concatenation_slot():
    # ViT's embeddings: the patch projection [1, 3, 4, E] reshaped to [1, 12, E] after a class row
    cls = rng.standard_normal((1, 1, 24)).astype(np.float32)
    x = rng.standard_normal((1, 3, 4, E)).astype(np.float32)
    fn = lambda a: ait.concatenate([cls, ait.reshape(a @ W1, (1, 12, 24))], axis=1) + 1.0  # noqa: E731
    kernels, low = cpu(fn, x)
    assert kernels == ["matmul", "concatenate", "add"]  # no reshape copy
    assert low.source.count("ait::copy_strided") == 1  # the constant class row only
    # a reshape no strides of the slot express (row pairs merged into half a row of the output):
    # tanh writes its own buffer
    y = rng.standard_normal((6, E)).astype(np.float32)
    fn2 = lambda a: ait.concatenate([ait.reshape(ait.tanh(a), (3, 2 * E)), ait.reshape(a, (3, 2 * E))], axis=1)  # noqa: E731
    kernels, _ = cpu(fn2, y)
    assert kernels == ["tanh", "concatenate"]  # the reshapes are read views; the concatenation copies


def test_permute_feeding_a_matmul_is_its_operand_layout():
    a = rng.standard_normal((2, 3, 6, 8)).astype(np.float32)
    b = rng.standard_normal((2, 3, 5, 8)).astype(np.float32)
    assert cpu(lambda p, q: p @ ait.transpose(q, (0, 1, 3, 2)), a, b)[0] == ["matmul"]
    assert cpu(lambda p, q: ait.transpose(p, (1, 0, 2, 3)) @ ait.transpose(q, (1, 0, 2, 3)),
               np.ascontiguousarray(a[..., :5]), b)[0] == ["matmul"]


def test_slice_read_by_elementwise_and_outputs_stay_contiguous():
    x = rng.standard_normal((6, 10)).astype(np.float32)
    kernels, _ = cpu(lambda a: ait.relu(a[1:5, ::3]) + a[0:4, 1:5], x)
    assert kernels == ["fused_elementwise"]
    kernels, _ = cpu(lambda a: (ait.exp(a)[:, 2:7], ait.exp(a)[3:]), x)  # outputs: copied out
    assert_close(ait.jit(lambda a: ait.exp(a)[:, 2:7], backend="cpu")(x), np.exp(x)[:, 2:7], ait.float32)


def test_reshape_that_no_strides_express_is_one_copy():
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    kernels, _ = cpu(lambda a: ait.softmax(ait.reshape(ait.transpose(a, (1, 0, 2)), (6, 20))), x)
    assert kernels.count("softmax") == 1 and len(kernels) == 2


def test_views_with_dynamic_sizes():
    s = ait.Dim("s", min=1, max=64)
    fn = ait.jit(lambda x: self_attention(x, B, s), backend="cpu", dynamic={0: {1: s}})
    for n in (1, 5, 17):
        x = rng.standard_normal((B, n, E)).astype(np.float32)
        assert_close(fn(x), ait.jit(lambda x: self_attention(x, B, n), backend="reference", passes=())(x),
                     ait.float32)
    sd = ait.ShapeDtype((B, s, E), ait.float32)
    assert [k.split("_", 1)[1] for k in fn.lower(sd).source_obj.info["kernels"]] == \
        ["matmul", "attention", "fused_elementwise"]


@st.composite
def layout_program(draw):
    shape = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4))
    ops, cur = [], list(shape)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["transpose", "slice", "reshape"]))
        if kind == "transpose":
            perm = draw(st.permutations(range(len(cur))))
            ops.append(("transpose", tuple(perm)))
            cur = [cur[p] for p in perm]
        elif kind == "slice":
            ax = draw(st.integers(0, len(cur) - 1))
            lo = draw(st.integers(0, cur[ax] - 1))
            step = draw(st.integers(1, 2))
            ops.append(("slice", ax, lo, step))
            cur[ax] = len(range(lo, cur[ax], step))
        else:
            n = int(np.prod(cur))
            first = draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
            ops.append(("reshape", (first, n // first)))
            cur = [first, n // first]
    consumer = draw(st.sampled_from(["elementwise", "matmul", "output", "softmax"]))
    return shape, ops, consumer


@given(layout_program())
def test_random_layout_chains_keep_values(program):
    shape, ops, consumer = program
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)

    def fn(a):
        for op in ops:
            if op[0] == "transpose":
                a = ait.transpose(a, op[1])
            elif op[0] == "slice":
                idx = [slice(None)] * a.ndim
                idx[op[1]] = slice(op[2], None, op[3])
                a = a[tuple(idx)]
            else:
                a = ait.reshape(a, op[1])
        if consumer == "elementwise":
            return ait.tanh(a) * 2.0 + a
        if consumer == "matmul":
            return a @ np.ones((a.shape[-1], 3), np.float32)
        if consumer == "softmax":
            return ait.softmax(a)
        return a
    cpu(fn, x)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
def test_reshape_strides_agree_with_numpy(shape, data):
    base = np.zeros(shape, np.float32)
    view = np.transpose(base, data.draw(st.permutations(range(len(shape)))))
    n = view.size
    new = data.draw(st.sampled_from([(n,), (1, n), *[(d, n // d) for d in range(1, n + 1) if n % d == 0]]))
    got = reshape_strides(view.shape, tuple(s // 4 for s in view.strides), new)
    try:
        y = view.view()
        y.shape = new  # numpy refuses where a copy would be needed
        expected = tuple(s // 4 for s in y.strides)
    except AttributeError:
        expected = None
    if expected is None:
        assert got is None
    else:
        assert got is not None
        for d, a, b in zip(new, got, expected):
            assert d == 1 or a == b
    assert reshape_strides((2, 3), contiguous_strides((2, 3)), (3, 2)) == (2, 1)


@pytest.mark.parametrize("dtype", [ait.float16, ait.bfloat16])
def test_half_precision_views(dtype):
    x = rng.standard_normal((B, S, E)).astype(dtype)
    w = WQKV.astype(dtype)

    def fn(a):
        y = a @ w
        return ait.concatenate([y[..., :E] * 2.0, ait.relu(y[..., E:2 * E])], axis=-1)
    f = ait.jit(fn, backend="cpu")
    assert_close(f(x), ait.jit(fn, backend="reference", passes=())(x), dtype)
    low = f.lower(x)
    assert not any("slice" in k or "concatenate" in k for k in low.source_obj.info["kernels"])
