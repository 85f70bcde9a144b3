"""What the model classes share: loading a local transformers checkpoint directory."""
from __future__ import annotations

from ..module import Module
from ..weights import load_checkpoint


class Pretrained(Module):
    base_model_prefix = ""  # transformers' prefix of the base model inside task models

    @classmethod
    def from_pretrained(cls, directory, **overrides):
        """Build from a local transformers checkpoint (config.json + *.safetensors); no network.
        Checkpoints of task models (e.g. BertForMaskedLM) load their base model's weights."""
        config, state = load_checkpoint(directory)
        model = cls(**{**config, **overrides})
        model.load_state_dict(model.strip_prefix(state))
        return model

    def strip_prefix(self, state: dict) -> dict:
        """A task model's state_dict (keys `bert.…` plus heads) as the base model's."""
        p = self.base_model_prefix + "."
        if p != "." and any(k.startswith(p) for k in state):
            return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
        return state
