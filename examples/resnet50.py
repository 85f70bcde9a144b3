"""ResNet-50 (224x224) compiled by aitrace, checked and timed against PyTorch where installed.

    python examples/resnet50.py [--backend cpu] [--batch-size 1] [--dtype float32] [--weights DIR] [--threads N]
Runs on the CPU by default (the best backend present). Random weights unless --weights names a
local transformers ResNet checkpoint; with PyTorch installed the weights come from a
transformers ResNetModel (with non-trivial batch-norm statistics) so both sides compute the same
function."""
import numpy as np

from model_harness import Example, parse, run

from aitrace.nn.models import ResNetModel, resnet50


def build(args):
    return ResNetModel.from_pretrained(args.weights) if args.weights else resnet50()


def inputs(args, rng):
    return (rng.standard_normal((args.batch_size, 3, 224, 224)).astype(np.float32),)


def torch_model(args):
    import torch
    import transformers
    m = transformers.ResNetModel(transformers.ResNetConfig()).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():   # trained-looking batch-norm statistics instead of 0 / 1
        for name, t in m.state_dict().items():
            if name.endswith(("running_mean", "bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith(("running_var", "normalization.weight")):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
    return m


def torch_call(m, tin):
    r = m(pixel_values=tin[0])
    return r.last_hidden_state, r.pooler_output


if __name__ == "__main__":
    run(Example("ResNet-50", build, inputs, torch_model, torch_call), parse(__doc__))
