"""Official TensorFlow variable names -> AssembleResNet state_dict, derived from the model's own structure.

The official code names layers per scope in creation order (`conv2d`, `conv2d_1`, ...;
`batch_normalization`, `batch_normalization_1`, ...; `sk_block`, `sk_block_1`, ...), one BN per conv, and
in a block group's first block the projection shortcut is created before conv1. Walking our model's
blocks in that order yields the full name table for any depth and width, so a checkpoint that does not
match the model shows up as named missing / unexpected variables and shape mismatches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from ..errors import TimmAssembleError
from ..layers import BigLittleStage, SKConv2d

__all__ = [
    "OFFICIAL_MODELS",
    "Target",
    "build_mapping",
    "check_mapping",
    "detect_official_model",
    "is_model_variable",
    "transform",
]

ROOT = "resnet_model"
STEM_KERNEL = f"{ROOT}/stage0/conv2d/kernel"
DENSE_KERNEL = f"{ROOT}/dense/kernel"
DENSE_BIAS = f"{ROOT}/dense/bias"
NUM_OFFICIAL_CLASSES = 1001  # background + 1000 ImageNet classes (TF-slim label convention)

# Blocks per stage of the official configurations (stage 1-3 counts are big branch + 1).
OFFICIAL_MODELS: dict[str, tuple[int, int, int, int]] = {
    "assemble_resnet50": (3, 4, 6, 3),
    "assemble_resnet152": (5, 12, 30, 3),
}

_BN_VARIABLES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_MODEL_VARIABLE = re.compile(rf"^{ROOT}/.+/(kernel|bias|gamma|beta|moving_mean|moving_variance)$")


def is_model_variable(name: str) -> bool:
    """True for network weights; False for global_step, optimizer slots (`.../Momentum`), EMA copies etc."""
    return bool(_MODEL_VARIABLE.match(name))


@dataclass(frozen=True)
class Target:
    """Where one official variable goes and how it is transformed on the way."""

    key: str  # our state_dict key
    # "conv" (HWIO -> OIHW), "fc" (1x1 conv [1, 1, in, out] -> Linear [out, in]), "dense" ([in, out] -> [out, in]),
    # "bias" or "bn" (1-D, as is)
    kind: str


def _numbered(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


class _Scope:
    """Hands out the next auto-generated layer name in one TF variable scope, as Keras layers do."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts: dict[str, int] = {}

    def next(self, base: str) -> str:
        index = self.counts.get(base, 0)
        self.counts[base] = index + 1
        return f"{self.path}/{_numbered(base, index)}"


def _conv(mapping: dict[str, Target], tf_layer: str, ours: str) -> None:
    mapping[f"{tf_layer}/kernel"] = Target(f"{ours}.weight", "conv")


def _bn(mapping: dict[str, Target], tf_layer: str, ours: str) -> None:
    for tf_name, our_name in _BN_VARIABLES.items():
        mapping[f"{tf_layer}/{tf_name}"] = Target(f"{ours}.{our_name}", "bn")


def _conv_bn(mapping: dict[str, Target], scope: _Scope, conv: str, bn: str) -> None:
    _conv(mapping, scope.next("conv2d"), conv)
    _bn(mapping, scope.next("batch_normalization"), bn)


def _child_name(parent: nn.Module, kind: type[nn.Module]) -> str:
    names = [name for name, child in parent.named_children() if isinstance(child, kind)]
    if len(names) != 1:
        raise TypeError(f"expected one {kind.__name__} in {type(parent).__name__}, found {names}")
    return names[0]


def _block_group(mapping: dict[str, Target], scope: _Scope, blocks: nn.Sequential, prefix: str) -> None:
    for index, block in enumerate(blocks):
        # the official SK bottleneck, recognised by its SK conv: this module must not import the model module,
        # which reaches the converter through pretrained-weight resolution
        if not isinstance(getattr(block, "conv2", None), SKConv2d):
            raise TypeError(f"{prefix}.{index} is not an SK bottleneck; only the official models are convertible")
        ours = f"{prefix}.{index}"
        if block.downsample is not None:  # the shortcut's layers are created first
            conv = _child_name(block.downsample, nn.Conv2d)
            norm = _child_name(block.downsample, nn.BatchNorm2d)
            _conv_bn(mapping, scope, f"{ours}.downsample.{conv}", f"{ours}.downsample.{norm}")
        _conv_bn(mapping, scope, f"{ours}.conv1", f"{ours}.bn1")
        _conv_bn(mapping, scope, f"{ours}.conv2.conv", f"{ours}.conv2.bn")
        sk = scope.next("sk_block")
        mapping[f"{sk}/sk_fc_1/kernel"] = Target(f"{ours}.conv2.fc1.weight", "fc")
        _bn(mapping, f"{sk}/batch_normalization", f"{ours}.conv2.bn_fc1")
        mapping[f"{sk}/sk_fc_2/kernel"] = Target(f"{ours}.conv2.fc2.weight", "fc")
        _conv_bn(mapping, scope, f"{ours}.conv3", f"{ours}.bn3")


