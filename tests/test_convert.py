"""Official TF checkpoint -> timm: equality with the official outputs, loading paths, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file
from tf_bundle_writer import write_bundle

import timm_assemble  # noqa: F401  (registers the models)
from timm_assemble import cli
from timm_assemble.convert import convert_checkpoint, mapping
from timm_assemble.convert.tensor_bundle import TensorBundleReader
from timm_assemble.errors import TimmAssembleError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "clova_tf"
MODELS = ("assemble_resnet50", "assemble_resnet152")
STAGES = ("stem", "stage1", "stage2", "stage3", "stage4")
TOLERANCE = 1e-4


def _prefix(model: str) -> Path:
    return FIXTURES / f"{model}_w8" / "model.ckpt"


def _reference(model: str, name: str) -> torch.Tensor:
    value = torch.from_numpy(np.load(FIXTURES / f"{model}_w8" / f"{name}.npy"))
    return value.permute(0, 3, 1, 2) if value.ndim == 4 else value  # NHWC -> NCHW


def _rel_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """Max abs difference relative to the reference's largest magnitude."""
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float((ours - reference).abs().max() / reference.abs().max())


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("converted")
    return {model: convert_checkpoint(model, _prefix(model), root / model).out_dir for model in MODELS}


def main(argv: list[str]) -> int:
    """The real `timm-assemble` entry point."""
    return cli.main(argv)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "model_name", ["assemble_resnet50", pytest.param("assemble_resnet152", marks=pytest.mark.slow)]
)
def test_matches_official_outputs(converted, model_name):
    model = timm.create_model(f"local-dir:{converted[model_name]}", pretrained=True).eval()
    x = _reference(model_name, "input")
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        pooled = model.forward_head(final, pre_logits=True)
        logits = model.forward_head(final)
    errors = {
        name: _rel_error(value, _reference(model_name, name)) for name, value in zip(STAGES, intermediates, strict=True)
    }
    errors["pooled"] = _rel_error(pooled, _reference(model_name, "pooled").flatten(1))
    errors["logits"] = _rel_error(logits, _reference(model_name, "logits")[:, 1:])
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.parametrize("model_name", MODELS)
def test_output_folder(converted, model_name):
    folder = converted[model_name]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == model_name and config["num_classes"] == 1000
    assert config["model_args"]["width"] == 8
    assert len(config["label_names"]) == 1000 and config["label_names"][0] == "n01440764"
    cfg = config["pretrained_cfg"]
    assert cfg["std"] == pytest.approx([1 / 255] * 3) and cfg["mean"][0] == pytest.approx(123.68 / 255)
    card = (folder / "README.md").read_text()
    assert "model.ckpt.data-00000-of-00001" in card and f"--model {model_name}" in card
    reader = TensorBundleReader(_prefix(model_name))
    assert str(len(reader)) + " model variables" in card
    # Loading through the file overlay gives the same weights as local-dir.
    overlay = timm.create_model(
        model_name, width=8, pretrained=True, pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors"))
    )
    saved = load_file(folder / "model.safetensors")
    for key, value in overlay.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # Spot-check layouts against the checkpoint directly.
    np.testing.assert_array_equal(
        saved["conv1.weight"].numpy(), reader.read("resnet_model/stage0/conv2d/kernel").transpose(3, 2, 0, 1)
    )
    np.testing.assert_array_equal(saved["fc.weight"].numpy(), reader.read("resnet_model/dense/kernel").T[1:])


def test_keep_background(tmp_path):
    out = convert_checkpoint("assemble_resnet50", _prefix("assemble_resnet50"), tmp_path / "bg", keep_background=True)
    config = json.loads((out.out_dir / "config.json").read_text())
    assert config["num_classes"] == 1001 and config["label_names"][:2] == ["background", "n01440764"]
    model = timm.create_model(f"local-dir:{out.out_dir}", pretrained=True).eval()
    with torch.no_grad():
        logits = model.forward_head(_reference("assemble_resnet50", "pooled"))  # head only: pooled -> 1001
    assert _rel_error(logits, _reference("assemble_resnet50", "logits")) <= TOLERANCE


