"""Build a model and load weights: the one loader behind train, finetune, validate, robustness, benchmark, predict.

`create_model` (also `timm_assemble.create_model`) is where our clear errors for `local-dir:` and `hf-hub:`
names come from; plain `timm.create_model` is left exactly as timm has it. Weights files are read by timm's
`load_state_dict`: safetensors, or a .pth/.pt with `weights_only=True`; EMA weights (`state_dict_ema`,
`model_ema`) before `state_dict` / `model`; `module.` and `_orig_mod.` prefixes stripped. Every failure a
user can fix (unknown name, folder without config.json, unreadable or mis-shaped weights, unreachable Hub)
becomes one TimmAssembleError line.
"""

import argparse
import difflib
import json
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
from safetensors import safe_open
from timm.models import load_state_dict, parse_model_name

from .errors import TimmAssembleError, UnknownModelError, WeightsUnavailableError
from .sizing import check_model_size, kwarg_claims, local_config_claims, meta_model
from .tensor_checks import check_finite, check_tensor_kinds, shape_diagnosis

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def check_model_name(name: str) -> None:
    """Reject an unregistered architecture (with close matches) or tag, or a `local-dir:` folder without config.json."""
    try:
        source, ident = parse_model_name(name)
    except ValueError as err:
        raise TimmAssembleError(str(err)) from err
    if source is None:
        arch = ident.split(".", 1)[0]
        if not timm.is_model(arch):
            close = difflib.get_close_matches(arch, timm.list_models(), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UnknownModelError(f"unknown model '{name}'{hint}")
        if "." in ident and not timm.list_pretrained(ident):  # timm's own error is a RuntimeError, even unpretrained
            tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
            raise UnknownModelError(
                f"unknown pretrained tag in '{name}'; {arch} has " + (", ".join(tags) if tags else "none")
            )
    elif source == "local-dir":
        check_local_config(Path(ident))
    elif source == "hf-hub":
        from .weights.resolve import check_hub_config  # the Hub stack only for Hub names

        check_hub_config(ident)


def check_local_config(folder: Path) -> None:
    """A `local-dir:` folder's config.json exists and is a timm model config (timm's errors name neither)."""
    config = folder / "config.json"
    if not config.is_file():
        raise WeightsUnavailableError(
            f"local-dir:{folder}: no config.json in {folder.resolve()} (a model folder holds config.json and "
            "model.safetensors, as `timm-assemble convert` or a training run's model/ folder)"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TimmAssembleError(f"local-dir:{folder}: {config} is not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("architecture"), str):
        raise TimmAssembleError(f"local-dir:{folder}: {config} is not a timm model config (no 'architecture')")


def one_line(err: BaseException, max_lines: int = 3) -> str:
    """`Type: first lines of the message` for errors from timm, torch or huggingface_hub."""
    lines = [line.strip() for line in str(err).strip().splitlines()] or [""]
    more = f" (+{len(lines) - max_lines} more lines)" if len(lines) > max_lines else ""
    return f"{type(err).__name__}: {' '.join(lines[:max_lines])}{more}"


def create_model(
    name: str, pretrained: bool = False, weights: str | None = None, use_ema: bool = True, **kwargs: Any
) -> nn.Module:
    """`timm.create_model` for a registry name, `local-dir:DIR` or `hf-hub:ID`, then optionally a weights file.

    `local-dir:` and `hf-hub:` always load their weights; `weights` (a file) replaces them after creation and
    must fit strictly; of a training checkpoint, its EMA weights when `use_ema` (timm's `--use-ema`).
    """
    check_model_name(name)
    check_model_size(name, kwargs, kwarg_claims(kwargs, "model argument") + local_config_claims(name))
    from_source = parse_model_name(name)[0] is not None
    pretrained = (pretrained or from_source) and weights is None
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TimmAssembleError:
        raise
    except TypeError as err:
        raise TimmAssembleError(f"model '{name}' does not accept these settings ({err})") from err
    except Exception as err:  # no weights for the tag, unreachable Hub, unreadable or mis-shaped weights
        if not pretrained:
            raise
        diagnosis = _local_dir_mismatch(name, kwargs) if "size mismatch" in str(err) else None
        error = WeightsUnavailableError if isinstance(err, OSError) else TimmAssembleError  # as timm's own error
        raise error(f"cannot load pretrained weights of '{name}': {diagnosis or one_line(err)}") from err
    if pretrained:
        check_finite(model.state_dict().items(), f"the pretrained weights of '{name}'")
    if weights is not None:
        load_weights(model, weights, use_ema=use_ema)
    return model


def _local_dir_mismatch(name: str, kwargs: dict[str, Any]) -> str | None:
    """What the shapes of a `local-dir:` folder's weights imply against the model its config.json builds."""
    source, folder = parse_model_name(name)
    if source != "local-dir":
        return None
    try:
        with safe_open(Path(folder) / "model.safetensors", "pt") as weights:
            shapes = {k: tuple(weights.get_slice(k).get_shape()) for k in weights.keys()}
    except Exception:  # no safetensors file: timm's own line says it
        return None
    model = meta_model(name, kwargs)  # shapes only
    if model is None:  # a model that cannot be built: timm's own line says it
        return None
    diagnosis = shape_diagnosis(shapes, model, model.pretrained_cfg.get("classifier", "fc"))
    return diagnosis and f"its model.safetensors does not fit the model its config.json builds: {diagnosis}"


def read_weights(path: str | Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The state dict in a weights file or training checkpoint (its EMA weights when `use_ema` and present, as
    timm's `load_state_dict`; wrapper prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise TimmAssembleError(f"weights file {path} is not a regular file")
        raise WeightsUnavailableError(f"weights file {path} does not exist")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # timm train.py checkpoints carry their args
            state = load_state_dict(str(path), use_ema=use_ema, weights_only=True)
    except Exception as err:  # corrupt, truncated or foreign file: say which one
        raise TimmAssembleError(
            f"cannot read weights file {path} as a state dict or training checkpoint: {one_line(err)}"
        ) from err
    if not state:
        read = " (EMA weights are read first)" if use_ema else ""
        raise TimmAssembleError(f"weights file {path} holds an empty state dict{read}")
    return state


def load_weights(
    model: nn.Module,
    path: str | Path,
    what: str | None = None,
    drop_mismatched_head: bool = False,
    use_ema: bool = True,
) -> bool:
    """Load the weights file `path` into `model` strictly, except a classifier of another shape when allowed.

    Returns True when the classifier was dropped (so it keeps its fresh initialisation).
    """
    state = read_weights(path, use_ema)
    what = what or f"weights file {path}"
    own = model.state_dict()
    check_tensor_kinds(state, own, what)
    check_finite(state.items(), what)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise TimmAssembleError(
            f"{what} does not fit {type(model).__name__}: missing {_few(missing)}, unexpected {_few(unexpected)}"
            " (right --model and --model-kwargs?)"
        )
    head = getattr(model, "pretrained_cfg", {}).get("classifier", "fc")
    wrong_shape = [k for k in own if state[k].shape != own[k].shape]
    dropped = bool(wrong_shape) and drop_mismatched_head and all(k.startswith(head + ".") for k in wrong_shape)
    if wrong_shape and not dropped:
        raise _shape_error(model, state, head, wrong_shape, what)
    if dropped:
        state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    model.load_state_dict(state, strict=not dropped)
    return dropped


def _shape_error(
    model: nn.Module, state: dict[str, torch.Tensor], head: str, wrong: list[str], what: str
) -> TimmAssembleError:
    """One line for weights of other shapes: the setting the shapes imply when they imply one, else the tensors."""
    diagnosis = shape_diagnosis({k: tuple(v.shape) for k, v in state.items()}, model, head)
    own = model.state_dict()
    if diagnosis is None:
        shapes = ", ".join(f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in wrong[:3])
        diagnosis = f"wrong shape: {shapes}{' ...' if len(wrong) > 3 else ''} (right --model and --model-kwargs?)"
    if all(k.startswith(head + ".") for k in wrong):
        return TimmAssembleError(f"{what}: classifier does not match the model: {diagnosis}")
    return TimmAssembleError(f"{what} does not fit {type(model).__name__}: {diagnosis}")


def _few(keys: list[str], n: int = 5) -> str:
    return f"{keys[:n]}{'...' if len(keys) > n else ''}"
