"""Loss pieces from timm: criterion for (mixed) targets, Mixup, and the task that adds logit distillation."""

from __future__ import annotations

import torch.nn as nn
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.task import ClassificationTask, DistillationTeacher, LogitDistillationTask, TrainingTask

from .config import TrainConfig


def build_mixup(cfg: TrainConfig, num_classes: int) -> Mixup | None:
    """timm Mixup/CutMix on the device batch; it also applies the label smoothing."""
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    return Mixup(
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        prob=cfg.mixup_prob,
        switch_prob=cfg.mixup_switch_prob,
        mode="batch",
        label_smoothing=cfg.label_smoothing,
        num_classes=num_classes,
    )


def build_criterion(cfg: TrainConfig, mixup: Mixup | None) -> nn.Module:
    if mixup is not None:
        return SoftTargetCrossEntropy()  # targets are already mixed and smoothed
    if cfg.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing)
    return nn.CrossEntropyLoss()


def build_task(
    student: nn.Module,
    criterion: nn.Module,
    cfg: TrainConfig,
    teacher: nn.Module | None,
    device,
) -> TrainingTask:
    """Student forward + loss. With a teacher: task loss + kd_weight * T^2 * KL(student/T || teacher/T) on the
    very same (mixed) batch; timm re-normalises the input to the teacher's own mean/std."""
    if teacher is None:
        return ClassificationTask(student, criterion=criterion, device=device, verbose=False)
    return LogitDistillationTask(
        student_model=student,
        teacher_model=DistillationTeacher(teacher, device=device),
        criterion=criterion,
        distill_loss_weight=cfg.kd_weight,
        task_loss_weight=1.0,
        temperature=cfg.kd_temperature,
        device=device,
        verbose=False,
    )
