"""ResNet against transformers' ResNetModel and against a torch.nn.functional ResNet written here
in torchvision's layout (torchvision is not required), same weights, with random batch-norm
statistics; skipped without torch or transformers."""
import numpy as np
import pytest

import aitrace as ait
from aitrace.nn.models.resnet import ResNetModel, TorchvisionResNet, resnet50, torchvision_resnet50

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
F = torch.nn.functional

BOTTLENECK = dict(embedding_size=16, hidden_sizes=(32, 64), depths=(1, 2), layer_type="bottleneck")
BASIC = dict(embedding_size=16, hidden_sizes=(16, 32), depths=(2, 1), layer_type="basic")  # identity shortcuts too


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def randomize_batch_norms(model, seed=0):
    """Non-trivial running statistics and affine parameters in every BatchNorm2d."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def torch_resnet(**cfg):
    torch.manual_seed(0)
    return randomize_batch_norms(transformers.ResNetModel(transformers.ResNetConfig(**cfg))).eval()


def images(batch, size=32, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


def check_against_transformers(cfg, backend, x):
    tm = torch_resnet(**cfg)
    m = ResNetModel(**cfg)
    m.load_state_dict(tm.state_dict())
    with torch.no_grad():
        ref = tm(torch.from_numpy(x))
    h, p = ait.jit(m, backend=backend)(x)
    assert rel_err(h, ref.last_hidden_state.numpy()) < 1e-4
    assert rel_err(p, ref.pooler_output.numpy()) < 1e-4


@pytest.mark.parametrize("cfg", [BOTTLENECK, BASIC], ids=["bottleneck", "basic"])
def test_resnet_matches_transformers(backend, cfg):
    check_against_transformers(cfg, backend, images(2, 64))


@pytest.mark.parametrize("extra", [dict(downsample_in_first_stage=True, downsample_in_bottleneck=True),
                                   dict(hidden_act="gelu", num_channels=1)], ids=["downsample", "gelu-gray"])
def test_resnet_config_variants_match_transformers(extra):
    x = images(2)[:, :extra.get("num_channels", 3)].copy()
    check_against_transformers({**BOTTLENECK, **extra}, "reference", x)


def test_resnet_state_dict_keys_are_transformers():
    for cfg in (BOTTLENECK, BASIC, {}):
        tm = transformers.ResNetModel(transformers.ResNetConfig(**cfg))
        own = {k: v.shape for k, v in ResNetModel(**cfg).state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in tm.state_dict().items() if not k.endswith("num_batches_tracked")}
        assert own == theirs


def test_resnet_dynamic_batch_one_library():
    tm = torch_resnet(**BOTTLENECK)
    m = ResNetModel(**BOTTLENECK)
    m.load_state_dict(tm.state_dict())
    f = ait.jit(m, backend="cpu", dynamic={0: {0: ait.Dim("b", min=1, max=8)}})
    for batch in (1, 3):
        x = images(batch, seed=batch)
        with torch.no_grad():
            ref = tm(torch.from_numpy(x))
        h, p = f(x)
        assert rel_err(h, ref.last_hidden_state.numpy()) < 1e-4
        assert rel_err(p, ref.pooler_output.numpy()) < 1e-4
    assert len(f._cache) == 1


def test_resnet_state_dict_errors_name_the_key_and_shapes():
    sd = dict(torch_resnet(**BOTTLENECK).state_dict())
    m = ResNetModel(**BOTTLENECK)
    key = "encoder.stages.1.layers.0.shortcut.normalization.running_var"
    with pytest.raises(KeyError, match=f"missing keys.*{key}"):
        m.load_state_dict({k: v for k, v in sd.items() if k != key})
    with pytest.raises(KeyError, match=r"unexpected keys.*classifier\.1\.weight"):
        m.load_state_dict({**sd, "classifier.1.weight": torch.zeros(10, 64)})
    bad = {**sd, "encoder.stages.0.layers.0.layer.1.convolution.weight": torch.zeros(8, 8, 1, 3)}
    with pytest.raises(ValueError, match=r"'encoder.stages.0.layers.0.layer.1.convolution.weight' has shape "
                                         r"\[8, 8, 1, 3\], expected \[8, 8, 3, 3\]"):
        m.load_state_dict(bad)
    m.load_state_dict({k: v.numpy() for k, v in sd.items()})   # numpy arrays load too


def test_resnet_bad_config_and_input():
    with pytest.raises(TypeError, match="unexpected config keywords.*hidden_size"):
        ResNetModel(hidden_size=3)
    with pytest.raises(ValueError, match="layer_type"):
        ResNetModel(layer_type="preact")
    with pytest.raises(ValueError, match="same length"):
        ResNetModel(hidden_sizes=(32, 64), depths=(1,))
    with pytest.raises(ValueError, match=r"pixel_values must be NCHW \[B, 3, H, W\].*\[2, 32, 32, 3\]"):
        ait.trace(ResNetModel(**BOTTLENECK))(ait.ShapeDtype((2, 32, 32, 3), ait.float32))


def test_resnet_from_pretrained_image_classification_checkpoint(tmp_path):
    pytest.importorskip("safetensors")
    torch.manual_seed(0)
    tc = transformers.ResNetForImageClassification(transformers.ResNetConfig(**BOTTLENECK, num_labels=5)).eval()
    randomize_batch_norms(tc)
    tc.save_pretrained(tmp_path, safe_serialization=True)
    m = ResNetModel.from_pretrained(tmp_path)     # "resnet." prefix stripped, classifier dropped
    x = images(1)
    with torch.no_grad():
        ref = tc.resnet(torch.from_numpy(x))
    h, p = ait.jit(m, backend="reference")(x)
    assert rel_err(p, ref.pooler_output.numpy()) < 1e-4


def test_resnet50_geometry():
    m = resnet50()
    sd = m.state_dict()
    assert sd["encoder.stages.3.layers.2.layer.2.convolution.weight"].shape == (2048, 512, 1, 1)
    # transformers' ResNetModel(): 23,508,032 parameters + 53,120 batch-norm statistics
    assert sum(v.size for v in sd.values()) == 23_561_152


# ---------------------------------------------------------------- torchvision layout
def torchvision_keys(layers, block="bottleneck", num_classes=1000, groups=1, width_per_group=64):
    """{key: shape} of torchvision.models.ResNet's state_dict, written out from its architecture
    (stride on conv2 of the bottleneck, v1.5), num_batches_tracked included."""
    keys = {}

    def conv(name, o, i, k):
        keys[name + ".weight"] = (o, i, k, k)

    def bn(name, c):
        for s in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{s}"] = (c,)
        keys[name + ".num_batches_tracked"] = ()

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    expansion = 4 if block == "bottleneck" else 1
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
        for b in range(n):
            p = f"layer{li + 1}.{b}"
            stride = 2 if (li > 0 and b == 0) else 1
            out = planes * expansion
            if block == "bottleneck":
                w = int(planes * width_per_group / 64) * groups
                conv(p + ".conv1", w, inplanes, 1), bn(p + ".bn1", w)
                conv(p + ".conv2", w, w // groups, 3), bn(p + ".bn2", w)
                conv(p + ".conv3", out, w, 1), bn(p + ".bn3", out)
            else:
                conv(p + ".conv1", planes, inplanes, 3), bn(p + ".bn1", planes)
                conv(p + ".conv2", planes, planes, 3), bn(p + ".bn2", planes)
            if b == 0 and (stride != 1 or inplanes != out):
                conv(p + ".downsample.0", out, inplanes, 1), bn(p + ".downsample.1", out)
            inplanes = out
    keys["fc.weight"], keys["fc.bias"] = (num_classes, 512 * expansion), (num_classes,)
    return keys


def random_state_dict(keys, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in keys.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) * 1.5 + 0.5
        elif k.endswith(("running_mean", "bias")):
            sd[k] = torch.rand(shape, generator=g) - 0.5
        elif len(shape) == 1:                                   # batch-norm weight
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:                                                    # conv / fc weight, He-scaled
            sd[k] = torch.randn(shape, generator=g) * (2.0 / np.prod(shape[1:])) ** 0.5
    return sd


def torch_functional_resnet(sd, x, layers, block="bottleneck", groups=1):
    """torchvision's ResNet forward written with torch.nn.functional over a state_dict."""
    def bn(t, n):
        return F.batch_norm(t, sd[n + ".running_mean"], sd[n + ".running_var"], sd[n + ".weight"],
                            sd[n + ".bias"], training=False, eps=1e-5)

    def conv(t, n, stride=1, padding=0, g=1):
        return F.conv2d(t, sd[n + ".weight"], stride=stride, padding=padding, groups=g)

    y = F.relu(bn(conv(x, "conv1", 2, 3), "bn1"))
    y = F.max_pool2d(y, 3, 2, 1)
    for li, n in enumerate(layers):
        for b in range(n):
            p, stride = f"layer{li + 1}.{b}", (2 if li > 0 and b == 0 else 1)
            if block == "bottleneck":
                o = F.relu(bn(conv(y, p + ".conv1"), p + ".bn1"))
                o = F.relu(bn(conv(o, p + ".conv2", stride, 1, groups), p + ".bn2"))
                o = bn(conv(o, p + ".conv3"), p + ".bn3")
            else:
                o = F.relu(bn(conv(y, p + ".conv1", stride, 1), p + ".bn1"))
                o = bn(conv(o, p + ".conv2", 1, 1), p + ".bn2")
            idt = y
            if p + ".downsample.0.weight" in sd:
                idt = bn(conv(y, p + ".downsample.0", stride), p + ".downsample.1")
            y = F.relu(o + idt)
    return F.linear(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1), sd["fc.weight"], sd["fc.bias"])


