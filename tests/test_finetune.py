"""Fine-tuning: from converted official weights, export round trip, labels, linear probing, lr groups, the demo."""

from __future__ import annotations

import json

import huggingface_hub.constants as hf_constants
import pytest
import timm
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from training_helpers import R50_W8, reset_accelerate, tiny_config, tiny_data

import timm_assemble  # noqa: F401
from timm_assemble.cli import main as cli_main
from timm_assemble.cli.train import parse_config
from timm_assemble.data.datasets import build_data_splits
from timm_assemble.data.synthetic import class_names, make_synthetic_image_folder
from timm_assemble.errors import TimmAssembleError
from timm_assemble.training import engine
from timm_assemble.training.best_model import export_best_model
from timm_assemble.training.config import resolve_config
from timm_assemble.training.model_setup import build_model

pytestmark = pytest.mark.usefixtures("fresh_accelerate")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The official TF fixture (width 8) through the `timm-assemble convert` command."""
    out = tmp_path_factory.mktemp("converted") / "r50_w8"
    assert (
        cli_main(
            ["convert", "--model", "assemble_resnet50", "--checkpoint", str(R50_W8 / "model.ckpt"), "--out", str(out)]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data") / "shapes")


def _backbone(state):
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


@pytest.mark.slow
def test_finetune_from_converted_official_weights(converted, data, tmp_path):
    cfg = tiny_config(
        data, tmp_path / "run", mode="finetune", pretrained=f"local-dir:{converted}", model_kwargs={}, epochs=2, lr=0.02
    )
    start = load_file(str(converted / "model.safetensors"))
    built = build_model(cfg, 4)
    assert built.pretrained and built.model.num_classes == 4 and built.model.fc.weight.shape == (4, 256)
    for k, v in _backbone(built.model.state_dict()).items():  # every backbone tensor came from the conversion
        torch.testing.assert_close(v, start[k], rtol=0, atol=0, msg=k)

    reset_accelerate()
    result = engine.run(cfg, command="accelerate launch finetune.py --pretrained local-dir:R50_W8")
    assert result.best_metric is not None and result.steps == 12
    out = result.export_dir
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "assemble_resnet50" and config["num_classes"] == 4
    assert config["label_names"] == class_names(4) and config["model_args"]["width"] == 8
    card = (out / "README.md").read_text()
    best = next(r for r in result.metrics if r["epoch"] == result.best_epoch)
    assert f"{round(best['top1'], 2):g}" in card and "accelerate launch finetune.py" in card and "Fine-tuned" in card

    # the export loads back with timm and predicts exactly as the best checkpoint's in-memory model
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    in_memory = timm.create_model("assemble_resnet50", width=8, num_classes=4)
    in_memory.load_state_dict(load_file(str(result.output_dir / "checkpoints/best/model.safetensors")))
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(loaded(x), in_memory.eval()(x), rtol=0, atol=0)
    assert loaded.pretrained_cfg["label_names"] == class_names(4)
    assert (result.output_dir / "confusion_matrix.png").is_file()


def test_export_round_trip_of_an_in_memory_model(tmp_path):
    cfg = resolve_config("finetune", dict(data_dir=str(tmp_path), pretrained="none", description="round trip"))
    model = timm.create_model("assemble_resnet50", width=8, num_classes=3).eval()
    row = dict(epoch=1, top1=50.0, top5=100.0, val_images=6)
    names = ["a", "b", "c"]
    export_best_model(
        model,
        tmp_path / "m",
        cfg=cfg,
        arch_kwargs={"width": 8},
        label_names=names,
        data_cfg=dict(input_size=(3, 32, 32), crop_pct=1.0),
        row=row,
        command="finetune.py x",
        weights_source="none",
        pretrained=False,
    )
    loaded = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.pretrained_cfg["label_names"] == names and tuple(loaded.pretrained_cfg["input_size"]) == (3, 32, 32)


@pytest.mark.slow
def test_freeze_backbone_trains_only_the_head(converted, data, tmp_path):
    cfg = tiny_config(
        data,
        tmp_path / "probe",
        mode="finetune",
        pretrained=f"local-dir:{converted}",
        model_kwargs={},
        epochs=1,
        freeze_backbone=True,
        lr=0.1,
    )
    set_seed(cfg.seed)
    head_init = build_model(cfg, 4).model.fc.weight.detach().clone()
    reset_accelerate()
    result = engine.run(cfg, command="pytest")
    exported = load_file(str(result.export_dir / "model.safetensors"))
    start = load_file(str(converted / "model.safetensors"))
    backbone = _backbone(exported)
    assert backbone and set(backbone) <= set(start)
    for k, v in backbone.items():  # weights and BN running statistics alike
        torch.testing.assert_close(v, start[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(exported["fc.weight"], head_init)


def test_lr_groups_backbone_scale_and_no_decay_on_bias_and_bn():
    model = timm.create_model("assemble_resnet50", width=8, num_classes=3)
    cfg = resolve_config("finetune", dict(pretrained="none", backbone_lr_scale=0.1, weight_decay=0.01))
    opt = engine.build_optimizer(cfg, model, lr=1.0)
    head = {id(p) for p in model.fc.parameters()}
    for group in opt.param_groups:
        is_head = {id(p) in head for p in group["params"]}
        assert len(is_head) == 1
        assert group["lr_scale"] == (1.0 if is_head.pop() else 0.1)
        assert all(p.ndim > 1 for p in group["params"]) == (group["weight_decay"] == 0.01)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    layered = engine.build_optimizer(resolve_config("finetune", dict(pretrained="none", layer_decay=0.7)), model, 1.0)
    scales = sorted({g["lr_scale"] for g in layered.param_groups})
    assert len(scales) > 4 and scales[-1] == 1.0 and scales[0] < 0.1


def test_val_split_is_seeded_and_stratified(tmp_path):
    root = make_synthetic_image_folder(tmp_path / "flat", num_classes=3, images_per_class=10, image_size=16, splits=())
    a = build_data_splits(root, val_fraction=0.2, seed=1)
    b = build_data_splits(root, val_fraction=0.2, seed=1)
    c = build_data_splits(root, val_fraction=0.2, seed=2)
    assert a.label_names == class_names(3)
    assert a.val_indices == b.val_indices != c.val_indices
    targets = [t for _, t in a.train.reader.samples]
    assert sorted(targets[i] for i in a.val_indices) == [0, 0, 1, 1, 2, 2]
    assert not set(a.val_indices) & set(a.train_indices) and len(a.train_indices) == 24
    with pytest.raises(TimmAssembleError, match="has no train/ folder.*--val-fraction"):
        build_data_splits(root)


def test_embedded_default_is_the_demo_and_falls_back_to_scratch(tmp_path, monkeypatch):
    cfg, _ = parse_config("finetune", [])
    assert cfg.preset == "demo" and cfg.synthetic and cfg.pretrained == "default" and cfg.pretrained_optional
    with_data, _ = parse_config("finetune", ["--data-dir", "x"])
    assert with_data.preset is None and with_data.pretrained == "default" and not with_data.pretrained_optional
    # no Hub, empty cache: the demo says so and trains its narrow model from scratch; a user's run fails loudly
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    built = build_model(cfg, 8)
    assert not built.pretrained and built.arch_kwargs == {"width": 16}
    assert "could not be loaded" in built.notes[0] and "FROM SCRATCH" in built.notes[0]
    with pytest.raises(TimmAssembleError, match="pretrained"):
        build_model(with_data, 8)


def test_single_folder_run_with_val_split(tmp_path):
    root = make_synthetic_image_folder(tmp_path / "flat", num_classes=2, images_per_class=8, image_size=32, splits=())
    cfg = tiny_config(root, tmp_path / "run", mode="finetune", epochs=1, batch_size=12, val_fraction=0.25)
    result = engine.run(cfg, command="pytest")
    assert result.metrics[0]["val_images"] == 4 and result.steps == 1
    assert json.loads((result.export_dir / "config.json").read_text())["label_names"] == class_names(2)
