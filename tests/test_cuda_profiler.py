"""The GEMM-config profiler (backends/cuda/profiler.py) and its database (runtime/profile_db.py):
the database round trip, bucketing of dynamic sizes, the heuristic, database hits without a GPU,
and (on a GPU) a real profiling run whose winner is remembered and used by the next compile."""
import pytest

import aitrace as ait
from aitrace.backends.cuda import gemm as cg
from aitrace.backends.cuda import profiler
from aitrace.runtime.profile_db import ProfileDB


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AITRACE_CACHE_DIR", str(tmp_path))
    return tmp_path


def _eqn(fn, *args):
    g = ait.jit(fn, backend="reference").lower(*args).graph
    (e,) = g.eqns
    return e


def test_db_round_trip(cache):
    db = ProfileDB()
    assert db.path == cache / "profile.sqlite"
    assert db.get("H100", "op", "1x2x3") is None
    db.put("H100", "op", "1x2x3", "pingpong_64x128x64_c1x1x1", 0.5, {"pingpong_64x128x64_c1x1x1": 0.5, "x": 0.7})
    db.put("H100", "op", "1x2x3", "cooperative_128x128x64_c1x1x1", 0.4, {"cooperative_128x128x64_c1x1x1": 0.4})
    w = ProfileDB().get("H100", "op", "1x2x3")  # a new connection sees it; the later put replaced it
    assert (w.config, w.ms) == ("cooperative_128x128x64_c1x1x1", 0.4)
    assert ProfileDB().get("A100", "op", "1x2x3") is None
    assert len(db.entries()) == 1


def test_heuristic_by_waves():
    assert profiler.heuristic(8192, 8192) == cg.DEFAULT_CONFIG
    assert profiler.heuristic(1024, 2304).tile == (128, 128, 64)
    assert profiler.heuristic(197, 2304) == cg.GemmConfig((64, 128, 64), (1, 1, 1), "pingpong")  # 72 CTAs
    # under half the SMs with 64x128 tiles: the profiler's winners on the H100 for BERT/ViT bs1,
    # 64x32 where its CTAs fit half the SMs, else 64x64
    pp = lambda tn: cg.GemmConfig((64, tn, 64), (1, 1, 1), "pingpong")  # noqa: E731
    for rows, n, tn in [(128, 768, 32), (1, 768, 32), (128, 2304, 64), (128, 3072, 64), (196, 768, 64),
                        (197, 768, 64), (49, 512, 32)]:
        assert profiler.heuristic(rows, n) == pp(tn), (rows, n)
    assert profiler.heuristic(4096, 4096).decomposition == "dp"
    assert profiler.heuristic(12544, 64).tile == (128, 64, 64)  # ResNet's stem over its patches


def test_candidates_pruned_by_critical_path_work():
    name = lambda args: {c.name for c in profiler.candidates(args)}  # noqa: E731
    # 49 x 512 (ResNet layer 4 at batch 1): 4 CTAs of 64x128, 8 of 64x64, 16 of 64x32 (the
    # heuristic's pick); the wider tiles do 2-8x the work per SM on the critical path
    few = {"pingpong_64x64x64_c1x1x1", "pingpong_64x32x64_c1x1x1", "pingpong_64x128x64_c1x1x1"}
    assert name([49, 512, 4608, 1, 4608, 512, 512, 0, 0, 0]) == few
    # BERT bs1's out-projection: 12 CTAs of 64x128 or 128x64, 24 of 64x64, 48 of 64x32
    assert name([128, 768, 768, 1, 768, 768, 768, 0, 0, 0]) == few
    # ViT bs1's 197 x 3072: 96 CTAs of 64x128 (under one wave), 128 of 64x96
    assert "pingpong_64x96x64_c1x1x1" in name([197, 3072, 768, 1, 768, 3072, 3072, 0, 0, 0])
    # the stem over its patches: 98 CTAs of 128x64 fill one wave, 64x128 would need two
    assert name([12544, 64, 168, 1, 168, 64, 64, 0, 0, 0]) == {"cooperative_128x64x64_c1x1x1"}
    # many waves: every config stays in (the wave quantization is small for all of them)
    assert name([8192, 8192, 8192, 1, 8192, 8192, 8192, 0, 0, 0]) == {c.name for c in cg.CONFIGS}
    for c in profiler.candidates([49, 512, 4608, 1, 4608, 512, 512, 0, 0, 0]):
        assert cg.GemmConfig.parse(c.name) == c and c.decomposition == "dp"


