"""The settings every evaluation shares (model, weights, data config, batching, device, precision): one dataclass.

`validate`, `robustness`, `teacher-logits` and their command lines all take an `EvalOptions`, so the API and the
CLI have one set of defaults.
"""

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import TimmAssembleError
from ..options import check_bounds

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> str:
    """cuda when available, as timm's scripts."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TimmAssembleError("--device cuda requested but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise TimmAssembleError(f"bad --device {name!r}: {err}") from err


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class EvalOptions:
    """Which model to evaluate and how: weights, data config, batching, device, precision."""

    model: str | None = field(
        default=None, metadata=dict(help="timm name, local-dir:DIR or hf-hub:ORG/NAME", required=True)
    )
    pretrained: bool = field(
        default=True, metadata=dict(help="pretrained weights for registry names (--no-pretrained: random, smoke tests)")
    )
    checkpoint: str | None = field(
        default=None, metadata=dict(help="state dict to load (.safetensors, or weights-only .pth)")
    )
    split: str = field(
        default="validation",
        metadata=dict(help="with a --data-dir holding splits (train/, val/, ...): the one to evaluate, as timm's"),
    )
    num_classes: int | None = field(
        default=None,
        metadata=dict(help="classifier size (for --checkpoint, or with --reset-classifier)", bounds="[1, inf)"),
    )
    reset_classifier: bool = field(
        default=False,
        metadata=dict(help="with --num-classes on trained weights: evaluate with a new, random classifier"),
    )
    img_size: int | None = field(
        default=None, metadata=dict(help="input size (None: the model's test size)", bounds="[1, inf)")
    )
    crop_pct: float | None = field(
        default=None, metadata=dict(help="centre-crop fraction (None: the model's)", bounds="(0, 1]")
    )
    batch_size: int = field(default=64, metadata=dict(help="images per batch", bounds="[1, inf)"))
    workers: int = field(
        default_factory=lambda: min(4, os.cpu_count() or 1),
        metadata=dict(help="data loader processes", bounds="[0, inf)"),
    )
    limit: int | None = field(
        default=None, metadata=dict(help="evaluate an evenly spaced subset of N images", bounds="[1, inf)")
    )
    device: str = field(default_factory=default_device, metadata=dict(help="torch device"))
    amp: str = field(default="none", metadata=dict(help="autocast dtype", choices=sorted(AMP_DTYPES)))
    channels_last: bool = field(default=False, metadata=dict(help="channels_last memory format"))


def eval_options(model: str, **settings: Any) -> EvalOptions:
    """`EvalOptions` for `model` from keyword settings (its field names), bounds-checked like the flags."""
    options = EvalOptions(model=model, **settings)
    check_bounds(options)
    return options
