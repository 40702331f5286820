"""Outputs against inputs: every command declares what it reads, and the one writer (fileio) refuses to replace any
of it (same path, symlink, hard link, inside an input folder, a folder holding an input) or to write into a folder
timm's train.py owns. The issue's examples, each through its command."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from training_helpers import tiny_model_folder

from timm_assemble import create_model
from timm_assemble.cli import main
from timm_assemble.data import make_synthetic_image_folder
from timm_assemble.errors import TimmAssembleError
from timm_assemble.fileio import (
    atomic_dir,
    atomic_write,
    check_output,
    outside_timm_run,
    reading,
    sha256_file,
    timm_run_folder,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_image_folder(
        tmp_path_factory.mktemp("outputs") / "DATA", num_classes=2, images_per_class=2, image_size=32, splits=()
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("outputs") / "M", num_classes=2)


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(argv: list[str], capsys, expected: str) -> None:
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]  # (a progress bar may precede it)
    assert len(errors) == 1 and expected in errors[0], err


# ---------------------------------------------------------------------------------------------- the examples


def test_validate_json_onto_an_image_of_its_data_is_refused(data, model_dir, capsys):
    before = _hashes(data)
    image = next(data.rglob("*.png"))
    argv = ["validate", "--model", f"local-dir:{model_dir}", "--data-dir", str(data), "--workers", "0"]
    _refused([*argv, "--json", str(image)], capsys, f"it is inside the input folder --data-dir {data}")
    assert _hashes(data) == before


def test_no_output_replaces_a_cached_model_that_the_cache_fills_itself(data, model_dir, tmp_path, monkeypatch, capsys):
    """The entries of ours ($TIMM_ASSEMBLE_CACHE) and of the Hub's cache are inputs of every command; only the
    cache's own code (`owning`) writes into ours. The roots are not: a cache set to the working folder still
    takes outputs beside its entries."""
    import huggingface_hub.constants as hf_constants

    from timm_assemble.fileio import atomic_write, owning, reading

    ours, hub = tmp_path / "ours", tmp_path / "hub"
    for entry in (ours / "assemble_resnet50.clova_in1k-w8", hub / "models--org--name"):
        entry.mkdir(parents=True)
    monkeypatch.setenv("TIMM_ASSEMBLE_CACHE", str(ours))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub))
    argv = ["validate", "--model", f"local-dir:{model_dir}", "--data-dir", str(data), "--workers", "0"]
    for target, how in ((ours / "assemble_resnet50.clova_in1k-w8" / "model.safetensors", "the weights cache"),
                        (hub / "models--org--name" / "r.json", "the Hub cache")):  # fmt: skip
        _refused([*argv, "--json", str(target)], capsys, f"it is inside the input folder {how}")
        assert not target.exists()
    assert main([*argv, "--json", str(ours / "beside-the-entries.json")]) == 0  # the root itself is no input
    entry = ours / "assemble_resnet50.clova_in1k-w8"
    with reading((entry, "the weights cache")):
        with owning(ours):
            atomic_write(entry / "provenance.json", "{}")
        with pytest.raises(TimmAssembleError, match="inside the input folder the weights cache"):
            atomic_write(entry / "other.json", "{}")
    assert (entry / "provenance.json").is_file() and not (entry / "other.json").exists()


def test_robustness_json_onto_an_evaluated_image_is_refused(data, model_dir, capsys):
    before = _hashes(data)
    image = next(data.rglob("*.png"))
    argv = ["robustness", "--model", f"local-dir:{model_dir}", "--data-dir", str(data), "--corruptions", "contrast"]
    _refused([*argv, "--json", str(image)], capsys, "it is inside the input folder --data-dir")
    assert _hashes(data) == before


def test_export_onto_the_models_own_weights_is_refused_even_with_overwrite(model_dir, tmp_path, capsys):
    before = _hashes(model_dir)
    out = model_dir / "model.safetensors"
    argv = ["export", f"local-dir:{model_dir}", "--format", "torchscript", "--overwrite", "--img-size", "32"]
    _refused([*argv, "--out", str(out)], capsys, f"it is inside the input folder --model {model_dir}")
    (tmp_path / "link").symlink_to(model_dir)  # the model named through a symlink to its folder
    argv[1] = f"local-dir:{tmp_path / 'link'}"
    _refused([*argv, "--out", str(out)], capsys, "it is inside the input folder --model")
    assert _hashes(model_dir) == before


@pytest.mark.slow  # 8 s: one tiny epoch
def test_train_with_a_timm_args_yaml_never_writes_into_timms_run_folder(tmp_path, caplog):
    """timm's args.yaml names its own run folder (output/experiment): we write beside it, as timm's
    get_outdir(inc=True) numbers a taken folder, and leave every file of timm's run as it was."""
    from training_helpers import reset_accelerate, tiny_data

    data = tiny_data(tmp_path / "data", classes=2, train=8, val=4)
    run = tmp_path / "out_timm" / "exp"
    run.mkdir(parents=True)
    fixture = Path(__file__).parent / "fixtures" / "timm_args" / "args.yaml"
    text = fixture.read_text().replace("data_dir: data10", f"data_dir: {data}")
    text = text.replace("output: out_timm", f"output: {run.parent}").replace(
        "experiment: assemble_resnet50-fix", "experiment: exp"
    )
    (run / "args.yaml").write_text(text.replace("val_split: validation", "val_split: val"))
    (run / "summary.csv").write_text("epoch,train_loss\n0,6.9\n")
    (run / "checkpoint-0.pth.tar").write_bytes(b"timm's checkpoint")
    before = _hashes(run)
    reset_accelerate()
    argv = ["train", "-c", str(run / "args.yaml"), "--epochs", "1", "--img-size", "32", "--batch-size", "4"]
    assert main([*argv, "--workers", "0", "--no-amp"]) == 0
    assert _hashes(run) == before
    assert (tmp_path / "out_timm" / "exp-1" / "summary.csv").is_file()
    assert f"{run} is a timm train.py run folder (timm owns it): this run writes to {run}-1" in caplog.text



