"""BERT and ViT against transformers on PyTorch CPU (same weights); skipped without torch."""
import numpy as np
import pytest

import aitrace as ait
from aitrace.nn.models import BertModel, ViTModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100,
            max_position_embeddings=64)
VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
           patch_size=8)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def torch_bert(**cfg):
    torch.manual_seed(0)
    return transformers.BertModel(transformers.BertConfig(**cfg)).eval()


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_bert_matches_transformers(backend, act):
    tm = torch_bert(**BERT, hidden_act=act)
    m = BertModel(**BERT, hidden_act=act)
    m.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 100, (2, 7)).astype(np.int64)
    mask = np.ones((2, 7), np.int64)
    mask[1, 4:] = 0                       # padding in the second sequence
    types = np.zeros((2, 7), np.int64)
    types[:, 3:] = 1
    with torch.no_grad():
        ref = tm(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), token_type_ids=torch.from_numpy(types))
    h, p = ait.jit(m, backend=backend)(ids, types, mask)
    assert rel_err(h, ref.last_hidden_state.numpy()) < 1e-4
    assert rel_err(p, ref.pooler_output.numpy()) < 1e-4
    with torch.no_grad():   # no mask, no token types
        ref = tm(torch.from_numpy(ids))
    h, p = ait.jit(lambda i: m(i), backend=backend)(ids)
    assert rel_err(h, ref.last_hidden_state.numpy()) < 1e-4


def test_bert_dynamic_batch_and_sequence_one_library():
    tm = torch_bert(**BERT)
    m = BertModel(**BERT)
    m.load_state_dict(tm.state_dict())
    b, s = ait.Dim("b", min=1, max=4), ait.Dim("s", min=1, max=64)
    f = ait.jit(m, backend="cpu", dynamic={0: {0: b, 1: s}, 1: {0: b, 1: s}, 2: {0: b, 1: s}})
    for batch, seq in ((1, 5), (3, 17)):
        ids = np.random.default_rng(seq).integers(0, 100, (batch, seq)).astype(np.int64)
        types, mask = np.zeros_like(ids), np.ones_like(ids)
        with torch.no_grad():
            ref = tm(torch.from_numpy(ids))
        h, p = f(ids, types, mask)
        assert rel_err(h, ref.last_hidden_state.numpy()) < 1e-4
    assert len(f._cache) == 1


def test_vit_matches_transformers(backend):
    torch.manual_seed(0)
    tm = transformers.ViTModel(transformers.ViTConfig(**VIT)).eval()
    m = ViTModel(**VIT)
    m.load_state_dict(tm.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x))
    h, p = ait.jit(m, backend=backend)(x)
    assert rel_err(h, ref.last_hidden_state.numpy()) < 1e-4
    assert rel_err(p, ref.pooler_output.numpy()) < 1e-4


def test_vit_loads_transformers_4_keys():
    torch.manual_seed(0)
    tm = transformers.ViTModel(transformers.ViTConfig(**VIT)).eval()
    sd = tm.state_dict()
    old = {}
    for k, v in sd.items():
        k = k.replace("layers.", "encoder.layer.").replace("attention.q_proj", "attention.attention.query") \
             .replace("attention.k_proj", "attention.attention.key").replace("attention.v_proj", "attention.attention.value") \
             .replace("attention.o_proj", "attention.output.dense").replace("mlp.fc1", "intermediate.dense") \
             .replace("mlp.fc2", "output.dense")
        old[k] = v
    m = ViTModel(**VIT)
    m.load_state_dict(old)
    for k, v in sd.items():
        np.testing.assert_array_equal(m.state_dict()[k], v.numpy())


def test_state_dict_errors_name_the_key_and_shapes():
    tm = torch_bert(**BERT)
    sd = dict(tm.state_dict())
    m = BertModel(**BERT)
    missing = {k: v for k, v in sd.items() if k != "pooler.dense.bias"}
    with pytest.raises(KeyError, match="missing keys.*pooler.dense.bias"):
        m.load_state_dict(missing)
    with pytest.raises(KeyError, match="unexpected keys.*cls.head"):
        m.load_state_dict({**sd, "cls.head": torch.zeros(3)})
    bad = {**sd, "encoder.layer.0.output.dense.weight": torch.zeros(32, 63)}
    with pytest.raises(ValueError, match=r"'encoder.layer.0.output.dense.weight' has shape \[32, 63\], expected \[32, 64\]"):
        m.load_state_dict(bad)
    m.load_state_dict({k: v.numpy() for k, v in sd.items()})   # numpy arrays load too


def test_from_pretrained_reads_a_local_safetensors_checkpoint(tmp_path):
    pytest.importorskip("safetensors")
    tm = torch_bert(**BERT)
    tm.save_pretrained(tmp_path, safe_serialization=True)
    m = BertModel.from_pretrained(tmp_path)
    ids = np.random.default_rng(0).integers(0, 100, (1, 6)).astype(np.int64)
    with torch.no_grad():
        ref = tm(torch.from_numpy(ids))
    h, _ = ait.jit(lambda i: m(i), backend="reference")(ids)
    assert rel_err(h, ref.last_hidden_state.numpy()) < 1e-4
