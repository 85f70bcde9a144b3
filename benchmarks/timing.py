"""Timing shared by the benchmarks: host wall time (CPU) and CUDA events (GPU)."""
import re
import statistics
import time
from collections import defaultdict

import numpy as np


def median_ms(fn, repeat: int, warmup: int = 3) -> float:
    """Median wall time of `fn()` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def cuda_ms(fn, repeat: int, warmup: int = 5) -> float:
    """Median GPU time of `fn()` in milliseconds (CUDA events on torch's current stream)."""
    import torch
    for _ in range(warmup):
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
    return statistics.median(ts)


def graphed(fn, calls: int = 1):
    """`calls` back-to-back calls of fn captured once into a CUDA graph; returns its replay."""
    import torch
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
    return g.replay


def graph_ms(fn, calls: int, repeat: int) -> float:
    """Median time of one call of fn, from CUDA-graph replays of `calls` calls."""
    return cuda_ms(graphed(fn, calls), repeat) / calls


def gemm_flops(graph) -> float:
    """2*M*N*K summed over a graph's matmul / fused_gemm[base=matmul] eqns (static shapes)."""
    total = 0.0
    for e in graph.eqns:
        if e.prim.name == "matmul" or (e.prim.name == "fused_gemm" and e.params.get("base") == "matmul"):
            total += 2.0 * float(np.prod(e.outvars[0].aval.shape)) * e.invars[0].aval.shape[-1]
    return total


def kernel_table(times, eqns, calls: int, flops: float = 0.0, top: int = 12):
    """Print a library's kernel_times() (summed over `calls` runs) by primitive, the GEMM rate
    (given the graph's GEMM flops) and the `top` kernels with their IR equations."""
    by_prim = defaultdict(lambda: [0.0, 0])
    for k, ms in times:
        prim = re.sub(r"^k\d+_", "", k)
        by_prim[prim][0] += ms / calls
        by_prim[prim][1] += 1
    total = sum(ms for _, ms in times) / calls
    print(f"kernels: {total:.3f} ms per call in {len(times)} kernels")
    print(f"{'primitive':24s} {'kernels':>7s} {'ms':>8s} {'share':>6s}")
    for prim, (ms, n) in sorted(by_prim.items(), key=lambda kv: -kv[1][0]):
        print(f"{prim:24s} {n:7d} {ms:8.3f} {ms / total:6.1%}")
    gemm_ms = by_prim["matmul"][0] + by_prim["fused_gemm"][0]
    if gemm_ms and flops:
        print(f"GEMMs: {flops / 1e9:.2f} GFLOP in {gemm_ms:.3f} ms = {flops / gemm_ms / 1e6:.0f} GFLOP/s")
    if top:
        print(f"top {top} kernels:")
        for (k, ms), eq in sorted(zip(times, eqns), key=lambda t: -t[0][1])[:top]:
            print(f"  {ms / calls:8.4f} ms  {k:22s} {eq[:110]}")


def trace_kernels(fn, label: str, replays: int = 20, top: int = 15):
    """The GPU kernels `fn()` runs, from a CUPTI trace (torch.profiler) of `replays` calls, by
    kernel name: per call, the summed kernel durations, the time some kernel was running (their
    union) and the span from the first start to the last end (span - union: the GPU idle between
    kernels). Under programmatic dependent launch a kernel starts early and waits: its duration
    includes that wait, so durations overlap and their sum can exceed the span."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
               and "memcpy" not in e.name.lower() and "memset" not in e.name.lower()]
    if not kernels:
        print(f"{label}: no kernels in the trace")
        return {}
    by_name = defaultdict(lambda: [0.0, 0])
    for e in kernels:
        by_name[e.name][0] += e.device_time / replays
        by_name[e.name][1] += 1
    ranges = sorted((e.time_range.start, e.time_range.end) for e in kernels)
    span = (max(end for _, end in ranges) - ranges[0][0]) / replays
    covered, reach = 0.0, ranges[0][0]
    for start, end in ranges:  # the union of the kernels' intervals
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    covered /= replays
    busy = sum(t for t, _ in by_name.values())
    print(f"{label}: {len(kernels) / replays:.0f} kernels per call; per call {busy:.1f} us of kernel durations, "
          f"{covered:.1f} us with a kernel running, in a {span:.1f} us span (CUPTI, {replays} calls)")
    for name, (us, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]:
        short = name if len(name) <= 100 else name[:97] + "..."
        print(f"  {us:8.1f} us {n / replays:5.1f}x  {short}")
    return dict(label=label, kernels_per_call=len(kernels) / replays, busy_us=busy, covered_us=covered, span_us=span,
                top=[(name, us, n / replays) for name, (us, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]])
