"""Model API tests in the spirit of timm's own tests/test_models.py, for every registered model.

Full-width models run at small inputs; the slow transforms (TorchScript, FX, compile) run at width 8,
which is the same architecture with fewer channels.
"""

import json
import math
from pathlib import Path

import pytest
import timm
import torch
from timm.layers import DropPath

import timm_assemble  # noqa: F401
from timm_assemble.models.assemble_resnet import AssembleResNet

CLOVA_TF = Path(__file__).resolve().parent / "fixtures" / "clova_tf"  # official-code outputs
MODELS = timm.list_models("assemble*")
OFFICIAL = ["assemble_resnet50", "assemble_resnet152"]
# The fast tier (`-m "not slow"`) runs the per-model tests on these two: between them every block and layer type.
FAST = ("assemble_resnet50", "assemble_r50d_se")


def tiered(names: list[str], fast: tuple[str, ...] = FAST) -> list:
    """`names` as parameters, all but `fast` marked slow."""
    return [name if name in fast else pytest.param(name, marks=pytest.mark.slow) for name in names]

SMALL_INPUT = (2, 3, 64, 64)


def _small(name: str, **kwargs) -> AssembleResNet:
    return timm.create_model(name, width=8, **kwargs).eval()


def _official_variables(name: str) -> dict[str, tuple[int, ...]]:
    variables = {}
    for line in (CLOVA_TF / f"{name}_full_variables.tsv").read_text().splitlines():
        var_name, shape, _ = line.split("\t")
        variables[var_name] = tuple(json.loads(shape))
    return variables


def test_registered_names():
    assert {"assemble_resnet50", "assemble_resnet152"} <= set(timm.list_models("assemble*"))
    assert {"assemble_r50", "assemble_r50d", "assemble_r50d_se", "assemble_r50d_sk", "assemble_r50_bl_sk"} <= set(
        MODELS
    )
    assert not set(MODELS) & set(timm.list_models(module="resnet")), "names must not collide with timm's"
    assert "assemble_resnet50.clova_in1k" in timm.list_pretrained("assemble*")


@pytest.mark.slow
@pytest.mark.parametrize("name", tiered(OFFICIAL))
def test_full_size_matches_official_variables(name):
    model = timm.create_model(name, num_classes=1001).eval()
    official = [s for n, s in _official_variables(name).items() if "moving_" not in n]
    assert sum(p.numel() for p in model.parameters()) == sum(math.prod(s) for s in official)
    assert len(list(model.parameters())) == len(official)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1001)


@pytest.mark.slow
@pytest.mark.parametrize("name", tiered(OFFICIAL))
def test_every_tensor_has_one_official_counterpart(name):
    """The converter's name table is a bijection between the full-size state_dict and the official variables."""
    from timm_assemble.convert.mapping import build_mapping, official_shape

    model = timm.create_model(name, num_classes=1001)
    state = model.state_dict()
    mapping = build_mapping(model)
    official = _official_variables(name)
    assert set(mapping) == set(official)
    targets = [target.key for target in mapping.values()]
    assert len(set(targets)) == len(targets)
    assert set(targets) == {k for k in state if not k.endswith("num_batches_tracked")}
    for tf_name, target in mapping.items():
        assert official_shape(target, tuple(state[target.key].shape), drop_background=False) == official[tf_name]


@pytest.mark.parametrize("name", tiered(MODELS, ("assemble_r50d_se",)))
def test_forward_backward(name):
    model = timm.create_model(name, num_classes=10, width=8).train()
    x = torch.randn(SMALL_INPUT)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("name", tiered(MODELS, ("assemble_r50d_se",)))
def test_default_cfg(name):
    """pool_size, first_conv and classifier of the cfg describe the model, as timm's test demands."""
    model = timm.create_model(name, width=8).eval()
    cfg = model.pretrained_cfg
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, *cfg["input_size"]))
    assert tuple(features.shape[-2:]) == tuple(cfg["pool_size"])
    assert features.shape[1] == model.num_features == model.head_hidden_size
    first_conv = model.get_submodule(cfg["first_conv"])
    assert isinstance(first_conv, torch.nn.Conv2d) and first_conv.in_channels == model.in_chans == 3
    classifier = model.get_submodule(cfg["classifier"])
    assert classifier.out_features == model.num_classes == cfg["num_classes"]
    assert model.get_classifier() is classifier and model.get_classifier(name_only=True) == cfg["classifier"]
    model.reset_classifier(0)
    with torch.no_grad():
        assert model.forward_head(features).shape == (1, model.num_features)
    model.reset_classifier(0, "")
    with torch.no_grad():
        assert model.forward_head(features).shape == features.shape