def build_mapping(model: nn.Module) -> dict[str, Target]:
    """Official variable name -> target in `model`, in the official creation order."""
    mapping: dict[str, Target] = {}
    _conv(mapping, f"{ROOT}/stage0/conv2d", "conv1")
    _bn(mapping, f"{ROOT}/stage0_1/batch_normalization", "bn1")
    stem = _Scope(f"{ROOT}/stage0/pool")
    for part in ("big", "little1", "little2", "little3", "fuse"):
        _conv_bn(mapping, stem, f"stem_pool.{part}.conv", f"stem_pool.{part}.bn")
    for n in (1, 2, 3):
        stage = getattr(model, f"layer{n}")
        if not isinstance(stage, BigLittleStage):
            raise TypeError(f"layer{n} is not a Big-Little stage; only the official models are convertible")
        _block_group(mapping, _Scope(f"{ROOT}/stage{n}/big{n}"), stage.big, f"layer{n}.big")
        little = _Scope(f"{ROOT}/stage{n}/little{n}")
        _block_group(mapping, little, stage.little, f"layer{n}.little")
        _conv_bn(mapping, little, f"layer{n}.little_e.conv", f"layer{n}.little_e.bn")
        _block_group(mapping, _Scope(f"{ROOT}/stage{n}/merge{n}"), stage.merge, f"layer{n}.merge")
    _block_group(mapping, _Scope(f"{ROOT}/stage4"), model.layer4, "layer4")
    mapping[DENSE_KERNEL] = Target("fc.weight", "dense")
    mapping[DENSE_BIAS] = Target("fc.bias", "bias")
    return mapping


def official_shape(target: Target, our_shape: tuple[int, ...], drop_background: bool) -> tuple[int, ...]:
    """The shape the official checkpoint stores for a parameter of `our_shape`."""
    if target.kind == "conv":
        out_chs, in_chs, kh, kw = our_shape
        return (kh, kw, in_chs, out_chs)
    if target.kind == "fc":
        out_chs, in_chs = our_shape
        return (1, 1, in_chs, out_chs)
    extra = 1 if drop_background else 0
    if target.kind == "dense":
        return (our_shape[1], our_shape[0] + extra)
    if target.kind == "bias":
        return (our_shape[0] + extra,)
    return tuple(our_shape)


def transform(target: Target, value: np.ndarray, drop_background: bool) -> np.ndarray:
    """Official layout -> ours: HWIO -> OIHW, [in, out] -> [out, in], background class (index 0) dropped."""
    if target.kind == "conv":
        value = value.transpose(3, 2, 0, 1)
    elif target.kind == "fc":
        value = value[0, 0].T
    elif target.kind == "dense":
        value = value.T[1:] if drop_background else value.T
    elif target.kind == "bias" and drop_background:
        value = value[1:]
    return np.ascontiguousarray(value, dtype=np.float32)


def _scope_count(names: Iterable[str], scope: str) -> int:
    pattern = re.compile(rf"^{re.escape(scope)}/sk_block(?:_\d+)?/")
    return len({name.split("/sk_block")[1].split("/")[0] for name in names if pattern.match(name)})


def stage_depths(names: Iterable[str]) -> tuple[int, int, int, int]:
    """Blocks per stage of an official checkpoint, counted from its SK scopes (big branch + 1 in stages 1-3)."""
    names = list(names)
    depths = [_scope_count(names, f"{ROOT}/stage{n}/big{n}") + 1 for n in (1, 2, 3)]
    depths.append(_scope_count(names, f"{ROOT}/stage4"))
    return (depths[0], depths[1], depths[2], depths[3])


def detect_official_model(names: Iterable[str]) -> str | None:
    """Which official configuration a checkpoint's variable names describe, if any."""
    depths = stage_depths(names)
    return next((model for model, layers in OFFICIAL_MODELS.items() if layers == depths), None)


def _format(title: str, items: list[str]) -> str:
    return f"{len(items)} {title}:\n" + "\n".join(f"    {item}" for item in items)


def check_mapping(
    mapping: Mapping[str, Target],
    checkpoint_shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
    model_name: str,
    drop_background: bool,
) -> list[str]:
    """Raise one error listing every missing / unexpected variable and shape mismatch; return ignored names.

    `checkpoint_shapes` is every checkpoint entry; non-model variables (optimizer slots, global_step, ...)
    are not errors and come back as the ignored list.
    """
    ignored = [name for name in checkpoint_shapes if not is_model_variable(name)]
    present = [name for name in checkpoint_shapes if is_model_variable(name)]
    missing = [name for name in mapping if name not in checkpoint_shapes]
    unexpected = [name for name in present if name not in mapping]
    mismatched = []
    for name, target in mapping.items():
        if name in checkpoint_shapes:
            want = official_shape(target, model_shapes[target.key], drop_background)
            got = tuple(checkpoint_shapes[name])
            if got != want:
                mismatched.append(f"{name}: checkpoint {list(got)}, {model_name} needs {list(want)} ({target.key})")
    targets = {target.key for target in mapping.values()}
    unmapped = [key for key in model_shapes if key not in targets and not key.endswith("num_batches_tracked")]
    if not (missing or unexpected or mismatched or unmapped):
        return ignored
    detected = detect_official_model(present)
    summary = f"checkpoint does not match {model_name}"
    if detected and detected != model_name:
        summary += f": it looks like an {detected} checkpoint (pass --model {detected})"
    parts = [summary]
    if missing:
        parts.append(_format("model variables missing from the checkpoint", missing))
    if unexpected:
        parts.append(_format("unexpected model variables in the checkpoint", unexpected))
    if mismatched:
        parts.append(_format("shape mismatches", mismatched))
    if unmapped:
        parts.append(_format("model parameters without an official variable (internal error)", unmapped))
    raise TimmAssembleError("\n".join(parts))
