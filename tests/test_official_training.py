"""Numbers as the official code makes them, for every paper preset: the lr schedule (warm-up prefix, then cosine
over the remaining steps: clovaai/assembled-cnn functions/model_fns.py:61-91, learning_rate_with_decay), the input
normalisation (means subtracted, no std: preprocessing/imagenet_preprocessing.py:46-49,122-127) and the KD teacher's
logits in fp32 (computed offline in fp32: kd/)."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn as nn

from timm_assemble.models.assemble_resnet import CLOVA_MEAN, CLOVA_STD
from timm_assemble.training.config import list_presets, resolve_config
from timm_assemble.training.engine import build_scheduler, build_transforms
from timm_assemble.training.losses import BatchRecipe

PAPER_PRESETS = [f"e{i}" for i in range(13)] + ["fgvc"]


def official_lr(step: int, base: float, warmup: int, total: int) -> float:
    """learning_rate_with_decay('cosine'): linear warm-up from 0, then tf.train.cosine_decay over total - warmup."""
    if step < warmup:
        return base * step / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / (total - warmup)))


def lr_at(scheduler, optimizer: torch.optim.Optimizer, step: int) -> float:
    scheduler.step_update(num_updates=step)  # the engine's call after `step` updates: the lr of the next one
    return optimizer.param_groups[0]["lr"]


def config_of(preset: str, **overrides):
    return resolve_config("finetune" if preset == "fgvc" else "train", overrides, preset=preset)


@pytest.mark.parametrize("preset", ["e11", "fgvc"])
def test_lr_is_the_official_formula(preset: str) -> None:
    cfg = config_of(preset)
    updates = 1251  # per epoch: ImageNet at a global batch of 1024
    warmup, total = int(cfg.warmup_epochs * updates), cfg.epochs * updates
    steps = {"warm-up end": warmup, "mid-run": warmup + (total - warmup) // 2, "last": total - 1}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    scheduler = build_scheduler(cfg, optimizer, updates)
    for where, step in steps.items():
        want = official_lr(step, 0.4, warmup, total)
        assert lr_at(scheduler, optimizer, step) == pytest.approx(want, rel=1e-12), where
    assert lr_at(scheduler, optimizer, warmup - 1) == pytest.approx(0.4 * (warmup - 1) / warmup, rel=1e-12)
    # timm's own cosine spans the warm-up too: lower mid-run, so the check above can tell them apart
    cfg.warmup_prefix = False
    timm_default = build_scheduler(cfg, optimizer, updates)
    mid = steps["mid-run"]
    assert lr_at(timm_default, optimizer, mid) < 0.99 * official_lr(mid, 0.4, warmup, total)


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_every_paper_preset_uses_the_official_schedule(preset: str) -> None:
    assert preset in list_presets()
    cfg = config_of(preset)
    assert (cfg.sched, cfg.warmup_prefix, cfg.warmup_epochs, cfg.warmup_lr, cfg.min_lr) == ("cosine", True, 5, 0, 0)


@pytest.mark.parametrize("preset", [f"e{i}" for i in range(10)])
def test_ladder_presets_subtract_the_means_only(preset: str) -> None:
    cfg = config_of(preset)
    assert cfg.mean == pytest.approx(CLOVA_MEAN, abs=1e-15) and cfg.std == pytest.approx(CLOVA_STD, abs=1e-15)
    model = timm.create_model("test_resnet", pretrained=False)  # its own data config divides by timm's std
    train_tf, eval_tf, export_cfg = build_transforms(cfg, model)
    for transform in (train_tf, eval_tf):
        normalize = transform.transforms[-1]  # torchvision Normalize, tensors
        assert normalize.mean.tolist() == pytest.approx(CLOVA_MEAN)
        assert normalize.std.tolist() == pytest.approx(CLOVA_STD)
    assert export_cfg["mean"] == pytest.approx(CLOVA_MEAN) and export_cfg["std"] == pytest.approx(CLOVA_STD)


def test_live_teacher_runs_in_fp32_under_the_students_autocast() -> None:
    seen: list[tuple[torch.dtype, bool]] = []
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    teacher.register_forward_hook(lambda m, i, out: seen.append((out.dtype, torch.is_autocast_enabled("cpu"))))
    recipe = BatchRecipe(3, distilling=True, teacher=teacher)
    images = torch.randn(2, 3, 2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as if the engine called it inside the student's autocast
        _, targets = recipe((images, images), torch.tensor([0, 2]))
    assert seen == [(torch.float32, False)]
    torch.testing.assert_close(targets[:, 3:], torch.softmax(teacher(images), 1), rtol=0, atol=1e-7)
