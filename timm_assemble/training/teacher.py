"""What the official KD and mixup need from the data: the teacher's own view, precomputed teacher logits, and
the doubled epoch of the 2N -> N mixup.

The official teacher probabilities come from clean centre crops at the teacher's own input size and
normalisation, computed once (clovaai/assembled-cnn `kd/`, stored next to each image; read back by
`utils/data_util.py:243-248`). Live, `TeacherView` gives the teacher that image beside the student's augmented
one; `timm-assemble teacher-logits` computes the same logits once into a file that `TeacherLogitsDataset`
reads back, so a long run does not pay for the teacher every step.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
from torch.utils.data import DataLoader, Dataset

from ..data.datasets import SkippingCollate, SkippingDataset, Unreadable, build_data_splits
from ..errors import TimmAssembleError
from ..evaluation.options import default_device
from ..fileio import atomic_path
from .config import TrainConfig
from .model_setup import build_teacher

_logger = logging.getLogger(__name__)

LOGITS_KEY = "logits"


def teacher_transform(teacher: nn.Module):
    """The teacher's own evaluation transform (size, crop, interpolation, mean/std of its data config)."""
    return create_transform(**resolve_data_config(model=teacher), is_training=False)


class TeacherView:
    """Transform giving (student's augmented view, teacher's clean view) of one image."""

    def __init__(self, student_transform, teacher_transform) -> None:
        self.student_transform = student_transform
        self.teacher_transform = teacher_transform

    def __call__(self, img):
        return self.student_transform(img), self.teacher_transform(img)


class TeacherLogitsDataset(Dataset):
    """`base` with its precomputed teacher logits: ((image, logits), target). Rows are read from the memory-mapped
    file on demand (ImageNet's are 5 GB), opened once per worker process."""

    def __init__(self, base: Dataset, path: str | Path) -> None:
        self.base = base
        self.path = str(path)
        self._rows = None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Any:
        sample = self.base[i]
        if isinstance(sample, Unreadable):
            return sample
        if self._rows is None:
            self._rows = safe_open(self.path, framework="pt").get_slice(LOGITS_KEY)
        img, target = sample
        return (img, self._rows[i]), target


class RepeatDataset(Dataset):
    """`base` `times` over: the official 2N -> N mixup reads each image twice per epoch
    (functions/input_fns.py:98-100 doubles both the batch and the epochs), so an epoch keeps its step count."""

    def __init__(self, base: Dataset, times: int) -> None:
        self.base = base
        self.times = times

    def __len__(self) -> int:
        return len(self.base) * self.times

    def __getitem__(self, i: int) -> Any:
        return self.base[i % len(self.base)]


def sample_names(ds: Dataset) -> list[str] | None:
    """Relative file names of an image-folder dataset in sample order (None for other datasets)."""
    if not isinstance(ds, SkippingDataset):
        return None
    return [str(ds.base.filename(ds._base_index(i))) for i in range(len(ds))]


def samples_digest(ds: Dataset) -> str:
    names = sample_names(ds)
    return hashlib.sha256("\n".join(names).encode()).hexdigest() if names is not None else ""


