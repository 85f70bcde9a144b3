"""ViT-B/16 at 224x224 compiled by aitrace, checked and timed against PyTorch.

    python examples/vit.py [--backend cpu] [--batch-size 1] [--dtype float32] [--weights DIR] [--threads N]
Random weights unless --weights names a local transformers checkpoint; with PyTorch installed the
weights come from a transformers ViTModel so both sides compute the same function."""
import numpy as np

from model_harness import Example, parse, run

from aitrace.nn.models import ViTModel, vit_base_patch16_224


def build(args):
    return ViTModel.from_pretrained(args.weights) if args.weights else vit_base_patch16_224()


def inputs(args, rng):
    return (rng.standard_normal((args.batch_size, 3, 224, 224)).astype(np.float32),)


def torch_model(args):
    import transformers
    return transformers.ViTModel(transformers.ViTConfig()).eval()


def torch_call(m, tin):
    r = m(pixel_values=tin[0])
    return r.last_hidden_state, r.pooler_output


if __name__ == "__main__":
    run(Example("ViT-B/16", build, inputs, torch_model, torch_call), parse(__doc__))
