"""Non-finite weights are named wherever weights come in (convert, the loader, --initial-checkpoint); a model
whose output is not finite is an error in predict, validate and robustness, never an exit 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from tf_bundle_writer import write_bundle
from training_helpers import R50_W8, reset_accelerate, tiny_config, tiny_data

import timm_assemble  # noqa: F401
from timm_assemble.cli import main
from timm_assemble.convert.tensor_bundle import TensorBundleReader
from timm_assemble.data.synthetic import make_synthetic_image_folder
from timm_assemble.errors import TimmAssembleError
from timm_assemble.evaluation.scoring import Scorer
from timm_assemble.loading import create_model, load_weights
from timm_assemble.training import engine
from timm_assemble.weights.hub_folder import export_hub_folder

BAD = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
STEM = "resnet_model/stage0/conv2d/kernel"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_synthetic_image_folder(
        tmp_path_factory.mktemp("img") / "d", num_classes=3, images_per_class=2, image_size=40, splits=()
    )


def _folder(root: Path, poison: str | None = None, overflow: bool = False) -> Path:
    """A 3-class test_resnet model folder; `poison` puts one NaN/inf into bn1; `overflow` gives a finite
    classifier whose output overflows to inf."""
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=3)
    with torch.no_grad():
        if poison:
            model.bn1.weight[5] = BAD[poison]
        if overflow:
            model.fc.weight.fill_(3e38)
            model.fc.bias.fill_(3e38)
    return export_hub_folder(model, root / f"model-{poison}-{overflow}")


# ---------------------------------------------------------------------------------------------- convert


def test_convert_names_the_tensors_that_are_not_finite(tmp_path, capsys):
    """Through the real converter: a bundle whose CRCs are valid, with NaN in one variable and -inf in another."""
    reader = TensorBundleReader(R50_W8 / "model.ckpt")
    tensors = {name: reader.read(name) for name in reader}
    tensors[STEM] = tensors[STEM].copy()
    tensors[STEM].reshape(-1)[:3] = float("nan")
    tensors["resnet_model/dense/bias"] = np.full_like(tensors["resnet_model/dense/bias"], float("-inf"))
    write_bundle(tmp_path / "model.ckpt", tensors)
    out = tmp_path / "out"
    assert main(["convert", "--model", "assemble_resnet50", "--checkpoint", str(tmp_path / "model.ckpt"),
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"in 2 tensor(s): {STEM} (3 NaN), resnet_model/dense/bias (1000 inf);" in err
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.slow
def test_nan_outside_the_converted_weights_is_not_an_error(tmp_path):
    """An optimizer slot and the dropped background row are never converted: NaN there is no reason to refuse."""
    reader = TensorBundleReader(R50_W8 / "model.ckpt")
    tensors = {name: reader.read(name) for name in reader}
    tensors["resnet_model/dense/kernel/Momentum"] = np.full((2, 2), np.nan, np.float32)
    tensors["resnet_model/dense/bias"] = tensors["resnet_model/dense/bias"].copy()
    tensors["resnet_model/dense/bias"][0] = np.nan  # the background class
    write_bundle(tmp_path / "model.ckpt", tensors)
    assert main(["convert", "--model", "assemble_resnet50", "--checkpoint", str(tmp_path / "model.ckpt"),
                 "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    assert torch.isfinite(create_model(f"local-dir:{tmp_path / 'out'}").fc.bias).all()


# ---------------------------------------------------------------------------------------------- the loader


@pytest.mark.parametrize("value", sorted(BAD))
def test_the_loader_names_the_tensors_that_are_not_finite(tmp_path, value):
    folder = _folder(tmp_path, poison=value)
    with pytest.raises(TimmAssembleError, match=r"weights of 'local-dir:.*' holds .* 1 tensor\(s\): bn1.weight"):
        create_model(f"local-dir:{folder}")
    for name, save in (("w.safetensors", lambda s, p: save_file(s, str(p))), ("w.pth", torch.save)):
        state = timm.create_model("test_resnet", num_classes=3).state_dict()
        state["fc.bias"] = torch.full_like(state["fc.bias"], BAD[value])
        save(state, tmp_path / name)
        with pytest.raises(TimmAssembleError, match=rf"weights file .*{name} holds .*: fc.bias \(3 "):
            load_weights(timm.create_model("test_resnet", num_classes=3), tmp_path / name)
        with pytest.raises(TimmAssembleError, match="fc.bias"):  # --checkpoint of validate/robustness/benchmark
            create_model("test_resnet", weights=str(tmp_path / name), num_classes=3)


@pytest.mark.slow
def test_initial_checkpoint_names_the_tensor_not_the_learning_rate(tmp_path):
    data = tiny_data(tmp_path / "data", classes=4, train=4, val=2)
    model = timm.create_model("assemble_resnet50", width=8, num_classes=4)
    state = model.state_dict()
    state["layer2.big.0.bn1.running_var"] = torch.full_like(state["layer2.big.0.bn1.running_var"], float("nan"))
    save_file(state, str(tmp_path / "nan.safetensors"))
    cfg = tiny_config(data, tmp_path / "run", mode="finetune", initial_checkpoint=str(tmp_path / "nan.safetensors"))
    reset_accelerate()
    with pytest.raises(TimmAssembleError) as info:
        engine.run(cfg)
    message = str(info.value)
    assert message.startswith(f"--initial-checkpoint {tmp_path / 'nan.safetensors'} holds values that are not finite")
    assert "layer2.big.0.bn1.running_var (" in message and "--lr" not in message and "training diverged" not in message
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------- outputs


def test_a_model_with_non_finite_output_is_an_error_in_every_command(tmp_path, images, capsys):
    """Finite weights whose output overflows to inf (and NaN weights, refused at load): exit 2, never 0."""
    overflowing, poisoned = _folder(tmp_path, overflow=True), _folder(tmp_path, poison="nan")
    image = str(sorted(images.rglob("*.png"))[0])
    commands = {
        "predict": ["predict", image],
        "validate": ["validate", "--data-dir", str(images), "--workers", "0"],
        "robustness": ["robustness", "--data-dir", str(images), "--workers", "0", "--corruptions", "fog",
                       "--severities", "1"],
    }  # fmt: skip
    for name, args in commands.items():
        assert main([args[0], "--model", f"local-dir:{overflowing}", *args[1:]]) == 2, name
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if ": error: " in line]  # robustness also names its set
        assert len(errors) == 1 and "the model's output is not finite (NaN or inf)" in errors[0], (name, err)
        assert err.endswith(errors[0] + "\n"), (name, err)
        assert (f"(first: {image})" in err) == (name == "predict")  # predict names the image
        assert main([args[0], "--model", f"local-dir:{poisoned}", *args[1:]]) == 2, name
        assert "holds values that are not finite (NaN or inf) in 1 tensor(s): bn1.weight (1 NaN)" in (
            capsys.readouterr().err
        )


def test_the_scorer_refuses_non_finite_logits():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    torch.nn.init.constant_(model[1].bias, float("nan"))
    scorer = Scorer(model, {"mean": (0.5,) * 3, "std": (0.5,) * 3}, torch.device("cpu"))
    with pytest.raises(TimmAssembleError, match="output is not finite .* for 6 of 6 images"):
        scorer.update(torch.zeros(6, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 2, 0, 1, 2]))