def test_a_study_or_run_folder_inside_the_data_is_refused_before_anything_is_made(data, tmp_path, capsys):
    before = sorted(p.name for p in data.iterdir())
    study = ["study", "--data-dir", str(data), "--output-dir", str(data / "study"), "--rungs", "e0"]
    _refused([*study, "--epochs", "1"], capsys, f"it is inside the input folder --data-dir {data}")
    train = ["train", "--data-dir", str(data), "--output-dir", str(data / "run"), "--workers", "0"]
    _refused(train, capsys, f"it is inside the input folder --data-dir {data}")
    assert sorted(p.name for p in data.iterdir()) == before  # no folder made either



def test_overwrite_never_deletes_the_initial_checkpoint_it_starts_from(data, model_dir, tmp_path, capsys):
    """`--overwrite` drops the old run's checkpoints: not when the new run's --initial-checkpoint is one of them."""
    from training_helpers import reset_accelerate

    run = tmp_path / "run"
    start = run / "checkpoints" / "best" / "model.safetensors"
    start.parent.mkdir(parents=True)
    shutil.copy(model_dir / "model.safetensors", start)
    (run / "metrics.jsonl").write_text('{"epoch": 0}\n')
    reset_accelerate()
    argv = ["train", "--model", "test_resnet", "--initial-checkpoint", str(start), "--data-dir", str(data)]
    argv += ["--output-dir", str(run), "--overwrite", "--img-size", "32", "--batch-size", "2", "--workers", "0"]
    argv += ["--val-fraction", "0.5"]
    _refused(argv, capsys, f"it holds the input --initial-checkpoint {start}")
    assert start.read_bytes() == (model_dir / "model.safetensors").read_bytes()
    assert (run / "metrics.jsonl").read_text() == '{"epoch": 0}\n'


# ---------------------------------------------------------------------------------------------- the mechanism


def test_every_path_to_an_input_is_refused_and_others_pass(tmp_path):
    data, weights = tmp_path / "data", tmp_path / "w.safetensors"
    (data / "a").mkdir(parents=True)
    (data / "a" / "0.png").write_bytes(b"png")
    weights.write_bytes(b"weights")
    os.link(weights, tmp_path / "hard")
    (tmp_path / "via").symlink_to(data)
    with reading((data, "--data-dir"), (weights, "--checkpoint"), (None, "--unused")):
        for target in (weights, tmp_path / "hard", data / "a" / "0.png", data / "new.json", tmp_path / "via" / "x"):
            with pytest.raises(TimmAssembleError, match="an output never replaces what the command reads"):
                atomic_write(target, "{}")
        for folder in (tmp_path, data, data / "a"):
            with pytest.raises(TimmAssembleError, match="the input"), atomic_dir(folder, overwrite=True):
                pass
        atomic_write(tmp_path / "result.json", "{}")  # beside the inputs: fine
        with atomic_dir(tmp_path / "out") as staging:
            (staging / "f").write_text("x")
    assert weights.read_bytes() == b"weights" and (data / "a" / "0.png").read_bytes() == b"png"
    atomic_write(weights, "replaced")  # the declaration ends with its block
    assert weights.read_text() == "replaced"


def test_nothing_is_written_into_a_timm_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "args.yaml").write_text("model: resnet50\n")
    assert timm_run_folder(run) is None and outside_timm_run(run) == run  # args.yaml alone: not yet timm's run
    (run / "model_best.pth.tar").write_bytes(b"x")
    assert timm_run_folder(run / "sub" / "x.json") == run
    for target in (run / "summary.csv", run / "sub" / "x.json"):
        with pytest.raises(TimmAssembleError, match="timm train.py run folder"):
            check_output(target, "--json")
    assert outside_timm_run(run) == Path(f"{run}-1")
    Path(f"{run}-1").mkdir()
    (Path(f"{run}-1") / "summary.csv").write_text("ours")  # our run folder (no args.yaml): resumed, not skipped
    assert outside_timm_run(run) == Path(f"{run}-1")


