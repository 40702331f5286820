"""timm's flags, errors and checkpoints: what a timm user types and catches works the same here.

The flags of timm's train.py, validate.py, inference.py and benchmark.py come from `fixtures/timm_flags.json`
(read from a timm checkout by `regen_timm_flags.py`); the README's "What differs" list names the deliberate
exceptions, and the test holds the two to each other.
"""

import argparse
import json
from pathlib import Path

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


FLAGS = json.loads((Path(__file__).parent / "fixtures" / "timm_flags.json").read_text())
# which timm script's flags each command answers to; export builds a model only: the model and data-config flags
APPLIES = {
    "train": "train.py", "finetune": "train.py", "validate": "validate.py", "robustness": "validate.py",
    "predict": "inference.py", "benchmark": "benchmark.py", "export": "validate.py",
}  # fmt: skip
EXPORT_FLAGS = {
    "--model", "-m", "--pretrained", "--checkpoint", "--use-ema", "--num-classes", "--in-chans", "--model-kwargs",
    "--img-size", "--input-size", "--crop-pct", "--crop-mode", "--interpolation", "--mean", "--std",
}  # fmt: skip
UNSET = (None, False, "", {}, [])
# same flag, other behaviour: a --num-classes other than trained weights' is an error unless --reset-classifier
BEHAVIOUR = {"--num-classes": [("validate", "an error on trained weights"), ("robustness", "the same")]}


def _our_actions(command):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {s: a for a in sub._actions for s in a.option_strings}


def _our_default(command, action):
    """The default a flag stands for (training flags only name what was typed: their defaults are the config's)."""
    if command in ("train", "finetune"):
        from timm_assemble.training.config import FINETUNE_DEFAULTS, TrainConfig

        config = TrainConfig(**(FINETUNE_DEFAULTS if command == "finetune" else {}))
        return getattr(config, action.dest, None)
    return action.default


def _same(a, b):
    if a in UNSET and b in UNSET:
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) < 1e-9)


def _difference(command, record, ours):
    """Why our flag differs from timm's `record` (None: the same flag with the same meaning)."""
    actions = {ours.get(f) for f in record["flags"]}
    if None in actions:
        return "missing"
    if len(actions) > 1:
        return "spellings split over several flags"
    (action,) = actions  # its dest is our field's name (--smoothing: label_smoothing); the meaning is compared
    switch = record["action"] in ("store_true", "store_false")
    if switch and action.nargs == "?":
        return "takes an optional value"
    if switch != (action.nargs == 0):
        return "a switch here and a value there"
    if not switch and record["action"] is None and action.nargs != record["nargs"]:
        return f"nargs {action.nargs}"
    if str(record["action"]).endswith("ParseKwargs") != (type(action).__name__ == "ParseKwargs"):
        return "not KEY=VALUE"
    timm_default = False if switch and record["default"] is None else record["default"]
    if not isinstance(timm_default, dict) or timm_default == {}:
        if not _same(timm_default, _our_default(command, action)):
            return f"default {_our_default(command, action)!r}"
    return None


def flag_differences():
    """{timm flag: [(command, why)]} over every flag of timm's scripts that applies to one of our commands."""
    found = {}
    for command, script in APPLIES.items():
        ours = _our_actions(command)
        for record in FLAGS["scripts"][script]:
            if not record["flags"][0].startswith("-"):
                continue  # the positional data folder: deprecated in timm's scripts for --data-dir
            if command == "export" and not set(record["flags"]) & EXPORT_FLAGS:
                continue
            why = _difference(command, record, ours)
            if why:
                found.setdefault(record["flags"][0], []).append((command, why))
    return {**found, **BEHAVIOUR}


