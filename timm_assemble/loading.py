"""Build a model and load weights: the one loader behind train, finetune, validate, robustness, benchmark, predict.

Weights files are read by timm's `load_state_dict`: safetensors, or a .pth/.pt with `weights_only=True`;
EMA weights (`state_dict_ema`, `model_ema`) before `state_dict` / `model`; `module.` and `_orig_mod.` prefixes
stripped. Every failure a user can fix (unknown name, folder without config.json, unreadable or mis-shaped
weights, unreachable Hub) becomes one TimmAssembleError line.
"""

import difflib
import json
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
from timm.models import load_state_dict, parse_model_name

from .errors import TimmAssembleError
from .export import CONFIG_NAME
from .hub.constants import hub_org
from .hub.pretrained import hub_has_file
from .hub.records import find_record_for_repo

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def check_model_name(name: str) -> None:
    """Reject an unregistered architecture (with close matches) or a `local-dir:` folder without config.json."""
    try:
        source, ident = parse_model_name(name)
    except ValueError as err:
        raise TimmAssembleError(str(err)) from err
    if source is None:
        arch = ident.split(".", 1)[0]
        if not timm.is_model(arch):
            close = difflib.get_close_matches(arch, timm.list_models(), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise TimmAssembleError(f"unknown model '{name}'{hint}")
    elif source == "local-dir":
        _check_local_config(ident)
    elif source == "hf-hub":
        _check_hub_config(ident)


def _check_local_config(folder: str) -> None:
    """timm reads a folder's config.json before any model code runs: say what is wrong with it in one line."""
    config = Path(folder) / CONFIG_NAME
    if not config.is_file():
        raise TimmAssembleError(
            f"local-dir:{folder}: no {CONFIG_NAME} in {Path(folder).resolve()} (a model folder holds "
            f"{CONFIG_NAME} and model.safetensors, as `timm-assemble convert` or `export` writes them)"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TimmAssembleError(f"local-dir:{folder}: {config} is not valid JSON ({err})") from err
    if not (isinstance(data, dict) and isinstance(data.get("architecture"), str)):
        raise TimmAssembleError(f"local-dir:{folder}: {config} is not a timm model config (no 'architecture')")


def _check_hub_config(model_id: str) -> None:
    """For a repo of our Hub org or of a weight record: one request for config.json (timm's own read retries
    for ~25 s without network), and what to do when it is missing. Other repos are left to timm."""
    repo_id, _, revision = model_id.partition("@")
    record = find_record_for_repo(repo_id)
    if record is None and repo_id.split("/")[0] != hub_org():
        return
    available, reason = hub_has_file(repo_id, CONFIG_NAME, revision or None)
    if available:
        return
    how = (
        "Check the repo id, or run where the Hub is reachable."
        if record is None
        else f"Without the Hub, `create_model('{record.name}', pretrained=True)` loads the official weights "
        f"from our converted-weights cache (`timm-assemble weights fetch {record.name}` or `weights install`)."
    )
    raise TimmAssembleError(f"hf-hub:{model_id}: {reason}. {how}")


def one_line(err: BaseException, max_lines: int = 3) -> str:
    """`Type: first lines of the message` for errors from timm, torch or huggingface_hub."""
    lines = [line.strip() for line in str(err).strip().splitlines()] or [""]
    more = f" (+{len(lines) - max_lines} more lines)" if len(lines) > max_lines else ""
    return f"{type(err).__name__}: {' '.join(lines[:max_lines])}{more}"


def create_model(name: str, pretrained: bool = False, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """`timm.create_model` for a registry name, `local-dir:DIR` or `hf-hub:ID`, then optionally a weights file.

    `local-dir:` and `hf-hub:` always load their weights; `weights` (a file) replaces them after creation and
    must fit strictly.
    """
    check_model_name(name)
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
        raise TimmAssembleError(f"cannot load pretrained weights of '{name}': {one_line(err)}") from err
    if weights is not None:
        load_weights(model, weights)
    return model


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a weights file or training checkpoint (EMA preferred, wrapper prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise TimmAssembleError(f"weights file {path} does not exist")
    try:
        return load_state_dict(str(path), use_ema=True, weights_only=True)
    except Exception as err:  # corrupt, truncated or foreign file: say which one
        raise TimmAssembleError(f"cannot read weights file {path}: {one_line(err)}") from err


def load_weights(
    model: nn.Module, path: str | Path, what: str | None = None, drop_mismatched_head: bool = False
) -> bool:
    """Load the weights file `path` into `model` strictly, except a classifier of another shape when allowed.

    Returns True when the classifier was dropped (so it keeps its fresh initialisation).
    """
    state = read_weights(path)
    what = what or f"weights file {path}"
    head = getattr(model, "pretrained_cfg", {}).get("classifier", "fc")
    own = model.state_dict()
    head_keys = [k for k in own if k.startswith(head + ".")]
    wrong_shape = [k for k in own if k in state and state[k].shape != own[k].shape]
    wrong_head = [k for k in wrong_shape if k in head_keys]
    if wrong_head and not drop_mismatched_head:
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_head)
        raise TimmAssembleError(f"{what}: classifier does not match the model ({shapes})")
    dropped = bool(wrong_head)
    if dropped:
        state = {k: v for k, v in state.items() if k not in head_keys}
        wrong_shape = [k for k in wrong_shape if k not in head_keys]
    missing = [k for k in own if k not in state and not (dropped and k in head_keys)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or wrong_shape:
        raise TimmAssembleError(
            f"{what} does not fit {type(model).__name__}: missing {_few(missing)}, unexpected {_few(unexpected)}"
            + (f", wrong shape {_few(wrong_shape)}" if wrong_shape else "")
            + " (right --model and --model-kwargs?)"
        )
    model.load_state_dict(state, strict=not dropped)
    return dropped


def _few(keys: list[str], n: int = 5) -> str:
    return f"{keys[:n]}{'...' if len(keys) > n else ''}"
