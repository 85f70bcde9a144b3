"""The cuda backend's own kernels for the fused forms: fused_norm (an elementwise prologue in the
softmax / layer norm row kernel, extra outputs stored on the way), grouped (layer norms in one
launch, GEMMs from one host function) and elementwise chains broadcasting along outer axes on the
16-byte vector path. Compile-only on sm_90a without a GPU (one nvcc run); `pytest -m cuda`
compares against the numpy reference in f32, f16 and bf16."""
import re
import shutil
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import aitrace as ait
from conftest import assert_close

S = ait.ShapeDtype
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
DTYPES = [ait.float32, ait.float16, ait.bfloat16]


def stage(a1, a2, scores, mask, f1, f2, rowscale, w, b, w1, bias1, w2):
    """Two independent layer norms (grouped), their residual sum into a third (fused_norm with the
    sum as an extra output), a scaled and masked softmax (fused_norm), two independent GEMMs
    (grouped) and chains broadcasting a bias [N] and a per-row scalar [R, 1] over [R, N]."""
    h = ait.layer_norm(a1, w, b) + ait.layer_norm(a2, w, None)
    return (ait.layer_norm(h, w, b), h, ait.softmax(scores * 0.125 + mask, axis=-1),
            ait.relu(f1 @ w1 + bias1), f2 @ w2, ait.gelu(a1 + w), a1 * rowscale)


def stage_consts(rng, dtype=np.float16):
    return (np.ones(96, dtype), np.zeros(96, dtype), rng.standard_normal((48, 40)).astype(np.float32),
            rng.standard_normal(40).astype(np.float32), rng.standard_normal((24, 56)).astype(np.float32))


def lower_stage():
    R = ait.Dim("R", min=1, max=300)
    consts = stage_consts(np.random.default_rng(0))
    fn = lambda *xs: stage(*xs, *consts)  # noqa: E731
    args = [S((R, 96), ait.float16), S((R, 96), ait.float16), S((2, 4, 16, 24), ait.float32),
            S((2, 1, 1, 24), ait.float32), S((R, 48), ait.float32), S((7, 24), ait.float32), S((R, 1), ait.float16)]
    return ait.jit(fn, backend="cuda", arch="sm_90a").lower(*args)


def kernel(source: str, name: str) -> str:
    """The generated host function `name` (to its closing brace)."""
    start = source.index(f"static void {name}(")
    return source[start:source.index("\n}\n", start)]


@needs_nvcc
def test_fused_forms_reach_their_cuda_kernels_and_build_for_sm90a():
    low = lower_stage()
    src, names = low.source, low.source_obj.info["kernels"]
    kinds = [k.split("_", 1)[1] for k in names]
    assert kinds.count("grouped") == 2 and kinds.count("fused_norm") == 2, kinds
    assert not {"layer_norm", "softmax", "matmul", "fused_gemm"} & set(kinds), kinds  # nothing expanded
    grouped = [kernel(src, k) for k in names if k.endswith("_grouped")]
    norms = next(g for g in grouped if "grouped_layer_norm" in g)
    gemms = next(g for g in grouped if "grouped_layer_norm" not in g)
    # the two layer norms: one launch over a two-member table
    assert norms.count("grouped_layer_norm(") == 1 and "LayerNormGroup<__half, __half, 2>" in norms
    # the GEMMs (one with its relu epilogue): their own kernels, called in sequence from one function
    assert len(re.findall(r"k\d+_grouped_m\d\(v_", gemms)) == 2 and "_epilogue" in src
    fused = {k: kernel(src, k) for k in names if k.endswith("_fused_norm")}
    ln = next(k for k, f in fused.items() if "layer_norm_rows" in f and "_row row{" in f)
    sm = next(k for k, f in fused.items() if "softmax_rows" in f and "_row row{" in f)
    # the residual sum is stored by the prologue on the row's first pass; the mask is broadcast
    prologue = lambda k: src[src.index(f"struct {k}_row {{"):src.index(f"static void {k}(")]  # noqa: E731
    assert re.search(r"if \(first\) \{\n\s+v_\w+\[r \* n_cols \+ i\] = ", prologue(ln))
    assert re.search(r"if \(first\) \{\n\s+ait::gpu::vstore\(v_\w+ \+ r \* n_cols \+ i, c0\);", prologue(ln))
    assert "f32[2,1,1,24] broadcast" in prologue(sm) and "if (first)" not in prologue(sm)
    # bias [96] and per-row scale [R, 1] over [R, 96]: vector kernels; the row scale one scalar load
    vec = [k for k in names if f"__global__ void {k}_vec_kernel" in src]
    assert any("fused_elementwise" in k for k in vec) and any(k.endswith("_mul") for k in vec)
    mul = src[src.index("void " + next(k for k in vec if k.endswith("_mul")) + "_vec_kernel"):]
    assert re.search(r"const float a1 = ait::gpu::load<float>\(v_\w+\[x0 \* 1 \+ 0\]\);\n\s+alignas", mul)
    path = low.build()
    assert path.exists() and path.suffix == ".so"