def _swap_sk_halves(target, value, drop_background):
    """A plausible bug: U1 and U2 (the SK conv's two output halves) exchanged, conv and BN alike."""
    value = mapping_transform(target, value, drop_background)
    if ".conv2.conv." in target.key or ".conv2.bn." in target.key:
        half = value.shape[0] // 2
        value = np.concatenate([value[half:], value[:half]])
    return value


def _kernel_hw_transposed(target, value, drop_background):
    """A plausible bug: HWIO -> OIWH instead of OIHW."""
    value = mapping_transform(target, value, drop_background)
    return np.ascontiguousarray(value.transpose(0, 1, 3, 2)) if target.kind == "conv" else value


mapping_transform = mapping.transform


@pytest.mark.slow
@pytest.mark.parametrize("wrong", [_swap_sk_halves, _kernel_hw_transposed], ids=["sk_halves", "kernel_hw"])
def test_wrong_mapping_is_caught(tmp_path, monkeypatch, wrong):
    import timm_assemble.convert as convert_module

    monkeypatch.setattr(convert_module, "transform", wrong)
    out = convert_checkpoint("assemble_resnet50", _prefix("assemble_resnet50"), tmp_path / "wrong").out_dir
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    with torch.no_grad():
        stem, stage1 = model.forward_intermediates(
            _reference("assemble_resnet50", "input"), indices=[0, 1], stop_early=True, intermediates_only=True
        )
    first_bad = _rel_error(stem, _reference("assemble_resnet50", "stem"))
    if wrong is _swap_sk_halves:  # the stem has no SK conv: it still matches, stage 1 does not
        assert first_bad <= TOLERANCE
        first_bad = _rel_error(stage1, _reference("assemble_resnet50", "stage1"))
    assert first_bad > 100 * TOLERANCE


def _fixture_tensors(model: str) -> dict[str, np.ndarray]:
    reader = TensorBundleReader(_prefix(model))
    return {name: reader.read(name) for name in reader}


@pytest.mark.slow
def test_non_model_variables_ignored(tmp_path, capsys):
    tensors = _fixture_tensors("assemble_resnet50")
    extra = {"global_step": np.array(250000, dtype=np.int64)}
    extra.update({f"{name}/Momentum": np.zeros_like(value) for name, value in list(tensors.items())[:3]})
    write_bundle(tmp_path / "ckpt", {**tensors, **extra}, num_shards=2)
    assert main(_args("assemble_resnet50", tmp_path / "ckpt", tmp_path / "out", "--verbose")) == 0
    stdout = capsys.readouterr().out
    assert "ignored 4 non-model variables" in stdout and all(name in stdout for name in extra)
    saved = load_file(tmp_path / "out" / "model.safetensors")
    np.testing.assert_array_equal(saved["fc.bias"].numpy(), tensors["resnet_model/dense/bias"][1:])


def _args(model: str, prefix: str | Path, out: Path, *extra: str) -> list[str]:
    return ["convert", "--model", model, "--checkpoint", str(prefix), "--out", str(out), *extra]


def _cli_error(capsys, model: str, prefix: str | Path, out: Path) -> str:
    assert main(_args(model, prefix, out)) == 2
    return capsys.readouterr().err


def test_other_model(tmp_path, capsys):
    err = _cli_error(capsys, "assemble_resnet152", _prefix("assemble_resnet50"), tmp_path / "out")
    assert "does not match assemble_resnet152: it looks like an assemble_resnet50 checkpoint" in err
    assert "resnet_model/stage1/big1/sk_block_3/sk_fc_1/kernel" in err  # R152 has 4 big blocks in stage 1
    assert "shape mismatches" in err
    assert not (tmp_path / "out").exists()
    err = _cli_error(capsys, "assemble_resnet50", _prefix("assemble_resnet152"), tmp_path / "out")
    assert "looks like an assemble_resnet152 checkpoint" in err and "unexpected model variables" in err


