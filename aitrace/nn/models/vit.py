"""ViT (transformers' ViTModel): same config keywords and defaults, same state_dict keys (and
those of transformers 4.x, renamed on load), NCHW pixel_values in, (last_hidden_state,
pooler_output) out."""
from __future__ import annotations

import re

import numpy as np

from ... import ops
from ..layers import Conv2d, Dropout, LayerNorm, Linear, ModuleList, Tanh, activation, multi_head_attention
from ..module import Module
from .config import resolve
from .pretrained import Pretrained

VIT_DEFAULTS = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                    hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                    layer_norm_eps=1e-12, image_size=224, patch_size=16, num_channels=3, qkv_bias=True,
                    pooler_output_size=None, pooler_act="tanh")

# transformers 4.x key -> 5.x key
_OLD_KEYS = [(r"^encoder\.layer\.(\d+)\.attention\.attention\.query\.", r"layers.\1.attention.q_proj."),
             (r"^encoder\.layer\.(\d+)\.attention\.attention\.key\.", r"layers.\1.attention.k_proj."),
             (r"^encoder\.layer\.(\d+)\.attention\.attention\.value\.", r"layers.\1.attention.v_proj."),
             (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attention.o_proj."),
             (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.mlp.fc1."),
             (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.mlp.fc2."),
             (r"^encoder\.layer\.(\d+)\.", r"layers.\1.")]


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


class ViTPatchEmbeddings(Module):
    def __init__(self, c):
        super().__init__()
        self.projection = Conv2d(c["num_channels"], c["hidden_size"], c["patch_size"], stride=c["patch_size"])

    def forward(self, x_nhwc):
        y = self.projection(x_nhwc)                      # [B, h, w, H]
        B, h, w, H = y.shape
        return ops.reshape(y, (B, h * w, H))             # patches in row-major order, as torch


class ViTEmbeddings(Module):
    def __init__(self, c):
        super().__init__()
        ih, iw = _pair(c["image_size"])
        ph, pw = _pair(c["patch_size"])
        n = (ih // ph) * (iw // pw)
        self.cls_token = np.zeros((1, 1, c["hidden_size"]), np.float32)
        self.position_embeddings = (np.random.default_rng(0).standard_normal((1, n + 1, c["hidden_size"])) * 0.02
                                    ).astype(np.float32)
        self.patch_embeddings = ViTPatchEmbeddings(c)
        self.dropout = Dropout(c["hidden_dropout_prob"])

    def forward(self, pixel_values):
        x = ops.transpose(pixel_values, (0, 2, 3, 1))    # NCHW -> NHWC, once
        patches = self.patch_embeddings(x)
        B, _, H = patches.shape
        if patches.shape[1] + 1 != self.position_embeddings.shape[1]:
            raise ValueError(f"ViTModel: {patches.shape[1]} patches, but the position embeddings were made "
                             f"for {self.position_embeddings.shape[1] - 1} (image_size); interpolation is "
                             "not supported")
        cls = ops.broadcast_to(self.cls_token.astype(patches.dtype), (B, 1, H))
        return self.dropout(ops.concatenate([cls, patches], axis=1) + self.position_embeddings)


class ViTAttention(Module):
    def __init__(self, c):
        super().__init__()
        H, bias = c["hidden_size"], c["qkv_bias"]
        self.num_attention_heads = c["num_attention_heads"]
        self.q_proj, self.k_proj, self.v_proj = Linear(H, H, bias), Linear(H, H, bias), Linear(H, H, bias)
        self.o_proj = Linear(H, H)

    def forward(self, x):
        return self.o_proj(multi_head_attention(self.q_proj(x), self.k_proj(x), self.v_proj(x),
                                                self.num_attention_heads))


class ViTMLP(Module):
    def __init__(self, c):
        super().__init__()
        self.activation_fn = activation(c["hidden_act"])
        self.fc1 = Linear(c["hidden_size"], c["intermediate_size"])
        self.fc2 = Linear(c["intermediate_size"], c["hidden_size"])

    def forward(self, x):
        return self.fc2(self.activation_fn(self.fc1(x)))


class ViTLayer(Module):
    """Pre-norm: x + attention(ln(x)), then + mlp(ln(.))."""

    def __init__(self, c):
        super().__init__()
        self.attention = ViTAttention(c)
        self.layernorm_before = LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.layernorm_after = LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.mlp = ViTMLP(c)
        self.dropout = Dropout(c["hidden_dropout_prob"])

    def forward(self, x):
        h = x + self.dropout(self.attention(self.layernorm_before(x)))
        return h + self.dropout(self.mlp(self.layernorm_after(h)))


class ViTPooler(Module):
    def __init__(self, c):
        super().__init__()
        self.dense = Linear(c["hidden_size"], c["pooler_output_size"] or c["hidden_size"])
        self.activation = activation(c["pooler_act"]) if c["pooler_act"] != "tanh" else Tanh()

    def forward(self, x):
        return self.activation(self.dense(x[:, 0]))


class ViTModel(Pretrained):
    """`model(pixel_values)` with NCHW images [B, C, H, W] -> (last_hidden_state [B, N+1, H],
    pooler_output [B, H] or None without the pooling layer)."""
    base_model_prefix = "vit"

    def __init__(self, add_pooling_layer: bool = True, **config):
        super().__init__()
        self.config = c = resolve(VIT_DEFAULTS, config, "ViTModel")
        self.embeddings = ViTEmbeddings(c)
        self.layers = ModuleList(*[ViTLayer(c) for _ in range(c["num_hidden_layers"])])
        self.layernorm = LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.pooler = ViTPooler(c) if add_pooling_layer else None

    def forward(self, pixel_values):
        x = self.embeddings(pixel_values)
        for layer in self.layers:
            x = layer(x)
        x = self.layernorm(x)
        return x, (self.pooler(x) if self.pooler is not None else None)

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Takes transformers 5.x keys (layers.N.attention.q_proj...) or 4.x ones
        (encoder.layer.N.attention.attention.query...)."""
        renamed = {}
        for k, v in state_dict.items():
            for pat, rep in _OLD_KEYS:
                k2 = re.sub(pat, rep, k)
                if k2 != k:
                    k = k2
                    break
            renamed[k] = v
        super().load_state_dict(renamed, strict)


def vit_base_patch16_224(**overrides) -> ViTModel:
    """ViT-B/16 at 224x224: 12 layers, hidden 768, 12 heads, MLP 3072."""
    return ViTModel(**overrides)
