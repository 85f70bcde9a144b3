"""Kernels, arena bytes and CPU time of a BERT-base layer (seq 128) and a ResNet-50 bottleneck
block (56x56x256), with the pass pipeline off (`passes=()`) and on, batch 1, fp32.

    python benchmarks/cpu_fusion_counts.py [--repeat 20]
Both blocks are written with the ops directly (ait.nn comes with its own issue)."""
import argparse

import numpy as np
from timing import median_ms

import aitrace as ait

rng = np.random.default_rng(0)


def w(*shape, scale=0.02):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def bert_layer():
    H, F, heads = 768, 3072, 12
    p = {k: w(*s) for k, s in dict(q=(H, H), k=(H, H), v=(H, H), o=(H, H), f1=(F, H), f2=(H, F)).items()}
    b = {k: w(s) for k, s in dict(q=H, k=H, v=H, o=H, f1=F, f2=H).items()}
    g1, g2, b1, b2 = np.ones(H, np.float32), np.ones(H, np.float32), np.zeros(H, np.float32), np.zeros(H, np.float32)

    def layer(x, mask):
        S = x.shape[1]

        def heads_of(t):
            return t.reshape(1, S, heads, H // heads).transpose(0, 2, 1, 3)
        q, k, v = (heads_of(ait.linear(x, p[n], b[n])) for n in "qkv")
        a = ait.attention(q, k, v, mask=mask).transpose(0, 2, 1, 3).reshape(1, S, H)
        h = ait.layer_norm(ait.linear(a, p["o"], b["o"]) + x, g1, b1, eps=1e-12)
        f = ait.linear(ait.gelu(ait.linear(h, p["f1"], b["f1"])), p["f2"], b["f2"])
        return ait.layer_norm(f + h, g2, b2, eps=1e-12)
    x = rng.standard_normal((1, 128, H)).astype(np.float32)
    mask = np.ones((1, 1, 1, 128), bool)
    return layer, (x, mask)


def bottleneck():
    C, M = 256, 64
    ws = [w(M, 1, 1, C, scale=0.05), w(M, 3, 3, M, scale=0.05), w(C, 1, 1, M, scale=0.05)]
    bns = [(w(n), np.abs(w(n)) + 1, np.ones(n, np.float32), np.zeros(n, np.float32)) for n in (M, M, C)]

    def block(x):
        h = x
        for i, (wt, bn) in enumerate(zip(ws, bns)):
            h = ait.batch_norm(ait.conv2d(h, wt, padding=wt.shape[1] // 2), *bn)
            h = ait.relu(h) if i < 2 else h
        return ait.relu(h + x)
    return block, (rng.standard_normal((1, 56, 56, C)).astype(np.float32),)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    print(f"{'block':12s} {'passes':8s} {'eqns':>5s} {'kernels':>8s} {'arena KiB':>10s} {'ms':>8s}")
    for name, (fn, args) in {"bert layer": bert_layer(), "bottleneck": bottleneck()}.items():
        ref = None
        for label, passes in (("off", ()), ("default", None)):
            f = ait.jit(fn, backend="cpu", passes=passes)
            low = f.lower(*args)
            out = f(*args)
            ref = out if ref is None else ref
            np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-3)
            t = median_ms(lambda: f(*args), a.repeat)
            print(f"{name:12s} {label:8s} {len(low.graph.eqns):5d} {len(low.source_obj.info['kernels']):8d} "
                  f"{low.arena_bytes / 1024:10.0f} {t:8.3f}")


if __name__ == "__main__":
    main()
