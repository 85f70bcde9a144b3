"""Model configs with transformers' keyword names and defaults."""
from __future__ import annotations

# Keys every transformers config may carry that do not change an inference graph here.
COMMON = frozenset({
    "transformers_version", "architectures", "output_hidden_states", "return_dict", "dtype", "torch_dtype",
    "chunk_size_feed_forward", "is_encoder_decoder", "id2label", "label2id", "problem_type", "model_type",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "use_cache",
    "classifier_dropout", "is_decoder", "add_cross_attention", "bos_token_id", "eos_token_id",
    "tie_word_embeddings", "pad_token_id", "encoder_stride", "position_embedding_type", "_name_or_path",
    "gradient_checkpointing", "num_labels", "output_attentions", "layer_type_names", "out_features",
    "out_indices", "stage_names", "_attn_implementation_autoset"})


def resolve(defaults: dict, kwargs: dict, model: str) -> dict:
    """defaults updated by kwargs; an unknown key raises TypeError naming it."""
    unknown = [k for k in kwargs if k not in defaults and k not in COMMON]
    if unknown:
        raise TypeError(f"{model}: unexpected config keywords {unknown}")
    return {**defaults, **{k: v for k, v in kwargs.items() if k in defaults}}