@pytest.mark.parametrize("on_updates", [False, True])
def test_sched_on_updates_and_decay_epochs_move_the_lr_as_timm(on_updates):
    """`--sched step --decay-epochs 1 --decay-rate 0.1`: the lr drops tenfold after one epoch, on the epoch
    boundary (timm's default) or at the update that completes it (`--sched-on-updates`)."""
    from timm_assemble.training.config import resolve_config
    from timm_assemble.training.engine import build_scheduler

    values = dict(sched="step", decay_epochs=1, decay_rate=0.1, warmup_epochs=0, epochs=3, sched_on_updates=on_updates)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(resolve_config("train", values), optimizer, updates_per_epoch=10)
    scheduler.step_update(num_updates=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 if on_updates else 0.1)
    scheduler.step(1, 50.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def _readme_exceptions():
    """{(timm flag, command or "*", kind of difference or "*")} the README's "What differs" list allows: the
    "Defaults of our own" bullet allows other defaults, the two "do not have" bullets missing flags (per command,
    as they name them), every other bullet anything about the flags it names."""
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("**What differs, and why.**", 1)[1].split("**timm's own scripts.**", 1)[0]
    timm_flags = {f for records in FLAGS["scripts"].values() for r in records for f in r["flags"]}

    def flags(text):
        return {w for span in re.findall(r"`([^`]+)`", text) for w in span.split()} & timm_flags

    allowed = set()
    for bullet in (" ".join(b.split()) for b in section.split("\n- ")[1:]):
        if bullet.startswith("Defaults of our own"):
            allowed |= {(f, "*", "default") for f in flags(bullet)}
        elif bullet.startswith("timm `train.py` options"):
            allowed |= {(f, c, "missing") for f in flags(bullet) for c in ("train", "finetune")}
        elif bullet.startswith("timm `validate.py`"):
            for commands, names in re.findall(r"not on ((?:`[a-z]+`(?: / )?)+): (.*?)(?=; not on|\. Data is)", bullet):
                allowed |= {(f, c, "missing") for f in flags(names) for c in re.findall(r"`([a-z]+)`", commands)}
        else:
            allowed |= {(f, "*", "*") for f in flags(bullet)}
    return allowed


def test_every_timm_flag_is_ours_with_timm_meaning_or_a_listed_difference():
    differences = flag_differences()
    allowed = _readme_exceptions()

    def listed(flag, command, kind):
        return any((flag, c, k) in allowed for c in (command, "*") for k in (kind, "*"))

    unlisted = {
        flag: [(command, why) for command, why in found if not listed(flag, command, why.split()[0])]
        for flag, found in differences.items()
    }
    unlisted = {flag: found for flag, found in unlisted.items() if found}
    assert not unlisted, f"timm flags missing or meaning something else, not in the README's What differs: {unlisted}"
    stale = sorted(
        (flag, command, kind)
        for flag, command, kind in allowed
        if not any(
            command in ("*", c) and kind in ("*", why.split()[0]) for c, why in differences.get(flag, [])
        )
    )
    assert not stale, f"the README's What differs names differences that are not there: {stale}"


def test_a_setting_is_reported_from_where_it_came(tmp_path):
    """amp: false in a timm args.yaml is the file's, not a --no-amp nobody typed; a typed flag is the flag."""
    from timm_assemble.cli.train import parse_config
    from timm_assemble.training.precision import choose_precision

    args_yaml = Path(__file__).parent / "fixtures" / "timm_args" / "args.yaml"
    cfg, _ = parse_config("finetune", ["-c", str(args_yaml)])
    reason = choose_precision(cfg, launcher="", cuda=False).reason
    assert reason == f"{args_yaml}: amp false" and cfg.source_of("epochs") == str(args_yaml)
    cfg, _ = parse_config("finetune", ["-c", str(args_yaml), "--no-amp", "--preset", "e3"])
    assert choose_precision(cfg, launcher="", cuda=False).reason == "--no-amp"
    assert cfg.source_of("lr") == str(args_yaml) and cfg.source_of("bn_momentum") == "preset e3"


def test_config_json_is_what_timm_save_for_hf_writes(tmp_path):
    """A producer's pretrained cfg (the model's own, as convert passes it; tag=None, as a fine-tune unsets the
    tag of the weights it started from) is written without null keys, exactly as timm's save_for_hf writes."""
    from timm.models import save_for_hf

    from timm_assemble.weights.hub_folder import export_hub_folder

    model = timm.create_model("assemble_resnet50", width=8, num_classes=3)
    unset = dict(model.pretrained_cfg, tag=None, hf_hub_id=None)  # unset entries, as in a convert-built cfg
    export_hub_folder(model, tmp_path / "ours", model_args={"width": 8}, pretrained_cfg=unset)
    save_for_hf(model, tmp_path / "timm", model_args={"width": 8}, safe_serialization=True)
    ours, theirs = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("ours", "timm"))
    assert theirs["pretrained_cfg"].pop("tag") == "clova_in1k"  # the model's own, which the producer unset
    assert ours == theirs and "hf_hub_id" not in ours["pretrained_cfg"]