def test_problems_static_and_buckets():
    f16 = ait.float16
    e = _eqn(lambda x, w: x @ w, ait.ShapeDtype((128, 768), f16), ait.ShapeDtype((768, 2304), f16))
    (prob,) = profiler.problems(cg.gemm_geometry(e))
    assert prob == (None, [128, 2304, 768, 1, 768, 2304, 2304, 0, 0, 0])
    S = ait.Dim("S", min=1, max=1024)
    e = _eqn(lambda x, w: x @ w, ait.ShapeDtype((S, 768), f16), ait.ShapeDtype((768, 3072), f16))
    probs = profiler.problems(cg.gemm_geometry(e), [S])  # the graph's Dims carry the bounds
    assert [b for b, _ in probs] == [128, 512, None]
    assert [p[0] for _, p in probs] == [128, 512, 1024]  # rows profiled at each bucket's bound
    N = ait.Dim("N", max=64)
    e = _eqn(lambda x, w: x @ w, ait.ShapeDtype((128, 768), f16), ait.ShapeDtype((768, N), f16))
    assert profiler.problems(cg.gemm_geometry(e)) == []  # N dynamic: heuristic only


def test_choices_read_the_database_without_a_gpu(cache, monkeypatch):
    f16 = ait.float16
    e = _eqn(lambda x, w: x @ w, ait.ShapeDtype((256, 512), f16), ait.ShapeDtype((512, 1024), f16))
    geo = cg.gemm_geometry(e)
    monkeypatch.setattr(profiler, "device_name", lambda: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(profiler, "_gpu_arch_matches", lambda arch: False)  # no live profiling
    (choice,) = profiler.gemm_choices(e, geo, "sm_90a")
    assert choice == (None, profiler.heuristic(256, 1024))
    key = "x".join(map(str, profiler.problems(geo)[0][1]))
    ProfileDB().put("NVIDIA H100 80GB HBM3", profiler.signature(e, geo.b_major), key,
                    "pingpong_128x128x64_c2x1x1", 0.01, {})
    (choice,) = profiler.gemm_choices(e, geo, "sm_90a")
    assert choice == (None, cg.GemmConfig.parse("pingpong_128x128x64_c2x1x1"))


@pytest.mark.skipif(cg.cutlass_include_dir() is None or __import__("shutil").which("nvcc") is None,
                    reason="needs nvcc and the CUTLASS headers")
def test_a_remembered_stream_k_winner_gets_its_workspace(cache, monkeypatch):
    """A stream-K config from the database: the model asks the kernel for its workspace before
    the run (once per dims), passes a region of the arena, and builds for sm_90a."""
    import numpy as np
    f16 = ait.float16
    w = (np.random.default_rng(0).standard_normal((768, 512)) / 32).astype(f16)
    fn = lambda x: ait.relu(x @ w)  # noqa: E731
    x = ait.ShapeDtype((128, 768), f16)
    e = _eqn(fn, x)
    geo = cg.gemm_geometry(e)
    monkeypatch.setattr(profiler, "device_name", lambda: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(profiler, "_gpu_arch_matches", lambda arch: False)
    key = "x".join(map(str, profiler.problems(geo)[0][1]))
    ProfileDB().put("NVIDIA H100 80GB HBM3", profiler.signature(e, geo.b_major), key,
                    "cooperative_128x128x64_c1x1x1_streamk", 0.004, {})
    low = ait.jit(fn, backend="cuda", arch="sm_90a").lower(x)
    src = low.source
    assert "cutlass::gemm::StreamKScheduler>" in src and "ctx->workspace.bytes_for(dims" in src
    assert "false, stream, workspace, workspace_bytes, nullptr)" in src and "false, nullptr, nullptr, 0, &need)" in src
    assert low.build().exists()


def test_harness_spans_every_operand():
    f16 = ait.float16
    e = _eqn(lambda x, w, b, r: ait.gelu(x @ w + b) + r, ait.ShapeDtype((100, 64), f16),
             ait.ShapeDtype((64, 72), f16), ait.ShapeDtype((72,), f16), ait.ShapeDtype((100, 72), f16))
    geo = cg.gemm_geometry(e)
    k, src = profiler.harness_source(e, geo.b_major, cg.DEFAULT_CONFIG, [int(a) for a in geo.args()])
    assert "extern \"C\" int ait_profile(" in src
    # the kernel under the model's name (its unit's cached object is the model's), declared here
    assert k.name == cg.named_kernel(cg.gemm_kernel, e, cg.DEFAULT_CONFIG, geo.b_major).name
    assert f"cudaError_t {k.name}(const void* A," in src and "cute::" not in src
    for buf in ("A", "B", "x0", "x1", "D"):
        assert f"void* {buf} = ait_profile_buffer<" in src
    assert f"{k.name}(A, B, x0, x1, D, 100, 72, 64, 1," in src
    assert "false, stream, workspace, workspace_bytes, nullptr)" in src   # a workspace for stream-K configs
    assert "nullptr, nullptr, 0, &workspace_bytes);" in src
    # timed as a graph of back-to-back launches (the host's launch cost stays out)
    assert src.index("cudaStreamBeginCapture(stream") < src.index("cudaGraphLaunch(exec, stream)")


@pytest.mark.cuda
def test_profiling_picks_and_remembers_a_winner(cache, monkeypatch):
    import torch
    monkeypatch.setenv("AITRACE_PROFILE", "1")
    f16 = ait.float16
    e = _eqn(lambda x, w: x @ w, ait.ShapeDtype((128, 768), f16), ait.ShapeDtype((768, 768), f16))
    geo = cg.gemm_geometry(e)
    (choice,) = profiler.gemm_choices(e, geo, "sm_90a")
    entries = ProfileDB().entries()
    assert len(entries) == 1 and entries[0][3] == choice[1].name and entries[0][4] > 0
    # the compiled function uses the winner and computes the product
    f = ait.jit(lambda x, w: x @ w, backend="cuda")
    x = torch.randn(128, 768, device="cuda", dtype=torch.float16)
    w = torch.randn(768, 768, device="cuda", dtype=torch.float16) / 28
    torch.testing.assert_close(f(x, w).float(), (x @ w).float(), rtol=1e-2, atol=1e-2)
    assert f"// config {choice[1].name};" in f.lower(x, w).source


def test_a_model_profiles_all_its_gemms_in_one_batch(cache, monkeypatch):
    """lower() collects every unknown GEMM problem, profiles them together, then generates its
    code again with the winners (the timing itself faked here: no GPU)."""
    monkeypatch.setenv("AITRACE_PROFILE", "1")
    monkeypatch.setattr(profiler, "device_name", lambda: "FakeGPU")
    monkeypatch.setattr(profiler, "_gpu_arch_matches", lambda arch: True)
    batches, prebuilt = [], []

    def fake_profile_all(jobs, prebuild=()):
        batches.append(jobs)
        prebuilt.append(len(prebuild))
        for eqn, b_major, args, dev, op, key in jobs:
            ProfileDB().put(dev, op, key, "pingpong_128x128x64_c2x1x1", 0.01, {})
    monkeypatch.setattr(profiler, "profile_all", fake_profile_all)
    f16 = ait.float16
    w1, w2 = ait.ShapeDtype((256, 512), f16), ait.ShapeDtype((512, 256), f16)
    f = ait.jit(lambda x, a, b: ait.relu(x @ a) @ b, backend="cuda", arch="sm_90a")
    src = f.lower(ait.ShapeDtype((128, 256), f16), w1, w2).source
    assert len(batches) == 1 and len(batches[0]) == 2
    assert prebuilt == [2]  # the two GEMMs' units of the first pass compile beside the candidates
    assert src.count("// config pingpong_128x128x64_c2x1x1;") == 2
    f2 = ait.jit(lambda x, a, b: ait.relu(x @ a) @ b, backend="cuda", arch="sm_90a")
    f2.lower(ait.ShapeDtype((128, 256), f16), w1, w2)
    assert len(batches) == 1  # the database answers now


def test_a_problem_with_one_candidate_is_not_timed(cache, monkeypatch):
    monkeypatch.setenv("AITRACE_PROFILE", "1")
    monkeypatch.setattr(profiler, "device_name", lambda: "FakeGPU")
    monkeypatch.setattr(profiler, "_gpu_arch_matches", lambda arch: True)
    timed = []
    monkeypatch.setattr(profiler, "profile_all", lambda jobs, prebuild=(): timed.extend(jobs))
    f16 = ait.float16
    # the stem over its patches: one config alone fills a wave (test_candidates_pruned_...)
    e = _eqn(lambda x, w: x @ w, ait.ShapeDtype((12544, 168), f16), ait.ShapeDtype((168, 64), f16))
    geo = cg.gemm_geometry(e)
    assert profiler.gemm_choices(e, geo, "sm_90a") == [(None, cg.GemmConfig((128, 64, 64), (1, 1, 1), "cooperative"))]
    # two candidates: timed
    e = _eqn(lambda x, w: x @ w, ait.ShapeDtype((49, 4608), f16), ait.ShapeDtype((4608, 512), f16))
    profiler.gemm_choices(e, cg.gemm_geometry(e), "sm_90a")
    assert len(timed) == 1 and ProfileDB().entries() == []
