"""Build the student (from scratch or from pretrained weights, head sized for the data) and the KD teacher."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub.constants as hf_constants
import torch.nn as nn
from timm.models import is_model, model_entrypoint

from ..errors import TimmAssembleError
from ..loading import WEIGHT_SUFFIXES, create_model, load_weights
from ..weights.resolve import hub_file_of, hub_file_on_hub
from .config import TrainConfig

_logger = logging.getLogger(__name__)

HUB_PREFIXES = ("local-dir:", "hf-hub:", "hf_hub:")


@dataclass
class BuiltModel:
    model: nn.Module
    arch_kwargs: dict[str, Any]  # architecture kwargs to record in the exported config.json
    source: str  # where the weights came from, in words
    pretrained: bool
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _hub_offline_unless_reachable(name: str, pretrained: bool) -> Iterator[None]:
    """Use only the local Hub cache while the Hub is out of reach (fails fast when the file is not cached).

    Not for our own architectures: their weights resolve fast by themselves (one Hub request without retries,
    then the converted-weights cache and the official source, which must stay reachable).
    """
    hub_file = None if not pretrained or hf_constants.HF_HUB_OFFLINE or _ours(name) else hub_file_of(name)
    if hub_file is None or hub_file_on_hub(*hub_file)[0] is not None:
        yield
        return
    _logger.info("the Hugging Face Hub is not reachable: looking for pretrained weights in the local cache only")
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = False


def _ours(name: str) -> bool:
    arch = name.split(".", 1)[0]
    return is_model(arch) and model_entrypoint(arch).__module__.startswith("timm_assemble.")


def _create(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    with _hub_offline_unless_reachable(name, pretrained):
        return create_model(name, pretrained=pretrained, **kwargs)


def source_model_args(name: str) -> dict[str, Any]:
    """The architecture kwargs a `local-dir:` folder was exported with, to record again in our export
    (timm >= 1.0.31 carries them over by itself, older versions drop them)."""
    if not name.startswith("local-dir:"):
        return {}
    config = json.loads((Path(name.removeprefix("local-dir:")) / "config.json").read_text())
    args = config.get("model_args", {})
    return {k: v for k, v in args.items() if k not in ("num_classes", "in_chans", "global_pool")}


def training_kwargs(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    """Constructor kwargs for the regularisation switches; only the ones in use, so any timm model works."""
    kwargs: dict[str, Any] = dict(num_classes=num_classes)
    for name in ("drop_rate", "drop_path_rate", "bn_momentum", "bn_eps"):
        if getattr(cfg, name):
            kwargs[name] = getattr(cfg, name)
    if cfg.drop_block_keep_probs is not None:  # creates the DropBlock layers; the trainer sets the keep-prob
        kwargs["drop_block_rate"] = 1.0 - min(cfg.drop_block_keep_probs)
    if cfg.zero_init_last is not None:
        kwargs["zero_init_last"] = cfg.zero_init_last
    return kwargs


def build_model(cfg: TrainConfig, num_classes: int) -> BuiltModel:
    """The student: `cfg.pretrained` is none | default | ARCH.TAG | local-dir:DIR | hf-hub:ID | weights file."""
    spec = cfg.pretrained
    train_kwargs = training_kwargs(cfg, num_classes)
    arch_kwargs = dict(cfg.model_kwargs)
    name = cfg.model
    if spec == "none":
        model = _create(name, False, {**arch_kwargs, **train_kwargs})
        return BuiltModel(model, arch_kwargs, "none: training from scratch (random init)", False)

    is_file = spec.endswith(WEIGHT_SUFFIXES) or Path(spec).is_file()
    try:
        if is_file:
            model = _create(name, False, {**arch_kwargs, **train_kwargs})
            dropped = load_weights(model, spec, drop_mismatched_head=True)
            source = f"weights file {spec}" + (f" (new {num_classes}-class head)" if dropped else "")
            return BuiltModel(model, arch_kwargs, source, True)
        if spec == "default":
            target = name
        elif spec.startswith(HUB_PREFIXES):
            target = spec
        else:
            target = spec
            arch = spec.split(".")[0]
            if not name.startswith(HUB_PREFIXES) and name != arch and name != spec:
                raise TimmAssembleError(f"--pretrained {spec} is for '{arch}', but --model is '{name}'")
        model = _create(target, True, {**arch_kwargs, **train_kwargs})
        return BuiltModel(model, {**source_model_args(target), **arch_kwargs}, f"pretrained {target}", True)
    except TimmAssembleError as err:  # the Hub is out of reach, the tag has no weights, ...
        if is_file or not cfg.pretrained_optional:
            raise
        reason = str(err)
    scratch_kwargs = {**arch_kwargs, **cfg.scratch_model_kwargs}
    model = _create(name, False, {**scratch_kwargs, **train_kwargs})
    what = f"{name} (its default pretrained weights)" if spec == "default" else f"'{spec}'"
    note = (
        f"pretrained weights of {what} could not be loaded: {reason}\n  => training {name}"
        + (f" {cfg.scratch_model_kwargs}" if cfg.scratch_model_kwargs else "")
        + " FROM SCRATCH instead"
    )
    return BuiltModel(
        model, scratch_kwargs, "none: training from scratch (pretrained weights unavailable)", False, notes=[note]
    )


def reset_batch_norm_stats(model: nn.Module) -> int:
    """Running mean 0 / var 1 in every BatchNorm: the official fine-tuning restores trainable variables only
    (clovaai/assembled-cnn utils/hook_utils.py:37-56), so moving statistics start fresh. Returns the count."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for module in norms:
        module.reset_running_stats()
    return len(norms)


