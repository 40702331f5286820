"""`timm-assemble validate`: real accuracy of a saved model on generated data, synset mapping, clear errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import timm
import torch
from launch_testing import TWO_PROCESSES, finish
from PIL import Image
from timm.data import create_transform, resolve_data_config
from training_helpers import tiny_model_folder

from timm_assemble.cli import main
from timm_assemble.data import make_synthetic_image_folder
from timm_assemble.errors import TimmAssembleError
from timm_assemble.evaluation.data import imagenet_synsets, index_image_folder, limit_samples
from timm_assemble.evaluation.validate import validate


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_image_folder(
        tmp_path_factory.mktemp("val") / "data", num_classes=3, images_per_class=3, image_size=40, splits=()
    )


@pytest.fixture(scope="module")
def local_model(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("model") / "tiny", num_classes=3)


def _expected(model_dir: Path, data: Path) -> tuple[float, float]:
    """Independent reference: timm's own eval transform and the model, image by image."""
    model = timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=model, use_test_size=True), is_training=False)
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    hits = total = 0
    loss = 0.0
    with torch.no_grad():
        for label, cls in enumerate(classes):
            for path in sorted((data / cls).glob("*.png")):
                logits = model(transform(Image.open(path).convert("RGB"))[None])
                hits += int(logits.argmax(1).item() == label)
                loss += torch.nn.functional.cross_entropy(logits, torch.tensor([label])).item()
                total += 1
    return 100.0 * hits / total, loss / total


@pytest.mark.slow
def test_validate_cli_matches_a_direct_evaluation(data: Path, local_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "res.json"
    code = main(
        [
            "validate",
            "--model",
            f"local-dir:{local_model}",
            "--data-dir",
            str(data),
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # atomic write keeps normal permissions
    assert result["num_images"] == 9 and result["label_map"] == "folder-order"
    top1, loss = _expected(local_model, data)
    assert result["top1"] == pytest.approx(top1, abs=1e-3)
    assert result["loss"] == pytest.approx(loss, abs=1e-4)  # same preprocessing, image for image
    assert result["top1"] <= result["top5"] == 100.0  # 3 classes: top-5 always hits
    assert result["loss"] > 0
    assert "top-1" in capsys.readouterr().out


@pytest.mark.slow
def test_validate_on_two_processes_is_the_direct_evaluation(data: Path, local_model: Path, tmp_path: Path) -> None:
    """`accelerate launch` with two ranks (gloo on CPU): nine images split 5 + 4, counts summed, one report."""
    out = tmp_path / "two.json"
    args = ["-m", "timm_assemble", "validate", "--model", f"local-dir:{local_model}", "--data-dir", str(data)]
    text = finish([*args, "--batch-size", "4", "--workers", "0", "--json", str(out)], tmp_path / "two.log",
                  TWO_PROCESSES, ACCELERATE_USE_CPU="1")  # fmt: skip
    result = json.loads(out.read_text())
    top1, loss = _expected(local_model, data)
    assert result["num_images"] == 9 and result["processes"] == 2 and text.count(f"wrote {out}") == 1
    assert result["top1"] == pytest.approx(top1, abs=1e-3) and result["loss"] == pytest.approx(loss, abs=1e-4)


def test_limit_and_img_size(data: Path, local_model: Path) -> None:
    result = validate(f"local-dir:{local_model}", str(data), img_size=32, limit=4, workers=0)
    assert result["num_images"] == 4 and result["data_config"]["input_size"] == [3, 32, 32]
    assert limit_samples(list(range(10)), 3) == [0, 4, 9]  # evenly spaced: first and last class covered


def test_imagenet_synset_folders_map_to_imagenet_indices(tmp_path: Path) -> None:
    synsets = imagenet_synsets()
    assert len(synsets) == 1000 and synsets[0] == "n01440764"
    for idx in (7, 950):
        (tmp_path / synsets[idx]).mkdir()
        Image.new("RGB", (40, 40), (idx % 255, 0, 0)).save(tmp_path / synsets[idx] / "a.png")
    index = index_image_folder(tmp_path, 1000)
    assert index.label_map == "imagenet-synsets"
    assert sorted(t for _, t in index.samples) == [7, 950]
    result = validate("test_resnet", str(tmp_path), pretrained=False, workers=0)
    assert result["label_map"] == "imagenet-synsets" and result["num_images"] == 2


def test_bad_inputs_give_one_clear_error(data: Path, tmp_path: Path, capsys) -> None:
    assert main(["validate", "--model", "resnet_does_not_exist", "--data-dir", str(data)]) == 2
    assert "unknown model 'resnet_does_not_exist'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["validate", "--model", "test_resnet", "--no-pretrained", "--data-dir", str(empty)]) == 2
    assert "contains no images" in capsys.readouterr().err
    assert main(["validate", "--model", "test_resnet", "--no-pretrained", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(TimmAssembleError, match="has 3 class folders but the model predicts 1000"):
        validate("test_resnet", str(data), pretrained=False, workers=0)
    with pytest.raises(TimmAssembleError, match="no config.json"):
        validate(f"local-dir:{tmp_path}", str(data), workers=0)
    loose = tmp_path / "loose"
    shutil.copytree(data, loose)
    next(loose.glob("*/*.png")).rename(loose / "x.png")
    with pytest.raises(TimmAssembleError, match="per-class folders"):
        validate("test_resnet", str(loose), pretrained=False, num_classes=3, workers=0)


def test_a_root_of_splits_evaluates_one_split_and_says_which(local_model: Path, tmp_path: Path, capsys) -> None:
    """timm's validate.py `--data-dir ROOT --split NAME`: val/ by default (never train/ and val/ pooled)."""
    root = make_synthetic_image_folder(
        tmp_path / "root", num_classes=3, images_per_class={"train": 4, "val": 2}, image_size=40
    )
    model = f"local-dir:{local_model}"
    assert main(["validate", "--model", model, "--data-dir", str(root), "--workers", "0", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert f"split 'val' of {root}" in err
    result = json.loads(out)  # `--json -`: stdout is the JSON alone
    assert (result["split"], result["num_images"]) == ("val", 6)
    assert validate(model, str(root), split="train", workers=0)["num_images"] == 12
    shutil.rmtree(root / "val")
    with pytest.raises(TimmAssembleError, match="holds the splits train but no 'validation' split: pass --split"):
        validate(model, str(root), workers=0)


def test_num_classes_on_trained_weights_needs_reset_classifier(data: Path, local_model: Path) -> None:
    """A trained 3-class head is not silently replaced by a random one."""
    with pytest.raises(TimmAssembleError, match="trained for 3 classes.*--reset-classifier"):
        validate(f"local-dir:{local_model}", str(data), num_classes=4, workers=0)
    result = validate(f"local-dir:{local_model}", str(data), num_classes=3, workers=0)  # the trained size: fine
    assert result["num_classes"] == 3
