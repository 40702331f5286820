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


def model_kwargs_field() -> Any:
    """timm's `--model-kwargs KEY=VALUE ...`: keyword arguments of `create_model`."""
    return field(
        default_factory=dict, metadata=dict(help="architecture kwargs, e.g. width=8, as timm's --model-kwargs")
    )


def num_classes_field(low: int = 1) -> Any:
    help_text = "classifier size (for --checkpoint, or with --reset-classifier)"
    return field(default=None, metadata=dict(help=help_text, bounds=f"[{low}, inf)"))


def input_size_field() -> Any:
    """timm's `--input-size C H W`, which wins over `--img-size`."""
    return field(
        default=None, metadata=dict(help="full input size C H W; wins over --img-size", bounds="[1, inf)", metavar="N")
    )


def device_field() -> Any:
    return field(default_factory=default_device, metadata=dict(help="torch device (cuda when available)"))


def channels_last_field() -> Any:
    return field(default=False, metadata=dict(help="channels_last memory format"))


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


PRETRAINED_SPELLINGS = {"default": dict(pretrained=True), "none": dict(pretrained=False)}  # as train's values


@dataclass
class ModelOptions:
    """Which model and weights: the model flags of timm's validate.py / inference.py, with their meaning."""

    model: str | None = field(
        default=None,
        metadata=dict(help="timm name, local-dir:DIR or hf-hub:ORG/NAME", required=True, flags=("-m",)),
    )
    pretrained: bool = field(
        default=True,
        metadata=dict(
            help="the model's pretrained weights (--pretrained none or --no-pretrained: random, smoke tests); "
            "ignored with --checkpoint",
            spellings=PRETRAINED_SPELLINGS,
            metavar="default|none",
        ),
    )
    checkpoint: str | None = field(
        default=None,
        metadata=dict(help="weights file to load: .safetensors, or a .pth / timm train.py .pth.tar", metavar="PATH"),
    )
    use_ema: bool = field(
        default=False, metadata=dict(help="with --checkpoint: its EMA weights (state_dict_ema), as timm's --use-ema")
    )
    num_classes: int | None = num_classes_field()
    in_chans: int | None = field(
        default=None, metadata=dict(help="input image channels (None: the model's)", bounds="[1, inf)")
    )
    gp: str | None = field(
        default=None, metadata=dict(help="global pool type (None: the model's), timm's --gp", metavar="POOL")
    )
    model_kwargs: dict[str, Any] = model_kwargs_field()

    def create_kwargs(self) -> dict[str, Any]:
        """`create_model` keyword arguments of these flags, as timm's validate.py passes them."""
        named = dict(in_chans=self.in_chans, global_pool=self.gp)
        return {**{k: v for k, v in named.items() if v is not None}, **self.model_kwargs}


@dataclass
class DataConfigOptions:
    """Overrides of the model's eval data config: timm's `resolve_data_config` arguments."""

    img_size: int | None = field(
        default=None, metadata=dict(help="input size (None: the model's test size)", bounds="[1, inf)")
    )
    input_size: tuple[int, int, int] | None = input_size_field()
    use_train_size: bool = field(
        default=False, metadata=dict(help="the model's train input size and crop instead of its test ones")
    )
    crop_pct: float | None = field(
        default=None, metadata=dict(help="centre-crop fraction (None: the model's)", bounds="(0, 1]")
    )
    crop_mode: str | None = field(
        default=None, metadata=dict(help="crop mode: center, squash or border (None: the model's)")
    )
    interpolation: str = field(default="", metadata=dict(help="resize interpolation ('': the model's)", metavar="NAME"))
    mean: list[float] | None = field(default=None, metadata=dict(help="input mean (None: the model's)", metavar="MEAN"))
    std: list[float] | None = field(
        default=None, metadata=dict(help="input std (None: the model's)", bounds="(0, inf)", metavar="STD")
    )

    def data_config_args(self) -> dict[str, Any]:
        """The overrides that are set, as `timm.data.resolve_data_config` reads them."""
        names = ("img_size", "input_size", "use_train_size", "crop_pct", "crop_mode", "interpolation", "mean", "std")
        return {n: getattr(self, n) for n in names if getattr(self, n) not in (None, "", False)}


@dataclass
class RunOptions:
    """Batching, device and precision of an evaluation (timm's -b, -j, --device, --amp, --channels-last)."""

    batch_size: int = field(default=64, metadata=dict(help="images per batch", bounds="[1, inf)", flags=("-b",)))
    workers: int = field(
        default_factory=lambda: min(4, os.cpu_count() or 1),
        metadata=dict(help="data loader processes", bounds="[0, inf)", flags=("-j",)),
    )
    device: str = device_field()
    amp: bool = amp_field()
    amp_dtype: str = amp_dtype_field()
    channels_last: bool = channels_last_field()

    @property
    def amp_mode(self) -> str:
        return amp_mode(self.amp, self.amp_dtype)


@dataclass
class EvalOptions(RunOptions, DataConfigOptions, ModelOptions):
    """Which model to evaluate and how: weights, data config, batching, device, precision."""

    split: str = field(
        default="validation",
        metadata=dict(help="with a --data-dir holding splits (train/, val/, ...): the one to evaluate, as timm's"),
    )
    reset_classifier: bool = field(
        default=False,
        metadata=dict(help="with --num-classes on trained weights: evaluate with a new, random classifier"),
    )
    limit: int | None = field(
        default=None, metadata=dict(help="evaluate an evenly spaced subset of N images", bounds="[1, inf)")
    )


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