# ---------------------------------------------------------------------------------------------- the size budget


def test_train_img_size_100000_is_one_line_before_any_allocation(tmp_path, capsys):
    argv = ["train", "--synthetic", "--output-dir", str(tmp_path / "run"), "--workers", "0"]
    _refused([*argv, "--img-size", "100000"], capsys, "--img-size 100000: out of range [0, 65536]")
    _refused([*argv, "--img-size", "30000"], capsys, "more than this machine's")  # in range, past the memory
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["validate", "--data-dir", "DATA", "--model", "MODEL"],
        ["robustness", "--data-dir", "DATA", "--model", "MODEL", "--corruptions", "contrast"],
        ["export", "MODEL", "--out", "OUT", "--format", "torchscript"],
        ["benchmark", "--models", "test_resnet", "--batch-size", "64"],
        ["predict", "--model", "MODEL", "IMAGE"],
    ],
)
def test_every_batch_is_in_the_budget_before_it_is_made(data, model_dir, tmp_path, capsys, command):
    """The evaluation batch (validate, robustness, predict), the parity batch (export) and the timing batch
    (benchmark)."""
    image = str(min(data.rglob("*.png")))
    swap = {"DATA": str(data), "MODEL": f"local-dir:{model_dir}", "OUT": str(tmp_path / "m.pt"), "IMAGE": image}
    argv = [swap.get(a, a) for a in command]
    _refused([*argv, "--img-size", "60000"], capsys, "--img-size 60000")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "change, expected",
    [
        (dict(num_classes=10**9), "num_classes 1000000000 ("),
        (dict(architecture="assemble_resnet50", model_args=dict(width=10**6)), "width 1000000 (model_args of"),
        (dict(architecture="assemble_resnet50", model_args=dict(width=10**4)), "width 10000 (model_args of"),
        (dict(num_classes=1e9), "num_classes must be a whole number of classes, got 1000000000.0"),
        (dict(num_classes="2"), "num_classes must be a whole number of classes, got '2'"),
        (dict(num_classes=None), "num_classes must be a whole number of classes, got None"),
        (dict(num_classes=True), "num_classes must be a whole number of classes, got True"),
    ],
)
def test_a_model_folder_claiming_a_huge_shape_is_one_line(model_dir, tmp_path, change, expected):
    folder = tmp_path / "M"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(TimmAssembleError, match=re.escape(expected)):
        create_model(f"local-dir:{folder}")


# ---------------------------------------------------------------------------------------------- what is printed


def test_json_dash_puts_only_the_json_on_stdout(data, model_dir, capsys):
    argv = ["validate", "--model", f"local-dir:{model_dir}", "--data-dir", str(data), "--workers", "0"]
    assert main([*argv, "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["num_images"] == 4 and "top-1" in err


def test_control_characters_of_label_names_are_escaped(data, model_dir, tmp_path, capsys):
    folder = tmp_path / "M"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "label_names": ["\x1b]0;owned\x07\x1b[31mred", "ok"]}))
    assert main(["predict", "--model", f"local-dir:{folder}", str(next(data.rglob("*.png")))]) == 0
    out = capsys.readouterr().out
    assert "\\x1b]0;owned\\x07\\x1b[31mred" in out and "\x1b" not in out and "\x07" not in out


@pytest.mark.parametrize("name", ["args.yaml", "config.toml"])
def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys, name):
    (tmp_path / name).write_bytes(b"model: \xff\xfe\n" if name.endswith("yaml") else b'lr = "\xff"\n')
    _refused(["train", "-c", str(tmp_path / name), "--print-config"], capsys, "not UTF-8 text")


def test_a_non_finite_or_out_of_range_mean_is_refused_when_parsed(tmp_path, capsys):
    _refused(["train", "--mean", "nan", "0.5", "0.5", "--print-config"], capsys, "--mean: must be in [0, 1], got nan")
    _refused(["train", "--mean", "0.5", "inf", "0.5", "--print-config"], capsys, "--mean: must be in [0, 1], got inf")
    (tmp_path / "c.toml").write_text("mean = [nan, 0.5, 0.5]\n")
    _refused(["train", "-c", str(tmp_path / "c.toml"), "--print-config"], capsys, "mean must be in [0, 1], got nan")


def test_an_output_path_through_a_symlink_loop_is_one_line(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for write in (lambda p: atomic_write(p, "{}"), lambda p: atomic_dir(p).__enter__()):
        with pytest.raises(TimmAssembleError, match="goes round a loop of symlinks"):
            write(tmp_path / "loop" / "x.json")
