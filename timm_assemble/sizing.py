"""One size budget before allocation: every size a flag or a file claims is bounded before it costs memory.

Image size, width, class count and every other shape setting go through the same estimate before a model or a
batch is built for real: the model is built on the meta device (shapes, no memory), its parameters counted, and one
image run through it to count the activation values. Parameters plus activations for the batch are then compared
with this machine's memory (the GPU's when there is one, else RAM plus swap). A claim past its sane bound, or an
estimate past the memory, is one line naming the value and the flag or file it came from, instead of an allocator
error or a machine-wide out-of-memory kill.
"""

from __future__ import annotations

import copy
import itertools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import timm
import torch
import torch.nn as nn

from .errors import TimmAssembleError

# shape claims past these are refused before anything is built (larger than any vision model uses by far)
SANE_BOUNDS = {"img_size": 2**16, "width": 2**16, "num_classes": 2**24, "in_chans": 2**10, "batch_size": 2**20}
INT_BOUND = 2**31  # any other integer model argument (torch's dimension limit in practice)
BYTES_PER_VALUE = 4  # float32 weights and activations
# training holds weights, gradients and optimizer state (SGD momentum: one more copy; Adam: two)
TRAINING_COPIES = 3


@dataclass(frozen=True)
class Claim:
    """A size setting as the user gave it: its name, value and where it came from (`--img-size`, a config.json)."""

    name: str
    value: Any
    source: str

    def __str__(self) -> str:
        if self.source == "--" + self.name.replace("_", "-"):
            return f"{self.source} {self.value}"  # --img-size 100000
        if self.source.startswith("--"):
            return f"{self.source} {self.name}={self.value}"  # --model-kwargs width=100000
        return f"{self.name} {self.value} ({self.source})"


@dataclass(frozen=True)
class Estimate:
    parameters: int  # parameters and buffers
    activations: int  # values every module outputs for one image (kept for the backward pass when training)
    peak: int  # the largest output for one image (what inference holds at once, about twice)

    def bytes(self, batch_size: int, training: bool) -> int:
        if training:
            return BYTES_PER_VALUE * (TRAINING_COPIES * self.parameters + batch_size * self.activations)
        return BYTES_PER_VALUE * (self.parameters + 2 * batch_size * self.peak)


def kwarg_claims(kwargs: dict[str, Any], source: str) -> list[Claim]:
    """The integer arguments of a model constructor as claims from `source`."""
    return [Claim(k, v, source) for k, v in kwargs.items() if isinstance(v, int) and not isinstance(v, bool)]


def local_config_claims(name: str) -> list[Claim]:
    """The shape settings a `local-dir:` folder's config.json claims (num_classes, model_args, input size)."""
    if not name.startswith("local-dir:"):
        return []
    path = Path(name.removeprefix("local-dir:")) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # the loader names an unreadable config
    if not isinstance(config, dict):
        return []
    classes = config.get("num_classes", 0)
    if not isinstance(classes, int) or isinstance(classes, bool):  # timm would build the weights' size or crash
        raise TimmAssembleError(f"{path}: num_classes must be a whole number of classes, got {classes!r}")
    claims = kwarg_claims({"num_classes": classes} if "num_classes" in config else {}, str(path))
    claims += kwarg_claims(config.get("model_args") or {}, f"model_args of {path}")
    size = (config.get("pretrained_cfg") or {}).get("input_size")
    if isinstance(size, list) and size and isinstance(size[-1], int):
        claims.append(Claim("img_size", size[-1], f"pretrained_cfg.input_size of {path}"))
    return claims


def check_claims(claims: list[Claim]) -> None:
    """Each claim within its sane bound (or the generic integer bound): one line naming the first one that is not."""
    for claim in claims:
        bound = SANE_BOUNDS.get(claim.name, INT_BOUND)
        if not 0 <= claim.value <= bound:
            raise TimmAssembleError(
                f"{claim}: out of range [0, {bound}] (no vision model is this large); give a smaller value"
            )