@pytest.mark.slow
def test_cards_carry_timm_model_stats_counted_as_timm_counts():
    """resnet50 measures as timm's card for resnet50.a1_in1k lists it (25.6 M params, 4.1 GMACs, 11.1 M
    activations at 224 x 224); our cards carry the same block with our model's numbers."""
    from timm_assemble.model_stats import model_stats
    from timm_assemble.weights.card import CardSpec, render_model_card

    stats = model_stats(timm.create_model("resnet50"), (3, 224, 224))
    measured = tuple(round(stats[k], 1) for k in ("params_m", "gmacs", "activations_m"))
    assert measured == (25.6, 4.1, 11.1)
    model = timm.create_model("assemble_resnet50", width=8, num_classes=3)
    ours = model_stats(model, (3, 64, 64))
    config = dict(architecture="assemble_resnet50", num_classes=3, pretrained_cfg={})
    card = render_model_card(CardSpec(None, config, "summary", "provenance", title="t", stats=ours))
    block = (
        f"- **Model Stats:**\n  - Params (M): {ours['params_m']:g}\n  - GMACs: {ours['gmacs']:g}\n"
        f"  - Activations (M): {ours['activations_m']:g}\n  - Image size: 64 x 64\n"
    )
    assert "## Model Details\n\n- **Model Type:** Image classification / feature backbone\n" in card and block in card


@pytest.mark.parametrize("command", ["finetune", "validate", "robustness", "predict", "export"])
def test_pretrained_is_a_switch_bare_and_a_value_when_given(command):
    """Bare `--pretrained` is timm's switch (the model's weights); `none` / `--no-pretrained` random weights."""
    parser = cli.build_parser()
    required = dict(finetune=[], export=["m"], predict=["-m", "m", "x.png"], validate=["-m", "m", "--data-dir", "d"])
    required = required.get(command, ["--model", "m"])

    def parsed(*flags):
        return vars(parser.parse_args([command, *required, *flags]))["pretrained"]

    on, off = ("default", "none") if command == "finetune" else (True, False)
    assert parsed("--pretrained") == parsed("--pretrained", "default") == on
    assert parsed("--pretrained", "none") == parsed("--no-pretrained") == off


@pytest.mark.slow
def test_predict_and_benchmark_take_the_same_model_flags(tmp_path, capsys):
    """The model flags are one set: predict loads a timm train.py checkpoint's EMA weights at width 8, benchmark
    builds width 8 at --input-size."""
    data_dir = _image_folder(tmp_path / "data", classes=4, per_class=1)
    checkpoint = _timm_train_checkpoint(tmp_path / "run")
    model_flags = ["--model-kwargs", "width=8", "--num-classes", "4", "--device", "cpu"]
    argv = ["predict", "-m", "assemble_resnet50", *model_flags, "--checkpoint", str(checkpoint), "--use-ema",
            "--input-size", "3", "48", "48", "-b", "2", "--json", str(data_dir)]  # fmt: skip
    assert cli.main(argv) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    out = tmp_path / "bench.json"
    argv = ["benchmark", "-m", "assemble_resnet50", *model_flags, "--input-size", "3", "32", "32", "-b", "2",
            "--warmup", "0", "--repeats", "1", "--iters", "1", "--json", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    (row,) = json.loads(out.read_text())["models"]
    expected = sum(p.numel() for p in timm.create_model("assemble_resnet50", width=8, num_classes=4).parameters())
    assert row["img_size"] == 32 and row["params_m"] == round(expected / 1e6, 3)
    assert row["imagenet_top1"] is None  # width 8 is not the network whose top-1 is published


def test_use_train_size_and_gp_reach_the_model_and_its_data_config():
    from timm_assemble.evaluation.model import model_data_config
    from timm_assemble.evaluation.options import ModelOptions

    model = timm.create_model("assemble_resnet50", width=8, **ModelOptions(gp="max").create_kwargs())
    assert model.global_pool.pool_type == "max"
    assert model_data_config(model)["input_size"] == model.pretrained_cfg["test_input_size"]
    assert model_data_config(model, dict(use_train_size=True))["input_size"] == model.pretrained_cfg["input_size"]


def test_schedulers_are_timms_and_plateau_steps_per_epoch():
    from timm_assemble.errors import TimmAssembleError
    from timm_assemble.training.config import resolve_config

    with pytest.raises(TimmAssembleError, match="--sched plateau follows the eval metric once per epoch"):
        resolve_config("train", dict(sched="plateau"))
    assert resolve_config("train", dict(sched="plateau", sched_on_updates=False)).sched == "plateau"
    with pytest.raises(TimmAssembleError, match="sched must be one of cosine, tanh, step"):
        resolve_config("train", dict(sched="none"))
