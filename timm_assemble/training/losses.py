"""The loss of the paper's recipe: mixup, label smoothing and knowledge distillation in the official order.

The official step (clovaai/assembled-cnn), which `BatchRecipe` + `RecipeLoss` reproduce:
- `functions/input_fns.py:98-100`: with `mixup_type=1` every step decodes 2N images for N outputs.
- `nets/run_loop_classification.py:90-96`: teacher probabilities are softmax(teacher logits / T); the logits
  were computed once, offline, from clean centre crops at the teacher's own size (`kd/`, stored next to
  each image, `utils/data_util.py:243-248`).
- `utils/data_util.py:97-129` (`mixup`, `keep_batch_size=False`): lambda ~ Beta(0.2, 0.2) per output
  sample; output i = lambda_i * image i + (1 - lambda_i) * image N + i (first half with second half);
  one-hot labels and teacher probabilities mixed with the same lambda_i.
- `losses/cls_losses.py:31-33`: cross-entropy against the mixed labels with label smoothing applied to them
  (linear, so identical to mixing smoothed labels, timm's order).
- `nets/run_loop_classification.py:156-179`: loss = CE + T^2 * CE(logits / T, mixed teacher probabilities)
  (+ the L2 term, here the optimizer's weight decay).

timm's `Mixup` cannot return the lambda it drew (KD needs it for the teacher probabilities) nor drop half of
its batch, so the official mode is here; timm's `Mixup` does the N -> N modes ('batch', 'elem').
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import one_hot
from timm.loss import SoftTargetCrossEntropy
from timm.task import ClassificationTask, TrainingTask

from .config import TrainConfig


def smooth_one_hot(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot labels with label smoothing: 1 - s + s / C on the class, s / C elsewhere (timm's values)."""
    off = smoothing / num_classes
    return one_hot(targets, num_classes, on_value=1.0 - smoothing + off, off_value=off)


def mix_halves(
    images: torch.Tensor, lam: torch.Tensor, *soft_targets: torch.Tensor | None
) -> tuple[torch.Tensor | None, ...]:
    """Official mixup, 2N -> N: output i = lam_i * x_i + (1 - lam_i) * x_(N+i), for the images and each target."""
    n = images.shape[0] // 2
    mixed = []
    for x in (images, *soft_targets):
        if x is None:
            mixed.append(None)
            continue
        weight = lam.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        mixed.append(x[:n] * weight + x[n : 2 * n] * (1.0 - weight))
    return tuple(mixed)


class BatchRecipe:
    """Turns a loaded batch into (student images, soft targets) as the official step does.

    `images` is a tensor, or with KD a pair (student images, teacher input) where the teacher input is either
    the clean images at the teacher's size and normalisation (run through `teacher`) or precomputed teacher
    logits (2-D). The soft targets are the smoothed (mixed) labels, followed by the (mixed) teacher
    probabilities when distilling: `RecipeLoss` splits them again.
    """

    def __init__(
        self,
        num_classes: int,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        timm_mixup: Mixup | None = None,
        distilling: bool = False,
        teacher: nn.Module | None = None,
        kd_temperature: float = 1.0,
    ) -> None:
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mixup_alpha = mixup_alpha
        self.timm_mixup = timm_mixup
        self.distilling = distilling
        self.teacher = teacher
        self.kd_temperature = kd_temperature

    @property
    def images_per_sample(self) -> int:
        """Loaded images per trained sample: 2 with the official mixup."""
        return 2 if self.mixup_alpha > 0 else 1

    @torch.no_grad()
    def teacher_probs(self, teacher_input: torch.Tensor) -> torch.Tensor:
        """softmax(teacher logits / T) in fp32. The official logits were computed offline in fp32, so a live
        teacher runs with autocast off, whatever precision the student trains in."""
        if teacher_input.ndim == 2:
            logits = teacher_input
        else:
            with torch.autocast(teacher_input.device.type, enabled=False):
                logits = self.teacher(teacher_input.float())
        return F.softmax(logits.float() / self.kd_temperature, dim=1)

    def sample_lambda(self, n: int, device: torch.device) -> torch.Tensor:
        alpha = torch.tensor(float(self.mixup_alpha))
        return torch.distributions.Beta(alpha, alpha).sample((n,)).to(device)

    @torch.no_grad()
    def __call__(self, images, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher_probs = None
        if self.distilling:
            images, teacher_input = images
            teacher_probs = self.teacher_probs(teacher_input)
        if self.timm_mixup is not None:
            images, labels = self.timm_mixup(images, targets)
        else:
            labels = smooth_one_hot(targets, self.num_classes, self.label_smoothing)
            if self.mixup_alpha > 0:
                lam = self.sample_lambda(images.shape[0] // 2, images.device)
                images, labels, teacher_probs = mix_halves(images, lam, labels, teacher_probs)
        return images, labels if teacher_probs is None else torch.cat([labels, teacher_probs.to(labels.dtype)], 1)


class RecipeLoss(nn.Module):
    """Soft-target cross-entropy on the labels + kd_weight * T^2 * cross-entropy(logits / T, teacher probs)."""

    def __init__(self, num_classes: int, kd_weight: float = 0.0, kd_temperature: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.kd_weight = kd_weight
        self.kd_temperature = kd_temperature
        self.soft_ce = SoftTargetCrossEntropy()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        loss = self.soft_ce(logits, target[:, : self.num_classes])
        if target.shape[1] > self.num_classes:
            temperature = self.kd_temperature
            kd = self.soft_ce(logits / temperature, target[:, self.num_classes :])
            loss = loss + self.kd_weight * temperature**2 * kd
        return loss


def build_recipe(cfg: TrainConfig, num_classes: int, teacher: nn.Module | None = None) -> BatchRecipe:
    """The batch step of `cfg`: official paired mixup ('pair') or timm's Mixup ('batch' / 'elem')."""
    timm_mixup = None
    if (cfg.mixup > 0 or cfg.cutmix > 0) and cfg.mixup_mode != "pair":
        timm_mixup = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            prob=cfg.mixup_prob,
            switch_prob=cfg.mixup_switch_prob,
            mode=cfg.mixup_mode,
            label_smoothing=cfg.label_smoothing,
            num_classes=num_classes,
        )
    return BatchRecipe(
        num_classes,
        label_smoothing=cfg.label_smoothing,
        mixup_alpha=cfg.mixup if cfg.mixup_mode == "pair" else 0.0,
        timm_mixup=timm_mixup,
        distilling=cfg.distilling,
        teacher=teacher,
        kd_temperature=cfg.kd_temperature,
    )


def build_task(student: nn.Module, cfg: TrainConfig, num_classes: int, device) -> TrainingTask:
    """Student forward + `RecipeLoss` on the targets `BatchRecipe` made."""
    criterion = RecipeLoss(
        num_classes, kd_weight=cfg.kd_weight if cfg.distilling else 0.0, kd_temperature=cfg.kd_temperature
    )
    return ClassificationTask(student, criterion=criterion, device=device, verbose=False)