TV_CASES = {"bottleneck": dict(layers=(1, 2, 1, 1), block="bottleneck"),
            "basic": dict(layers=(2, 1, 1, 1), block="basic"),
            "resnext": dict(layers=(1, 1, 1, 1), block="bottleneck", groups=4, width_per_group=8)}


@pytest.mark.parametrize("case", list(TV_CASES))
def test_torchvision_resnet_matches_functional_reference(backend, case):
    kw = TV_CASES[case]
    keys = torchvision_keys(num_classes=10, **kw)
    m = TorchvisionResNet(num_classes=10, **kw)
    assert {k: v.shape for k, v in m.state_dict().items()} == \
        {k: s for k, s in keys.items() if not k.endswith("num_batches_tracked")}
    sd = random_state_dict(keys)
    m.load_state_dict(sd)
    x = images(2)
    with torch.no_grad():
        ref = torch_functional_resnet(sd, torch.from_numpy(x), kw["layers"], kw["block"], kw.get("groups", 1))
    logits = ait.jit(m, backend=backend)(x)
    assert logits.shape == (2, 10)
    assert rel_err(logits, ref.numpy()) < 1e-4


def test_torchvision_resnet50_keys_and_parameter_count():
    keys = torchvision_keys((3, 4, 6, 3))
    assert len(keys) == 320                                    # len(torchvision.models.resnet50().state_dict())
    sd = torchvision_resnet50().state_dict()
    assert {k: v.shape for k, v in sd.items()} == \
        {k: s for k, s in keys.items() if not k.endswith("num_batches_tracked")}
    n_params = sum(v.size for k, v in sd.items() if not k.endswith(("running_mean", "running_var")))
    assert n_params == 25_557_032                              # torchvision's documented resnet50 size


@pytest.mark.parametrize("arch", ["resnet50", "resnet18"])
def test_torchvision_resnet_matches_torchvision(arch):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tm = randomize_batch_norms(getattr(tv.models, arch)(num_classes=10)).eval()
    m = TorchvisionResNet((3, 4, 6, 3) if arch == "resnet50" else (2, 2, 2, 2), num_classes=10,
                          block="bottleneck" if arch == "resnet50" else "basic")
    assert list(m.state_dict()) == [k for k in tm.state_dict() if not k.endswith("num_batches_tracked")]
    m.load_state_dict(tm.state_dict())
    x = images(1)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x))
    assert rel_err(ait.jit(m, backend="reference")(x), ref.numpy()) < 1e-4
