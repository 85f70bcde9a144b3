"""The sm90 conv kernel's tiles at ResNet-50 batch 1, against torch's conv2d (cuDNN), fp16 NHWC.

The convolutions of ResNet-50 bs1 that stay on CUTLASS's conv kernel (the 3x3 ones with a short K
loop, the strided ones; 1x1 stride-1 convs are GEMMs, see backends/cuda/conv_gemm.py), each with
bias + relu, built once per tile of conv.CONFIGS (the config forced while lowering); `*` marks the
tile rule's pick (conv.default_config). Each runs inside a CUDA graph of `--calls`
back-to-back calls, timed with CUDA events (median over `--repeat` replays), torch's
channels-last conv2d + relu the same way. Needs a GPU, torch, nvcc and the CUTLASS headers.

    python benchmarks/gpu_convs.py [--json out.json]
"""
import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import numpy as np

from timing import graph_ms

CONVS = {  # name: (H, W, C, O, kernel, stride) at batch 1, padding kernel // 2
    "l1 3x3": (56, 56, 64, 64, 3, 1),
    "l2 3x3 s2": (56, 56, 128, 128, 3, 2),
    "l2 3x3": (28, 28, 128, 128, 3, 1),
    "l2 1x1 s2 down": (56, 56, 256, 512, 1, 2),
    "l3 1x1 s2 down": (28, 28, 512, 1024, 1, 2),
    "l4 1x1 s2 down": (14, 14, 1024, 2048, 1, 2),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    import torch

    import aitrace as ait
    from aitrace.backends.cuda import conv as cc
    rng = np.random.default_rng(0)
    dev = torch.cuda.get_device_name()
    t0 = time.perf_counter()
    cases, lows = [], []
    for name, (h, w, c, o, k, s) in CONVS.items():
        wt = (rng.standard_normal((o, k, k, c)) / np.sqrt(k * k * c)).astype(np.float16)
        b = rng.standard_normal(o).astype(np.float16)
        x = torch.randn(1, h, w, c, device="cuda", dtype=torch.float16)
        fn = lambda x, wt=wt, b=b, s=s, k=k: ait.relu(ait.conv2d(x, wt, b, stride=s, padding=k // 2))  # noqa: E731
        pick = cc.default_config((h // s) * (w // s), o)
        for config in cc.CONFIGS:
            if config.tile[1] > 64 and o <= 64:
                continue
            f = ait.jit(fn, backend="cuda")
            with mock.patch.object(cc, "default_config", lambda pixels, o, config=config: config):
                low = f.lower(x)
            assert f"// config {config.name};" in low.source, (name, config)  # the conv kernel, not a GEMM
            cases.append((name, config.name + (" *" if config == pick else ""), x, wt, b, s, k))
            lows.append(low)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        compiled = list(pool.map(lambda low: low.compile(), lows))
    print(f"{dev} torch={torch.__version__}  fp16 bs1, CUDA-graph replays of {a.calls} calls, medians; "
          f"{len(lows)} models built in {time.perf_counter() - t0:.0f} s")
    print(f"{'conv':16s} {'config (* the rule)':24s} {'aitrace us':>10s} {'torch us':>9s} {'ratio':>6s}")
    rows = []
    for (name, cname, x, wt, b, s, k), f in zip(cases, compiled):
        wt_t = torch.from_numpy(wt).cuda().permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        b_t = torch.from_numpy(b).cuda()
        x_nchw = x.permute(0, 3, 1, 2)  # a channels-last view: the same memory

        def theirs():
            return torch.relu(torch.nn.functional.conv2d(x_nchw, wt_t, b_t, stride=s, padding=k // 2))
        y = f(x)
        ref = theirs().permute(0, 2, 3, 1)
        err = float(((y.float() - ref.float()).abs().max() / ref.float().abs().max()).item())
        ours = graph_ms(lambda: f(x), a.calls, a.repeat)
        torch_ms = graph_ms(theirs, a.calls, a.repeat)
        r = dict(conv=name, config=cname, aitrace_us=ours * 1e3, torch_us=torch_ms * 1e3,
                 ratio=torch_ms / ours, max_rel_err=err)
        rows.append(r)
        print(f"{name:16s} {cname:24s} {r['aitrace_us']:10.1f} {r['torch_us']:9.1f} "
              f"{r['ratio']:6.2f}  (err {err:.1e})", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(device=dev, torch=torch.__version__, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
