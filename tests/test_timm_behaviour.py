"""The plugin behaves like timm: importing it changes nothing in timm, and its models take timm's defaults."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import tomllib
import torch
import torch.nn as nn
from safetensors.torch import save_file
from training_helpers import TINY, tiny_data

from timm_assemble.cli import main as cli_main
from timm_assemble.cli.args import ArgumentParser, add_dataclass_arguments, from_args
from timm_assemble.cli.train import parse_config
from timm_assemble.cli.validate import ValidateOptions
from timm_assemble.errors import TimmAssembleError
from timm_assemble.evaluation.options import eval_options
from timm_assemble.training.config import resolve_config
from timm_assemble.training.engine import build_models, resolve_output_dir, run

TIMM_ARGS = Path(__file__).parent / "fixtures" / "timm_args" / "args.yaml"

_IMPORT_CHANGES = """
import inspect, json, os, socket, sys
import timm.models._builder, timm.models._factory, timm.models._hub
def connect(*args, **kwargs):
    raise OSError("network used during import")
socket.socket.connect = connect
modules = [timm.models._factory, timm.models._hub, timm.models._builder]
before = {(m.__name__, k): v for m in modules for k, v in vars(m).items() if callable(v)}
env = dict(os.environ)
import timm_assemble
after = {(m.__name__, k): v for m in modules for k, v in vars(m).items() if callable(v)}
changed = sorted(f"{m}.{k}" for (m, k), v in before.items() if after.get((m, k)) is not v)
heavy = ("timm_assemble.weights", "timm_assemble.training", "timm_assemble.cli", "gdown", "accelerate")
loaded = sorted(m for m in sys.modules if m.startswith(heavy))
print(json.dumps(dict(functions=len(before), changed=changed, env=env == dict(os.environ), loaded=loaded)))
"""


@pytest.mark.slow  # a fresh interpreter imports torch and timm
def test_import_registers_models_and_changes_nothing_in_timm():
    """Every function of timm's factory, hub and builder modules is the same object after the import; no network
    (sockets refuse), no environment change; none of our weights, training or CLI code, nor gdown or accelerate,
    is loaded (the models build without them)."""
    result = subprocess.run([sys.executable, "-c", _IMPORT_CHANGES], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["functions"] > 20
    assert report["changed"] == []
    assert report["env"]
    assert report["loaded"] == []


def test_plain_timm_local_dir_errors_are_timms(tmp_path):
    """A folder without config.json is timm's FileNotFoundError through timm.create_model (our clear error comes
    from timm_assemble's own loader, tested in test_hub.py)."""
    with pytest.raises(FileNotFoundError):
        timm.create_model(f"local-dir:{tmp_path}", pretrained=True)


def test_every_kwarg_of_timms_train_py_works():
    """The kwargs timm's train.py passes to create_model (None when unset, which timm drops) all reach the model
    (the defaults themselves: test_recipe.py)."""
    train_py = dict(
        in_chans=3, num_classes=None, drop_rate=0.2, drop_path_rate=0.1, drop_block_rate=0.1, global_pool=None,
        bn_momentum=0.01, bn_eps=1e-3, scriptable=None, checkpoint_path="",
    )  # fmt: skip
    model = timm.create_model("assemble_resnet50", width=8, **train_py)
    assert {(b.momentum, b.eps) for b in model.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)} == {
        (0.01, 1e-3)
    }
    assert model.drop_rate == 0.2
    assert any(type(m).__name__ == "DropBlock2d" for m in model.modules())
    assert any(type(m).__name__ == "DropPath" for m in model.modules())


def test_timm_train_py_spellings_mean_the_same(capsys):
    cfg, _ = parse_config("finetune", [
        "--data-dir", "d", "-b", "7", "-j", "1", "--smoothing", "0.2", "--drop", "0.1", "--drop-path", "0.05",
        "--drop-block", "0.1", "--amp", "--amp-dtype", "bfloat16", "--opt", "adamw", "--sched", "step",
        "--model-ema", "--output", "runs", "--experiment", "x", "--initial-checkpoint", "w.pth", "--val-split", "val",
    ])  # fmt: skip
    assert (cfg.batch_size, cfg.workers, cfg.label_smoothing, cfg.drop_rate) == (7, 1, 0.2, 0.1)
    assert (cfg.drop_path_rate, cfg.drop_block_rate, cfg.precision) == (0.05, 0.1, "bf16")
    assert (cfg.opt, cfg.sched, cfg.model_ema) == ("adamw", "step", True)
    assert (cfg.output, cfg.experiment, cfg.initial_checkpoint, cfg.val_split) == ("runs", "x", "w.pth", "val")
    with pytest.raises(TimmAssembleError, match="--val-split is the validation split's name.*--val-fraction 0.1"):
        parse_config("finetune", ["--data-dir", "d", "--val-split", "0.1"])
    with pytest.raises(TimmAssembleError, match="give it, or --output / --experiment, not both"):
        parse_config("finetune", ["--data-dir", "d", "--output-dir", "a", "--experiment", "x"])


