"""Layers with PyTorch's names, argument names and state_dict keys. Images are channels-last
(NHWC) inside; Conv2d keeps PyTorch's [O, I/groups, KH, KW] weight so state_dicts load as they
are, and hands ops.conv2d the [O, KH, KW, I/groups] view at trace time (a constant)."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..core import dtypes
from .module import Module

# Random initial weights (models are usually loaded from a checkpoint); seeded for repeatability.
_rng = np.random.default_rng(0)


def seed(n: int) -> None:
    """Reseed the generator that initializes new layers' weights."""
    global _rng
    _rng = np.random.default_rng(n)


def _normal(shape, std, dtype=np.float32):
    return (_rng.standard_normal(shape) * std).astype(dtypes.dtype(dtype))


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Identity(Module):
    def forward(self, x):
        return x


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _normal((out_features, in_features), 0.02, dtype)
        if bias:
            self.bias = np.zeros(out_features, dtypes.dtype(dtype))
        else:
            self.bias = None

    def forward(self, x):
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """x [N, H, W, C] -> [N, OH, OW, out_channels]; weight [out, in/groups, kh, kw] as PyTorch's."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, dtype=np.float32):
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding, self.dilation = (kh, kw), _pair(stride), padding, _pair(dilation)
        fan_in = in_channels // groups * kh * kw
        self.weight = _normal((out_channels, in_channels // groups, kh, kw), np.sqrt(2.0 / fan_in), dtype)
        if bias:
            self.bias = np.zeros(out_channels, dtypes.dtype(dtype))
        else:
            self.bias = None

    def forward(self, x):
        w = np.ascontiguousarray(np.transpose(self.weight, (0, 2, 3, 1)))
        return ops.conv2d(x, w, self.bias, stride=self.stride, padding=self.padding,
                          dilation=self.dilation, groups=self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class BatchNorm2d(Module):
    """Inference batch norm over the last (channel) axis of NHWC input, from running statistics."""

    def __init__(self, num_features: int, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        dt = dtypes.dtype(dtype)
        self.num_features, self.eps = num_features, eps
        self.weight = np.ones(num_features, dt)
        self.bias = np.zeros(num_features, dt)
        self.running_mean = np.zeros(num_features, dt)
        self.running_var = np.ones(num_features, dt)

    def forward(self, x):
        return ops.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, eps=self.eps)


class LayerNorm(Module):
    def __init__(self, normalized_shape: int, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        dt = dtypes.dtype(dtype)
        self.eps = eps
        self.weight = np.ones(normalized_shape, dt)
        self.bias = np.zeros(normalized_shape, dt)

    def forward(self, x):
        return ops.layer_norm(x, self.weight, self.bias, eps=self.eps)


class Embedding(Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=np.float32):
        super().__init__()
        self.weight = _normal((num_embeddings, embedding_dim), 0.02, dtype)

    def forward(self, ids):
        return ops.take(self.weight, ids, axis=0)


class Dropout(Module):
    """Identity at inference."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return x


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return ops.gelu(x, approximate=self.approximate)


class Tanh(Module):
    def forward(self, x):
        return ops.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return ops.sigmoid(x)


class SiLU(Module):
    def forward(self, x):
        return ops.silu(x)


ACTIVATIONS = {"relu": ReLU, "gelu": GELU, "gelu_new": lambda: GELU("tanh"), "gelu_pytorch_tanh": lambda: GELU("tanh"),
               "tanh": Tanh, "sigmoid": Sigmoid, "silu": SiLU, "swish": SiLU}


def activation(name: str) -> Module:
    """The layer for a transformers `hidden_act` name."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation {name!r} is not supported; known: {sorted(ACTIVATIONS)}") from None


class Sequential(Module):
    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i: int) -> Module:
        return list(self._children.values())[i]

    def __len__(self):
        return len(self._children)

    def __iter__(self):
        return iter(self._children.values())

    def forward(self, x):
        for m in self._children.values():
            x = m(x)
        return x


class ModuleList(Sequential):
    def forward(self, *args):
        raise TypeError("ModuleList is a container; call its members")


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return ops.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class SelfAttention(Module):
    """Multi-head self-attention through ops.attention, with transformers' names: query, key and
    value projections of x [B, S, E] (fuse_horizontal makes them one GEMM) and heads of E/num_heads.
    `mask`: broadcastable to [B, heads, S, S], boolean (True attends) or additive."""

    def __init__(self, hidden_size: int, num_attention_heads: int, bias: bool = True, dtype=np.float32):
        super().__init__()
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads "
                             f"{num_attention_heads}")
        self.num_attention_heads = num_attention_heads
        self.query = Linear(hidden_size, hidden_size, bias, dtype)
        self.key = Linear(hidden_size, hidden_size, bias, dtype)
        self.value = Linear(hidden_size, hidden_size, bias, dtype)

    def forward(self, x, mask=None):
        return multi_head_attention(self.query(x), self.key(x), self.value(x), self.num_attention_heads, mask)


def multi_head_attention(q, k, v, num_heads: int, mask=None):
    """Projected q/k/v [B, S, E] split into heads, attended, merged back to [B, S, E] (the head
    split and merge are views for fuse_memory: no copies)."""
    B, S, E = q.shape

    def heads(t):
        return ops.transpose(ops.reshape(t, (B, S, num_heads, E // num_heads)), (0, 2, 1, 3))
    o = ops.attention(heads(q), heads(k), heads(v), mask=mask)
    return ops.reshape(ops.transpose(o, (0, 2, 1, 3)), (B, S, E))
