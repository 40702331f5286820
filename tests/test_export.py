"""The hub-folder writer shared by convert, train and finetune."""

import json
import os
import stat

import pytest
import timm
import torch

import timm_assemble  # noqa: F401
from timm_assemble.errors import TimmAssembleError
from timm_assemble.weights.hub_folder import export_hub_folder


@pytest.fixture(scope="module")
def model():
    return timm.create_model("assemble_resnet50", width=8, num_classes=3).eval()


def test_export_loads_back_with_local_dir(tmp_path, model):
    folder = export_hub_folder(
        model.to(memory_format=torch.channels_last), tmp_path / "m", model_args=dict(width=8), label_names=list("abc")
    )
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "assemble_resnet50" and config["label_names"] == ["a", "b", "c"]
    assert config["model_args"]["width"] == 8
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((folder / "model.safetensors").stat().st_mode) == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left behind"


def test_existing_folder_is_kept_without_overwrite(tmp_path, model):
    folder = export_hub_folder(model, tmp_path / "m", model_card="first")
    with pytest.raises(TimmAssembleError, match="already exists"):
        export_hub_folder(model, folder, model_card="second")
    assert (folder / "README.md").read_text() == "first"
    export_hub_folder(model, folder, model_card="second", overwrite=True)
    assert (folder / "README.md").read_text() == "second"


def test_failed_export_leaves_the_old_folder(tmp_path, model, monkeypatch):
    folder = export_hub_folder(model, tmp_path / "m", model_card="first")

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("timm_assemble.weights.hub_folder.save_for_hf", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_hub_folder(model, folder, model_card="second", overwrite=True)
    assert (folder / "README.md").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_label_count_must_match(tmp_path, model):
    with pytest.raises(TimmAssembleError, match="2 label names given for a model with 3 classes"):
        export_hub_folder(model, tmp_path / "m", label_names=["a", "b"])
