"""What a run reports and where: precision choice, --teacher none, trackers, summary.csv, progress output,
no per-step device syncs, --push-to-hub against a fake Hub, preset inheritance."""

from __future__ import annotations

import csv
import io
import json
import logging
import traceback

import httpx2
import pytest
import torch
from hub_testing import NAME, TOKEN, FakeHub, convert_fixture, go_offline, patch_records, seed_hub_cache
from huggingface_hub import ModelCard
from training_helpers import one_thread, reset_accelerate, tiny_config, tiny_data

import timm_assemble  # noqa: F401
from timm_assemble import progress
from timm_assemble.cli.train import parse_config
from timm_assemble.errors import TimmAssembleError
from timm_assemble.fileio import sha256_file
from timm_assemble.progress import Progress
from timm_assemble.training import config as config_module
from timm_assemble.training import engine
from timm_assemble.training.precision import choose_precision
from timm_assemble.weights.records import hub_repo_id


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data") / "shapes", classes=2, train=16, val=4)  # 2 steps of 16


@pytest.fixture(autouse=True)
def fresh_accelerate(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    reset_accelerate()
    with one_thread():
        yield
    reset_accelerate()


def run(cfg):
    reset_accelerate()
    return engine.run(cfg, command="pytest")


# ---------------------------------------------------------------------------------------------- precision


@pytest.mark.parametrize(
    "flag, launcher, preset, cuda, expected, said",
    [
        (None, None, "fp16", True, "fp16", "preset e11's default"),
        (None, None, "fp16", False, "no", "needs a CUDA GPU, none is in use: full precision"),
        (None, "no", "fp16", False, "no", "needs a CUDA GPU"),  # `accelerate launch --cpu` with nothing chosen
        (None, "bf16", "fp16", False, "bf16", "accelerate launch"),  # the launcher decides over the preset
        (None, "fp16", "fp16", True, "fp16", "accelerate launch"),
        (["--no-amp"], "bf16", "fp16", True, "no", "--no-amp"),  # our flag wins over everything
        (["--amp", "--amp-dtype", "bfloat16"], None, None, False, "bf16", "--amp"),  # bf16 works on CPU
        (["--mixed-precision", "bf16"], None, None, False, "bf16", "--amp"),  # the older spelling of the same
        (["--amp"], "no", None, True, "fp16", "--amp"),  # timm's --amp: float16 unless --amp-dtype says otherwise
        (None, None, None, False, "no", "nothing chose"),
    ],
)
def test_precision_flag_then_launcher_then_preset(flag, launcher, preset, cuda, expected, said):
    args = ["--preset", "e11"] + (flag or [])
    cfg, _ = parse_config("train", args)
    cfg.preset_mixed_precision = preset
    chosen = choose_precision(cfg, launcher=launcher or "", cuda=cuda)
    assert chosen.mode == expected and said in chosen.reason


@pytest.mark.parametrize(
    "flag, launcher, message",
    [
        (["--amp"], "", r"--amp \(float16\) needs a CUDA GPU and none is in use; use --amp --amp-dtype bfloat16"),
        (None, "fp16", "accelerate launch / accelerate config asks for fp16, which needs a CUDA GPU"),
    ],
)
def test_explicit_fp16_without_cuda_is_one_clear_error(flag, launcher, message):
    cfg, _ = parse_config("train", ["--preset", "e11"] + (flag or []))
    with pytest.raises(TimmAssembleError, match=message):
        choose_precision(cfg, launcher=launcher, cuda=False)


def test_preset_precision_is_a_default_not_a_setting():
    cfg, _ = parse_config("train", ["--preset", "e11"])
    assert cfg.amp is None and cfg.preset_mixed_precision == "fp16"
    cfg, _ = parse_config("train", ["--preset", "e11", "--mixed-precision", "bf16"])
    assert (cfg.amp, cfg.amp_dtype, cfg.mixed_precision, cfg.precision) == (True, "bfloat16", None, "bf16")
    with pytest.raises(TimmAssembleError, match="--mixed-precision no contradicts --amp"):
        parse_config("train", ["--mixed-precision", "no", "--amp"])


# ---------------------------------------------------------------------------------------------- teacher


@pytest.mark.slow
def test_teacher_none_turns_off_the_presets_distillation(data, tmp_path, capsys):
    e11, _ = parse_config("train", ["--preset", "e11"])
    assert e11.distilling
    cfg, _ = parse_config("train", ["--preset", "e11", "--teacher", "none"])
    assert not cfg.distilling and cfg.teacher == "none"
    with pytest.raises(TimmAssembleError, match="--teacher none turns distillation off"):
        parse_config("train", ["--teacher", "none", "--teacher-weights", "t.safetensors"])
    run(tiny_config(data, tmp_path / "run", epochs=1, teacher="none", kd_weight=0.5))
    assert "KD: off (--teacher none)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- presets


def test_preset_base_inherits_and_overrides(tmp_path, monkeypatch):
    (tmp_path / "_ladder.toml").write_text('opt = "sgd"\nlr_base = 0.1\nmixed_precision = "fp16"\nepochs = 120\n')
    (tmp_path / "x1.toml").write_text('base = "_ladder"\nmixup = 0.2\n')
    (tmp_path / "x2.toml").write_text('base = "x1"\nepochs = 600\n')
    (tmp_path / "loop.toml").write_text('base = "loop"\n')
    (tmp_path / "orphan.toml").write_text('base = "nope"\n')
    monkeypatch.setattr(config_module, "PRESET_DIR", tmp_path)
    cfg, _ = parse_config("train", ["--preset", "x2"])
    assert (cfg.opt, cfg.lr_base, cfg.mixup, cfg.epochs, cfg.preset_mixed_precision) == ("sgd", 0.1, 0.2, 600, "fp16")
    assert config_module.list_presets() == ["loop", "orphan", "x1", "x2"]  # `_ladder` is a base, not a preset
    with pytest.raises(TimmAssembleError, match="preset bases form a loop: loop -> loop"):
        parse_config("train", ["--preset", "loop"])
    with pytest.raises(TimmAssembleError, match="unknown preset 'nope' \\(the base of preset orphan\\)"):
        parse_config("train", ["--preset", "orphan"])


def test_img_size_flag_drops_the_presets_eval_size():
    e11, _ = parse_config("train", ["--preset", "e11"])
    assert (e11.img_size, e11.eval_img_size) == (224, 256)
    small, _ = parse_config("train", ["--preset", "e11", "--img-size", "64"])
    assert (small.img_size, small.eval_img_size) == (64, None)  # evaluated at 64 px, not at the preset's 256
    both, _ = parse_config("train", ["--preset", "e11", "--img-size", "64", "--eval-img-size", "72"])
    assert (both.img_size, both.eval_img_size) == (64, 72)


# ---------------------------------------------------------------------------------------------- tracking


@pytest.mark.slow
def test_tensorboard_step_scalars_hparams_and_summary_csv(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cfg = tiny_config(data, out, epochs=2, drop_block_rate=0.1, log_with="tensorboard", log_interval=1)
    result = run(cfg)
    (events,) = out.glob("timm-assemble/events.out.tfevents.*")
    acc = EventAccumulator(str(events)).Reload()
    for tag in ("train/loss", "train/lr", "train/keep_prob", "train/images_per_s"):
        assert [e.step for e in acc.Scalars(tag)] == [1, 2, 3, 4], tag
    assert [e.step for e in acc.Scalars("epoch/top1")] == [2, 4]
    assert [e.value for e in acc.Scalars("epoch/top1")] == pytest.approx([r["top1"] for r in result.metrics])
    assert list(out.glob("timm-assemble/*/hparams.yml"))  # the resolved config as hyper-parameters
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert list(rows[0])[:6] == ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"]
    assert float(rows[1]["eval_top1"]) == pytest.approx(result.metrics[1]["top1"])


def test_unknown_or_missing_tracker_is_one_clear_error(data, tmp_path, monkeypatch):
    with pytest.raises(TimmAssembleError, match="--log-with nonsense: not an accelerate tracker"):
        run(tiny_config(data, tmp_path / "a", log_with="nonsense"))
    monkeypatch.setattr(engine, "get_available_trackers", lambda: [])
    with pytest.raises(TimmAssembleError, match=r"--log-with tensorboard: its package is not installed"):
        run(tiny_config(data, tmp_path / "b", log_with="tensorboard"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------- progress


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_file(capsys):
    terminal = _Stream(tty=True)
    bar = Progress(10, "epoch 1/1", bar_stream=terminal)
    for _ in range(10):
        bar.advance()
    bar.report({"loss": "1.0"})
    bar.close()
    assert "\r" in terminal.getvalue() and capsys.readouterr().out == ""
    log = _Stream(tty=False)
    lines = Progress(10, "epoch 1/1", bar_stream=log)
    for step in range(1, 11):
        lines.advance()
        if step % 5 == 0:
            lines.report({"loss": "1.0"})
    lines.close()
    printed = capsys.readouterr().out
    assert log.getvalue() == "" and "\r" not in printed
    assert printed.splitlines()[0].startswith("epoch 1/1  5/10 (50%)  loss 1.0  ETA ")
    assert len(printed.splitlines()) == 2


def test_every_command_shows_progress_through_one_mechanism(monkeypatch, capsys):
    """Evaluation, robustness, benchmark and convert loops: plain periodic lines on stderr in a log file (stdout
    keeps the results), a bar on a terminal, nothing from a launch's other processes."""
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    monkeypatch.delenv("RANK", raising=False)
    assert list(progress.track(range(3), "robustness gaussian_noise 1")) == [0, 1, 2]
    captured = capsys.readouterr()
    assert captured.out == "" and "\r" not in captured.err
    assert [line.split("  ")[:2] for line in captured.err.splitlines()] == [
        ["robustness gaussian_noise 1", f"{n}/3 ({100 * n / 3:.0f}%)"] for n in (1, 2, 3)
    ]
    monkeypatch.setattr(progress.sys, "stderr", _Stream(tty=True))
    list(progress.track(range(3), "validate"))
    assert "\r" in progress.sys.stderr.getvalue()
    monkeypatch.setenv("RANK", "1")
    list(progress.track(range(3), "validate"))
    assert capsys.readouterr() == ("", "")


@pytest.mark.slow
def test_run_output_off_a_terminal_has_one_line_per_log_interval(tmp_path, capsys):
    data = tiny_data(tmp_path / "data", classes=2, train=24, val=4)  # 48 images: 6 steps of 8
    run(tiny_config(data, tmp_path / "run", epochs=1, batch_size=8, log_interval=2))
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err
    steps = [line for line in captured.out.splitlines() if line.startswith("epoch 1/1  ") and " ETA " in line]
    assert [line.split()[2] for line in steps] == ["2/6", "4/6", "6/6"]


@pytest.mark.slow
def test_no_device_sync_per_training_step(data, tmp_path, monkeypatch):
    """Reading a tensor's value (item, float, bool, tolist) is a device sync: only at log intervals and at the end.
    Reads in the data pipeline (torchvision transforms, samplers) are on CPU tensors in loader workers: not counted."""
    reads = []
    for name in ("item", "__float__", "__bool__", "__int__", "tolist"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            stack = [frame.filename for frame in traceback.extract_stack()]
            if not any("/torch/utils/data/" in f or "/torchvision/" in f for f in stack):
                reads.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    real_epoch = engine.train_one_epoch
    per_epoch = []

    def counting_epoch(run_state, epoch):
        reads.clear()
        stats = real_epoch(run_state, epoch)
        per_epoch.append(len(reads))
        return stats

    monkeypatch.setattr(engine, "train_one_epoch", counting_epoch)
    small = tiny_data(tmp_path / "small", classes=2, train=8, val=4)  # 16 images: 2 steps of 8
    busy = dict(epochs=1, log_interval=1000, mixup=0.2, drop_block_rate=0.1, model_ema=True, clip_grad=1.0)
    run(tiny_config(small, tmp_path / "short", batch_size=8, **busy))
    run(tiny_config(data, tmp_path / "long", batch_size=4, **busy))  # 8 steps
    assert per_epoch[0] == per_epoch[1] == 3  # the end-of-epoch totals only, however many steps
    run(tiny_config(data, tmp_path / "logged", batch_size=4, **{**busy, "log_interval": 2}))
    assert per_epoch[2] == 3 + 4  # and one read per log interval


# ---------------------------------------------------------------------------------------------- Hub


def _committed(hub: FakeHub, commit: list[dict]) -> dict[str, bytes]:
    import base64

    files = {}
    for op in commit:
        if op["key"] == "file":
            files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
        elif op["key"] == "lfsFile":
            files[op["value"]["path"]] = hub.lfs[op["value"]["oid"]]
    return files


@pytest.mark.slow
def test_push_to_hub_every_epoch_and_at_the_end(data, tmp_path, hub, capsys):
    cfg = tiny_config(data, tmp_path / "run", epochs=3, push_to_hub="me/tiny-run", push_every=2)
    result = run(cfg)
    assert hub.created == [{"name": "tiny-run", "organization": "me", "visibility": "public", "type": "model"}] * 2
    assert len(hub.commits) == 2  # after epoch 2, and the final one after epoch 3
    files = _committed(hub, hub.commits[-1])
    assert set(files) == {"config.json", "model.safetensors", "README.md"}
    assert files["model.safetensors"] == (result.export_dir / "model.safetensors").read_bytes()
    card = ModelCard(files["README.md"].decode())
    best = result.metrics[result.best_epoch - 1]
    assert card.data.eval_results[0].metric_value == pytest.approx(round(best["top1"], 2))
    assert "me/tiny-run" in card.text and "local stand-in" not in card.text and card.data.base_model is None
    assert "https://huggingface.co/me/tiny-run/commit/" in capsys.readouterr().out


@pytest.mark.slow
def test_push_to_hub_checks_before_training_and_reports_a_failed_upload(data, tmp_path, hub, monkeypatch, caplog):
    with pytest.raises(TimmAssembleError, match="--push-to-hub must be ORG/NAME"):
        run(tiny_config(data, tmp_path / "a", push_to_hub="no-org"))
    with pytest.raises(TimmAssembleError, match="--push-every needs --push-to-hub"):
        tiny_config(data, tmp_path / "a", push_every=1)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(TimmAssembleError, match="--push-to-hub needs a Hugging Face token"):
        run(tiny_config(data, tmp_path / "b", push_to_hub="me/x"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and hub.requests == []
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.__class__ = type("BrokenHub", (FakeHub,), {"__call__": lambda self, request: httpx2.Response(503)})
    with caplog.at_level(logging.WARNING), pytest.raises(TimmAssembleError) as failed:
        run(tiny_config(data, tmp_path / "c", epochs=2, push_to_hub="me/x", push_every=1))
    retry = f"retry with: timm-assemble publish {tmp_path / 'c' / 'model'} --repo-id me/x"
    assert str(failed.value).startswith("training finished and is saved, but upload to me/x failed")
    assert str(failed.value).endswith(retry) and "\n" not in str(failed.value)
    warnings = [
        r.getMessage() for r in caplog.records if "push after epoch 1 failed, training goes on" in r.getMessage()
    ]
    assert len(warnings) == 1  # the push after epoch 1 failed too, and training went on to epoch 2
    assert [r["epoch"] for r in map(json.loads, (tmp_path / "c" / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    assert (tmp_path / "c" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_fine_tune_of_a_released_tag_names_its_base_model(data, tmp_path, monkeypatch):
    """The card's base_model is the Hub repo of the released weights the fine-tune started from, once that repo
    exists (its record is published); before, the card names no base model."""
    cache = tmp_path / "hub-cache"
    go_offline(monkeypatch, cache)
    weights = convert_fixture(tmp_path / "converted") / "model.safetensors"
    seed_hub_cache(cache, hub_repo_id(NAME), weights.parent)
    cfg = tiny_config(data, tmp_path / "ft", mode="finetune", pretrained=NAME, epochs=1)
    assert ModelCard((run(cfg).export_dir / "README.md").read_text()).data.base_model is None  # not published
    size = weights.stat().st_size
    patch_records(monkeypatch, tmp_path, status="published", sha256=sha256_file(weights), size_bytes=size)
    result = run(tiny_config(data, tmp_path / "ft2", mode="finetune", pretrained=NAME, epochs=1))
    card = ModelCard((result.export_dir / "README.md").read_text())
    assert card.data.base_model == hub_repo_id(NAME)
    config = json.loads((result.export_dir / "config.json").read_text())
    assert config["pretrained_cfg"].get("hf_hub_id") is None  # the export is not the released weights
