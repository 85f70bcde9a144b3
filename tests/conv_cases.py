"""Convolution test data shared by the CUTLASS conv tests (sm90: test_cuda_conv.py, sm80:
test_cuda_conv_sm80.py): filters that keep outputs small, and models of random convs."""
import numpy as np

import aitrace as ait


def conv_weights(rng, o, kh, kw, c, dtype):
    """A filter [O, KH, KW, C] and bias [O] keeping outputs ~N(0, 1/4)."""
    w = (rng.standard_normal((o, kh, kw, c)) * 0.5 / np.sqrt(kh * kw * c)).astype(dtype)
    return w, (rng.standard_normal(o) * 0.5).astype(dtype)


def random_convs(cases, dtype):
    """(fn, args) of one model holding a conv per case (batch, H, W, C, O, (KH, KW), stride, pad,
    dilation, epilogue in "bias_relu" | "residual" | "none"); inputs grown where the filter's
    reach needs it."""
    r = np.random.default_rng(len(str(cases)))
    args, convs = [], []
    for n, h, w, c, o, (kh, kw), stride, pad, dilation, epilogue in cases:
        h, w = max(h, (kh - 1) * dilation + 1 - 2 * pad), max(w, (kw - 1) * dilation + 1 - 2 * pad)
        wt, b = conv_weights(r, o, kh, kw, c, dtype)
        p = (h + 2 * pad - (kh - 1) * dilation - 1) // stride + 1
        q = (w + 2 * pad - (kw - 1) * dilation - 1) // stride + 1
        convs.append((len(args), wt, b if epilogue != "none" else None, stride, pad, dilation, epilogue))
        args.append(r.standard_normal((n, h, w, c)).astype(dtype))
        if epilogue == "residual":
            args.append((r.standard_normal((n, p, q, o)) * 0.5).astype(dtype))

    def fn(*xs):
        outs = []
        for i, wt, b, stride, pad, dilation, epilogue in convs:
            y = ait.conv2d(xs[i], wt, b, stride=stride, padding=pad, dilation=dilation)
            outs.append(y if epilogue == "none" else ait.relu(y + xs[i + 1] if epilogue == "residual" else y))
        return tuple(outs)
    return fn, args
