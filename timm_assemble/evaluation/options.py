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

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # autocast modes, by short name
TIMM_AMP_DTYPES = {"float16": "fp16", "bfloat16": "bf16"}  # timm's --amp-dtype -> the mode
# the older `--amp none|bf16|fp16` (and amp="bf16" in the API): the same settings, spelled in one word
AMP_SPELLINGS = {
    "none": dict(amp=False),
    "fp16": dict(amp=True, amp_dtype="float16"),
    "bf16": dict(amp=True, amp_dtype="bfloat16"),
}


def amp_field() -> Any:
    """timm's `--amp` (older spelling `--amp none|fp16|bf16`), for every options dataclass that autocasts."""
    help_text = "autocast in mixed precision (timm's --amp; older spelling --amp none|fp16|bf16)"
    return field(default=False, metadata=dict(help=help_text, spellings=AMP_SPELLINGS, metavar="OLD_SPELLING"))


def amp_dtype_field() -> Any:
    return field(
        default="float16", metadata=dict(help="dtype of --amp: float16 or bfloat16", choices=tuple(TIMM_AMP_DTYPES))
    )


def amp_mode(amp: bool, amp_dtype: str) -> str:
    """The autocast mode of timm's `--amp` / `--amp-dtype` settings: none, fp16 or bf16."""
    if amp_dtype not in TIMM_AMP_DTYPES:
        raise TimmAssembleError(f"amp_dtype must be float16 or bfloat16, got {amp_dtype!r}")
    return TIMM_AMP_DTYPES[amp_dtype] if amp else "none"


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
    amp: bool = amp_field()
    amp_dtype: str = amp_dtype_field()
    channels_last: bool = field(default=False, metadata=dict(help="channels_last memory format"))

    @property
    def amp_mode(self) -> str:
        return amp_mode(self.amp, self.amp_dtype)


def eval_options(model: str, **settings: Any) -> EvalOptions:
    """`EvalOptions` for `model` from keyword settings (its field names), bounds-checked like the flags."""
    if isinstance(settings.get("amp"), str):  # the older amp="bf16": same meaning
        if settings["amp"] not in AMP_SPELLINGS:
            raise TimmAssembleError(f"amp must be a bool or one of {', '.join(AMP_SPELLINGS)}, got {settings['amp']!r}")
        settings = {**settings, **AMP_SPELLINGS[settings["amp"]]}
    options = EvalOptions(model=model, **settings)
    check_bounds(options)
    amp_mode(options.amp, options.amp_dtype)
    return options