def official_weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The official decay set (nets/run_loop_classification.py:166-177): every trainable tensor except those of
    normalisation layers, so biases (the classifier's) are decayed too."""
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
    norm_params = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        dict(params=[p for p in trainable if id(p) in norm_params], weight_decay=0.0),
        dict(params=[p for p in trainable if id(p) not in norm_params], weight_decay=weight_decay),
    ]


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(model.get_classifier().parameters())


def freeze_backbone(model: nn.Module) -> int:
    """requires_grad=False for everything but the classifier; returns the number of frozen tensors."""
    head = {id(p) for p in head_parameters(model)}
    if not head:
        raise TimmAssembleError("--freeze-backbone: the model has no classifier parameters to train")
    frozen = 0
    for p in model.parameters():
        if id(p) not in head:
            p.requires_grad_(False)
            frozen += 1
    return frozen


def set_train_mode(model: nn.Module, backbone_frozen: bool) -> None:
    """Train mode; with a frozen backbone only the classifier trains, so BN statistics stay fixed too."""
    if backbone_frozen:
        model.eval()
        model.get_classifier().train()
    else:
        model.train()


def build_teacher(cfg: TrainConfig, num_classes: int, in_chans: int = 3) -> nn.Module:
    """The KD teacher in eval mode with frozen weights; its class count must match the data."""
    name, weights = cfg.teacher, cfg.teacher_weights
    if weights and not name:
        raise TimmAssembleError("--teacher-weights needs --teacher ARCH (the teacher's architecture)")
    assert name is not None
    if weights:
        model = _create(name, False, dict(num_classes=num_classes, in_chans=in_chans))
        load_weights(model, weights, what=f"teacher weights {weights}")
    else:
        try:
            model = _create(name, True, dict(in_chans=in_chans))
        except TimmAssembleError as err:
            raise TimmAssembleError(f"KD teacher: {err}; pass --teacher-weights FILE for local weights") from err
        if model.num_classes != num_classes:
            raise TimmAssembleError(
                f"KD teacher '{name}' predicts {model.num_classes} classes but the data has {num_classes}"
            )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
