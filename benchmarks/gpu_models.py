"""ResNet-50, BERT-base (seq 128) and ViT-B/16 on one GPU, fp16, random weights: aitrace's cuda
backend against PyTorch eager, eager replayed as a CUDA graph, and torch.compile (default mode)
replayed as a CUDA graph, all in this one process on the same inputs. Times are CUDA-event
medians after warm-up. Also aitrace's cold compile (empty cache: code generation, profiling,
nvcc) and warm compile (a new process, same cache) of each model, each in a fresh process.

    python benchmarks/gpu_models.py [--models resnet,bert,vit] [--batches 1,large] [--repeat 50]
        [--no-compile] [--compile-times] [--kernel-times 12] [--trace 15] [--json out.json] [--plot out.png]

--kernel-times N: afterwards, each model's GPU time per kernel (CUDA events, no CUDA graph;
the same library created again with AITRACE_KERNEL_TIMES=1), by primitive and the N largest.
--trace N: a CUPTI trace (torch.profiler) of aitrace's graph replays and torch.compile's: each
kernel's real device time, busy time against the span, the N largest kernels.

Needs a GPU, torch and transformers; --plot needs matplotlib.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from timing import cuda_ms, gemm_flops, graphed, kernel_table, trace_kernels

DEFAULT_BATCHES = {"resnet": (1, 128), "bert": (1, 64), "vit": (1, 128)}
NAMES = {"resnet": "ResNet-50", "bert": "BERT-base s128", "vit": "ViT-B/16"}


def case(model: str, batch: int):
    """(transformers model, aitrace model, torch inputs, call(model, inputs) -> last hidden state)."""
    import torch
    import transformers

    from aitrace.nn.models import BertModel, ResNetModel, ViTModel
    rng = np.random.default_rng(0)
    if model == "bert":
        ids = torch.from_numpy(rng.integers(0, 30522, (batch, 128))).cuda()
        return (transformers.BertModel(transformers.BertConfig()), BertModel(),
                (ids, torch.zeros_like(ids), torch.ones_like(ids)),
                lambda m, x: m(input_ids=x[0], token_type_ids=x[1], attention_mask=x[2])[0])
    img = torch.from_numpy(rng.standard_normal((batch, 3, 224, 224)).astype(np.float16)).cuda()
    if model == "vit":
        return (transformers.ViTModel(transformers.ViTConfig()), ViTModel(), (img,),
                lambda m, x: m(pixel_values=x[0])[0])
    return (transformers.ResNetModel(transformers.ResNetConfig()), ResNetModel(), (img,),
            lambda m, x: m(pixel_values=x[0])[0])


def compile_seconds(model: str, batch: int, cache_dir: str) -> float:
    """Seconds a new process takes to build (or load from cache_dir) and run the model once."""
    code = (f"import sys, time; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
            "import torch, aitrace as ait\n"
            "from gpu_models import case\n"
            f"tm, am, args, call = case({model!r}, {batch})\n"
            "am.load_state_dict(tm.state_dict()); am = am.to(ait.float16)\n"
            "t = time.perf_counter(); f = ait.jit(am, backend='cuda'); f(*args); torch.cuda.synchronize()\n"
            "print(time.perf_counter() - t)\n")
    env = dict(os.environ, AITRACE_CACHE_DIR=cache_dir, AITRACE_PROGRESS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return float(out.stdout.split()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="resnet,bert,vit")
    p.add_argument("--batches", default=None,
                   help="comma-separated, 'large' for each model's large batch; default: 1 and the large batch")
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-times", action="store_true", help="measure aitrace's cold and warm compile")
    p.add_argument("--kernel-times", type=int, default=None, metavar="N",
                   help="per-kernel GPU times afterwards (the N largest kernels listed)")
    p.add_argument("--trace", type=int, default=None, metavar="N",
                   help="CUPTI kernel trace of aitrace and torch.compile (the N largest kernels listed)")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    a = p.parse_args()
    import torch

    import aitrace as ait
    dev = torch.cuda.get_device_name()
    print(f"{dev} torch={torch.__version__} fp16, ms (CUDA-event medians of {a.repeat})")
    print(f"{'model':16s} {'batch':>5s} {'aitrace':>9s} {'eager':>9s} {'eager+graph':>11s} {'compile+graph':>13s} "
          f"{'best torch/ait':>14s}  max rel err")
    rows = []
    for model in a.models.split(","):
        batches = ([DEFAULT_BATCHES[model][1] if b == "large" else int(b) for b in a.batches.split(",")]
                   if a.batches else DEFAULT_BATCHES[model])
        for batch in batches:
            tm, am, args, call = case(model, batch)
            tm = tm.eval()
            am.load_state_dict(tm.state_dict())
            am = am.to(ait.float16)
            tm = tm.half().cuda()
            t0 = time.perf_counter()
            f = ait.jit(am, backend="cuda")
            y = f(*args)[0]
            torch.cuda.synchronize()
            first_call_s = time.perf_counter() - t0
            r = dict(model=NAMES[model], batch=batch, first_call_s=first_call_s)
            with torch.inference_mode():
                ref = call(tm, args)
                r["max_rel_err"] = float(((y.float() - ref.float()).abs().max() / ref.float().abs().max()).item())
                r["aitrace_ms"] = cuda_ms(lambda: f(*args), a.repeat)
                r["eager_ms"] = cuda_ms(lambda: call(tm, args), a.repeat)
                r["eager_graph_ms"] = cuda_ms(graphed(lambda: call(tm, args)), a.repeat)
                r["compile_graph_ms"] = float("nan")
                if not a.no_compile:
                    ct = torch.compile(tm)
                    r["compile_graph_ms"] = cuda_ms(graphed(lambda: call(ct, args)), a.repeat)
                if a.trace is not None:
                    r["trace"] = [trace_kernels(lambda: f(*args), f"aitrace {model} bs{batch}", top=a.trace)]
                    if not a.no_compile:
                        r["trace"].append(trace_kernels(graphed(lambda: call(ct, args)),
                                                        f"torch.compile {model} bs{batch}", top=a.trace))
            best = min(v for k, v in r.items() if k in ("eager_ms", "eager_graph_ms", "compile_graph_ms") and v == v)
            r["speedup_vs_best_torch"] = best / r["aitrace_ms"]
            if a.compile_times:
                with tempfile.TemporaryDirectory() as d:
                    r["cold_compile_s"] = compile_seconds(model, batch, d)
                    r["warm_compile_s"] = compile_seconds(model, batch, d)
            rows.append(r)
            extra = (f"  cold {r['cold_compile_s']:.1f} s, warm {r['warm_compile_s']:.2f} s"
                     if a.compile_times else f"  (first call {first_call_s:.0f} s)")
            print(f"{r['model']:16s} {batch:5d} {r['aitrace_ms']:9.3f} {r['eager_ms']:9.3f} {r['eager_graph_ms']:11.3f} "
                  f"{r['compile_graph_ms']:13.3f} {r['speedup_vs_best_torch']:14.2f}  {r['max_rel_err']:.1e}{extra}",
                  flush=True)
            if a.kernel_times is not None:
                print_kernel_times(am, args, a.repeat, a.kernel_times)
            torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(device=dev, torch=torch.__version__, rows=rows), fh, indent=1)
    if a.plot:
        plot(rows, a.plot, dev)


def print_kernel_times(am, args, repeat: int, top: int):
    """The model's library created anew with AITRACE_KERNEL_TIMES=1 (same source: a cache hit),
    run `repeat` times, its kernel times printed."""
    import torch

    import aitrace as ait
    os.environ["AITRACE_KERNEL_TIMES"] = "1"
    try:
        f = ait.jit(am, backend="cuda")
        f(*args)
        low = f.lower(*args)
        lib = low.compile()
    finally:
        del os.environ["AITRACE_KERNEL_TIMES"]
    lib.kernel_times()
    for _ in range(repeat):
        f(*args)
    torch.cuda.synchronize()
    kernel_table(lib.kernel_times(), low.source_obj.info["kernel_eqns"], repeat, gemm_flops(low.graph), top)


def plot(rows, path, device):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    labels = [f"{r['model']}\nbs{r['batch']}" for r in rows]
    keys = [("aitrace_ms", "aitrace"), ("eager_ms", "eager"), ("eager_graph_ms", "eager + CUDA graph"),
            ("compile_graph_ms", "torch.compile + CUDA graph")]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    w = 0.8 / len(keys)
    for i, (k, name) in enumerate(keys):
        ax.bar([j + i * w for j in range(len(rows))], [r[k] / r["aitrace_ms"] for r in rows], w, label=name)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(rows))], labels)
    ax.set_ylabel("time / aitrace time")
    ax.set_title(f"fp16 inference on {device}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
