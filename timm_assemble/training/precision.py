"""Which mixed precision a run uses: the user's flag, else the launcher's, else the preset's recipe default.

`accelerate launch --mixed_precision X` and `accelerate config` reach the script as ACCELERATE_MIXED_PRECISION.
accelerate writes "no" there when nothing was chosen, so "no" from the launcher cannot be told apart from
silence: it lets a preset's default apply (pass `--no-amp` to force full precision). fp16 needs
a CUDA GPU: asked for explicitly (flag or launcher) without one, it is an error; as a preset's default it
falls back to full precision and says so. bf16 runs on CPUs too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..errors import TimmAssembleError
from ..processes import cpu_forced
from .config import TrainConfig

LAUNCHER_ENV = "ACCELERATE_MIXED_PRECISION"


@dataclass(frozen=True)
class Precision:
    mode: str  # what the Accelerator gets: no | fp16 | bf16 | fp8
    reason: str  # who chose it, in words, for the run's log


def cuda_in_use() -> bool:
    """CUDA is there and the launcher did not ask for the CPU (`accelerate launch --cpu`)."""
    return torch.cuda.is_available() and not cpu_forced()


def choose_precision(cfg: TrainConfig, launcher: str | None = None, cuda: bool | None = None) -> Precision:
    """`launcher` defaults to ACCELERATE_MIXED_PRECISION, `cuda` to `cuda_in_use()` (arguments for tests)."""
    launcher = os.environ.get(LAUNCHER_ENV) if launcher is None else launcher
    cuda = cuda_in_use() if cuda is None else cuda
    if cfg.precision is not None:
        if cfg.precision == "fp16" and not cuda:
            raise TimmAssembleError(
                "--amp (float16) needs a CUDA GPU and none is in use; use --amp --amp-dtype bfloat16 or --no-amp"
            )
        return Precision(cfg.precision, _asked_by(cfg))
    if launcher and launcher != "no":
        if launcher == "fp16" and not cuda:
            raise TimmAssembleError(
                "accelerate launch / accelerate config asks for fp16, which needs a CUDA GPU and none is in use; "
                "launch with --mixed_precision bf16 or no"
            )
        return Precision(launcher, "chosen by accelerate launch / accelerate config")
    preset = cfg.preset_mixed_precision
    if preset is None or preset == "no":
        return Precision("no", "nothing chose mixed precision")
    name = f"preset {cfg.preset}" if cfg.preset else "the config"
    if preset == "fp16" and not cuda:
        return Precision(
            "no",
            f"{name}'s default fp16 needs a CUDA GPU, none is in use: full precision (--amp --amp-dtype bfloat16 "
            "or accelerate launch --mixed_precision bf16 for bf16)",
        )
    return Precision(preset, f"{name}'s default; --amp / --no-amp or accelerate launch --mixed_precision override it")


def _asked_by(cfg: TrainConfig) -> str:
    """Who set --amp: the flag as typed, or the file or preset that holds the setting."""
    source = cfg.source_of("amp")
    flag = "--amp" + (f" --amp-dtype {cfg.amp_dtype}" if cfg.amp_dtype != "float16" else "") if cfg.amp else "--no-amp"
    if source == "flag":
        return flag
    where = source or "the config"
    return f"{where}: amp {'true' if cfg.amp else 'false'}" + (f", amp_dtype {cfg.amp_dtype}" if cfg.amp else "")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions on this CPU (AVX512-BF16 / AMX). Without it PyTorch falls back to
    its reference convolution (`_slow_conv2d`): a bf16 training step on an AVX2 CPU is many times slower
    than fp32 (the profile is in the README's training section)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else True