@needs_nvcc
def test_vector_path_only_where_rows_can_be_whole_vectors():
    def lower(shape, bias_shape, dtype=ait.float16):
        return ait.jit(lambda x, b: ait.relu(x + b), backend="cuda", arch="sm_90a").lower(
            S(shape, dtype), S(bias_shape, dtype)).source
    assert "_vec_kernel" in lower((5, 3, 64), (3, 64))          # [3, 64] broadcast over the outer axis
    assert "_vec_kernel" not in lower((5, 95), (95,))          # rows of 95: never whole vectors
    assert "_vec_kernel" not in lower((5, 64), (5, 64), ait.bool_)  # 8 bools are not 16 bytes
    N = ait.Dim("N", max=4096)                                  # dynamic width: checked at run time
    assert re.search(r"if \(dim_N % 8 == 0 && ait::gpu::aligned16", lower((5, N), (N,)))


@needs_nvcc
def test_plain_norms_and_unfused_forms_use_the_row_kernels():
    fn = lambda x, w: (ait.softmax(x, axis=-1), ait.layer_norm(x, w, None))  # noqa: E731
    low = ait.jit(fn, backend="cuda", arch="sm_90a", passes=()).lower(S((3, 2000), ait.float16),
                                                                      S((2000,), ait.float16))
    assert "ait::gpu::softmax_rows(ait::gpu::PlainRow<__half>" in low.source
    assert "ait::gpu::layer_norm_rows<__half, __half>(ait::gpu::PlainRow<__half>" in low.source



def test_layer_norms_read_constant_affine_params_before_waiting():
    """A layer norm whose weight and bias are constants reads them before its PDL wait
    (preload = true); weights given at run time are written by earlier kernels: read after."""
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((2, 768)).astype(np.float16)
    const = ait.jit(lambda x, r: residual_layer_norm(x, r, w, b), backend="cuda", arch="sm_90a").lower(
        S((128, 768), ait.float16), S((128, 768), ait.float16)).source
    assert re.search(r"layer_norm_rows<__half, __half>\(row, .*, vec, stream, true\);", const)
    given_ = ait.jit(residual_layer_norm, backend="cuda", arch="sm_90a").lower(
        S((128, 768), ait.float16), S((128, 768), ait.float16), S((768,), ait.float16), S((768,), ait.float16)).source
    assert re.search(r"layer_norm_rows<__half, __half>\(row, .*, vec, stream, false\);", given_)


# ------------------------------------------------------------------ on the GPU
def cuda_array(a):
    torch = pytest.importorskip("torch")
    if a.dtype == ait.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).cuda()
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


def host(t):
    torch = pytest.importorskip("torch")
    if t.dtype == torch.bfloat16:
        return t.cpu().view(torch.int16).numpy().view(ait.bfloat16)
    return t.cpu().numpy()


def compare(jitted, fn, *args, dtype, kinds=(), atol=None):
    """jitted (cuda) on the GPU against fn under the reference backend without passes; `kinds`:
    kernels the cuda build must contain (so the fused form really ran)."""
    got = jitted(*[cuda_array(a) for a in args])
    if kinds:
        names = jitted.lower(*[cuda_array(a) for a in args]).source_obj.info["kernels"]
        assert set(kinds) <= {k.split("_", 1)[1] for k in names}, names
    want = ait.jit(fn, backend="reference", passes=())(*args)
    got, want = (got, want) if isinstance(want, (list, tuple)) else ([got], [want])
    for g, w in zip(got, want):
        assert_close(host(g), w, dtype, atol=atol)


R, N, R2, N2 = (ait.Dim(n, min=1, max=m) for n, m in (("R", 300), ("N", 1100), ("R2", 300), ("N2", 1100)))


def residual_layer_norm(x, r, w, b):
    h = x * 0.5 + r
    return ait.layer_norm(h, w, b), h


def masked_softmax(s, m):
    return ait.softmax(s * 0.125 + m, axis=-1)


def grouped_norms(a1, w1, b1, a2, w2):
    return ait.layer_norm(a1, w1, b1), ait.layer_norm(a2, w2, None)


def broadcast_chains(x, bias, scale):
    return ait.gelu(x + bias), x * scale - 1.0


# one build per function and dtype (dynamic rows and widths), shared by the hypothesis examples
DYNAMIC = {residual_layer_norm: {0: {0: R, 1: N}, 1: {0: R, 1: N}, 2: {0: N}, 3: {0: N}},
           masked_softmax: {0: {1: R, 2: N}, 1: {2: N}},
           grouped_norms: {0: {0: R, 1: N}, 1: {0: N}, 2: {0: N}, 3: {0: R2, 1: N2}, 4: {0: N2}},
           broadcast_chains: {0: {0: R, 1: N}, 1: {0: N}, 2: {0: R}}}


@lru_cache(maxsize=None)
def jitted(fn, dtype):
    return ait.jit(fn, backend="cuda", dynamic=DYNAMIC[fn])


