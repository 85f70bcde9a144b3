"""Reading checkpoints without torch: safetensors files (the format transformers saves) and a
transformers checkpoint directory (config.json + model.safetensors, possibly sharded)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from ..core import dtypes

SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": dtypes.bfloat16,
                      "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
                      "BOOL": np.bool_}


def load_safetensors(path) -> dict:
    """name -> numpy array (memory-mapped, read-only) for every tensor of a .safetensors file:
    an 8-byte little-endian header size, a JSON header, then the raw little-endian data."""
    path = Path(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    data = np.memmap(path, np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {info['dtype']}, which aitrace does not read")
        begin, end = info["data_offsets"]
        dt = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
        out[name] = data[begin:end].view(dt).reshape(info["shape"])
    return out


def load_checkpoint(directory) -> tuple[dict, dict]:
    """(config dict, state dict) of a local transformers checkpoint directory."""
    d = Path(directory)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"{d}: no config.json (expected a transformers checkpoint directory)")
    config = json.loads((d / "config.json").read_text())
    files = sorted(d.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{d}: no .safetensors weights (save with safe_serialization=True)")
    state = {}
    for f in files:
        state.update(load_safetensors(f))
    return config, state
