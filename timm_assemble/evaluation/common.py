"""Shared plumbing for `validate`, `robustness` and `benchmark`: models, data, devices, the eval loop.

Images are decoded, resized and cropped on the CPU and handed over as uint8 tensors; each model
normalises them on its device with its own mean/std. That lets `robustness` corrupt an image once
and score it with both the model and a baseline.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config
from timm.data.readers.reader_image_folder import find_images_and_targets
from timm.data.transforms import MaybeToTensor
from torchvision import transforms
from tqdm import tqdm

from ..data.images import open_image
from ..errors import TimmAssembleError
from ..fileio import atomic_write
from ..loading import create_model


@functools.lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ImageNet-1k synsets in timm's class-index order."""
    return tuple(ImageNetInfo("imagenet-1k").label_names())


# --------------------------------------------------------------------------- models


def create_eval_model(
    name: str,
    pretrained: bool = True,
    num_classes: int | None = None,
    checkpoint: str | None = None,
) -> torch.nn.Module:
    """The model to evaluate, in eval mode: a registry name, `local-dir:DIR` or `hf-hub:ID`.

    `checkpoint` (.safetensors, or a .pth/.pt read with weights_only=True) replaces the weights after creation.
    """
    kwargs: dict[str, Any] = {} if num_classes is None else dict(num_classes=num_classes)
    try:
        model = create_model(name, pretrained=pretrained, weights=checkpoint, **kwargs)
    except TimmAssembleError as err:
        if not str(err).startswith("cannot load pretrained") or ":" in name:
            raise
        raise TimmAssembleError(f"{err} (use --no-pretrained for random weights, or --checkpoint FILE)") from err
    return model.eval()


def model_data_config(model: torch.nn.Module, img_size: int | None = None, crop_pct: float | None = None) -> dict:
    """The model's eval data config (test size, as timm's validate.py), with optional overrides."""
    args: dict[str, Any] = {}
    if img_size:
        args["img_size"] = int(img_size)
    if crop_pct:
        args["crop_pct"] = float(crop_pct)
    return resolve_data_config(args, model=model, use_test_size=True)


# --------------------------------------------------------------------------- data


@dataclass
class ImageFolderIndex:
    """An image folder's files and integer targets, with how class names map to the model's outputs."""

    samples: list[tuple[str, int]]
    class_names: list[str]
    label_map: str  # "imagenet-synsets" or "folder-order"

    @property
    def is_imagenet(self) -> bool:
        return self.label_map == "imagenet-synsets"


def index_image_folder(root: str | os.PathLike, num_classes: int, what: str = "data dir") -> ImageFolderIndex:
    """Find `root/<class>/**/<image>` and map classes to model outputs.

    Folders named by ImageNet synsets (n01440764, ...) map to timm's ImageNet-1k class order when the
    model has 1000 outputs (any subset of the synsets works); otherwise the sorted folder order must
    match the model's outputs one to one.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise TimmAssembleError(f"{what} {str(root)!r} does not exist or is not a folder")
    samples, class_to_idx = find_images_and_targets(str(folder))
    class_names = list(class_to_idx)
    if not samples:
        raise TimmAssembleError(f"{what} {str(root)!r} contains no images (expected <dir>/<class>/<image>)")
    if "" in class_to_idx:
        raise TimmAssembleError(f"{what} {str(root)!r} has images directly in it; put them in per-class folders")
    synsets = imagenet_synsets()
    if num_classes == len(synsets) and set(class_names) <= set(synsets):
        lookup = {s: i for i, s in enumerate(synsets)}
        samples = [(path, lookup[class_names[t]]) for path, t in samples]
        return ImageFolderIndex(samples, class_names, "imagenet-synsets")
    if len(class_names) != num_classes:
        raise TimmAssembleError(
            f"{what} {str(root)!r} has {len(class_names)} class folders but the model predicts {num_classes} "
            "classes; use folders named by ImageNet synsets for 1000-class models, or a model with "
            f"--num-classes {len(class_names)}"
        )
    return ImageFolderIndex(samples, class_names, "folder-order")


def limit_samples(samples: Sequence[Any], limit: int | None) -> list[Any]:
    """Evenly spaced subset of `limit` samples (covers all classes of a sorted folder), or all of them."""
    if limit is None or limit <= 0 or limit >= len(samples):
        return list(samples)
    idx = np.unique(np.linspace(0, len(samples) - 1, limit).round().astype(int))
    return [samples[i] for i in idx]


def resize_crop(data_config: dict) -> Callable[[Image.Image], Image.Image]:
    """timm's own eval geometry (resize + crop per crop_pct / crop_mode), without tensor conversion."""
    full = create_transform(
        input_size=data_config["input_size"],
        interpolation=data_config["interpolation"],
        crop_pct=data_config.get("crop_pct"),
        crop_mode=data_config.get("crop_mode"),
        is_training=False,
    )
    return transforms.Compose(
        [t for t in full.transforms if not isinstance(t, (MaybeToTensor, transforms.ToTensor, transforms.Normalize))]
    )