def data(rng, dtype, *shapes):
    return [rng.uniform(-2, 2, s).astype(np.float32).astype(dtype) for s in shapes]


rows, widths = st.integers(1, 300), st.integers(1, 1100)


@pytest.mark.cuda
@settings(deadline=None, max_examples=12)
@given(rows, widths, st.sampled_from(DTYPES))
@example(37, 768, ait.float16).via("vector path, a warp a row")
@example(3, 1088, ait.bfloat16).via("vector path, a block a row")
def test_fused_layer_norm_with_residual_output(r, n, dtype):
    args = data(np.random.default_rng(r * 7 + n), dtype, (r, n), (r, n), (n,), (n,))
    compare(jitted(residual_layer_norm, dtype), residual_layer_norm, *args, dtype=dtype, kinds=["fused_norm"])



@pytest.mark.cuda
@pytest.mark.parametrize("n,dtype", [(8, ait.float16), (200, ait.float32), (520, ait.float16), (768, ait.bfloat16),
                                     (1024, ait.float16)])
def test_register_row_layer_norm_with_constant_affine(n, dtype):
    """Rows of 1-4 chunks of 256 columns a warp (the last one partly used at 200 and 520), weight
    and bias read before the PDL wait; plain and with a residual prologue."""
    rng = np.random.default_rng(n)
    x, r, w, b = data(rng, dtype, (131, n), (131, n), (n,), (n,))
    fused = lambda x, r: residual_layer_norm(x, r, w, b)  # noqa: E731
    plain = lambda x: ait.layer_norm(x, w, b)  # noqa: E731  (its own build: parallel norms are grouped)
    compare(ait.jit(fused, backend="cuda"), fused, x, r, dtype=dtype, kinds=["fused_norm"])
    compare(ait.jit(plain, backend="cuda"), plain, x, dtype=dtype, kinds=["layer_norm"])


@pytest.mark.cuda
@settings(deadline=None, max_examples=12)
@given(rows, widths, st.sampled_from(DTYPES))
@example(300, 512, ait.float32).via("vector path, a warp a row")
@example(5, 1096, ait.float16).via("vector path, a block a row")
def test_fused_softmax_with_broadcast_mask(r, n, dtype):
    s, m = data(np.random.default_rng(r * 5 + n), dtype, (2, r, n), (2, 1, n))
    compare(jitted(masked_softmax, dtype), masked_softmax, s * 4, m, dtype=dtype, kinds=["fused_norm"])


@pytest.mark.cuda
@settings(deadline=None, max_examples=12)
@given(rows, widths, rows, widths, st.sampled_from(DTYPES))
@example(40, 768, 3, 1100, ait.float16).via("a vector member and a block-per-row scalar one")
def test_grouped_layer_norms_in_one_launch(r1, n1, r2, n2, dtype):
    args = data(np.random.default_rng(r1 + n1 + r2 * n2), dtype, (r1, n1), (n1,), (n1,), (r2, n2), (n2,))
    compare(jitted(grouped_norms, dtype), grouped_norms, *args, dtype=dtype, kinds=["grouped"])


@pytest.mark.cuda
@settings(deadline=None, max_examples=12)
@given(rows, widths, st.sampled_from(DTYPES))
@example(77, 1024, ait.bfloat16).via("vector path")
def test_outer_broadcast_chains(r, n, dtype):
    args = data(np.random.default_rng(r * 3 + n), dtype, (r, n), (n,), (r, 1))
    compare(jitted(broadcast_chains, dtype), broadcast_chains, *args, dtype=dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_too_long_to_cache_recompute_the_prologue(dtype):
    x, r, w, b = data(np.random.default_rng(0), dtype, (3, 12000), (3, 12000), (12000,), (12000,))
    fn = lambda x, r: (*residual_layer_norm(x, r, w, b), masked_softmax(x, r[:1]))  # noqa: E731
    compare(ait.jit(fn, backend="cuda"), fn, x, r, dtype=dtype, kinds=["fused_norm"])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,k,n", [(ait.float32, 37, 29), (ait.float16, 24, 40), (ait.float16, 64, 128),
                                       (ait.bfloat16, 64, 128)])
def test_grouped_matmuls(dtype, k, n):
    rng = np.random.default_rng(k + n)
    w1 = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
    w2 = (rng.standard_normal((n, k)) / np.sqrt(n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    fn = lambda a, c: (ait.relu(a @ w1 + bias), c @ w2)  # noqa: E731
    f = ait.jit(fn, backend="cuda", dynamic={0: {0: R}, 1: {0: R2}})
    for m1, m2 in [(1, 3), (77, 128), (300, 5)]:
        a, c = data(rng, dtype, (m1, k), (m2, n))
        # bf16: the reference rounds a @ w1 (|y| ~ 2: one ulp is 1/64) before the bias add, the
        # fused epilogue does not (as in test_cuda_ops.test_aligned_linear_runs_on_cutlass)
        compare(f, fn, a, c, dtype=dtype, kinds=["grouped"], atol=3e-2 if dtype == ait.bfloat16 else None)