def test_official_preprocessing_cfg():
    from timm.data import resolve_data_config

    for name, resize in (("assemble_resnet50.clova_in1k", 292), ("assemble_resnet152.clova_in1k", 257)):
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        assert cfg["mean"] == pytest.approx((123.68 / 255, 116.78 / 255, 103.94 / 255))
        assert cfg["std"] == pytest.approx((1 / 255,) * 3)
        assert cfg["interpolation"] == "bilinear" and cfg["input_size"] == (3, 224, 224)
        assert cfg["test_input_size"] == (3, 256, 256) and cfg["paper_ids"] == "arXiv:2001.06268"
        assert cfg["license"] == "apache-2.0" and cfg["hf_hub_id"].endswith(f"/{name}")
        model = timm.create_model(name, width=8)
        data_cfg = resolve_data_config(model=model, use_test_size=True)
        transform = timm.data.create_transform(**data_cfg)
        assert transform.transforms[0].size == resize, "eval resize of the official pipeline"


@pytest.mark.parametrize("name", tiered(MODELS, ("assemble_r50d",)))
def test_features_only_and_intermediates(name):
    model = _small(name)
    x = torch.randn(SMALL_INPUT)
    expected_reductions = [4, 8, 16, 16, 32] if "_bl_" in name or name in OFFICIAL else [4, 4, 8, 16, 32]
    assert model.feature_info[-1]["num_chs"] == model.num_features
    assert [f["reduction"] for f in model.feature_info] == expected_reductions
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        assert [t.shape[1] for t in intermediates] == [f["num_chs"] for f in model.feature_info]
        assert [64 // t.shape[-1] for t in intermediates] == expected_reductions
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        torch.testing.assert_close(last_two, intermediates[-2:])
    features = timm.create_model(name, features_only=True, out_indices=(0, 1, 2, 3, 4), width=8)
    features.load_state_dict(model.state_dict(), strict=False)
    features.eval()
    assert features.feature_info.reduction() == expected_reductions
    with torch.no_grad():
        for got, want in zip(features(x), intermediates, strict=True):
            torch.testing.assert_close(got, want)


def test_prune_intermediate_layers():
    model = _small("assemble_resnet50")
    x = torch.randn(SMALL_INPUT)
    with torch.no_grad():
        full = model.forward_intermediates(x, intermediates_only=True)
    kept = model.prune_intermediate_layers(indices=[1, 2])
    assert kept == [1, 2] and model.num_classes == 0
    with torch.no_grad():
        pruned = model.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
    torch.testing.assert_close(pruned, full[1:3])


@pytest.mark.slow
@pytest.mark.parametrize("name", tiered(OFFICIAL))
def test_grad_checkpointing_same_output(name):
    model = _small(name)
    x = torch.randn(SMALL_INPUT)
    reference = model(x)
    reference.sum().backward()
    reference_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out, reference)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, reference_grads[n])


# TorchScript is part of timm's model API (timm's own tests script every model); torch >= 2.10 calls the
# API itself deprecated, which is torch's note about the API under test, not a problem of these models.
TORCHSCRIPT_DEPRECATED = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


@TORCHSCRIPT_DEPRECATED
@pytest.mark.slow
@pytest.mark.parametrize("name", FAST)  # script-ability is per layer type; these two hold every one
def test_torchscript(name):
    model = _small(name)
    x = torch.randn(SMALL_INPUT)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize("name", tiered(list(FAST), ("assemble_r50d_se",)))  # every block and layer type
def test_fx(name):
    from timm.models import create_feature_extractor, get_graph_node_names

    model = _small(name)
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert train_nodes[-1] == eval_nodes[-1]
    fx_model = create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    x = torch.randn(SMALL_INPUT)
    with torch.no_grad():
        torch.testing.assert_close(next(iter(fx_model(x).values())), model(x))