def test_mismatches_reported_together(tmp_path):
    tensors = _fixture_tensors("assemble_resnet50")
    del tensors["resnet_model/stage2/merge2/sk_block/sk_fc_2/kernel"]
    tensors["resnet_model/stage4/se_block/fc/kernel"] = np.zeros((1, 1, 4, 4), np.float32)
    tensors["resnet_model/stage0/pool/conv2d_3/kernel"] = np.zeros((1, 1, 4, 9), np.float32)
    write_bundle(tmp_path / "ckpt", tensors)
    with pytest.raises(TimmAssembleError) as info:
        convert_checkpoint("assemble_resnet50", tmp_path / "ckpt", tmp_path / "out")
    msg = str(info.value)
    assert "1 model variables missing from the checkpoint:\n    resnet_model/stage2/merge2/sk_block/sk_fc_2" in msg
    assert "1 unexpected model variables in the checkpoint:\n    resnet_model/stage4/se_block/fc/kernel" in msg
    shape = "resnet_model/stage0/pool/conv2d_3/kernel: checkpoint [1, 1, 4, 9], assemble_resnet50 needs [1, 1, 4, 8]"
    assert shape in msg
    assert "looks like" not in msg


def _copy_fixture(tmp_path: Path) -> Path:
    for path in _prefix("assemble_resnet50").parent.glob("model.ckpt.*"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / "model.ckpt"


def test_truncated_data(tmp_path, capsys):
    prefix = _copy_fixture(tmp_path)
    data = Path(f"{prefix}.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    err = _cli_error(capsys, "assemble_resnet50", prefix, tmp_path / "o")
    assert f"checkpoint data shard {data} is truncated" in err and len(err.strip().splitlines()) == 1


def test_missing_index(tmp_path, capsys):
    prefix = _copy_fixture(tmp_path)
    Path(f"{prefix}.index").unlink()
    err = _cli_error(capsys, "assemble_resnet50", prefix, tmp_path / "o")
    assert f"checkpoint index {prefix}.index is missing" in err


def test_wrong_prefix(tmp_path, capsys):
    folder = _prefix("assemble_resnet50").parent
    err = _cli_error(capsys, "assemble_resnet50", folder, tmp_path / "o")
    assert "is a directory, not a checkpoint prefix" in err and str(folder / "model.ckpt") in err
    err = _cli_error(capsys, "assemble_resnet50", folder / "model.ckpt.index", tmp_path / "o")
    assert "without '.index'" in err


def test_unrelated_file(tmp_path, capsys):
    (tmp_path / "weights.index").write_bytes(np.random.default_rng(0).bytes(5000))
    err = _cli_error(capsys, "assemble_resnet50", tmp_path / "weights", tmp_path / "o")
    assert "not a TensorFlow checkpoint index" in err
    # A genuine TF checkpoint of something else.
    write_bundle(tmp_path / "other", {"dense/kernel": np.zeros((4, 2), np.float32)})
    with pytest.raises(TimmAssembleError, match="not an official Assemble-ResNet checkpoint"):
        convert_checkpoint("assemble_resnet50", tmp_path / "other", tmp_path / "o")


def test_output_folder_not_clobbered(tmp_path, converted):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(TimmAssembleError, match="already exists; pass --overwrite"):
        convert_checkpoint("assemble_resnet50", _prefix("assemble_resnet50"), out)
    assert (out / "keep.txt").read_text() == "mine"
    convert_checkpoint("assemble_resnet50", _prefix("assemble_resnet50"), out, overwrite=True)
    assert not (out / "keep.txt").exists()
    reference = converted["assemble_resnet50"] / "model.safetensors"
    assert (out / "model.safetensors").read_bytes() == reference.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging leftovers


@pytest.mark.slow
def test_background_needs_1001_classes(tmp_path):
    tensors = _fixture_tensors("assemble_resnet50")
    tensors["resnet_model/dense/kernel"] = tensors["resnet_model/dense/kernel"][:, 1:]
    tensors["resnet_model/dense/bias"] = tensors["resnet_model/dense/bias"][1:]
    write_bundle(tmp_path / "ckpt", tensors)
    with pytest.raises(TimmAssembleError, match="has 1000 classes, not the official 1001"):
        convert_checkpoint("assemble_resnet50", tmp_path / "ckpt", tmp_path / "out")
    report = convert_checkpoint("assemble_resnet50", tmp_path / "ckpt", tmp_path / "out", keep_background=True)
    assert report.num_classes == 1000
