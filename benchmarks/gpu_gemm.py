"""aitrace's GEMM (cuda backend: CUTLASS sm90a, config from the profiler) against torch.matmul
(cuBLAS) on one GPU, fp16: the squares 8192^3 and 4096^3 and the GEMMs of BERT-base (seq 128, bs
1 and 64), ViT-B/16 (197 tokens, bs 1 and 128) and ResNet-50's 1x1 convolutions as GEMMs.

Every problem is profiled in one parallel batch (AITRACE_PROFILE=0: the heuristic instead) and
every library built in parallel before any timing. Both sides run inside a CUDA graph of
`--calls` back-to-back calls (so host overhead is out of the kernel time), timed with CUDA
events; the median over `--repeat` replays is reported.
Writes JSON (--json) and prints a table. Needs a GPU, torch and nvcc.

    python benchmarks/gpu_gemm.py [--quick] [--json out.json]
"""
import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from timing import graph_ms

SQUARES = [(8192, 8192, 8192), (4096, 4096, 4096)]
MODEL_GEMMS = {  # name: (M, N, K) of y[M, N] = x[M, K] @ w[K, N]
    "bert qkv bs1": (128, 2304, 768), "bert out bs1": (128, 768, 768),
    "bert ffn1 bs1": (128, 3072, 768), "bert ffn2 bs1": (128, 768, 3072),
    "bert qkv bs64": (8192, 2304, 768), "bert ffn1 bs64": (8192, 3072, 768),
    "bert ffn2 bs64": (8192, 768, 3072),
    "vit qkv bs1": (197, 2304, 768), "vit ffn1 bs1": (197, 3072, 768),
    "vit ffn1 bs128": (25216, 3072, 768), "vit ffn2 bs128": (25216, 768, 3072),
    "resnet l1 1x1 bs1": (3136, 256, 64), "resnet l3 1x1 bs128": (25088, 1024, 256),
    # ResNet-50 bs1 convolutions the conv kernel runs slowly (few output tiles, a long K loop), as
    # the GEMM over their im2col patches would run them: M = output pixels, K = KH*KW*C
    "resnet stem 7x7 as gemm bs1": (12544, 64, 152), "resnet l3 3x3 as gemm bs1": (196, 256, 2304),
    "resnet l4 3x3 as gemm bs1": (49, 512, 4608), "resnet l4 1x1 up bs1": (49, 2048, 512),
    "resnet l4 1x1 down bs1": (49, 512, 2048),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="the squares and the bs1 model GEMMs only")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    import torch

    import aitrace as ait
    cases = [(f"{m}x{n}x{k}", (m, n, k)) for m, n, k in SQUARES] + list(MODEL_GEMMS.items())
    if a.quick:
        cases = cases[:len(SQUARES)] + [c for c in cases if c[0].endswith(" bs1")]
    dev = torch.cuda.get_device_name()
    torch.manual_seed(0)
    data = {name: (torch.randn(m, k, device="cuda", dtype=torch.float16),
                   (torch.randn(k, n, device="cuda") / k ** 0.5).half()) for name, (m, n, k) in cases}
    # every case's GEMM profiled in one parallel batch, by lowering them as one graph (no passes:
    # the GEMMs stay apart, not grouped), then each case lowered (profile hits) and all built at once
    t0 = time.perf_counter()
    args = [t for xw in data.values() for t in xw]
    ait.jit(lambda *xs: tuple(xs[i] @ xs[i + 1] for i in range(0, len(xs), 2)), backend="cuda",
            passes=()).lower(*args)
    fns = {name: ait.jit(lambda x, w: x @ w, backend="cuda") for name in data}
    lows = [fns[name].lower(*data[name]) for name in data]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda low: low.build(), lows))
    print(f"{dev} torch={torch.__version__}  fp16, CUDA-graph replays of {a.calls} calls, medians; "
          f"profiled (AITRACE_PROFILE={os.environ.get('AITRACE_PROFILE', '1')}) and built in "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"{'GEMM':28s} {'M x N x K':>16s} {'aitrace us':>10s} {'torch us':>9s} {'ait TFLOP/s':>11s} "
          f"{'torch TFLOP/s':>13s} {'ratio':>6s}  config")
    rows = []
    for name, (m, n, k) in cases:
        x, w = data[name]
        f = fns[name]
        y = f(x, w)
        ref = x @ w
        err = float(((y.float() - ref.float()).abs().max() / ref.float().abs().max()).item())
        ours = graph_ms(lambda: f(x, w), a.calls, a.repeat)
        theirs = graph_ms(lambda: torch.matmul(x, w), a.calls, a.repeat)
        src = f.lower(x, w).source
        cfg = next((line.split("config ")[1].split()[0].rstrip(";") for line in src.splitlines()
                    if line.startswith("// config ")), "?")
        flop = 2.0 * m * n * k
        r = dict(name=name, m=m, n=n, k=k, aitrace_us=ours * 1e3, torch_us=theirs * 1e3,
                 aitrace_tflops=flop / ours / 1e9, torch_tflops=flop / theirs / 1e9, ratio=theirs / ours,
                 max_rel_err=err, config=cfg)
        rows.append(r)
        print(f"{name:28s} {f'{m}x{n}x{k}':>16s} {r['aitrace_us']:10.1f} {r['torch_us']:9.1f} "
              f"{r['aitrace_tflops']:11.1f} {r['torch_tflops']:13.1f} {r['ratio']:6.2f}  {cfg}  (err {err:.1e})",
              flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(device=dev, torch=torch.__version__, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
