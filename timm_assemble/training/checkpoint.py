"""Checkpoints: accelerate `save_state` into a temporary folder, renamed into place (`last`, `best`).

A checkpoint folder holds what accelerate saves (model, optimizer, scaler, RNG states per process),
`ema.safetensors` when EMA is on, and `train_state.json` (epoch, step, best metric). The lr schedule is
a pure function of the step, so it needs no state of its own.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch.nn as nn
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from ..errors import TimmAssembleError
from ..fileio import atomic_write, replace_dir

STATE_NAME = "train_state.json"
EMA_NAME = "ema.safetensors"


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer updates completed
    best_metric: float | None = None
    best_epoch: int | None = None


def find_checkpoint(path: Path) -> Path | None:
    """`path` if complete, else the `.old` copy a crash between the two renames may have left."""
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / STATE_NAME).is_file():
            return candidate
    return None


def save_checkpoint(
    accelerator: Accelerator, ckpt_dir: Path, state: TrainState, ema: nn.Module | None, best: bool
) -> Path:
    """Every process calls this (accelerate saves per-process RNG states); the main one renames."""
    last = ckpt_dir / "last"
    tmp = ckpt_dir / "last.tmp"
    if accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()  # every process has written its RNG state before the folder moves
    if accelerator.is_main_process:
        if ema is not None:
            save_file({k: v.detach().contiguous().cpu() for k, v in ema.state_dict().items()}, str(tmp / EMA_NAME))
        atomic_write(tmp / STATE_NAME, json.dumps(asdict(state), indent=1))
        replace_dir(tmp, last)
        if best:
            best_tmp = ckpt_dir / "best.tmp"
            shutil.rmtree(best_tmp, ignore_errors=True)
            shutil.copytree(last, best_tmp, copy_function=_link_or_copy)
            replace_dir(best_tmp, ckpt_dir / "best")
    accelerator.wait_for_everyone()
    return last


def _link_or_copy(src: str, dst: str) -> None:
    """Hard links: `best` costs no space while it equals `last` (files are never modified in place)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def load_checkpoint(accelerator: Accelerator, path: Path, ema: nn.Module | None) -> TrainState:
    found = find_checkpoint(path)
    if found is None:
        raise TimmAssembleError(f"{path} is not a training checkpoint (no {STATE_NAME})")
    accelerator.load_state(str(found))
    if ema is not None:
        ema_file = found / EMA_NAME
        if not ema_file.is_file():
            raise TimmAssembleError(f"checkpoint {found} has no EMA weights but --model-ema is on")
        ema.load_state_dict(load_file(str(ema_file)))
    return TrainState(**json.loads((found / STATE_NAME).read_text()))
