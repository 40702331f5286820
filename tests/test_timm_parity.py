"""timm's flags, errors and checkpoints: what a timm user types and catches works the same here.

The flags of timm's train.py, validate.py, inference.py and benchmark.py come from `fixtures/timm_flags.json`
(read from a timm checkout by `regen_timm_flags.py`); the README's "What differs" list names the deliberate
exceptions, and the test holds the two to each other.
"""

import argparse
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_dataset, create_loader, resolve_data_config
from timm.utils import CheckpointSaver, ModelEmaV3, accuracy

from timm_assemble import cli


def _image_folder(root, classes=4, per_class=5, size=40):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8) // (c + 1)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def _timm_train_checkpoint(folder, num_classes=4):
    """What timm's train.py saves (its own CheckpointSaver): state_dict, state_dict_ema, optimizer, args..."""
    folder.mkdir()
    torch.manual_seed(0)
    model = timm.create_model("assemble_resnet50", width=8, num_classes=num_classes)
    ema = ModelEmaV3(model)
    torch.manual_seed(1)
    for p in ema.module.parameters():  # the EMA weights differ from the live ones, as after training
        p.data.add_(torch.randn_like(p) * 0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    args = argparse.Namespace(model="assemble_resnet50", model_kwargs={"width": 8}, num_classes=num_classes)
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=ema, checkpoint_dir=str(folder))
    saver.save_checkpoint(epoch=0, metric=1.0)
    return folder / "last.pth.tar"


def _timm_validate(checkpoint, data_dir, use_ema, batch_size=32, input_size=(3, 64, 64)):
    """What timm's validate.py computes, through timm's library API: create_model with the checkpoint,
    resolve_data_config, create_dataset + create_loader, accuracy (top-1/top-5) and cross-entropy."""
    model = timm.create_model("assemble_resnet50", width=8, num_classes=4)
    timm.models.load_checkpoint(model, str(checkpoint), use_ema=use_ema)
    model.eval()
    config = resolve_data_config(dict(input_size=input_size), model=model, use_test_size=True)
    dataset = create_dataset("", root=str(data_dir), split="validation")
    loader = create_loader(
        dataset, input_size=config["input_size"], batch_size=batch_size, use_prefetcher=False,
        interpolation=config["interpolation"], mean=config["mean"], std=config["std"], num_workers=0,
        crop_pct=config["crop_pct"], crop_mode=config["crop_mode"], device=torch.device("cpu"),
    )  # fmt: skip
    top1 = loss = n = 0.0
    with torch.inference_mode():
        for images, targets in loader:
            output = model(images)
            top1 += accuracy(output, targets, topk=(1,))[0].item() * images.shape[0]
            loss += torch.nn.functional.cross_entropy(output, targets, reduction="sum").item()
            n += images.shape[0]
    return top1 / n, loss / n


@pytest.mark.slow
def test_validate_scores_a_timm_train_checkpoint_as_timm_validate_does(tmp_path, capsys):
    data_dir = _image_folder(tmp_path / "data")
    checkpoint = _timm_train_checkpoint(tmp_path / "run")
    argv = ["validate", "--model", "assemble_resnet50", "--model-kwargs", "width=8", "--checkpoint", str(checkpoint),
            "--num-classes", "4", "-b", "32", "-j", "0", "--data-dir", str(data_dir), "--device", "cpu",
            "--input-size", "3", "64", "64", "--use-ema", "--json", str(tmp_path / "result.json")]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    ours = json.loads((tmp_path / "result.json").read_text())
    top1, loss = _timm_validate(checkpoint, data_dir, use_ema=True)
    _, live_loss = _timm_validate(checkpoint, data_dir, use_ema=False)
    assert ours["num_images"] == 20
    assert ours["top1"] == pytest.approx(top1, abs=1e-3)
    assert ours["loss"] == pytest.approx(loss, rel=1e-3)
    assert abs(live_loss - loss) > 1e-2  # the EMA and live weights are told apart: --use-ema chose


def test_the_offline_pretrained_error_is_the_oserror_timm_users_catch(offline_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("TIMM_ASSEMBLE_CACHE", str(tmp_path / "cache"))
    try:
        timm.create_model("assemble_resnet50", pretrained=True)
    except OSError as err:
        caught = err
    assert "pretrained weights for assemble_resnet50" in str(caught) and "\n" not in str(caught)


def test_errors_are_the_builtins_timm_raises():
    from timm_assemble.errors import TimmAssembleError, UnknownModelError
    from timm_assemble.evaluation.options import eval_options
    from timm_assemble.loading import create_model

    with pytest.raises(RuntimeError, match="unknown model 'assemble_resnet5'"):  # timm: RuntimeError Unknown model
        create_model("assemble_resnet5")
    with pytest.raises(ValueError, match="--batch-size must be >= 1"):  # bad settings: timm's ValueError
        eval_options("assemble_resnet50", batch_size=0)
    assert issubclass(UnknownModelError, TimmAssembleError)
