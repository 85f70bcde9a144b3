"""The cuda backend: generated CUDA compiles with nvcc for sm_90a without a GPU (CI), and on a GPU
(`pytest -m cuda`) every lowering agrees with the numpy reference in f32, f16 and bf16."""
import re
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aitrace as ait
from conftest import assert_close

S = ait.ShapeDtype
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
DTYPES = [ait.float32, ait.float16, ait.bfloat16]


def block(x, m):
    """Elementwise chains, layer norm, softmax, views around attention, reductions, concatenation."""
    h = ait.layer_norm(x * 2.0 + 1.0, np.ones(64, np.float32), np.zeros(64, np.float32))
    s = ait.softmax(h, axis=-1)
    q = ait.transpose(ait.reshape(h, (2, 8, 4, 16)), (0, 2, 1, 3))
    a = ait.attention(q, q, q, mask=m)
    r = ait.sum(s, axis=-1) + ait.max(h, axis=1)[:, None, :8].sum()
    return (ait.gelu(ait.reshape(ait.transpose(a, (0, 2, 1, 3)), (2, 8, 64))), r,
            ait.concatenate([h, ait.exp(s)], axis=0), ait.mean(h[:, ::2], axis=(0, 2)))


@needs_nvcc
def test_builds_for_sm90a_without_a_gpu():
    low = ait.jit(block, backend="cuda", arch="sm_90a").lower(S((2, 8, 64), ait.float16), S((2, 1, 1, 8), ait.bool_))
    names = low.source_obj.info["kernels"]
    assert {"fused_norm", "softmax", "attention", "reduce_sum", "gelu"} <= {k.split("_", 1)[1] for k in names}
    # head split/merge are views, the concatenation is written in place; the one transpose left is
    # the reduction legalizer's (a mean over non-adjacent axes of a strided slice)
    assert not any("slice" in k or "concatenate" in k for k in names)
    assert sum("transpose" in k for k in names) == 1
    assert "__global__ void k" in low.source and "sm_90a" in low.source
    path = low.build()
    assert path.exists() and path.suffix == ".so"


@needs_nvcc
def test_expands_the_fused_forms_it_has_no_kernel_for():
    w1, w2 = np.ones((32, 16), np.float16), np.ones((16, 32), np.float16)
    fn = lambda x, y: (ait.layer_norm(x + y, np.ones(32, np.float16), None), ait.relu(x @ w1) @ w2)  # noqa: E731
    low = ait.jit(fn, backend="cuda", arch="sm_90a").lower(S((4, 32), ait.float16), S((4, 32), ait.float16))
    kinds = {k.split("_", 1)[1] for k in low.source_obj.info["kernels"]}
    assert "fused_norm" in kinds and "fused_b2b_gemm" not in kinds  # fused_norm: cuda/prologue.py


# ------------------------------------------------------------------ on the GPU
def cuda_array(a):
    torch = pytest.importorskip("torch")
    if a.dtype == ait.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).cuda()
    return torch.from_numpy(a).cuda()


def host(t):
    torch = pytest.importorskip("torch")
    if t.dtype == torch.bfloat16:
        return t.cpu().view(torch.int16).numpy().view(ait.bfloat16)
    return t.cpu().numpy()


def check(fn, *args, dtype=ait.float32, atol=None):
    want = ait.jit(fn, backend="reference", passes=())(*args)
    got = ait.jit(fn, backend="cuda")(*[cuda_array(a) for a in args])
    want = want if isinstance(want, (list, tuple)) else [want]
    got = got if isinstance(got, (list, tuple)) else [got]
    for g, w in zip(got, want):
        assert_close(host(g), w, dtype, atol=atol)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_matches_reference(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 64)).astype(dtype)
    m = np.ones((2, 1, 1, 8), bool)
    m[1, ..., 5:] = False
    check(block, x, m, dtype=dtype)


@pytest.mark.cuda
@settings(deadline=None, max_examples=10)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=4), st.sampled_from(DTYPES), st.data())
def test_elementwise_and_reductions_random_shapes(shape, dtype, data):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[-1:]).astype(dtype)
    axis = data.draw(st.integers(0, len(shape) - 1))
    check(lambda x, b: (ait.tanh(x * b + 1.0), ait.sum(ait.relu(x), axis=axis), ait.max(x, axis=-1),
                        ait.softmax(x * 0.5)), x, b, dtype=dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("causal", [False, True])
def test_attention_odd_sizes(causal):
    rng = np.random.default_rng(2)
    q = rng.standard_normal((2, 3, 13, 40)).astype(np.float16)
    k = rng.standard_normal((2, 3, 17, 40)).astype(np.float16)
    v = rng.standard_normal((2, 3, 17, 24)).astype(np.float16)
    mask = (rng.standard_normal((2, 1, 13, 17)) * 3).astype(np.float16)
    check(lambda q, k, v, m: ait.attention(q, k, v, mask=m, causal=causal), q, k, v, mask, dtype=ait.float16)


@pytest.mark.cuda
def test_a_cpu_array_is_a_value_error_naming_it():
    x = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="argument 0"):
        ait.jit(lambda a: a * 2.0, backend="cuda")(x)


