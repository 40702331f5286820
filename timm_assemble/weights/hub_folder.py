"""Hub-ready model folders (`model.safetensors` + `config.json` [+ `README.md`]), written atomically.

Every producer (conversion, training, fine-tuning) writes through `export_hub_folder`, so a folder loads
the same way everywhere: `timm.create_model('local-dir:DIR', pretrained=True)` after `import timm_assemble`,
and publishes with `timm-assemble publish DIR`.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from timm.models import save_for_hf
from timm.models._hub import filter_pretrained_cfg

from ..errors import TimmAssembleError
from ..fileio import atomic_dir

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


def export_hub_folder(
    model: torch.nn.Module,
    out_dir: str | Path,
    *,
    model_args: dict[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
    label_descriptions: dict[str, str] | None = None,
    pretrained_cfg: dict[str, Any] | None = None,
    model_card: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` as a timm Hub folder at `out_dir`; the folder appears complete or not at all.

    `model_args` are the constructor kwargs to record, such as `width` (timm >= 1.0.31 also records the
    kwargs the model was created with by itself; older timm only these); `pretrained_cfg` entries override
    the exported preprocessing config.
    An existing `out_dir` is replaced only with `overwrite=True`.
    """
    out_dir = Path(out_dir)
    if label_names is not None and len(label_names) != model.num_classes:
        raise TimmAssembleError(
            f"{len(label_names)} label names given for a model with {model.num_classes} classes"
        )
    if any(not t.is_contiguous() for t in model.state_dict().values()):  # channels_last: safetensors wants dense
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    with atomic_dir(out_dir, overwrite=overwrite, needed_bytes=size) as staging:
        model_config: dict[str, Any] = {}
        if label_names is not None:
            model_config["label_names"] = list(label_names)
        if label_descriptions:
            model_config["label_descriptions"] = dict(label_descriptions)
        if pretrained_cfg:  # filtered as timm filters the model's own: no unset (null) or weight-source keys
            model_config["pretrained_cfg"] = filter_pretrained_cfg(pretrained_cfg, remove_source=True)
        save_for_hf(model, staging, model_config=model_config, model_args=model_args, safe_serialization=True)
        _leave_out(staging / CONFIG_NAME, [k for k, v in (pretrained_cfg or {}).items() if v is None])
        if model_card is not None:
            (staging / CARD_NAME).write_text(model_card, encoding="utf-8")
        _apply_umask(staging)
    return out_dir


def _leave_out(config_path: Path, keys: Sequence[str]) -> None:
    """Drop `keys` from the written pretrained_cfg: an entry set to None unsets the model's own value (the tag of
    the weights a fine-tune started from), and timm's writer leaves unset keys out rather than writing null."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if any(config["pretrained_cfg"].pop(k, None) is not None for k in keys):
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _apply_umask(folder: Path) -> None:
    """Give the files the permissions a plain open() would have (safetensors writes them private)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)

