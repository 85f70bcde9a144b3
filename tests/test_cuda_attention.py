"""Flash attention on the cuda backend (ait/flash_attention.cuh, backends/cuda/attention.py).
CI (nvcc, no GPU): which kernel each attention lowers to, and one nvcc compile of the flash
variants (f16/bf16, d 64/128, masks, causal) as one translation unit whose PTX uses mma.sync.
On a GPU (`pytest -m cuda`): against the numpy reference at odd sizes, masks broadcast from
several shapes, causal, q/k/v read as strided views of one QKV projection, unaligned fallback."""
import re
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aitrace as ait
from conftest import assert_close
from test_cuda_backend import cuda_array, host

S = ait.ShapeDtype
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
F16, BF16 = ait.float16, ait.bfloat16


def _attend(dtype, d, mask, causal, seq=77):
    """A function of q, k, v (and the mask) and its abstract arguments: one attention call."""
    qkv = [S((2, 3, seq, d), dtype)] * 3
    if mask is None:
        return (lambda q, k, v: ait.attention(q, k, v, causal=causal)), qkv
    m = S((2, 1, 1, seq), ait.bool_) if mask == "bool" else S((1, 3, seq, seq), dtype)
    return (lambda q, k, v, m: ait.attention(q, k, v, mask=m, causal=causal)), qkv + [m]


# every (dtype, head dim) with each mask kind and causal on and off somewhere
COMPILE_CASES = [(F16, 64, None, False), (F16, 64, "bool", True), (F16, 128, "additive", False),
                 (F16, 128, None, True), (BF16, 64, "additive", True), (BF16, 64, "bool", False),
                 (BF16, 128, "bool", True), (BF16, 128, None, False)]


@pytest.mark.parametrize("dtype,d,flash", [(F16, 64, True), (BF16, 128, True), (F16, 32, False), (F16, 80, False),
                                           (ait.float32, 64, False)])
def test_lowers_to_flash_for_16_bit_at_head_dim_64_and_128(dtype, d, flash):
    fn, args = _attend(dtype, d, "bool", True)
    src = ait.jit(fn, backend="cuda", arch="sm_90a").lower(*args).source
    assert ("ait::gpu::flash_attention<" in src) == flash
    assert ("ait::gpu::attention_kernel<" in src) == (not flash)
    if flash:
        assert '#include "ait/flash_attention.cuh"' in src and f", {d}, 1, true>(" in src


def test_flash_takes_mask_kind_and_causal_as_template_arguments():
    for mask, causal, tail in [(None, False, "0, false>("), ("additive", True, "2, true>(")]:
        fn, args = _attend(BF16, 128, mask, causal)
        src = ait.jit(fn, backend="cuda", arch="sm_90a").lower(*args).source
        assert f"ait::gpu::flash_attention<__nv_bfloat16, __nv_bfloat16, 128, {tail}" in src