def check_teacher_logits(path: str | Path, ds: Dataset, num_classes: int) -> Path:
    """`path`, checked to hold the logits of exactly the training samples of `ds`."""
    path = Path(path)
    if not path.is_file():
        raise TimmAssembleError(f"teacher logits file {path} does not exist (make it: timm-assemble teacher-logits)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shape = tuple(f.get_slice(LOGITS_KEY).get_shape())
    except Exception as err:
        raise TimmAssembleError(f"{path}: not a teacher logits file ({type(err).__name__}: {err})") from err
    if shape != (len(ds), num_classes):
        raise TimmAssembleError(
            f"{path} holds logits of shape {shape}, but training has {len(ds)} images of "
            f"{num_classes} classes: recompute them for this data (same --data-dir, --val-fraction, --seed)"
        )
    if meta.get("samples_sha256", "") != samples_digest(ds):
        raise TimmAssembleError(f"{path} was computed for other training images: recompute it for this data")
    return path


def recipe_train_data(
    cfg: TrainConfig, train_ds: Dataset, images_per_sample: int, num_classes: int
) -> tuple[Dataset, int]:
    """The training samples as the recipe consumes them, and the loader's batch: precomputed teacher logits
    attached (`--teacher-logits`); with the official mixup 2 x batch_size images per step, every image twice
    per epoch."""
    if cfg.teacher_logits:
        train_ds = TeacherLogitsDataset(train_ds, check_teacher_logits(cfg.teacher_logits, train_ds, num_classes))
    load_batch = cfg.batch_size * images_per_sample
    if len(train_ds) < load_batch:
        raise TimmAssembleError(
            f"--batch-size {cfg.batch_size} needs {load_batch} images per step, more than the training set has "
            f"({len(train_ds)})"
        )
    return (RepeatDataset(train_ds, images_per_sample) if images_per_sample > 1 else train_ds), load_batch


@torch.no_grad()
def compute_teacher_logits(teacher: nn.Module, ds: Dataset, batch_size: int, workers: int, device: str) -> torch.Tensor:
    """Teacher logits of every sample of `ds` (which yields (image, index)); unreadable images get NaN rows."""
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=SkippingCollate())
    teacher = teacher.to(device).eval()
    logits = torch.full((len(ds), teacher.num_classes), float("nan"))
    for images, indices, bad in loader:
        for name in bad:
            _logger.warning("skipped unreadable image %s", name)
        logits[indices] = teacher(images.to(device)).float().cpu()
    return logits


class _IndexTargets(Dataset):
    """(image, sample index) instead of (image, target)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Any:
        sample = self.base[i]
        return sample if isinstance(sample, Unreadable) else (sample[0], i)


@dataclass
class TeacherLogitsConfig:
    out: str = field(default="", metadata=dict(help="output .safetensors file", positional=True))
    teacher: str = field(default="", metadata=dict(help="KD teacher: timm name / local-dir:DIR"))
    teacher_weights: str | None = field(default=None, metadata=dict(help="KD teacher weights file"))
    data_dir: str | None = field(default=None, metadata=dict(help="ImageFolder root, as given to train.py"))
    dataset: str = field(default="", metadata=dict(help="timm dataset name ('' = folder), as given to train.py"))
    train_split: str = field(default="train", metadata=dict(help="split name of the training data"))
    val_fraction: float | None = field(
        default=None, metadata=dict(help="the --val-fraction of the training run", bounds="(0, 1)")
    )
    seed: int = field(default=42, metadata=dict(help="the --seed of the training run (picks a --val-fraction)"))
    batch_size: int = field(default=64, metadata=dict(help="images per teacher forward", bounds="[1, inf)"))
    workers: int = field(default=4, metadata=dict(help="data loader worker processes", bounds="[0, inf)"))
    device: str = field(default_factory=default_device, metadata=dict(help="torch device (cuda when available)"))
    overwrite: bool = field(default=False, metadata=dict(help="replace an existing output file"))


def run(cfg: TeacherLogitsConfig) -> Path:
    """Compute the teacher logits of the training images of `cfg` into `cfg.out`."""
    out = Path(cfg.out)
    if not cfg.teacher:
        raise TimmAssembleError("--teacher is required (the KD teacher's architecture or local-dir:DIR)")
    if out.exists() and not cfg.overwrite:
        raise TimmAssembleError(f"{out} exists; pass --overwrite to replace it")
    splits = build_data_splits(
        cfg.data_dir, cfg.dataset, cfg.train_split, "validation", cfg.val_fraction, False, cfg.seed
    )
    teacher = build_teacher(TrainConfig(teacher=cfg.teacher, teacher_weights=cfg.teacher_weights), splits.num_classes)
    train_ds, _ = splits.with_transforms(teacher_transform(teacher), None)
    logits = compute_teacher_logits(teacher, _IndexTargets(train_ds), cfg.batch_size, cfg.workers, cfg.device)
    meta = dict(teacher=cfg.teacher, teacher_weights=cfg.teacher_weights or "", samples_sha256=samples_digest(train_ds))
    with atomic_path(out, needed_bytes=logits.numel() * 4) as tmp:
        save_file({LOGITS_KEY: logits.contiguous()}, str(tmp), metadata=meta)
    return out
