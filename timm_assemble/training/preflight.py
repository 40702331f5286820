"""Checks of the model settings that run before any file is written: kwargs and input sizes, on the meta device.

A bad `--model-kwargs` value (`width=0`, `width=abc`) or an input size the network cannot take would
otherwise fail deep inside the model's constructor or in the first batch, after the run folder was made.
Building the model on the meta device costs no memory and no weights, so every setting is tried first.
"""

from __future__ import annotations

import warnings
from typing import Any

import timm
import torch
import torch.nn as nn
from timm.models import split_model_name_tag

from ..errors import TimmAssembleError
from ..sizing import Claim, check_budget, check_claims, kwarg_claims
from .config import TrainConfig
from .model_setup import training_kwargs


def _one_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {text[:160]}"


def _build(name: str, kwargs: dict[str, Any], device: str = "meta") -> nn.Module:
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")  # zero-size tensors of a bad width warn before they fail
        return timm.create_model(name, pretrained=False, **kwargs)


def _fails(name: str, kwargs: dict[str, Any]) -> bool:
    try:
        _build(name, kwargs)
    except Exception:
        return True
    return False


_SIZE_FLAGS = (("img_size", "--img-size"), ("eval_img_size", "--eval-img-size"), ("num_classes", "--num-classes"))


def check_model_settings(cfg: TrainConfig) -> None:
    """One line naming the kwarg or size flag the model cannot be built or run with (registry models only)."""
    arch = split_model_name_tag(cfg.model)[0]
    if not timm.is_model(arch):
        return  # local-dir:/hf-hub: models and unknown names are checked where they are built
    kwargs = {**cfg.model_kwargs, **training_kwargs(cfg, cfg.num_classes or 2)}
    claims = [*kwarg_claims(cfg.model_kwargs, "--model-kwargs"), Claim("batch_size", cfg.batch_size, "--batch-size")]
    claims += [Claim(k, getattr(cfg, k), flag) for k, flag in _SIZE_FLAGS if getattr(cfg, k)]
    check_claims(claims)
    try:
        model = _build(arch, kwargs)
    except Exception as err:
        if not _fails(arch, {}):  # the meta device itself is not the problem: name the setting
            bad = next((k for k, v in kwargs.items() if _fails(arch, {k: v})), None)
            if bad in cfg.model_kwargs:
                raise TimmAssembleError(
                    f"--model-kwargs {bad}={cfg.model_kwargs[bad]!r}: {arch} cannot be built with it ({_one_line(err)})"
                ) from err
            raise TimmAssembleError(f"{arch} cannot be built with {kwargs} ({_one_line(err)})") from err
        return  # a model that cannot be built on the meta device: checked when it is built for real
    model.eval()
    for flag, size in (("--img-size", cfg.img_size), ("--eval-img-size", cfg.eval_img_size)):
        if size:
            try:
                with torch.no_grad():
                    model(torch.empty(1, kwargs.get("in_chans", 3), size, size, device="meta"))
            except Exception as err:
                raise TimmAssembleError(
                    f"{flag} {size}: {arch} cannot take {size}x{size} inputs ({_one_line(err)})"
                ) from err
    size = cfg.img_size or int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    check_budget(model, f"training {arch}", claims, size, cfg.batch_size, True, kwargs.get("in_chans", 3))
