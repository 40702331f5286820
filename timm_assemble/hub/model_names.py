"""Clear errors for `timm.create_model('hf-hub:...')` and `timm.create_model('local-dir:...')`.

timm reads the `config.json` of an `hf-hub:` repo or a `local-dir:` folder before it knows the architecture,
so before any of our code runs: a missing or broken file surfaced as huggingface_hub's
`LocalEntryNotFoundError` (after ~25 s of retries without network), a bare `FileNotFoundError` or a
`JSONDecodeError`. `install()` wraps timm's two config readers once, when `timm_assemble` is imported (it
registers our models there too): a repo of our Hub org or of a weight record, and any local folder, then
fail with one TimmAssembleError that names the repo or folder, the file and what to do. Every other
`hf-hub:` repo is left to timm as it is.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm.models._factory as timm_factory
from huggingface_hub.errors import LocalEntryNotFoundError

from ..errors import TimmAssembleError
from ..export import CONFIG_NAME
from .constants import hub_org
from .download import HUB_MISSING_ERRORS, missing_weights_error
from .pretrained import hub_has_file
from .records import find_record_for_repo


def _ours(repo_id: str) -> bool:
    return find_record_for_repo(repo_id) is not None or repo_id.split("/")[0] == hub_org()


def _hf_hub_config(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def load(model_id: str, cache_dir: str | Path | None = None) -> Any:
        if not _ours(model_id):
            return original(model_id, cache_dir=cache_dir)
        repo_id, _, revision = model_id.partition("@")
        available, reason = hub_has_file(repo_id, CONFIG_NAME, revision or None, cache_dir)
        if not available:
            raise TimmAssembleError(f"hf-hub:{model_id}: {reason}. " + _how_to_get(repo_id))
        try:
            return original(model_id, cache_dir=cache_dir)
        except (*HUB_MISSING_ERRORS, LocalEntryNotFoundError) as err:
            raise missing_weights_error(repo_id.split("/")[-1], repo_id, CONFIG_NAME, err, cache_dir) from err

    load.__timm_assemble__ = True
    return load


def _how_to_get(repo_id: str) -> str:
    record = find_record_for_repo(repo_id)
    if record is None:
        return "Check the repo id, or run where the Hub is reachable."
    return (
        f"Without the Hub, `timm.create_model('{record.name}', pretrained=True)` loads the official weights "
        f"from our converted-weights cache (`timm-assemble weights fetch {record.name}` or `weights install`)."
    )


def _local_dir_config(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def load(model_path: str | Path) -> Any:
        config = Path(model_path) / CONFIG_NAME
        try:
            return original(model_path)
        except FileNotFoundError as err:
            raise TimmAssembleError(
                f"local-dir:{model_path}: no {CONFIG_NAME} in {Path(model_path).resolve()} (a model folder holds "
                f"{CONFIG_NAME} and model.safetensors, as `timm-assemble convert` or `export` writes them)"
            ) from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TimmAssembleError(f"local-dir:{model_path}: {config} is not valid JSON ({err})") from err
        except (KeyError, TypeError) as err:
            raise TimmAssembleError(
                f"local-dir:{model_path}: {config} is not a timm model config ({type(err).__name__}: {err})"
            ) from err

    load.__timm_assemble__ = True
    return load


def install() -> None:
    """Wrap timm's `hf-hub:` and `local-dir:` config readers (once per process)."""
    if not getattr(timm_factory.load_model_config_from_hf, "__timm_assemble__", False):
        timm_factory.load_model_config_from_hf = _hf_hub_config(timm_factory.load_model_config_from_hf)
    if not getattr(timm_factory.load_model_config_from_path, "__timm_assemble__", False):
        timm_factory.load_model_config_from_path = _local_dir_config(timm_factory.load_model_config_from_path)
