"""Models with transformers' configs, state_dict keys and outputs."""
from .bert import BertModel, bert_base  # noqa: F401
from .resnet import ResNetModel, TorchvisionResNet, resnet50, torchvision_resnet50  # noqa: F401
from .vit import ViTModel, vit_base_patch16_224  # noqa: F401
