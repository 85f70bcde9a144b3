"""BERT (transformers' BertModel): same config keywords and defaults, same state_dict keys, and
the call returns (last_hidden_state, pooler_output)."""
from __future__ import annotations

import numpy as np

from ... import ops
from ...ops.layout import slice_axis
from ..layers import Dropout, Embedding, LayerNorm, Linear, ModuleList, SelfAttention, Tanh, activation
from ..module import Module
from .config import resolve
from .pretrained import Pretrained

BERT_DEFAULTS = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512,
                     type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1)


class BertEmbeddings(Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embeddings = Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.token_type_embeddings = Embedding(c["type_vocab_size"], c["hidden_size"])
        self.LayerNorm = LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = Dropout(c["hidden_dropout_prob"])

    def forward(self, input_ids, token_type_ids=None):
        S = input_ids.shape[1]
        positions = slice_axis(self.position_embeddings.weight, 0, 0, S)   # [S, H]
        types = self.token_type_embeddings.weight[0] if token_type_ids is None else \
            self.token_type_embeddings(token_type_ids)
        x = self.word_embeddings(input_ids) + types + positions
        return self.dropout(self.LayerNorm(x))


class BertSelfOutput(Module):
    def __init__(self, c):
        super().__init__()
        self.dense = Linear(c["hidden_size"], c["hidden_size"])
        self.LayerNorm = LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = Dropout(c["hidden_dropout_prob"])

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(Module):
    def __init__(self, c):
        super().__init__()
        setattr(self, "self", SelfAttention(c["hidden_size"], c["num_attention_heads"]))
        self.output = BertSelfOutput(c)

    def forward(self, x, mask=None):
        return self.output(getattr(self, "self")(x, mask), x)


class BertIntermediate(Module):
    def __init__(self, c):
        super().__init__()
        self.dense = Linear(c["hidden_size"], c["intermediate_size"])
        self.intermediate_act_fn = activation(c["hidden_act"])

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))


class BertOutput(BertSelfOutput):
    def __init__(self, c):
        super().__init__(c)
        self.dense = Linear(c["intermediate_size"], c["hidden_size"])


class BertLayer(Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c)

    def forward(self, x, mask=None):
        h = self.attention(x, mask)
        return self.output(self.intermediate(h), h)


class BertEncoder(Module):
    def __init__(self, c):
        super().__init__()
        self.layer = ModuleList(*[BertLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x, mask=None):
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(Module):
    def __init__(self, c):
        super().__init__()
        self.dense = Linear(c["hidden_size"], c["hidden_size"])
        self.activation = Tanh()

    def forward(self, x):
        return self.activation(self.dense(x[:, 0]))


class BertModel(Pretrained):
    """`model(input_ids, token_type_ids=None, attention_mask=None)` with int ids [B, S] and an
    optional attention_mask [B, S] (1 attends, 0 is padding) -> (last_hidden_state [B, S, H],
    pooler_output [B, H] or None without the pooling layer)."""
    base_model_prefix = "bert"

    def __init__(self, add_pooling_layer: bool = True, **config):
        super().__init__()
        self.config = c = resolve(BERT_DEFAULTS, config, "BertModel")
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c) if add_pooling_layer else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        mask = None
        if attention_mask is not None:  # [B, S] -> boolean [B, 1, 1, S], True attends
            mask = ops.reshape(ops.cast(attention_mask, np.bool_),
                               (attention_mask.shape[0], 1, 1, attention_mask.shape[1]))
        h = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
        return h, (self.pooler(h) if self.pooler is not None else None)


def bert_base(**overrides) -> BertModel:
    """BERT-base (uncased geometry): 12 layers, hidden 768, 12 heads, FFN 3072."""
    return BertModel(**overrides)
