"""Evaluation images: an image folder's samples and class mapping, timm's eval geometry, uint8 batches.

Images are decoded, resized and cropped on the CPU and handed over as uint8 tensors; each model normalises
them on its device with its own mean/std (`scoring.Scorer`). That lets `robustness` corrupt an image once and
score it with both the model and a baseline.
"""

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform
from timm.data.readers.reader_image_folder import find_images_and_targets
from timm.data.transforms import MaybeToTensor
from torchvision import transforms

from ..data.images import open_image
from ..errors import TimmAssembleError


@functools.lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ImageNet-1k synsets in timm's class-index order."""
    return tuple(ImageNetInfo("imagenet-1k").label_names())


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


class ImageListDataset(torch.utils.data.Dataset):
    """(path, target) pairs -> (uint8 CxHxW tensor, target) through `image_fn(pil, index)`."""

    def __init__(self, samples: Sequence[tuple[str, int]], image_fn: Callable[[Image.Image, int], Any]):
        self.samples = list(samples)
        self.image_fn = image_fn

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        img = self.image_fn(open_image(path), index)
        arr = np.asarray(img, dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), target


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=False, drop_last=False
    )
