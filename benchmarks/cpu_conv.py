"""ResNet-50's conv2d layers at batch 1, fp32: aitrace cpu vs torch CPU (same thread count),
side by side in one run.  python benchmarks/cpu_conv.py [--threads N] [--repeat 20]"""
import argparse
import os
import numpy as np
from timing import median_ms

# (name, H=W, C_in, C_out, kernel, stride): every distinct conv shape of ResNet-50 v1.5
LAYERS = [
    ("stem 7x7/2", 224, 3, 64, 7, 2),
    ("l1 1x1 64->64", 56, 64, 64, 1, 1), ("l1 3x3 64", 56, 64, 64, 3, 1),
    ("l1 1x1 64->256", 56, 64, 256, 1, 1), ("l1 1x1 256->64", 56, 256, 64, 1, 1),
    ("l2 1x1 256->128", 56, 256, 128, 1, 1), ("l2 3x3 128/2", 56, 128, 128, 3, 2),
    ("l2 3x3 128", 28, 128, 128, 3, 1), ("l2 1x1 128->512", 28, 128, 512, 1, 1),
    ("l3 3x3 256", 14, 256, 256, 3, 1), ("l3 1x1 256->1024", 14, 256, 1024, 1, 1),
    ("l4 3x3 512", 7, 512, 512, 3, 1), ("l4 1x1 512->2048", 7, 512, 2048, 1, 1),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import torch

    import aitrace as ait
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    print(f"threads={a.threads} torch={torch.__version__}")
    print(f"{'layer':20s} {'aitrace ms':>10s} {'torch ms':>9s} {'torch/ait':>9s}")
    tot_a = tot_t = 0.0
    for name, hw, ci, co, k, s in LAYERS:
        x = rng.standard_normal((1, hw, hw, ci)).astype(np.float32)
        w = (rng.standard_normal((co, k, k, ci)) / np.sqrt(k * k * ci)).astype(np.float32)
        f = ait.jit(lambda v: ait.conv2d(v, w, stride=s, padding=k // 2), backend="cpu")
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        wt = torch.from_numpy(w).permute(0, 3, 1, 2).contiguous()
        want = torch.nn.functional.conv2d(xt, wt, stride=s, padding=k // 2).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(f(x), want, rtol=1e-3, atol=1e-3)
        with torch.inference_mode():
            t_t = median_ms(lambda: torch.nn.functional.conv2d(xt, wt, stride=s, padding=k // 2), a.repeat)
        t_a = median_ms(lambda: f(x), a.repeat)
        tot_a, tot_t = tot_a + t_a, tot_t + t_t
        print(f"{name:20s} {t_a:10.3f} {t_t:9.3f} {t_t / t_a:9.2f}")
    print(f"{'total':20s} {tot_a:10.3f} {tot_t:9.3f} {tot_t / tot_a:9.2f}")


if __name__ == "__main__":
    main()
