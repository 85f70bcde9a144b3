"""Full-size BERT-base (seq 128), ViT-B/16 and ResNet-50 at batch 1 on one GPU: aitrace's cuda
backend against PyTorch eager, eager replayed through a CUDA graph, and torch.compile
(mode="max-autotune-no-cudagraphs" is not used: default mode), same weights, same inputs, fp16.
"aitrace" is the default call, which replays the whole model as one CUDA graph, timed with the
Python host path included; "no-graph" is the same library launching kernel by kernel
(AITRACE_CUDA_GRAPHS=0, read when the library is created: no rebuild).
Times are CUDA-event medians after warm-up. Needs a GPU, torch and transformers.

    python benchmarks/cuda_models.py [--models bert,vit,resnet] [--repeat 50] [--no-compile]
"""
import argparse
import os
import time

import numpy as np


def cuda_ms(fn, repeat):
    import torch
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return float(np.median(ts))


def graphed(fn):
    import torch
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="bert,vit,resnet")
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--no-compile", action="store_true")
    a = p.parse_args()
    import torch
    import transformers

    import aitrace as ait
    from aitrace.nn.models import BertModel, ResNetModel, ViTModel
    rng = np.random.default_rng(0)
    dev = torch.device("cuda")
    cases = {}
    if "bert" in a.models:
        ids = torch.from_numpy(rng.integers(0, 30522, (1, 128))).to(dev)
        cases["BERT-base s128"] = (transformers.BertModel(transformers.BertConfig()), BertModel(),
                                   (ids, torch.zeros_like(ids), torch.ones_like(ids)),
                                   lambda m, x: m(input_ids=x[0], token_type_ids=x[1], attention_mask=x[2])[0])
    if "vit" in a.models:
        img = torch.from_numpy(rng.standard_normal((1, 3, 224, 224)).astype(np.float16)).to(dev)
        cases["ViT-B/16"] = (transformers.ViTModel(transformers.ViTConfig()), ViTModel(), (img,),
                             lambda m, x: m(pixel_values=x[0])[0])
    if "resnet" in a.models:
        img = torch.from_numpy(rng.standard_normal((1, 3, 224, 224)).astype(np.float16)).to(dev)
        cases["ResNet-50"] = (transformers.ResNetModel(transformers.ResNetConfig()), ResNetModel(), (img,),
                              lambda m, x: m(pixel_values=x[0])[0])
    print(f"{torch.cuda.get_device_name()} torch={torch.__version__}")
    print(f"{'model':16s} {'aitrace':>9s} {'no-graph':>9s} {'eager':>9s} {'cudagraph':>10s} {'compile':>9s}  "
          "max rel err  (ms, fp16, bs1)")
    for name, (tm, am, args, call) in cases.items():
        tm = tm.eval()
        am.load_state_dict(tm.state_dict())
        am = am.to(ait.float16)
        tm = tm.half().to(dev)
        t0 = time.perf_counter()
        f = ait.jit(am, backend="cuda")
        y = f(*args)[0]
        build = time.perf_counter() - t0
        with torch.inference_mode():
            ref = call(tm, args)
            err = float(((y.float() - ref.float()).abs().max() / ref.float().abs().max()).item())
            ours = cuda_ms(lambda: f(*args), a.repeat)
            os.environ["AITRACE_CUDA_GRAPHS"] = "0"
            f_direct = ait.jit(am, backend="cuda")
            f_direct(*args)  # created (and the env read) here; the build comes from the cache
            del os.environ["AITRACE_CUDA_GRAPHS"]
            direct = cuda_ms(lambda: f_direct(*args), a.repeat)
            eager = cuda_ms(lambda: call(tm, args), a.repeat)
            cg = cuda_ms(graphed(lambda: call(tm, args)), a.repeat)
            comp = float("nan")
            if not a.no_compile:
                ct = torch.compile(tm)
                comp = cuda_ms(lambda: call(ct, args), a.repeat)
        print(f"{name:16s} {ours:9.3f} {direct:9.3f} {eager:9.3f} {cg:10.3f} {comp:9.3f}  {err:.2e}   "
              f"(aitrace build {build:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
