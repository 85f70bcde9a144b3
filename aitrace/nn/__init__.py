"""PyTorch-style modules over aitrace ops; `ait.jit(module)` compiles one with its weights as
constants. Models with transformers' configs and state_dicts are in `aitrace.nn.models`."""
from .layers import (GELU, BatchNorm2d, Conv2d, Dropout, Embedding, Identity, LayerNorm, Linear,  # noqa: F401
                     MaxPool2d, ModuleList, ReLU, SelfAttention, Sequential, SiLU, Sigmoid, Tanh,
                     activation, multi_head_attention, seed)
from .module import Module  # noqa: F401