def load_rgb(path: str) -> Image.Image:
    return open_image(path)


class ImageListDataset(torch.utils.data.Dataset):
    """(path, target) pairs -> (uint8 CxHxW tensor, target) through `image_fn(pil, index)`."""

    def __init__(self, samples: Sequence[tuple[str, int]], image_fn: Callable[[Image.Image, int], Any]):
        self.samples = list(samples)
        self.image_fn = image_fn

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        img = self.image_fn(load_rgb(path), index)
        arr = np.asarray(img, dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), target


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=False, drop_last=False
    )


# --------------------------------------------------------------------------- devices and precision


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TimmAssembleError("--device cuda requested but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise TimmAssembleError(f"bad --device {name!r}: {err}") from err


AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class Scorer:
    """One model on a device: normalises uint8 batches with the model's mean/std and accumulates top-1/top-5/loss."""

    def __init__(
        self,
        model: torch.nn.Module,
        data_config: dict,
        device: torch.device,
        amp: str = "none",
        channels_last: bool = False,
    ):
        self.model = model.to(device).eval()
        self.device, self.amp, self.channels_last = device, amp, channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = torch.tensor(data_config["mean"], device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(data_config["std"], device=device).view(1, -1, 1, 1) * 255
        self.reset()

    def reset(self) -> None:
        self.n = self.correct1 = self.correct5 = 0
        self.loss_sum = 0.0

    @torch.inference_mode()
    def update(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        x = (images.to(self.device).float() - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        targets = targets.to(self.device)
        with autocast(self.device, self.amp):
            logits = self.model(x)
        logits = logits.float()
        self.loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit = top == targets[:, None]
        self.correct1 += hit[:, 0].sum().item()
        self.correct5 += hit.any(dim=1).sum().item()
        self.n += targets.numel()

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {
            "top1": 100.0 * self.correct1 / n,
            "top5": 100.0 * self.correct5 / n,
            "loss": self.loss_sum / n,
            "error": 1.0 - self.correct1 / n,
            "num_images": self.n,
        }


def run_scorers(loader: torch.utils.data.DataLoader, scorers: Sequence[Scorer], desc: str) -> list[dict[str, float]]:
    """One pass over `loader`, every batch scored by every scorer."""
    for s in scorers:
        s.reset()
    for images, targets in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        for s in scorers:
            s.update(images, targets)
    return [s.result() for s in scorers]


# --------------------------------------------------------------------------- output


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON atomically: a crash or a full disk leaves the previous file."""
    atomic_write(path, json.dumps(payload, indent=2) + "\n")


MODEL_ARG_NAMES = (
    "pretrained", "checkpoint", "num_classes", "img_size", "crop_pct", "batch_size", "workers", "limit", "device",
    "amp", "channels_last",
)


def model_kwargs(args: EvalModelOptions) -> dict[str, Any]:
    """The EvalModelOptions besides --model and --json, as keyword arguments of `validate` / `robustness`."""
    return {name: getattr(args, name) for name in MODEL_ARG_NAMES}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class EvalModelOptions:
    """--model, weights, data-config and device flags shared by validate and robustness."""

    model: str | None = field(
        default=None, metadata=dict(help="timm name, local-dir:DIR or hf-hub:ORG/NAME", required=True)
    )
    pretrained: bool = field(
        default=True, metadata=dict(help="pretrained weights for registry names (--no-pretrained: random, smoke tests)")
    )
    checkpoint: str | None = field(
        default=None, metadata=dict(help="state dict to load (.safetensors, or weights-only .pth)")
    )
    num_classes: int | None = field(default=None, metadata=dict(help="override the classifier size", bounds="[1, inf)"))
    img_size: int | None = field(
        default=None, metadata=dict(help="input size (None: the model's test size)", bounds="[1, inf)")
    )
    crop_pct: float | None = field(
        default=None, metadata=dict(help="centre-crop fraction (None: the model's)", bounds="(0, 1]")
    )
    batch_size: int = field(default=64, metadata=dict(help="images per batch", bounds="[1, inf)"))
    workers: int = field(
        default_factory=lambda: min(4, os.cpu_count() or 1),
        metadata=dict(help="data loader processes", bounds="[0, inf)"),
    )
    limit: int | None = field(
        default=None, metadata=dict(help="evaluate an evenly spaced subset of N images", bounds="[1, inf)")
    )
    device: str = field(default_factory=default_device, metadata=dict(help="torch device"))
    amp: str = field(default="none", metadata=dict(help="autocast dtype", choices=sorted(AMP_DTYPES)))
    channels_last: bool = field(default=False, metadata=dict(help="channels_last memory format"))
    json: str | None = field(default=None, metadata=dict(help="write the results as JSON", metavar="OUT"))