def tiny_models(dtype=ait.float32):
    from aitrace.nn.models import BertModel, ResNetModel, ViTModel
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 100, (2, 7)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    bert = BertModel(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     vocab_size=100, max_position_embeddings=64)
    vit = ViTModel(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                   image_size=32, patch_size=8)
    resnet = ResNetModel(embedding_size=16, hidden_sizes=(32, 64), depths=(1, 2))
    for name, p in resnet.state_dict().items():   # non-trivial batch-norm statistics
        if name.endswith(("running_mean", "bias")):
            p[...] = rng.standard_normal(p.shape) * 0.1
        elif name.endswith(("running_var", "normalization.weight")):
            p[...] = 0.5 + rng.random(p.shape)
    img = lambda n: rng.standard_normal((2, 3, n, n)).astype(dtype)  # noqa: E731
    return {"bert": (bert.to(dtype), (ids, np.zeros_like(ids), mask)), "vit": (vit.to(dtype), (img(32),)),
            "resnet": (resnet.to(dtype), (img(64),))}


@needs_nvcc
def test_the_three_models_build_for_sm90a(monkeypatch):
    # SIMT GEMMs only here: CUTLASS kernels take ~45 s each to compile on CI's two cores and are
    # compile-checked in test_cuda_gemm_compile.py
    monkeypatch.setenv("AITRACE_CUTLASS_INCLUDE", "/nonexistent")
    for name, (model, args) in tiny_models(ait.float16).items():
        low = ait.jit(model, backend="cuda", arch="sm_90a").lower(*args)
        assert low.build().exists(), name


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [ait.float32, ait.float16])
def test_the_three_models_match_their_cpu_results(dtype):
    for name, (model, args) in tiny_models(dtype).items():
        want = ait.jit(model, backend="cpu")(*args)
        got = ait.jit(model, backend="cuda")(*[cuda_array(a) for a in args])
        for g, w in zip(got, want):
            g, w = host(g).astype(np.float64), np.asarray(w, np.float64)
            err = np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)
            assert err < (1e-4 if dtype == ait.float32 else 2e-2), (name, err)


def test_cutlass_kernels_become_their_own_translation_units():
    from aitrace.backends.cuda import gemm as cg
    from aitrace.backends.cuda import split_units
    g = ait.jit(lambda x, w: ait.relu(x @ w), backend="reference").lower(
        ait.ShapeDtype((64, 32), ait.float16), ait.ShapeDtype((32, 16), ait.float16)).graph
    k = cg.gemm_kernel("cutlass_gemm_abc", g.eqns[0])
    text = ('#include "ait/cuda.h"\nnamespace {\n' + k.definition
            + "static void k0(cudaStream_t stream) { cutlass_gemm_abc(nullptr); }\n}  // namespace\n")
    main, units = split_units(text)
    ((name, unit),) = units
    assert name == "cutlass_gemm_abc" and "cute::" not in main and "k0(cudaStream_t" in main
    assert "}  // namespace\ncudaError_t cutlass_gemm_abc(const void* A," in main
    assert main.rstrip().endswith("}  // namespace") and main.count("namespace {") == 2
    # a data-parallel kernel is built to wait for its predecessor (PDL): in its unit alone
    assert unit.startswith('#define CUTLASS_ENABLE_GDC_FOR_SM90 1\n')
    assert "CUTLASS_ENABLE_GDC" not in main and "cute/" not in main
    # the unit includes what it needs, so that it is the same text in every model (one cached object)
    assert "#include <cute/tensor.hpp>" in unit and '"ait/cuda.h"' not in unit
    assert "\ncudaError_t cutlass_gemm_abc(const void* A," in unit and "static cudaError_t" not in unit
    assert split_units(main) == (main, [])
    streamk = cg.GemmConfig((128, 128, 64), (1, 1, 1), "cooperative", decomposition="streamk")
    (_, unit), = split_units(text.replace(k.definition, cg.gemm_kernel("cutlass_gemm_abc", g.eqns[0], streamk).definition))[1]
    assert "CUTLASS_ENABLE_GDC" not in unit  # the stream-K scheduler's header does not build with it


def test_kernel_functions_are_dealt_into_parallel_units(monkeypatch):
    from aitrace.backends import cuda
    monkeypatch.setenv("AITRACE_CUTLASS_INCLUDE", "/nonexistent")  # SIMT kernels only: a quick nvcc
    model, args = tiny_models(ait.float16)["bert"]
    src = ait.jit(model, backend="cuda", arch="sm_90a").lower(*args).source
    names = re.findall(r"^// ait-kernel-begin (\w+)$", src, re.M)
    main, parts = cuda.split_kernels(cuda.split_units(src)[0], 3)
    assert len(parts) == 3 and not re.search(r"^// ait-kernel-begin", main, re.M)
    for name in names:  # defined in exactly one part, external there; declared in main
        assert sum(f"\nvoid {name}(" in p for p in parts) == 1, name
        assert f"\nvoid {name}(" in main and f"static void {name}(" not in "".join(parts)
    assert all(p.startswith(main[:main.index("namespace {\n")]) for p in parts)
    assert cuda.split_kernels(main, 3) == (main, [])
    if cuda.nvcc() is not None:  # the build takes this path too where a model has enough kernels
        monkeypatch.setattr(cuda, "KERNELS_PER_PART", max(1, len(names) // 2))
        assert ait.jit(model, backend="cuda", arch="sm_90a").lower(*args).build().exists()
