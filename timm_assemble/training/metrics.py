"""Per-epoch metrics (metrics.jsonl, and summary.csv as timm writes it), accuracy counting, and the plots."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import TimmAssembleError
from ..fileio import atomic_path, atomic_write

METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.csv"
# metrics.jsonl key -> summary.csv column, as timm's train.py names them
SUMMARY_NAMES = {
    "val_loss": "eval_loss",
    "top1": "eval_top1",
    "top5": "eval_top5",
    "ema_val_loss": "eval_ema_loss",
    "ema_top1": "eval_ema_top1",
    "ema_top5": "eval_ema_top5",
}


def confusion_counts(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[true, predicted] counts of one batch, on the device (summed over the evaluation without syncs).

    A sample with non-finite logits has no prediction: it is left out rather than given argmax's arbitrary class.
    """
    index = (target * num_classes + logits.argmax(dim=1))[torch.isfinite(logits).all(dim=1)]
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl; a line that is not a JSON object with an epoch is one clear error."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not (isinstance(row, dict) and isinstance(row.get("epoch"), int)):
            raise TimmAssembleError(f"{path} line {number} is not a metrics row (a JSON object with an epoch)")
        rows.append(row)
    return rows


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole file atomically: a kill leaves the old rows or the new ones, never half a line."""
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows), fsync=True)


def summary_columns(rows: list[dict[str, Any]]) -> list[str]:
    """timm train.py's columns first (epoch, train_loss, eval_*, lr), then every other key in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    names = [SUMMARY_NAMES.get(k, k) for k in keys if k != "confusion"]
    lead = [n for n in ("epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr") if n in names]
    return lead + [n for n in names if n not in lead]


def write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    """`summary.csv`, one row per epoch, as timm's train.py writes it (`val_loss` -> `eval_loss`, ...)."""
    columns = summary_columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({SUMMARY_NAMES.get(k, k): v for k, v in row.items() if k != "confusion"})
    atomic_write(path, buffer.getvalue())


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # Agg canvas for this figure only; no global backend switch
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=110, bbox_inches="tight")


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Loss, accuracy and lr per epoch."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(13, 3.8))
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_acc.plot(epochs, [r["top1"] for r in rows], "o-", label="top-1")
    ax_acc.plot(epochs, [r["top5"] for r in rows], "o-", label="top-5")
    if any("ema_top1" in r for r in rows):
        ax_acc.plot(epochs, [r.get("ema_top1", np.nan) for r in rows], "o--", label="EMA top-1")
    ax_acc.set(title="val accuracy (%)", xlabel="epoch")
    ax_lr.plot(epochs, [r["lr"] for r in rows], "o-")
    ax_lr.set(title="lr (end of epoch)", xlabel="epoch")
    for ax in (ax_loss, ax_acc):
        ax.legend()
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_confusion(matrix: np.ndarray, label_names: Sequence[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix (rows: true class), counts written in the cells when they fit."""
    from matplotlib.figure import Figure

    n = len(label_names)
    size = max(4.0, 0.35 * n + 2.0)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.subplots()
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels=label_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels=label_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(matrix[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)
