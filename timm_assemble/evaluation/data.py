"""Evaluation images: an image folder's samples and class mapping, timm's eval geometry, uint8 batches.

Images are decoded, resized and cropped on the CPU and handed over as uint8 tensors; each model normalises
them on its device with its own mean/std (`scoring.Scorer`). That lets `robustness` corrupt an image once and
score it with both the model and a baseline.
"""

import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform
from timm.data.transforms import MaybeToTensor
from torchvision import transforms

from ..data.images import READ_ERRORS, open_image, scan_image_folder
from ..errors import TimmAssembleError

_logger = logging.getLogger(__name__)


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
    scan = scan_image_folder(folder)  # the one discovery rule of the package (training and predict use it too)
    if note := scan.skipped_note():
        _logger.warning("%s", note)
    samples, class_to_idx = scan.samples, scan.class_to_idx
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


def uint8_chw(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as the uint8 CxHxW tensor the scorers take."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)))


class ImageListDataset(torch.utils.data.Dataset):
    """(path, target) pairs -> (uint8 CxHxW tensor, target) through `image_fn(pil, index)`."""

    def __init__(self, samples: Sequence[tuple[str, int]], image_fn: Callable[[Image.Image, int], Any]):
        self.samples = list(samples)
        self.image_fn = image_fn

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        try:
            img = open_image(path)
        except READ_ERRORS as err:  # an evaluation scores every image it was given: a broken one stops it
            raise TimmAssembleError(f"cannot read image {path}: {type(err).__name__}: {err}") from None
        return uint8_chw(self.image_fn(img, index)), target


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=False, drop_last=False
    )


def images_shorter_side(paths: Sequence[str], probes: int = 9) -> int:
    """The median shorter side of up to `probes` evenly spaced images, from their headers (nothing is decoded):
    what picks the corruption set that matches the data."""
    sides = []
    for path in limit_samples(list(paths), probes):
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except READ_ERRORS:  # a broken file is reported when it is read; its size says nothing here
            continue
    if not sides:
        raise TimmAssembleError(f"none of the images probed for their size could be opened, e.g. {paths[0]}")
    return int(np.median(sides))


def is_npy_corruption_folder(root: str | os.PathLike) -> bool:
    """CIFAR-10-C / CIFAR-100-C's published layout: `<corruption>.npy` arrays and one `labels.npy`."""
    return (Path(root) / "labels.npy").is_file()


class NpyCorruptionFolder:
    """A folder as CIFAR-10-C and CIFAR-100-C are published: per corruption one `<corruption>.npy`, uint8
    (5 * N, H, W, 3) with severities 1-5 stacked in that order, and `labels.npy` (5 * N,), the N labels per severity."""

    def __init__(self, root: str | os.PathLike, num_classes: int):
        self.root = Path(root)
        self.labels = np.load(self.root / "labels.npy").astype(np.int64)
        if self.labels.ndim != 1 or len(self.labels) % 5:
            raise TimmAssembleError(f"{self.root / 'labels.npy'}: expected 5 x N labels, got shape {self.labels.shape}")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= num_classes):
            raise TimmAssembleError(
                f"{self.root / 'labels.npy'} has labels {self.labels.min()}..{self.labels.max()}; the model predicts "
                f"{num_classes} classes"
            )
        self.per_severity = len(self.labels) // 5

    def array(self, corruption: str) -> np.ndarray:
        """The corruption's images, memory-mapped, after checking they match the labels."""
        path = self.root / f"{corruption}.npy"
        if not path.is_file():
            raise TimmAssembleError(f"{self.root} has no {path.name} (a CIFAR-C folder holds <corruption>.npy files)")
        images = np.load(path, mmap_mode="r")
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or len(images) != len(self.labels):
            raise TimmAssembleError(
                f"{path}: expected uint8 ({len(self.labels)}, H, W, 3) to match labels.npy, got {images.dtype} "
                f"{images.shape}"
            )
        return images

    def shorter_side(self, corruption: str) -> int:
        return int(min(self.array(corruption).shape[1:3]))

    def dataset(
        self, corruption: str, severity: int, limit: int | None, image_fn, take: Callable[[list], list] = list
    ) -> "NpyImagesDataset":
        """The severity's images (`limit` of them, evenly spaced; then `take`'s share of those)."""
        self.array(corruption)  # checked here, once, not in a loader worker
        start = (severity - 1) * self.per_severity
        rows = take(limit_samples(range(start, start + self.per_severity), limit))
        return NpyImagesDataset(str(self.root / f"{corruption}.npy"), rows, self.labels[rows].tolist(), image_fn)


class NpyImagesDataset(torch.utils.data.Dataset):
    """Rows of a uint8 NxHxWx3 .npy file, memory-mapped in each process on first use -> (uint8 CxHxW tensor, target)
    through `image_fn(pil, index)`."""

    def __init__(self, path: str, rows: Sequence[int], targets: Sequence[int], image_fn):
        self.path, self.rows, self.targets, self.image_fn = path, list(rows), list(targets), image_fn
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
        img = Image.fromarray(np.asarray(self._images[self.rows[index]]))
        return uint8_chw(self.image_fn(img, index)), self.targets[index]

    def __getstate__(self) -> dict:  # a DataLoader worker maps the file itself
        return {**self.__dict__, "_images": None}
