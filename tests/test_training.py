"""The training engine end to end on CPU: learning, resume, presets, KD + mixup + DropBlock, data errors."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import timm
import tomllib
import torch
from safetensors.torch import save_file
from training_helpers import reset_accelerate, tiny_config, tiny_data

import timm_assemble  # noqa: F401
from timm_assemble.cli.train import main as cli_main
from timm_assemble.cli.train import parse_config
from timm_assemble.errors import TimmAssembleError
from timm_assemble.layers import DropBlock2d
from timm_assemble.training import engine
from timm_assemble.training.config import list_presets
from timm_assemble.training.model_setup import build_model

PAPER_PRESETS = [f"e{i}" for i in range(13)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data") / "shapes")


pytestmark = pytest.mark.usefixtures("fresh_accelerate")


def run(cfg):
    reset_accelerate()
    return engine.run(cfg, command="pytest")


@pytest.mark.slow
def test_learns_and_writes_run_folder(data, tmp_path):
    result = run(tiny_config(data, tmp_path / "run"))
    rows = result.metrics
    assert [r["epoch"] for r in rows] == [1, 2, 3] and result.steps == rows[-1]["step"] == 3 * 6
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.2
    assert max(r["top1"] for r in rows) > 1.5 * 25.0  # 4 classes: chance is 25 %
    for key in ("train_loss", "val_loss", "top1", "top5", "lr", "images_per_s", "keep_prob", "skipped_images"):
        assert key in rows[0]
    out = result.output_dir
    for name in (
        "metrics.jsonl",
        "curves.png",
        "confusion_matrix.png",
        "config.toml",
        "checkpoints/last/train_state.json",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "checkpoints/best/train_state.json").read_text())["best_epoch"] == result.best_epoch
    assert not list(out.glob("checkpoints/*.tmp")) and not list(out.glob("checkpoints/*.old"))
    # the exported best model is a timm local-dir folder, labelled, and equal to the best checkpoint
    model = timm.create_model(f"local-dir:{out / 'model'}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"][0] == "00_red_circle" and model.num_classes == 4
    best = timm.create_model("assemble_resnet50", width=8, num_classes=4)
    from safetensors.torch import load_file

    best.load_state_dict(load_file(str(out / "checkpoints/best/model.safetensors")))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), best.eval()(x))
    # a second run into the same folder without --resume is refused
    with pytest.raises(TimmAssembleError, match="already holds a run"):
        run(tiny_config(data, out))


@pytest.mark.slow
def test_grad_accumulation_and_linear_lr_scaling(data, tmp_path):
    """Global batch 16 x 2 accumulation steps = 32 images per update: lr 0.1 * 32 / 256; 6 batches = 3 updates."""
    result = run(tiny_config(data, tmp_path / "acc", epochs=1, lr=None, lr_base=0.1, grad_accum_steps=2))
    assert result.lr == pytest.approx(0.1 * 32 / 256) and result.steps == 3


class _KilledAfter:
    """A loader that dies after `n` batches, like a process killed mid-epoch."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.n:
                raise KeyboardInterrupt("simulated kill")
            yield batch


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    data = tiny_data(tmp_path / "data", classes=2, train=16, val=4)  # 2 steps per epoch
    extra = dict(mixup=0.2, drop_block_rate=0.1, model_ema=True, model_ema_decay=0.9)
    full = run(tiny_config(data, tmp_path / "full", **extra))

    real_epoch = engine.train_one_epoch

    def dies_in_second_epoch(ctx, epoch):
        if epoch == 1:
            ctx.train_loader = _KilledAfter(ctx.train_loader, 1)  # 1 optimizer step, then killed
        return real_epoch(ctx, epoch)

    monkeypatch.setattr(engine, "train_one_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_config(data, tmp_path / "killed", **extra))
    monkeypatch.setattr(engine, "train_one_epoch", real_epoch)
    state = json.loads((tmp_path / "killed/checkpoints/last/train_state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == 2

    resumed = run(tiny_config(data, tmp_path / "killed", resume="auto", **extra))
    assert resumed.steps == full.steps and len(resumed.metrics) == len(full.metrics) == 3
    for a, b in zip(full.metrics, resumed.metrics, strict=True):
        for key in ("epoch", "step", "lr", "train_loss", "val_loss", "top1", "top5", "ema_top1", "keep_prob"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_every_preset_resolves_and_builds(name, capsys):
    assert cli_main("train", ["--preset", name, "--print-config"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    cfg, print_only = parse_config("train", ["--preset", name, "--print-config"])
    assert print_only and printed["preset"] == name and printed["model"] == cfg.model
    with torch.device("meta"):
        built = build_model(cfg, 1000)
    assert built.model.num_classes == 1000
    dropblocks = [m for m in built.model.modules() if isinstance(m, DropBlock2d)]
    assert bool(dropblocks) == (cfg.drop_block_keep_probs is not None)
    bns = [m for m in built.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {(m.momentum, m.eps) for m in bns} == {(0.003, 1e-5)}  # the official BatchNorm decay 0.997
    assert cfg.lr_base * 1024 / cfg.lr_base_size == pytest.approx(0.4)  # the paper's lr at batch 1024


def test_presets_follow_the_paper():
    assert set(PAPER_PRESETS) <= set(list_presets())
    e11, _ = parse_config("train", ["--preset", "e11"])
    assert (e11.model, e11.epochs, e11.mixup, e11.mixup_mode, e11.label_smoothing, e11.aa) == (
        "assemble_resnet50",
        600,
        0.2,
        "pair",
        0.1,
        "clova-imagenet",
    )
    assert (e11.opt, e11.momentum, e11.bn_momentum, e11.bn_eps) == ("momentum", 0.9, 0.003, 1e-5)
    assert e11.decay_biases and e11.teacher_logits is None
    assert (e11.drop_block_keep_probs, e11.zero_init_last, e11.kd_temperature, e11.weight_decay) == (
        (1.0, 0.9),
        True,
        1.0,
        1e-4,
    )
    assert (e11.warmup_epochs, e11.eval_img_size, e11.img_size, e11.scale) == (5, 256, 224, (0.1, 1.0))
    e12, _ = parse_config("train", ["--preset", "e12", "--epochs", "3", "--warmup-epochs", "1", "--no-zero-init-last"])
    assert e12.model == "assemble_resnet152" and e12.teacher.startswith("tf_efficientnet_b7")
    assert e12.epochs == 3 and e12.zero_init_last is False  # flags override the preset
    e0, _ = parse_config("train", ["--preset", "E0"])
    assert (e0.model, e0.mixup, e0.label_smoothing, e0.drop_block_keep_probs, e0.teacher) == (
        "assemble_r50",
        0,
        0,
        None,
        None,
    )


def test_unknown_preset_and_bad_flags(capsys):
    assert cli_main("train", ["--preset", "e99", "--print-config"]) == 2
    assert "unknown preset 'e99'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config("train", ["--drop-block-rate", "1.5"])
    assert "argument --drop-block-rate/--drop-block: must be in [0, 1), got 1.5" in capsys.readouterr().err


@pytest.mark.slow
def test_mixup_kd_dropblock_together(data, tmp_path, monkeypatch):
    """Official step: 2N clean teacher views at the teacher's size for N mixed student images; keep-prob 0.9 -> 0.7."""
    teacher = timm.create_model("test_resnet", num_classes=4)
    save_file(teacher.state_dict(), str(tmp_path / "teacher.safetensors"))
    seen = {"student": [], "teacher": [], "keep": []}
    real_set = engine.set_drop_block_keep_prob

    def spy_keep(model, kp):
        seen["keep"].append(kp)
        return real_set(model, kp)

    monkeypatch.setattr(engine, "set_drop_block_keep_prob", spy_keep)
    real_build_recipe = engine.build_recipe

    def spy_recipe(cfg, num_classes, teacher_model):
        recipe = real_build_recipe(cfg, num_classes, teacher_model)
        teacher_model.register_forward_pre_hook(lambda m, a: seen["teacher"].append(a[0].clone()))
        return recipe

    monkeypatch.setattr(engine, "build_recipe", spy_recipe)
    real_build_task = engine.build_task

    def spy_task(student, cfg, num_classes, device):
        student.register_forward_pre_hook(lambda m, a: seen["student"].append(a[0].shape) if m.training else None)
        return real_build_task(student, cfg, num_classes, device)

    monkeypatch.setattr(engine, "build_task", spy_task)
    cfg = tiny_config(
        data,
        tmp_path / "kd",
        epochs=1,
        mixup=0.8,
        mixup_mode="pair",
        drop_block_start=0.9,
        drop_block_end=0.7,
        teacher="test_resnet",
        teacher_weights=str(tmp_path / "teacher.safetensors"),
        kd_temperature=2.0,
        kd_weight=0.5,
    )
    result = run(cfg)
    # 96 images, batch 16: each step loads 32 (2N -> N) and an epoch still has 96 / 16 = 6 steps
    assert seen["student"] == [torch.Size([16, 3, 32, 32])] * 6 and len(seen["teacher"]) == 6
    # the teacher saw clean, un-mixed centre crops at its own size and normalisation
    from timm_assemble.training.teacher import teacher_transform

    clean = torch.stack([teacher_transform(teacher)(img) for img, _ in timm.data.ImageDataset(str(data / "train"))])
    for batch in seen["teacher"]:
        assert batch.shape == (32, 3, 160, 160)
        distance = (batch.flatten(1)[:, None] - clean.flatten(1)[None]).abs().amax(-1).amin(-1)
        assert distance.max() < 1e-4
    assert seen["keep"][1:] == pytest.approx([0.9 - 0.2 * i / 6 for i in range(6)])  # [0]: the setup check
    assert result.metrics[0]["keep_prob"] == pytest.approx(seen["keep"][-1])
    assert torch.isfinite(torch.tensor(result.metrics[0]["train_loss"]))


def test_teacher_class_mismatch_fails_before_training(data, tmp_path):
    teacher = timm.create_model("test_resnet", num_classes=10)
    save_file(teacher.state_dict(), str(tmp_path / "t.safetensors"))
    cfg = tiny_config(data, tmp_path / "run", teacher="test_resnet", teacher_weights=str(tmp_path / "t.safetensors"))
    with pytest.raises(TimmAssembleError, match="teacher weights .* classifier does not match"):
        run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("empty", "is empty"),
        ("no_val", "has no val/ folder"),
        ("num_classes", "--num-classes is 7 but the data has 4 classes"),
        ("odd_batch", "--batch-size must be even"),
    ],
)
def test_data_problems_fail_before_training(case, message, data, tmp_path):
    overrides = {}
    data_dir = data
    if case == "missing":
        data_dir = tmp_path / "nope"
    elif case == "empty":
        data_dir = tmp_path / "empty"
        data_dir.mkdir()
    elif case == "no_val":
        data_dir = tmp_path / "flat"
        (data_dir / "train" / "a").mkdir(parents=True)
    elif case == "num_classes":
        overrides = dict(num_classes=7)
    elif case == "odd_batch":
        overrides = dict(mixup=0.2, batch_size=15)
    with pytest.raises(TimmAssembleError, match=message):
        run(tiny_config(data_dir, tmp_path / "run", **overrides))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_corrupt_image_is_skipped_and_counted(tmp_path, caplog):
    data = tiny_data(tmp_path / "data", classes=2, train=8, val=4)
    bad = data / "train" / "00_red_circle" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with caplog.at_level(logging.WARNING):
        result = run(tiny_config(data, tmp_path / "run", epochs=1, batch_size=17))  # one batch: all 17 files
    assert result.metrics[0]["skipped_images"] == 1
    assert any("broken.png" in r.getMessage() for r in caplog.records)
    with pytest.raises(TimmAssembleError, match="broken.png.*--strict-data"):
        run(tiny_config(data, tmp_path / "strict", epochs=1, batch_size=17, strict_data=True))


def test_printed_config_round_trips(tmp_path, capsys):
    assert cli_main("train", ["--preset", "e5", "--epochs", "7", "--print-config"]) == 0
    (tmp_path / "saved.toml").write_text(capsys.readouterr().out)
    again, _ = parse_config("train", ["--config", str(tmp_path / "saved.toml")])
    original, _ = parse_config("train", ["--preset", "e5", "--epochs", "7"])
    assert again == original and again.epochs == 7


@pytest.mark.slow
def test_resume_restores_every_output_and_removes_what_a_killed_run_left(tmp_path, monkeypatch):
    """Killed while model/ was exported, before the plots and the last metrics row: `--resume auto` writes
    them again from the checkpoint (model/ from checkpoints/best: the best epoch is not the last one), the
    trackers get the unrecorded epoch, and the killed run's temporary and backup files go."""
    from safetensors.torch import load_file
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = tiny_data(tmp_path / "data", classes=2, train=16, val=4)
    out = tmp_path / "run"
    extra = dict(epochs=2, model_ema=True, model_ema_decay=0.9)
    monkeypatch.setattr(engine, "_better", lambda metric, new, old: old is None)  # epoch 1 stays the best
    run(tiny_config(data, out, **extra))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (out / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")  # epoch 2 checkpointed, not yet recorded
    shutil.rmtree(out / "model")
    for name in ("curves.png", "confusion_matrix.png"):
        (out / name).unlink()
    left = [out / ".model.99.0123abcd.tmp", out / ".curves.png.99.0123abcd.tmp", out / ".summary.csv.9.89abcdef.old"]
    left[0].mkdir()
    (left[0] / "model.safetensors").write_bytes(b"half")
    for path in left[1:]:
        path.write_bytes(b"half")

    run(tiny_config(data, out, resume="auto", log_with="tensorboard", **extra))
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (out / "curves.png").is_file() and (out / "confusion_matrix.png").is_file()
    assert not [p for p in left if p.exists()]
    ema = torch.load(out / "checkpoints/best/custom_checkpoint_0.pkl", weights_only=True)
    exported = load_file(out / "model/model.safetensors")
    assert json.loads((out / "checkpoints/best/train_state.json").read_text())["epoch"] == 1
    assert all(torch.equal(exported[k], ema[f"module.{k}"]) for k in exported)  # the best epoch's EMA weights
    (events,) = out.glob("timm-assemble/events.out.tfevents.*")
    assert [e.step for e in EventAccumulator(str(events)).Reload().Scalars("epoch/top1")] == [rows[1]["step"]]
