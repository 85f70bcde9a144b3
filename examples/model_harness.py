"""What the model examples share: arguments, compile with a progress line, run, check against the
reference backend (and PyTorch where installed), time against PyTorch in the same run, print a
table. Each example supplies how to build its model, its torch twin and its inputs."""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import aitrace as ait


@dataclass
class Example:
    name: str
    build: Callable            # (args) -> ait model (weights loaded, fp32)
    inputs: Callable           # (args, rng) -> tuple of numpy inputs
    torch_model: Callable      # (args) -> torch module or None; ait weights are loaded from it
    torch_call: Callable       # (torch_model, torch inputs) -> (last_hidden_state, ...) tensors


def parse(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="cpu", help=f"one of {ait.backends.available()} (default: cpu; cuda "
                   "needs torch with CUDA: inputs and outputs are torch CUDA tensors)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--weights", default=None, help="a local transformers checkpoint directory "
                   "(config.json + *.safetensors); random weights otherwise")
    p.add_argument("--repeat", type=int, default=10, help="timed calls (median reported)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for aitrace and PyTorch")
    p.add_argument("--no-check", action="store_true", help="skip the reference-backend check")
    return p.parse_args()


def _median_ms(fn, repeat: int) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def run(ex: Example, args) -> None:
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch = _torch()
    if torch is not None and args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    tm = ex.torch_model(args) if torch is not None and not args.weights else None
    model = ex.build(args)
    if tm is not None:
        model.load_state_dict(tm.state_dict())   # the same weights on both sides
    dtype = ait.core.dtypes.dtype(args.dtype)
    if dtype != np.float32:
        model = model.to(dtype)
    inputs = ex.inputs(args, rng)
    inputs = tuple(x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x for x in inputs)

    f = ait.jit(model, backend=args.backend)
    device = not f.backend.host                  # a GPU backend takes and returns device arrays
    call_inputs = tuple(_to_device(torch, x) for x in inputs) if device else inputs
    t0 = time.perf_counter()
    f.lower(*call_inputs).compile()              # the progress line shows while kernels compile
    compile_s = time.perf_counter() - t0

    def call():
        y = f(*call_inputs)
        if device:
            torch.cuda.synchronize()
        return y
    out = [_to_host(torch, y) for y in call()] if device else call()
    print(f"{ex.name}: backend={f.backend.name} batch={args.batch_size} dtype={args.dtype} "
          f"compiled in {compile_s:.1f} s; {len(f.lower(*call_inputs).source_obj.info.get('kernels', []))} kernels")

    tol = 1e-3 if dtype == np.float32 else 5e-2
    rows = []
    if not args.no_check and f.backend.name != "reference":
        ref = ait.jit(model, backend="reference")(*inputs)
        rows.append(("reference backend", _err(out[0], ref[0])))
    if tm is not None:
        tin = tuple(torch.from_numpy(np.asarray(x, np.float32) if np.issubdtype(x.dtype, np.floating)
                                     or x.dtype == ait.bfloat16 else x) for x in inputs)
        with torch.no_grad():
            tout = ex.torch_call(tm, tin)
        rows.append(("PyTorch (fp32)", _err(out[0], tout[0].numpy())))
    for what, err in rows:
        flag = "ok" if err < tol else "MISMATCH"
        print(f"  max relative error vs {what}: {err:.2e} ({flag}, tolerance {tol:g})")

    print(f"\n  {'runtime':28s} {'median ms':>10s}")
    ours = _median_ms(call, args.repeat)
    print(f"  {'aitrace ' + f.backend.name:28s} {ours:10.2f}")
    if tm is not None and f.backend.name == "cpu":
        tin = tuple(torch.from_numpy(np.ascontiguousarray(x)) if x.dtype != ait.bfloat16 else
                    torch.from_numpy(x.view(np.int16)).view(torch.bfloat16) for x in inputs)
        tdt = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
        tmd = tm.to(tdt)
        with torch.inference_mode():
            eager = _median_ms(lambda: ex.torch_call(tmd, tin), args.repeat)
        print(f"  {'PyTorch eager (CPU)':28s} {eager:10.2f}   aitrace is {eager / ours:.2f}x")


def _to_device(torch, x):
    if torch is None:
        raise SystemExit("a GPU backend needs torch with CUDA for its device arrays")
    t = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16) if x.dtype == ait.bfloat16 else torch.from_numpy(x)
    return t.cuda()


def _to_host(torch, y):
    return y.float().cpu().numpy() if y.dtype == torch.bfloat16 else y.cpu().numpy()


def _err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