def meta_model(name: str, kwargs: dict[str, Any]) -> nn.Module | None:
    """`name` built with `kwargs` on the meta device (no memory, no weights); None when it cannot be built there
    (the real build then names the problem)."""
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            return timm.create_model(name, pretrained=False, **kwargs)
    except Exception:
        return None


def estimate(model: nn.Module, img_size: int, in_chans: int = 3) -> Estimate:
    """Parameters of `model` and the activation values of one `img_size` image through it, counted on the meta
    device (a model that cannot run there counts its parameters only)."""
    parameters = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    outputs: list[int] = []

    def count(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and not any(output is a for a in args):  # in-place: no new memory
            outputs.append(output.numel())

    if not all(p.is_meta for p in model.parameters()):
        return Estimate(parameters, 0, 0)  # a real model is not run here: that would cost what is being checked
    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, in_chans, img_size, img_size, device="meta"))
    except Exception:
        outputs.clear()  # cannot run on the meta device: the real forward names the problem
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return Estimate(parameters, sum(outputs), max(outputs, default=0))


def machine_memory() -> tuple[int, str]:
    """Bytes a run can use here, and what they are: the first GPU's memory, else RAM plus swap."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return props.total_memory, f"{props.name}'s memory"
    return psutil.virtual_memory().total + psutil.swap_memory().total, "RAM plus swap"


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_budget(
    model: nn.Module,
    what: str,
    claims: list[Claim],
    img_size: int,
    batch_size: int = 1,
    training: bool = False,
    in_chans: int = 3,
) -> Estimate:
    """Refuse `model` (built on the meta device) at `img_size` x `batch_size` when it needs more than this machine
    has, in one line naming the estimate and the claims behind it. Returns the estimate."""
    found = estimate(model, img_size, in_chans)
    need = found.bytes(batch_size, training)
    have, memory = machine_memory()
    if need > have:
        weights = BYTES_PER_VALUE * (TRAINING_COPIES if training else 1) * found.parameters
        cause = "weights" if weights >= need - weights else "activations"
        named = [str(c) for c in claims if (c.name in ("img_size", "batch_size")) == (cause == "activations")]
        raise TimmAssembleError(
            f"{what} needs about {_gb(need)} ({found.parameters:.3g} parameters, {found.activations:.3g} activation "
            f"values per {img_size}x{img_size} image, batch {batch_size}{', training' if training else ''}), more "
            f"than this machine's {_gb(have)} ({memory}): lower " + (", ".join(named) or f"the model's {cause}")
        )
    return found


def check_model_size(
    name: str,
    kwargs: dict[str, Any],
    claims: list[Claim],
    img_size: int | None = None,
    batch_size: int = 1,
    training: bool = False,
) -> Estimate | None:
    """The whole budget for building `name` with `kwargs`: the claims' bounds, then parameters and activations
    (at the model's own input size unless `img_size`) against the machine's memory. Returns the estimate (None for
    a model the meta device cannot build: the real build names the problem)."""
    check_claims(claims)
    model = meta_model(name, kwargs)
    if model is None:
        return None
    size = img_size or int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    in_chans = int(kwargs.get("in_chans", getattr(model, "in_chans", 3)) or 3)
    return check_budget(model, f"model {name}", claims, size, batch_size, training, in_chans)



def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of the built `model` on the meta device: its shapes, none of its memory."""
    memo: dict[int, Any] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        empty = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(empty, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else empty
    return copy.deepcopy(model, memo)


def check_batch(
    model: nn.Module,
    input_size: tuple[int, int, int],
    batch_size: int,
    claims: list[Claim],
    training: bool = False,
) -> Estimate:
    """The budget of running the built `model` on a batch of `batch_size` x `input_size` (C, H, W) before the
    batch is made: the claims' bounds, then weights and activations against the machine's memory."""
    check_claims(claims)
    what = f"{'training' if training else 'running'} {type(model).__name__} on {batch_size} images"
    return check_budget(meta_copy(model), what, claims, input_size[-1], batch_size, training, input_size[0])