@needs_nvcc
def test_flash_variants_build_for_sm90a_in_one_unit(tmp_path):
    from aitrace.backends.cuda import flags, nvcc

    def many(*xs):
        outs, it = [], iter(xs)
        for dtype, d, mask, causal in COMPILE_CASES:
            q, k, v = next(it), next(it), next(it)
            m = next(it) if mask else None
            outs.append(ait.attention(q, k, v, mask=m, causal=causal))
        return tuple(outs)
    args = [a for case in COMPILE_CASES for a in _attend(*case)[1]]
    low = ait.jit(many, backend="cuda", arch="sm_90a").lower(*args)
    assert low.source.count("ait::gpu::flash_attention<") == len(COMPILE_CASES)
    cu = tmp_path / "flash.cu"
    cu.write_text(low.source)
    r = subprocess.run([nvcc(), *flags("sm_90a"), "-Xptxas", "-v", "-keep", f"-keep-dir={tmp_path}", str(cu),
                        "-o", str(tmp_path / "flash.so")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    ptx = "".join(p.read_text() for p in tmp_path.glob("*.ptx"))
    for t in ("f16", "bf16"):
        assert f"mma.sync.aligned.m16n8k16.row.col.f32.{t}.{t}.f32" in ptx
    assert "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" in ptx and "cp.async.cg.shared.global" in ptx
    # two query-tile sizes per call site; each kernel keeps its accumulators in registers
    entries = re.findall(r"Compiling entry function '(\w*flash_attention_kernel\w*)'.*?(\d+) bytes spill stores",
                         r.stderr, re.S)
    assert len(entries) == 2 * len(COMPILE_CASES)
    assert all(int(spill) <= 64 for _, spill in entries), entries


# ------------------------------------------------------------------ on the GPU
Bd, Hd, Qd, Kd, Sd = (ait.Dim(n, max=512) for n in ("B", "H", "Sq", "Sk", "S"))
HEADS_QKV = 3  # heads of the fused-QKV case


def variants(d):
    """One library per (dtype, head dim) computing every variant, so hypothesis varies only sizes:
    plain, causal, boolean padding mask [B,1,1,Sk] with causal, boolean [1,1,Sq,Sk], additive
    [1,H,Sq,Sk], additive [Sk] with causal, q/k/v as strided slices of one [B,S,3*H*D] projection
    (output written back as [B,S,H*D]), and head rows 65 elements apart (the unaligned fallback)."""
    def fn(q, k, v, pad, full, add, add1, qkv, odd):
        b, s = qkv.shape[0], qkv.shape[1]
        x = ait.reshape(qkv, (b, s, 3, HEADS_QKV, d))
        fq, fk, fv = (ait.transpose(x[:, :, i], (0, 2, 1, 3)) for i in range(3))
        fused = ait.reshape(ait.transpose(ait.attention(fq, fk, fv), (0, 2, 1, 3)), (b, s, HEADS_QKV * d))
        u = odd[..., 1:]
        return (ait.attention(q, k, v), ait.attention(q, k, v, causal=True),
                ait.attention(q, k, v, mask=pad, causal=True), ait.attention(q, k, v, mask=full),
                ait.attention(q, k, v, mask=add), ait.attention(q, k, v, mask=add1, causal=True),
                fused, ait.attention(u, u, u, causal=True))
    dyn = {0: {0: Bd, 1: Hd, 2: Qd}, 1: {0: Bd, 1: Hd, 2: Kd}, 2: {0: Bd, 1: Hd, 2: Kd}, 3: {0: Bd, 3: Kd},
           4: {2: Qd, 3: Kd}, 5: {1: Hd, 2: Qd, 3: Kd}, 6: {0: Kd}, 7: {0: Bd, 1: Sd}, 8: {0: Bd, 1: Hd, 2: Qd}}
    return fn, dyn


VARIANTS = ["plain", "causal", "bool [B,1,1,Sk] + causal", "bool [1,1,Sq,Sk]", "additive [1,H,Sq,Sk]",
            "additive [Sk] + causal", "fused QKV views", "unaligned rows + causal"]
_LIBS: dict = {}


def test_variants_read_views_in_place():
    """The QKV slices, head split/merge and the unaligned slice are views: attention kernels only."""
    fn, dyn = variants(64)
    args = [S((2, 3, 9, 64), F16), S((2, 3, 5, 64), F16), S((2, 3, 5, 64), F16), S((2, 1, 1, 5), ait.bool_),
            S((1, 1, 9, 5), ait.bool_), S((1, 3, 9, 5), F16), S((5,), F16), S((2, 7, 3 * HEADS_QKV * 64), F16),
            S((2, 3, 9, 65), F16)]
    low = ait.jit(fn, backend="cuda", dynamic=dyn, arch="sm_90a").lower(*args)
    assert [k.split("_", 1)[1] for k in low.source_obj.info["kernels"]] == ["attention"] * len(VARIANTS)
    assert low.source.count("ait::gpu::flash_attention<") == len(VARIANTS)


def _jitted(dtype, d):
    if (dtype, d) not in _LIBS:
        fn, dyn = variants(d)
        _LIBS[dtype, d] = (ait.jit(fn, backend="cuda", dynamic=dyn), ait.jit(fn, backend="reference", passes=()))
    return _LIBS[dtype, d]


def _check_flash(dtype, d, b, h, sq, sk, s, seed):
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32).astype(dtype)  # noqa: E731
    add = normal(1, h, sq, sk)
    add[rng.random(add.shape) < 0.1] = -np.inf  # keys masked out through the additive form too
    args = [normal(b, h, sq, d), normal(b, h, sk, d), normal(b, h, sk, d), rng.random((b, 1, 1, sk)) < 0.8,
            rng.random((1, 1, sq, sk)) < 0.5, add, normal(sk), normal(b, s, 3 * HEADS_QKV * d),
            normal(b, h, sq, d + 1)]
    ours, ref = _jitted(dtype, d)
    got, want = ours(*[cuda_array(a) for a in args]), ref(*args)
    assert "flash_attention<" in ours.lower(*args).source
    for name, g, w in zip(VARIANTS, got, want):
        try:
            assert_close(host(g), w, dtype)
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from None


@pytest.mark.cuda
@settings(deadline=None)
@given(st.sampled_from([F16, BF16]), st.sampled_from([64, 128]), st.integers(1, 3), st.integers(1, 4),
       st.integers(1, 300), st.integers(1, 300), st.integers(1, 200), st.integers(0, 2**31 - 1))
def test_flash_matches_reference(dtype, d, b, h, sq, sk, s, seed):
    _check_flash(dtype, d, b, h, sq, sk, s, seed)


# fixed odd sizes (partial q and k blocks everywhere): the compute-sanitizer subset
@pytest.mark.cuda
@pytest.mark.parametrize("dtype,d", [(F16, 64), (BF16, 128)])
def test_flash_odd_sizes(dtype, d):
    _check_flash(dtype, d, 2, 3, 77, 131, 45, 0)
