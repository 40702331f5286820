"""Inference-only "deploy" copies of timm models: BatchNorm folded into the preceding conv / linear layer.

Like the RepVGG-style re-parameterisation in timm, `deploy_model` returns an eval-only copy that computes
the same function with fewer layers: every BatchNorm whose input is the output of a plain `nn.Conv2d`
(or `nn.Linear`) used by nothing else is folded into that layer's weight and bias, and the training-only
modules (DropBlock, drop-path, dropout) are removed. The module tree is kept (a folded BN becomes
`nn.Identity`), so the copy still has `forward_features`, `pretrained_cfg` and scripts with TorchScript.

Which conv feeds which BN is read from a torch.fx trace of the model (timm's leaf modules and no-trace
functions respected), never guessed from the order of attributes.
"""

import copy

import torch
import torch.fx
import torch.nn as nn
from timm.layers import BatchNormAct2d, Conv2dSame, DropPath
from timm.layers import DropBlock2d as TimmDropBlock2d
from timm.layers._fx import get_notrace_functions, is_notrace_module

from ..errors import TimmAssembleError
from ..layers import DropBlock2d

TRAINING_ONLY = (DropBlock2d, TimmDropBlock2d, DropPath, nn.Dropout, nn.Dropout2d)
_BN2D = (nn.BatchNorm2d, BatchNormAct2d)
_FOLDABLE = {nn.Conv2d: _BN2D, Conv2dSame: _BN2D, nn.Linear: (nn.BatchNorm1d,)}  # layer type -> BN types


class _Tracer(torch.fx.Tracer):
    """timm's FX leaves and wrapped functions, plus BatchNormAct2d kept whole so it can be matched."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=tuple(get_notrace_functions()))

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, BatchNormAct2d) or is_notrace_module(type(m)) or super().is_leaf_module(m, qualname)


def foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer name, BN name) for every BN fed only by a plain conv / linear whose output goes nowhere else."""
    try:
        graph = _Tracer().trace(model)
    except Exception as err:  # FX raises many types on untraceable Python
        raise TimmAssembleError(f"cannot trace {type(model).__name__} to find its conv-BN pairs: {err}") from err
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or not isinstance(node.args[0], torch.fx.Node):
            continue
        src, bn = node.args[0], modules[node.target]
        if src.op != "call_module" or len(src.users) != 1 or calls[src.target] != 1 or calls[node.target] != 1:
            continue
        layer = modules[src.target]
        if type(bn) in _FOLDABLE.get(type(layer), ()) and bn.track_running_stats and bn.running_mean is not None:
            pairs.append((src.target, node.target))
    return pairs


@torch.no_grad()
def fold_bn(layer: nn.Conv2d | nn.Linear, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold eval-mode `bn` into `layer` in place: `bn(layer(x)) == layer'(x)` (up to rounding)."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    if layer.bias is not None:
        shift = shift + layer.bias.double() * scale
    weight = layer.weight.double() * scale.view(-1, *([1] * (layer.weight.dim() - 1)))
    layer.weight.copy_(weight.to(layer.weight.dtype))
    layer.bias = nn.Parameter(shift.to(layer.weight.dtype), requires_grad=False)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _after_bn(bn: nn.Module) -> nn.Module:
    """What stays of a folded BN: nothing, or the dropout and activation of a timm BatchNormAct2d."""
    if isinstance(bn, BatchNormAct2d):
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def deploy_model(model: nn.Module) -> nn.Module:
    """An eval-only copy of `model` with BatchNorms folded into their convs and training-only modules removed.

    The original is not changed. The copy's parameters do not require grad; it computes the original's
    eval-mode output up to float rounding (relative error around 1e-6).
    """
    deployed = copy.deepcopy(model).eval()
    for name, module in list(deployed.named_modules()):
        if name and isinstance(module, TRAINING_ONLY):
            _replace(deployed, name, nn.Identity())
    for layer_name, bn_name in foldable_pairs(deployed):
        bn = deployed.get_submodule(bn_name)
        fold_bn(deployed.get_submodule(layer_name), bn)
        _replace(deployed, bn_name, _after_bn(bn))
    deployed.requires_grad_(False)
    return deployed


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """max |output - reference| / max |reference|: the parity measure of deploy copies and exports."""
    return ((output.float() - reference.float()).abs().max() / reference.float().abs().max().clamp_min(1e-12)).item()
