"""What a set of weights must satisfy before it is used, and what mismatching shapes mean.

Shared by every reader of weights (the loader, the converter, the converted-weights cache), so a NaN tensor
or a checkpoint of another width gets the same one line wherever it is met: the tensors named, or the value
the shapes imply and the flag that fixes it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence

import torch

from ..errors import TimmAssembleError

Shape = Sequence[int]


def non_finite_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """'name (n NaN, m inf)' for every floating tensor holding values that are not finite."""
    found = []
    for name, tensor in tensors:
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
            continue
        counts = {"NaN": int(torch.isnan(tensor).sum()), "inf": int(torch.isinf(tensor).sum())}
        found.append(f"{name} ({', '.join(f'{n} {kind}' for kind, n in counts.items() if n)})")
    return found


def check_finite(tensors: Iterable[tuple[str, torch.Tensor]], what: str) -> None:
    """Raise one line naming the tensors of `what` that hold NaN or inf (a diverged run or a damaged file)."""
    bad = non_finite_tensors(tensors)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise TimmAssembleError(
            f"{what} holds values that are not finite (NaN or inf) in {len(bad)} tensor(s): {', '.join(bad[:3])}"
            f"{more}; they cannot predict: use the weights of a run before it diverged, or an undamaged copy"
        )


def check_finite_logits(logits: torch.Tensor, what: str) -> None:
    """Raise when a model's output is not finite: a score or label computed from it would be meaningless."""
    finite = torch.isfinite(logits).all(dim=-1)
    if not bool(finite.all()):
        raise TimmAssembleError(
            f"the model's output is not finite (NaN or inf) for {int((~finite).sum())} of {len(finite)} {what}: its "
            "weights or the input normalisation (mean/std) are broken, so no prediction or score is given"
        )


def _takes_width(model: torch.nn.Module) -> bool:
    return "width" in inspect.signature(type(model)).parameters


def shape_diagnosis(ckpt: Mapping[str, Shape], model: torch.nn.Module, classifier: str = "fc") -> str | None:
    """What the checkpoint's shapes say about the model they were made for, when it is not `model`.

    Derived from the shapes alone, in order of cause: the stem's width (every later shape follows from it), the
    input channels, then the classifier's classes. None when the shapes point at no single setting.
    """
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    stem_bn, stem_conv = ckpt.get("bn1.weight"), ckpt.get("conv1.weight")
    if stem_bn is not None and "bn1.weight" in own and tuple(stem_bn) != own["bn1.weight"] and len(stem_bn) == 1:
        if _takes_width(model):
            return (
                f"the checkpoint's shapes imply width {stem_bn[0]} (bn1.weight has {stem_bn[0]} channels), the model "
                f"has width {own['bn1.weight'][0]}: pass --model-kwargs width={stem_bn[0]}"
            )
    if stem_conv is not None and len(stem_conv) == 4 and own.get("conv1.weight", (0, 0))[1:2] != tuple(stem_conv[1:2]):
        return (
            f"the checkpoint's conv1.weight {list(stem_conv)} takes {stem_conv[1]} input channels, the model "
            f"{own['conv1.weight'][1]}: pass --model-kwargs in_chans={stem_conv[1]}"
        )
    weight = ckpt.get(f"{classifier}.weight")
    mine = own.get(f"{classifier}.weight")
    if weight is not None and mine is not None and len(weight) == len(mine) == 2 and tuple(weight) != mine:
        if weight[1] == mine[1]:
            return (
                f"the checkpoint's classifier has {weight[0]} classes ({classifier}.weight {list(weight)}), the "
                f"model {mine[0]}: pass --num-classes {weight[0]}"
            )
        return f"the checkpoint's classifier takes {weight[1]} features ({classifier}.weight), the model {mine[1]}"
    return None
