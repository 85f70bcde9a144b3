"""Full-size BERT-base (seq 128), ViT-B/16 (224) and ResNet-50 (224) at batch 1, fp32, on the CPU:
aitrace against PyTorch eager and torch.compile with the same thread count, same weights, same
inputs, in one run. Needs torch and transformers.

    python benchmarks/cpu_models.py [--threads 2] [--repeat 20] [--rounds 3] [--models bert,vit,resnet] [--no-compile]

Each model runs in a process of its own (torch.compile's worker processes and a previous
model's thread pools would otherwise load the cores during the next model's timing). Inside it,
aitrace, eager and torch.compile are timed in alternating rounds (`--rounds`, each of
`--repeat` calls after the warm-up), so load from elsewhere falls on all three alike; each
number is the median over every timed call.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
from timing import median_ms


def models(names):
    import transformers

    from aitrace.nn.models import BertModel, ResNetModel, ViTModel
    rng = np.random.default_rng(0)
    out = {}
    if "bert" in names:
        ids = rng.integers(0, 30522, (1, 128)).astype(np.int64)
        out["BERT-base s128"] = (transformers.BertModel(transformers.BertConfig()).eval(), BertModel(),
                                 (ids, np.zeros_like(ids), np.ones_like(ids)),
                                 lambda m, a: m(input_ids=a[0], token_type_ids=a[1], attention_mask=a[2]))
    if "vit" in names:
        x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
        out["ViT-B/16"] = (transformers.ViTModel(transformers.ViTConfig()).eval(), ViTModel(), (x,),
                           lambda m, a: m(pixel_values=a[0]))
    if "resnet" in names:
        x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
        out["ResNet-50"] = (transformers.ResNetModel(transformers.ResNetConfig()).eval(), ResNetModel(), (x,),
                            lambda m, a: m(pixel_values=a[0]))
    return out


def run_model(name, a):
    """One model in this process: build, check, time; prints its table row."""
    import torch

    import aitrace as ait
    torch.set_num_threads(a.threads)
    ((title, (tm, am, args, call)),) = models([name]).items()
    torch.manual_seed(0)
    for prm in tm.state_dict().values():   # non-trivial batch-norm statistics, as trained models have
        if prm.dtype == torch.float32 and prm.ndim == 1:
            prm.copy_(prm + 0.1 * torch.rand_like(prm))
    am.load_state_dict(tm.state_dict())
    targs = tuple(torch.from_numpy(x) for x in args)
    f = ait.jit(am, backend="cpu")
    t0 = time.perf_counter()
    y = f(*args)[0]
    build_s = time.perf_counter() - t0
    with torch.inference_mode():
        ref = call(tm, targs)[0].numpy()
        err = float(np.abs(y - ref).max() / np.abs(ref).max())
        sides = {"aitrace": lambda: f(*args), "eager": lambda: call(tm, targs)}
        if not a.no_compile:
            ct = torch.compile(tm)
            call(ct, targs)
            sides["compile"] = lambda: call(ct, targs)
        times = {k: [] for k in sides}
        for _ in range(a.rounds):
            for k, fn in sides.items():
                times[k].append(median_ms(fn, a.repeat, warmup=2))
    ours, eager = float(np.median(times["aitrace"])), float(np.median(times["eager"]))
    comp = float(np.median(times["compile"])) if "compile" in times else float("nan")
    best = min(eager, comp) if comp == comp else eager
    rounds = " ".join(f"{k}=" + "/".join(f"{t:.1f}" for t in v) for k, v in times.items())
    print(f"{title:16s} {ours:11.2f} {eager:9.2f} {comp:11.2f} {best / ours:7.2f}x {err:12.2e}"
          f"   (aitrace build {build_s:.1f} s; round medians {rounds})", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=20, help="timed calls per side and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models", default="bert,vit,resnet")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build)")
    p.add_argument("--in-process", action="store_true", help="run the models in this process")
    a = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    names = a.models.split(",")
    if a.in_process or len(names) == 1:
        if len(names) > 1 or not os.environ.get("AITRACE_BENCH_CHILD"):
            header(a)
        for name in names:
            run_model(name, a)
        return
    header(a)
    for name in names:  # one process per model
        argv = [sys.executable, __file__, "--models", name, "--threads", str(a.threads), "--repeat", str(a.repeat),
                "--rounds", str(a.rounds)] + (["--no-compile"] if a.no_compile else [])
        subprocess.run(argv, check=True, env={**os.environ, "AITRACE_BENCH_CHILD": "1"})


def header(a):
    import torch
    print(f"threads={a.threads} torch={torch.__version__} rounds={a.rounds} x {a.repeat} calls per side")
    print(f"{'model':16s} {'aitrace ms':>11s} {'eager ms':>9s} {'compile ms':>11s} {'vs best':>8s} {'max rel err':>12s}",
          flush=True)


if __name__ == "__main__":
    main()
