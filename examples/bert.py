"""BERT-base (seq 128 by default) compiled by aitrace, checked and timed against PyTorch.

    python examples/bert.py [--backend cpu] [--batch-size 1] [--seq-len 128] [--dtype float32]
                            [--weights DIR] [--threads N]
Random weights unless --weights names a local transformers checkpoint; with PyTorch installed the
weights come from a transformers BertModel so both sides compute the same function."""
import sys

import numpy as np

from model_harness import Example, parse, run

from aitrace.nn.models import BertModel, bert_base


def build(args):
    return BertModel.from_pretrained(args.weights) if args.weights else bert_base()


def inputs(args, rng):
    ids = rng.integers(0, 30522, (args.batch_size, args.seq_len)).astype(np.int64)
    return ids, np.zeros_like(ids), np.ones_like(ids)


def torch_model(args):
    import transformers
    return transformers.BertModel(transformers.BertConfig()).eval()


def torch_call(m, tin):
    ids, types, mask = tin
    r = m(input_ids=ids, token_type_ids=types, attention_mask=mask)
    return r.last_hidden_state, r.pooler_output


if __name__ == "__main__":
    seq = 128
    if "--seq-len" in sys.argv:
        i = sys.argv.index("--seq-len")
        seq = int(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    a = parse(__doc__)
    a.seq_len = seq
    run(Example("BERT-base", build, inputs, torch_model, torch_call), a)
