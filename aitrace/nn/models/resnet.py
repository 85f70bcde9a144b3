"""ResNet twice over: transformers' ResNetModel (same config keywords and defaults, same
state_dict keys, NCHW pixel_values in, (last_hidden_state, pooler_output) out) and torchvision's
ResNet classifier (same constructor arguments and state_dict keys, NCHW images in, logits out).

Both transpose the images to NHWC once at the entry (conv2d, batch_norm and pooling are
channels-last here); ResNetModel transposes its feature map back to NCHW once at the exit."""
from __future__ import annotations

from ... import ops
from ..layers import BatchNorm2d, Conv2d, Identity, Linear, MaxPool2d, ModuleList, ReLU, Sequential, activation
from ..module import Module
from .config import resolve
from .pretrained import Pretrained

RESNET_DEFAULTS = dict(num_channels=3, embedding_size=64, hidden_sizes=(256, 512, 1024, 2048), depths=(3, 4, 6, 3),
                       layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False,
                       downsample_in_bottleneck=False)


def _check_config(c: dict) -> dict:
    if c["layer_type"] not in ("basic", "bottleneck"):
        raise ValueError(f"ResNetModel: layer_type={c['layer_type']!r} is not one of 'basic', 'bottleneck'")
    c["hidden_sizes"], c["depths"] = tuple(c["hidden_sizes"]), tuple(c["depths"])
    if len(c["hidden_sizes"]) != len(c["depths"]) or not c["depths"]:
        raise ValueError(f"ResNetModel: hidden_sizes {list(c['hidden_sizes'])} and depths {list(c['depths'])} "
                         "must be non-empty and of the same length (one per stage)")
    if any(d < 1 for d in c["depths"]):
        raise ValueError(f"ResNetModel: every depth must be at least 1, got {list(c['depths'])}")
    return c


def _nhwc(pixel_values, channels: int, model: str):
    if len(pixel_values.shape) != 4 or pixel_values.shape[1] != channels:
        raise ValueError(f"{model}: pixel_values must be NCHW [B, {channels}, H, W] (num_channels={channels}), "
                         f"got shape {list(pixel_values.shape)}")
    return ops.transpose(pixel_values, (0, 2, 3, 1))


class GlobalAvgPool2d(Module):
    """nn.AdaptiveAvgPool2d((1, 1)) on NHWC input: [B, H, W, C] -> [B, 1, 1, C]."""

    def forward(self, x):
        return ops.global_avg_pool2d(x, keepdims=True)


