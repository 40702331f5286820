"""Shared helpers of the training tests: tiny fast configs and accelerate state resets between runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate.state import AcceleratorState, GradientState

from timm_assemble.data.synthetic import make_synthetic_image_folder
from timm_assemble.training.config import TrainConfig, resolve_config

CLOVA_TF = Path(__file__).resolve().parent / "fixtures" / "clova_tf"  # official-code outputs
R50_W8 = CLOVA_TF / "assemble_resnet50_w8"

# a tiny Assemble-ResNet-50 at 32 px: a few dozen steps take seconds on 2 CPU cores
TINY: dict[str, Any] = dict(
    model="assemble_resnet50",
    model_kwargs={"width": 8},
    img_size=32,
    crop_pct=1.0,
    scale=(0.6, 1.0),
    batch_size=16,
    workers=0,
    epochs=3,
    warmup_epochs=0.5,
    lr=0.05,
    weight_decay=1e-5,
    seed=3,
)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster than two, because
    OpenMP threads spin-wait on each other whenever another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reset_accelerate() -> None:
    """accelerate keeps process-wide singletons; each in-process run needs fresh ones."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def tiny_data(root: Path, classes: int = 4, train: int = 24, val: int = 12, size: int = 32) -> Path:
    return make_synthetic_image_folder(
        root, num_classes=classes, images_per_class={"train": train, "val": val}, image_size=size, seed=0
    )


def tiny_model_folder(folder: Path, num_classes: int, seed: int = 0) -> Path:
    """A `local-dir:` folder of timm's tiny `test_resnet` (random weights from `seed`), as timm's save_for_hf
    writes one: a model to evaluate in a second."""
    import timm

    torch.manual_seed(seed)
    timm.models.save_for_hf(timm.create_model("test_resnet", num_classes=num_classes), folder, safe_serialization=True)
    return folder


def tiny_config(data_dir: Path, out: Path, mode: str = "train", **overrides: Any) -> TrainConfig:
    values = dict(TINY, data_dir=str(data_dir), output_dir=str(out))
    if mode == "finetune":
        values["pretrained"] = "none"
    values.update(overrides)
    return resolve_config(mode, values)
