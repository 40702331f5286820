"""The best model of a run as a hub-ready folder, with a model card holding the measured metrics.

The folder itself is written by `timm_assemble.export.export_hub_folder` (the one exporter of the
project); the card is rendered by `timm_assemble.weights.card` from the folder's own config.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn
from huggingface_hub import get_token

from ..errors import TimmAssembleError
from ..fileio import atomic_write
from ..model_stats import model_stats
from ..weights.card import CardSpec, Metric, render_model_card
from ..weights.hub_folder import CARD_NAME, CONFIG_NAME, export_hub_folder
from ..weights.publish import check_repo_id
from ..weights.records import find_record_for_repo
from .config import TrainConfig
from .model_setup import WEIGHT_SUFFIXES


def _dataset_name(cfg: TrainConfig) -> str:
    if cfg.synthetic:
        return "timm-assemble synthetic shapes"
    if cfg.dataset:
        return cfg.dataset
    return Path(cfg.data_dir or "data").resolve().name


def build_card(
    cfg: TrainConfig,
    config: dict[str, Any],
    row: dict[str, Any],
    command: str,
    weights_source: str,
    num_params: int,
    repo_id: str | None,
    pretrained: bool,
    base_model: str | None = None,
    title: str | None = None,
    stats: dict[str, Any] | None = None,
) -> str:
    """The exported model's card; `repo_id` None: not on the Hub yet (`publish --repo-id` renders it for one)."""
    dataset = _dataset_name(cfg)
    split = f"{cfg.val_fraction:.0%} held out of the training folder" if cfg.val_fraction else cfg.val_split
    metrics = [
        Metric(
            name=f"top-{k} accuracy",
            type="accuracy",
            value=round(row[f"top{k}"], 2),
            dataset=dataset,
            dataset_type=dataset,
            split=split,
            provenance="measured",
            command=command,
            notes=f"epoch {row['epoch']}, {row['val_images']} images",
        )
        for k in (1, 5)
    ]
    if "ema_top1" in row:
        metrics[0] = Metric(
            **{
                **metrics[0].__dict__,
                "value": round(row["ema_top1"], 2),
                "notes": f"EMA weights, epoch {row['epoch']}, {row['val_images']} images",
            }
        )
    verb = "Fine-tuned" if pretrained else "Trained from scratch"
    provenance = (
        f"{verb} with timm-assemble (`{cfg.mode}`): start weights {weights_source}; {cfg.epochs} epochs planned, "
        f"best {cfg.eval_metric} at epoch {row['epoch']}; optimizer {cfg.opt}, batch {cfg.batch_size} per device, "
        f"label smoothing {cfg.label_smoothing}, mixup {cfg.mixup}, cutmix {cfg.cutmix}, "
        f"DropBlock {cfg.drop_block_rate}, KD teacher {cfg.teacher or cfg.teacher_weights or 'none'}."
        + (" The backbone was frozen (linear probe)." if cfg.freeze_backbone else "")
        + " The full resolved configuration is the run folder's `config.toml`."
    )
    return render_model_card(
        CardSpec(
            repo_id=repo_id,
            config=config,
            summary=f"{config['architecture']} image classifier for {config['num_classes']} classes of {dataset}. "
            + (cfg.description or ""),
            provenance=provenance,
            metrics=metrics,
            num_params=num_params,
            stats=stats,
            training_command=command,
            base_model=base_model,
            title=title,
        )
    )


def export_best_model(
    model: nn.Module,
    out_dir: Path,
    *,
    cfg: TrainConfig,
    arch_kwargs: dict[str, Any],
    label_names: Sequence[str],
    data_cfg: dict[str, Any],
    row: dict[str, Any],
    command: str,
    weights_source: str,
    pretrained: bool,
    base_model: str | None = None,
) -> Path:
    """Export (replacing the previous best), then add the card rendered from the written config.json."""
    export_hub_folder(
        model,
        out_dir,
        model_args=arch_kwargs or None,
        label_names=list(label_names),
        pretrained_cfg=data_cfg,
        overwrite=True,
    )
    config = json.loads((out_dir / CONFIG_NAME).read_text())
    repo_id = cfg.push_to_hub or cfg.hub_repo_id
    num_params = sum(p.numel() for p in model.parameters())
    title = None if repo_id else out_dir.resolve().parent.name
    stats = model_stats(model, tuple(config["pretrained_cfg"]["input_size"]))
    card = build_card(
        cfg, config, row, command, weights_source, num_params, repo_id, pretrained, base_model, title, stats
    )
    atomic_write(out_dir / CARD_NAME, card)
    return out_dir


def released_base_model(cfg: TrainConfig, model: nn.Module, pretrained: bool) -> str | None:
    """The Hub repo of the released weights a fine-tune started from (`default`, ARCH.TAG, hf-hub:ID), else None:
    a weights file or local folder has no public name, a model trained from scratch has no base, and weights of
    ours whose record is not published yet (loaded from the official source) have no repo to link to."""
    if not pretrained or cfg.pretrained == "none" or cfg.pretrained.startswith("local-dir:"):
        return None
    if cfg.pretrained.endswith(WEIGHT_SUFFIXES) or Path(cfg.pretrained).is_file():
        return None
    repo_id = getattr(model, "pretrained_cfg", {}).get("hf_hub_id") or None
    record = find_record_for_repo(repo_id) if repo_id else None
    return None if record is not None and record.status != "published" else repo_id


def check_push_target(repo_id: str) -> None:
    """Before training for days: the repo id is one huggingface_hub accepts and a token is there to upload with."""
    check_repo_id(repo_id, flag="--push-to-hub")
    if get_token() is None:
        raise TimmAssembleError("--push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