# ---------------------------------------------------------------- transformers' ResNetModel
class ResNetConvLayer(Module):
    """conv (no bias, padding kernel_size // 2) -> batch norm -> activation (None: identity)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, activation_name="relu"):
        super().__init__()
        self.convolution = Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                  padding=kernel_size // 2, bias=False)
        self.normalization = BatchNorm2d(out_channels)
        self.activation = activation(activation_name) if activation_name is not None else Identity()

    def forward(self, x):
        return self.activation(self.normalization(self.convolution(x)))


class ResNetShortCut(Module):
    """1x1 strided projection of the residual, then batch norm."""

    def __init__(self, in_channels, out_channels, stride=2):
        super().__init__()
        self.convolution = Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.normalization = BatchNorm2d(out_channels)

    def forward(self, x):
        return self.normalization(self.convolution(x))


def _shortcut(in_channels, out_channels, stride):
    if in_channels != out_channels or stride != 1:
        return ResNetShortCut(in_channels, out_channels, stride)
    return Identity()


class ResNetBasicLayer(Module):
    """Two 3x3 convolutions (the first strided) plus the shortcut. As in transformers, the inner
    activation is always relu; `hidden_act` is the one after the residual add."""

    def __init__(self, in_channels, out_channels, stride=1, activation_name="relu"):
        super().__init__()
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.layer = Sequential(ResNetConvLayer(in_channels, out_channels, stride=stride),
                                ResNetConvLayer(out_channels, out_channels, activation_name=None))
        self.activation = activation(activation_name)

    def forward(self, x):
        return self.activation(self.layer(x) + self.shortcut(x))


class ResNetBottleNeckLayer(Module):
    """1x1 reduce (by 4) -> 3x3 -> 1x1 expand, plus the shortcut. The stride sits on the 3x3
    (v1.5) unless downsample_in_bottleneck puts it on the first 1x1. Inner activations are relu
    as in transformers; `hidden_act` is the one after the residual add."""

    def __init__(self, in_channels, out_channels, stride=1, activation_name="relu", reduction=4,
                 downsample_in_bottleneck=False):
        super().__init__()
        mid = out_channels // reduction
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.layer = Sequential(
            ResNetConvLayer(in_channels, mid, kernel_size=1, stride=stride if downsample_in_bottleneck else 1),
            ResNetConvLayer(mid, mid, stride=1 if downsample_in_bottleneck else stride),
            ResNetConvLayer(mid, out_channels, kernel_size=1, activation_name=None))
        self.activation = activation(activation_name)

    def forward(self, x):
        return self.activation(self.layer(x) + self.shortcut(x))


class ResNetEmbeddings(Module):
    """The stem: 7x7 stride-2 conv + batch norm + hidden_act, then a 3x3 stride-2 max pool."""

    def __init__(self, c):
        super().__init__()
        self.embedder = ResNetConvLayer(c["num_channels"], c["embedding_size"], kernel_size=7, stride=2,
                                        activation_name=c["hidden_act"])
        self.pooler = MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x):
        return self.pooler(self.embedder(x))


class ResNetStage(Module):
    def __init__(self, c, in_channels, out_channels, stride=2, depth=2):
        super().__init__()
        act = c["hidden_act"]
        if c["layer_type"] == "bottleneck":
            first = ResNetBottleNeckLayer(in_channels, out_channels, stride=stride, activation_name=act,
                                          downsample_in_bottleneck=c["downsample_in_bottleneck"])
            rest = [ResNetBottleNeckLayer(out_channels, out_channels, activation_name=act) for _ in range(depth - 1)]
        else:
            first = ResNetBasicLayer(in_channels, out_channels, stride=stride, activation_name=act)
            rest = [ResNetBasicLayer(out_channels, out_channels, activation_name=act) for _ in range(depth - 1)]
        self.layers = Sequential(first, *rest)

    def forward(self, x):
        return self.layers(x)


class ResNetEncoder(Module):
    def __init__(self, c):
        super().__init__()
        sizes, depths = c["hidden_sizes"], c["depths"]
        stages = [ResNetStage(c, c["embedding_size"], sizes[0], stride=2 if c["downsample_in_first_stage"] else 1,
                              depth=depths[0])]
        stages += [ResNetStage(c, i, o, depth=d) for i, o, d in zip(sizes, sizes[1:], depths[1:])]
        self.stages = ModuleList(*stages)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


class ResNetModel(Pretrained):
    """`model(pixel_values)` with NCHW images [B, C, H, W] -> (last_hidden_state [B, C', h, w],
    pooler_output [B, C', 1, 1]), as transformers' ResNetModel (C' = hidden_sizes[-1])."""
    base_model_prefix = "resnet"

    def __init__(self, **config):
        super().__init__()
        self.config = c = _check_config(resolve(RESNET_DEFAULTS, config, "ResNetModel"))
        self.embedder = ResNetEmbeddings(c)
        self.encoder = ResNetEncoder(c)
        self.pooler = GlobalAvgPool2d()

    def forward(self, pixel_values):
        x = _nhwc(pixel_values, self.config["num_channels"], "ResNetModel")
        h = self.encoder(self.embedder(x))                        # [B, h, w, C]
        pooled = self.pooler(h)                                   # [B, 1, 1, C]
        B, C = pooled.shape[0], pooled.shape[3]
        return ops.transpose(h, (0, 3, 1, 2)), ops.reshape(pooled, (B, C, 1, 1))


def resnet50(**overrides) -> ResNetModel:
    """ResNet-50 (microsoft/resnet-50 geometry): bottleneck stages of depths 3, 4, 6, 3."""
    return ResNetModel(**overrides)


# ---------------------------------------------------------------- torchvision's ResNet
class BasicBlock(Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and width_per_group=64 (as torchvision)")
        self.conv1 = Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(planes)
        self.relu = ReLU()
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(Module):
    """torchvision's v1.5 bottleneck: the stride is on conv2 (the 3x3)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.conv2 = Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = BatchNorm2d(width)
        self.conv3 = Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = BatchNorm2d(planes * self.expansion)
        self.relu = ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class TorchvisionResNet(Module):
    """torchvision.models.ResNet: `model(images)` with NCHW images [B, 3, H, W] -> logits
    [B, num_classes]; state_dict keys conv1, bn1, layer1.0.conv1, ..., layerN.0.downsample.0/1, fc.
    `block`: "bottleneck" (resnet50/101/152, resnext, wide_resnet) or "basic" (resnet18/34)."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000, block: str = "bottleneck",
                 groups: int = 1, width_per_group: int = 64):
        super().__init__()
        blocks = {"bottleneck": Bottleneck, "basic": BasicBlock}
        if block not in blocks:
            raise ValueError(f"TorchvisionResNet: block={block!r} is not one of {sorted(blocks)}")
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"TorchvisionResNet: layers must be 4 positive block counts, got {list(layers)}")
        self._block, self._groups, self._base_width = blocks[block], groups, width_per_group
        self.inplanes = 64
        self.conv1 = Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(64)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(planes, n, stride=1 if i == 0 else 2))
        self.avgpool = GlobalAvgPool2d()
        self.fc = Linear(512 * self._block.expansion, num_classes)

    def _make_layer(self, planes, n, stride):
        block, out = self._block, planes * self._block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = Sequential(Conv2d(self.inplanes, out, 1, stride=stride, bias=False), BatchNorm2d(out))
        kw = dict(groups=self._groups, base_width=self._base_width)
        mods = [block(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = out
        mods += [block(out, planes, **kw) for _ in range(n - 1)]
        return Sequential(*mods)

    def forward(self, images):
        x = _nhwc(images, 3, "TorchvisionResNet")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)                                       # [B, 1, 1, C]
        return self.fc(ops.reshape(x, (x.shape[0], x.shape[3])))


def torchvision_resnet50(num_classes: int = 1000) -> TorchvisionResNet:
    """torchvision.models.resnet50 (v1.5): loads its state_dict (e.g. IMAGENET1K_V2 weights)."""
    return TorchvisionResNet((3, 4, 6, 3), num_classes)
