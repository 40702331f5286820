"""Top-k labels with probabilities for image files, with the model's own preprocessing.

Preprocessing is the model's own data config (the evaluation size and crop it was exported with), so a
fine-tuned export predicts as it was validated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from PIL import Image
from timm.data import ImageNetInfo, create_transform, infer_imagenet_subset

from .data.images import READ_ERRORS, check_declared_size, image_files, open_image
from .errors import TimmAssembleError
from .evaluation.model import create_eval_model, model_data_config
from .evaluation.options import autocast
from .tensor_checks import check_finite_logits

BATCH = 32


def load_model(spec: str, device: str | torch.device = "cpu", **settings: Any) -> nn.Module:
    """`local-dir:DIR`, `hf-hub:ORG/NAME` or a timm name with pretrained weights, in eval mode; `settings` are
    `create_eval_model`'s (checkpoint, use_ema, model_kwargs, ...)."""
    return create_eval_model(spec, **settings).to(device)


def label_names(model: nn.Module) -> list[str] | None:
    names = model.pretrained_cfg.get("label_names")
    if names and len(names) == model.num_classes:
        return list(names)
    return None


def _imagenet_descriptions(model: nn.Module) -> ImageNetInfo | None:
    subset = infer_imagenet_subset(model)
    return ImageNetInfo(subset) if subset else None


def load_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise TimmAssembleError(f"image {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        return open_image(path)
    except READ_ERRORS as err:
        raise TimmAssembleError(f"cannot decode image {path}: {err}") from err


def check_image(path: Path) -> None:
    """Header only (no pixels decoded): a file that is no image, or declares a bomb, fails before any work."""
    if not path.is_file():
        raise TimmAssembleError(f"image {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        with Image.open(path) as img:
            check_declared_size(img)
    except READ_ERRORS as err:
        raise TimmAssembleError(f"cannot decode image {path}: {err}") from err


def checked_images(images: Sequence[str | Path]) -> list[Path]:
    """The image files (a folder stands for the images in it), each header checked: before any model loads."""
    paths = image_files(images)
    for path in paths:
        check_image(path)
    return paths


class _Images(torch.utils.data.Dataset):
    """Image files as model inputs, decoded when the loader asks (one batch at a time)."""

    def __init__(self, paths: list[Path], transform: Any):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_image(self.paths[index]))


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: Sequence[str | Path],
    top_k: int = 5,
    batch_size: int = BATCH,
    workers: int = 0,
    data_config: dict[str, Any] | None = None,
    amp: str = "none",
    channels_last: bool = False,
) -> list[dict[str, Any]]:
    """Top-k predictions per image. Every header is checked before the model runs; pixels are decoded one
    batch at a time, so memory does not grow with the number of images (a folder of 50,000 is fine).

    `data_config` overrides the model's preprocessing in timm's argument names (img_size, crop_pct, mean, ...);
    `workers` decode in that many processes (timm's -j); `amp` is an autocast mode (none, fp16, bf16).
    """
    if top_k < 1:
        raise TimmAssembleError(f"--top-k must be >= 1, got {top_k}")
    paths = checked_images(images)
    transform = create_transform(**model_data_config(model, data_config, batch_size), is_training=False)
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(_Images(paths, transform), batch_size=batch_size, num_workers=workers)
    names = label_names(model)
    info = _imagenet_descriptions(model) if names is None or names[0].startswith("n0") else None
    k = min(top_k, model.num_classes)
    results = []
    for start, batch in zip(range(0, len(paths), batch_size), loader, strict=True):
        chunk = paths[start : start + batch_size]
        batch = batch.to(device)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(batch).float()
        check_finite_logits(logits, "images", chunk)
        top = logits.softmax(dim=-1).topk(k, dim=-1)
        for path, p, idx in zip(chunk, top.values.tolist(), top.indices.tolist(), strict=True):
            preds = []
            for prob, index in zip(p, idx, strict=True):
                entry: dict[str, Any] = dict(index=index, label=names[index] if names else str(index), probability=prob)
                if info is not None:
                    entry["description"] = info.index_to_description(index)
                preds.append(entry)
            results.append(dict(image=str(path), predictions=preds))
    return results


def format_text(results: list[dict[str, Any]]) -> str:
    lines = []
    for res in results:
        lines.append(res["image"])
        for p in res["predictions"]:
            desc = f" ({p['description']})" if "description" in p else ""
            lines.append(f"  {100 * p['probability']:6.2f}%  {p['label']}{desc}")
    return "\n".join(lines)
