"""Attention alone on one GPU at BERT-base (seq 128, boolean padding mask [B,1,1,S]) and ViT-B/16
(seq 197, no mask) shapes, 12 heads, head dim 64, batch 1 and 64: aitrace's flash kernel
(ait/flash_attention.cuh), aitrace's warp-per-query-row kernel (what the lowering picks where
flash does not apply) and torch's scaled_dot_product_attention (replayed through a CUDA graph).
Each side runs a chain of attention calls (each output the next q); the time of one attention is
(chain of LONG - chain of 1) / (LONG - 1), which cancels a call's fixed costs (host work, the
whole-run graph's copies in and out). CUDA-event medians, microseconds.

    python benchmarks/cuda_attention.py [--repeat 50] [--dtype float16|bfloat16]
"""
import argparse
import contextlib

from timing import cuda_ms, graphed

LONG = 11
SHAPES = {"BERT-base s128 mask": (128, True), "ViT-B/16 s197": (197, False)}  # seq, padding mask


@contextlib.contextmanager
def warp_per_row_kernel():
    """Lower attention as if flash did not apply (the kernel fp32 and other head dims use)."""
    from aitrace.backends.cuda import attention
    saved, attention.flash_head_dim = attention.flash_head_dim, lambda e: None
    try:
        yield
    finally:
        attention.flash_head_dim = saved


def chain(attend, n):
    def fn(q, k, v, *mask):
        for _ in range(n):
            q = attend(q, k, v, mask[0] if mask else None)
        return q
    return fn


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    a = p.parse_args()
    import torch
    import torch.nn.functional as F

    import aitrace as ait
    tdt = getattr(torch, a.dtype)
    dev = torch.device("cuda")
    B = ait.Dim("B", max=64)
    dyn = {i: {0: B} for i in range(4)}

    def per_attention(time_chain):  # us
        return (time_chain(LONG) - time_chain(1)) * 1e3 / (LONG - 1)
    print(f"{torch.cuda.get_device_name()} torch={torch.__version__} {a.dtype}, 12 heads, d 64; "
          f"us per attention (CUDA-event medians of {a.repeat})")
    print(f"{'shape':22s} {'batch':>5s} {'flash':>9s} {'per-row':>9s} {'torch':>9s} {'vs per-row':>10s} "
          f"{'vs torch':>9s}  max |flash - torch|")
    gen = torch.Generator(device=dev).manual_seed(0)
    for name, (s, masked) in SHAPES.items():
        ours = {n: ait.jit(chain(lambda q, k, v, m: ait.attention(q, k, v, mask=m), n), backend="cuda", dynamic=dyn)
                for n in (1, LONG)}
        with warp_per_row_kernel():
            rows = {n: ait.jit(chain(lambda q, k, v, m: ait.attention(q, k, v, mask=m), n), backend="cuda",
                               dynamic=dyn) for n in (1, LONG)}
        theirs = {n: chain(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m), n)
                  for n in (1, LONG)}
        for b in (1, 64):
            q, k, v = (torch.randn(b, 12, s, 64, device=dev, dtype=tdt, generator=gen) for _ in range(3))
            args = [q, k, v]
            if masked:  # each sequence padded after a random length
                lengths = torch.randint(s // 2, s + 1, (b,), device=dev, generator=gen)
                args.append((torch.arange(s, device=dev)[None, :] < lengths[:, None])[:, None, None, :])
            with warp_per_row_kernel():
                for f in rows.values():
                    f.lower(*args).compile()
            assert all("flash_attention<" in f.lower(*args).source for f in ours.values())
            assert not any("flash_attention<" in f.lower(*args).source for f in rows.values())
            with torch.inference_mode():
                err = (ours[1](*args).float() - theirs[1](*args).float()).abs().max().item()
                t_flash = per_attention(lambda n: cuda_ms(lambda: ours[n](*args), a.repeat))
                t_row = per_attention(lambda n: cuda_ms(lambda: rows[n](*args), a.repeat))
                t_torch = per_attention(lambda n: cuda_ms(graphed(lambda: theirs[n](*args)), a.repeat))
            print(f"{name:22s} {b:5d} {t_flash:9.1f} {t_row:9.1f} {t_torch:9.1f} {t_row / t_flash:9.2f}x "
                  f"{t_torch / t_flash:8.2f}x  {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