@TORCHSCRIPT_DEPRECATED
@pytest.mark.slow
@pytest.mark.parametrize("name", FAST)
def test_fx_then_torchscript(name):
    """As timm's test_model_forward_fx_torchscript: the FX graph module scripts (its annotations must resolve).

    .ci/timm_model_tests.sh runs timm's own test on every registered model."""
    from timm.layers import set_scriptable
    from timm.models import create_feature_extractor, get_graph_node_names

    with set_scriptable(True):
        model = _small(name)
    eval_nodes = get_graph_node_names(model)[1]
    scripted = torch.jit.script(create_feature_extractor(model, return_nodes=[eval_nodes[-1]]))
    x = torch.randn(SMALL_INPUT)
    with torch.no_grad():
        torch.testing.assert_close(next(iter(scripted(x).values())), model(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST)  # every block and layer type (the others differ in depth and width)
def test_compile_fullgraph(name):
    """Dynamo captures each model as one graph (no graph breaks) that computes the eager output."""
    torch._dynamo.reset()
    model = _small(name)
    x = torch.randn(SMALL_INPUT)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.slow
@pytest.mark.parametrize("grad", [False, True])
def test_compile_fullgraph_channels_last(grad):
    """No graph break on the channels_last path either (the Big-Little add), in inference and in training."""
    torch._dynamo.reset()
    model = _small("assemble_resnet50").to(memory_format=torch.channels_last).train(grad)
    x = torch.randn(SMALL_INPUT).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.set_grad_enabled(grad):
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize("name", tiered(MODELS, ("assemble_r50",)))
def test_channels_last(name):
    model = _small(name)
    x = torch.randn(SMALL_INPUT)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", tiered(MODELS, ("assemble_r50d_se",)))
def test_in_chans_and_num_classes_zero(name):
    model = _small(name, in_chans=1, num_classes=0)
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, model.num_features)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(240, 240), (288, 288), (200, 264)])
def test_any_input_size(size):
    model = _small("assemble_resnet50")
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, *size))
    assert tuple(features.shape[-2:]) == tuple(math.ceil(s / 32) for s in size)


def test_group_matcher_orders_blocks():
    from timm.models import group_parameters

    model = _small("assemble_resnet50")
    groups = group_parameters(model, model.group_matcher())
    names = [n for group in groups.values() for n in group]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    order = {n: i for i, group in enumerate(groups.values()) for n in group}
    assert order["conv1.weight"] == 0
    assert order["layer1.big.0.conv1.weight"] == order["layer1.little.0.conv1.weight"]
    assert order["layer1.big.1.conv1.weight"] < order["layer1.little_e.conv.weight"]
    assert order["layer1.little_e.conv.weight"] < order["layer1.merge.0.conv1.weight"]
    assert order["layer3.merge.0.conv1.weight"] < order["layer4.0.conv1.weight"] < order["fc.weight"]
    coarse = group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) == 6  # stem, four stages, head


def test_drop_block_at_official_places():
    from timm_assemble.layers import DropBlock2d, set_drop_block_keep_prob

    assert not any(isinstance(m, DropBlock2d) for m in _small("assemble_resnet50").modules())
    model = _small("assemble_resnet50", drop_block_rate=0.1)
    places = [n for n, m in model.named_modules() if isinstance(m, DropBlock2d)]
    assert all(n.startswith(("layer3.", "layer4.")) for n in places)
    # three in every block, plus one after the shortcut BN of each block group's first block
    assert len(places) == 3 * (5 + 1 + 1 + 3) + 4
    assert {model.get_submodule(n).gamma_scale for n in places if n.startswith("layer3")} == {0.25}
    assert {model.get_submodule(n).gamma_scale for n in places if n.startswith("layer4")} == {1.0}
    assert not any("little_e" in n for n in places)
    assert set_drop_block_keep_prob(model, 0.95) == len(places)
    assert [model.get_submodule(n).drop_prob for n in places] == pytest.approx([0.05] * len(places))


def test_zero_init_last():
    model = _small("assemble_resnet50")
    assert all(not b.bn3.weight.any() for b in model.modules() if hasattr(b, "bn3"))
    model = _small("assemble_resnet50", zero_init_last=False)
    assert all(b.bn3.weight.all() for b in model.modules() if hasattr(b, "bn3"))


def test_stochastic_depth():
    model = _small("assemble_resnet50", drop_path_rate=0.2).train()
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.2)