def test_timm_args_yaml_is_a_config(capsys, tmp_path):
    """`-c args.yaml` of a timm train.py run: the same run settings; keys we cannot honour are one error."""
    assert cli_main(["finetune", "-c", str(TIMM_ARGS), "--print-config"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    expected = dict(model="assemble_resnet50", model_kwargs={"width": 8}, batch_size=32, lr=0.05, epochs=2)
    expected.update(label_smoothing=0.1, warmup_epochs=0.0, weight_decay=2e-5, img_size=64, pretrained="none")
    assert {k: printed[k] for k in expected} == expected and "amp" in printed and not printed["amp"]
    # the scheduler settings are the trainer's own: timm's per-epoch default and per-update stepping both hold
    assert (printed["sched_on_updates"], printed["decay_epochs"], printed["decay_rate"]) == (False, 90.0, 0.1)
    changed = TIMM_ARGS.read_text().replace("sched_on_updates: false", "sched_on_updates: true")
    changed = changed.replace("sched: cosine", "sched: step").replace("decay_epochs: 90", "decay_epochs: 1")
    (tmp_path / "args.yaml").write_text(changed)
    assert cli_main(["finetune", "-c", str(tmp_path / "args.yaml"), "--print-config"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert (printed["sched_on_updates"], printed["sched"], printed["decay_epochs"]) == (True, "step", 1.0)
    changed = changed.replace("opt: sgd", "opt: adamw").replace("lr: 0.05", "lr: null").replace("tta: 0", "tta: 2")
    (tmp_path / "args.yaml").write_text(changed)
    assert cli_main(["finetune", "-c", str(tmp_path / "args.yaml"), "--print-config"]) == 2
    error = capsys.readouterr().err
    assert "cannot honour at these values: tta, lr_base_scale (sqrt)" in error


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_accelerate")
def test_short_run_evaluates_like_it_trains(tmp_path):
    """timm train.py's check with our trainer and the model defaults: 10 classes, 2 epochs at lr 0.05 without
    warm-up; evaluation (BatchNorm running statistics) is on the scale of training (with the official momentum
    0.003 as the default the eval loss was 2.4x the training loss here)."""
    data = tiny_data(tmp_path / "data", classes=10, train=12, val=4, size=32)
    values = dict(TINY, data_dir=str(data), output_dir=str(tmp_path / "run"), epochs=2, warmup_epochs=0, lr=0.05)
    result = run(resolve_config("train", values), command="pytest")
    last = result.metrics[-1]
    assert math.isfinite(last["val_loss"]) and 0.5 < last["val_loss"] / last["train_loss"] < 2


@pytest.mark.slow  # builds three models
def test_output_experiment_and_initial_checkpoint_act_like_timms(tmp_path):
    """--output/--experiment name the run folder; --initial-checkpoint loads strictly into the built model."""
    source = timm.create_model("assemble_resnet50", width=8, num_classes=4)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    args = ["--model-kwargs", "width=8", "--output", str(tmp_path / "runs"), "--experiment", "x"]
    cfg, _ = parse_config("train", [*args, "--initial-checkpoint", str(tmp_path / "w.safetensors")])
    assert resolve_output_dir(cfg, accelerator=None) == tmp_path / "runs" / "x"
    built, _, _ = build_models(cfg, 4)
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in built.model.state_dict().items())
    with pytest.raises(TimmAssembleError, match="--initial-checkpoint"):
        build_models(cfg, 5)  # timm's meaning: the classifier too, no silent new head


def test_one_precision_vocabulary_for_evaluation():
    """validate / robustness / benchmark: timm's --amp / --amp-dtype; the older `--amp bf16` means the same."""
    parser = ArgumentParser(prog="validate")
    add_dataclass_arguments(parser, ValidateOptions)
    modes = {}
    for flags in (["--amp"], ["--amp", "--amp-dtype", "bfloat16"], ["--amp", "bf16"], ["--no-amp"], ["--amp", "none"]):
        opts = from_args(ValidateOptions, parser.parse_args(["--model", "m", "--data-dir", "d", *flags]))
        modes[" ".join(flags)] = opts.amp_mode
    assert list(modes.values()) == ["fp16", "bf16", "bf16", "none", "none"]
    assert eval_options("m", amp="bf16").amp_mode == "bf16"  # the API's older amp="bf16" too
