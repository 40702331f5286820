"""What a set of weights must satisfy before it is used, and what mismatching shapes mean.

Shared by every reader of weights (the loader, the converter, the converted-weights cache), so a NaN tensor
or a checkpoint of another width gets the same one line wherever it is met: the tensors named, or the value
the shapes imply and the flag that fixes it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence

import torch

from .errors import TimmAssembleError

Shape = Sequence[int]


def non_finite_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """'name (n NaN, m inf)' for every floating tensor holding values that are not finite."""
    found = []
    for name, tensor in tensors:
        if not tensor.is_floating_point():
            continue
        if tensor.element_size() == 1:  # float8: torch has no isfinite for it
            tensor = tensor.float()
        if not bool(torch.isfinite(tensor).all()):
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


def check_finite_logits(logits: torch.Tensor, what: str, items: Sequence[object] | None = None) -> None:
    """Raise when a model's output is not finite: a score or label computed from it would be meaningless.
    `items` name the rows (image files): the first one with a non-finite output is named."""
    finite = torch.isfinite(logits).all(dim=-1)
    if not bool(finite.all()):
        first = f" (first: {items[int((~finite).nonzero()[0])]})" if items is not None else ""
        raise TimmAssembleError(
            f"the model's output is not finite (NaN or inf) for {int((~finite).sum())} of {len(finite)} {what}{first}: "
            "its weights or the input normalisation (mean/std) are broken, so no prediction or score is given"
        )


def check_tensor_kinds(state: Mapping[str, object], own: Mapping[str, torch.Tensor], what: str) -> None:
    """Every value is a tensor of the model's kind (real floating point for float parameters): torch would copy
    an integer or complex tensor into a float parameter without a word (dropping the imaginary part)."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TimmAssembleError(f"{what}: {key} is not a tensor ({type(value).__name__}); not a weights file")
        if key in own and (value.is_floating_point(), value.is_complex()) != (own[key].is_floating_point(), False):
            raise TimmAssembleError(
                f"{what}: {key} is {str(value.dtype).removeprefix('torch.')}, the model's is "
                f"{str(own[key].dtype).removeprefix('torch.')}; a damaged or foreign file"
            )


def _positive(shape: Shape | None, rank: int) -> bool:
    """A shape of `rank` dimensions, none of them 0: a value a flag can be set to."""
    return shape is not None and len(shape) == rank and min(shape) >= 1


def _takes_width(model: torch.nn.Module) -> bool:
    return "width" in inspect.signature(type(model)).parameters


def shape_diagnosis(ckpt: Mapping[str, Shape], model: torch.nn.Module, classifier: str = "fc") -> str | None:
    """What the checkpoint's shapes say about the model they were made for, when it is not `model`.

    Derived from the shapes alone, in order of cause: the stem's width (every later shape follows from it), the
    input channels, then the classifier's classes. None when the shapes point at no single setting.
    """
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    stem_bn, stem_conv = ckpt.get("bn1.weight"), ckpt.get("conv1.weight")
    if stem_bn is not None and "bn1.weight" in own and tuple(stem_bn) != own["bn1.weight"] and _positive(stem_bn, 1):
        if _takes_width(model):
            return (
                f"the checkpoint's shapes imply width {stem_bn[0]} (bn1.weight has {stem_bn[0]} channels), the model "
                f"has width {own['bn1.weight'][0]}: pass --model-kwargs width={stem_bn[0]}"
            )
    if _positive(stem_conv, 4) and len(own.get("conv1.weight", ())) == 4 and own["conv1.weight"][1] != stem_conv[1]:
        return (
            f"the checkpoint's conv1.weight {list(stem_conv)} takes {stem_conv[1]} input channels, the model "
            f"{own['conv1.weight'][1]}: pass --model-kwargs in_chans={stem_conv[1]}"
        )
    weight = ckpt.get(f"{classifier}.weight")
    mine = own.get(f"{classifier}.weight")
    if _positive(weight, 2) and mine is not None and len(mine) == 2 and tuple(weight) != mine:
        if weight[1] == mine[1]:
            return (
                f"the checkpoint's classifier has {weight[0]} classes ({classifier}.weight {list(weight)}), the "
                f"model {mine[0]}: pass --num-classes {weight[0]}"
            )
        return f"the checkpoint's classifier takes {weight[1]} features ({classifier}.weight), the model {mine[1]}"
    return None
