"""Datasets for training: timm's `create_dataset`, checked up front, with unreadable images skipped and counted.

timm's `ImageDataset` already survives a bad file, but it silently substitutes the next sample and logs
only an index. Training needs the file's name, a count per epoch and a strict mode, so reading goes
through `SkippingDataset` and `collate_skipping`, which drop unreadable samples from the batch and
report their names to the training loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from timm.data import create_dataset
from timm.data.dataset import ImageDataset
from timm.data.readers.reader import Reader
from torch.utils.data import Dataset, default_collate

from ..errors import TimmAssembleError
from .images import READ_ERRORS, FolderScan, open_image, scan_image_folder

_logger = logging.getLogger(__name__)

# split folder names timm's create_dataset looks for (timm.data.dataset_factory)
_TRAIN_NAMES = ("train", "training")
_VAL_NAMES = ("val", "valid", "validation", "eval", "evaluation")


@dataclass
class Unreadable:
    """Placeholder a dataset returns for a sample it could not decode; the collate function removes it."""

    name: str
    error: str


class _IndexedView(Dataset):
    """`base` seen through `indices` (all of it when None), with a transform of its own."""

    def __init__(self, base: Dataset, indices: Sequence[int] | None = None, transform: Callable | None = None):
        self.base = base
        self.indices = list(indices) if indices is not None else None
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.base)

    def _base_index(self, i: int) -> int:
        return self.indices[i] if self.indices is not None else i


class SkippingDataset(_IndexedView):
    """Wrap a timm `ImageDataset` (or a subset of it): decode errors become `Unreadable` instead of a retry."""

    base: ImageDataset

    def __getitem__(self, i: int) -> Any:
        index = self._base_index(i)
        try:
            fileobj, target = self.base.reader[index][:2]
            img = open_image(fileobj, self.base.input_img_mode or "RGB")
        except READ_ERRORS as err:
            return Unreadable(self.base.filename(index, absolute=True), f"{type(err).__name__}: {err}")
        if self.transform is not None:
            img = self.transform(img)
        return img, -1 if target is None else target


class TransformDataset(_IndexedView):
    """A non-ImageFolder dataset (torchvision, HF, ...) seen through `indices` with its own transform."""

    def __getitem__(self, i: int) -> Any:
        img, target = self.base[self._base_index(i)][:2]
        return (self.transform(img) if self.transform is not None else img), target


class SkippingCollate:
    """Collate readable samples; return `(images, targets, skipped_names)`.

    With `even=True` (mixup pairs samples), an odd batch left after skipping repeats its last sample.
    A batch in which nothing could be read is an error: that is a broken dataset, not a stray file.
    """

    def __init__(self, even: bool = False):
        self.even = even

    def __call__(self, batch: list[Any]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        good = [b for b in batch if not isinstance(b, Unreadable)]
        skipped = [f"{b.name} ({b.error})" for b in batch if isinstance(b, Unreadable)]
        if not good:
            raise TimmAssembleError(f"no image of a batch of {len(batch)} could be read, e.g. {skipped[0]}")
        if self.even and len(good) % 2:
            good.append(good[-1])
        images, targets = default_collate(good)
        return images, targets, skipped


@dataclass
class DataSplits:
    """The training and validation datasets (untransformed) plus what the model needs to know."""

    train: Dataset
    val: Dataset
    label_names: list[str]
    train_indices: list[int] | None = None
    val_indices: list[int] | None = None
    notes: list[str] = field(default_factory=list)  # what discovery skipped, per folder

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def num_train(self) -> int:
        """Training images (each once, whatever a recipe repeats per epoch)."""
        return len(self.train_indices) if self.train_indices is not None else len(self.train)

    @property
    def num_val(self) -> int:
        return len(self.val_indices) if self.val_indices is not None else len(self.val)

    def summary(self) -> str:
        """Class count and training images per class, for the start of a run."""
        targets = _known_targets(self.train)
        if targets is None:
            return f"{self.num_classes} classes"
        if self.train_indices is not None:
            targets = [targets[i] for i in self.train_indices]
        counts = np.bincount(targets, minlength=self.num_classes)
        per_class = [f"{name} {n}" for name, n in zip(self.label_names, counts.tolist(), strict=False)]
        if len(per_class) > 8:
            low, high = int(counts.argmin()), int(counts.argmax())
            per_class = [
                f"{counts.min()} ({self.label_names[low]}) to {counts.max()} ({self.label_names[high]})",
            ]
        return f"{self.num_classes} classes, training images per class: {', '.join(per_class)}"

    def with_transforms(self, train_transform: Callable, eval_transform: Callable) -> tuple[Dataset, Dataset]:
        return (
            _wrap(self.train, self.train_indices, train_transform),
            _wrap(self.val, self.val_indices, eval_transform),
        )


def _wrap(ds: Dataset, indices: list[int] | None, transform: Callable) -> Dataset:
    if isinstance(ds, ImageDataset):
        return SkippingDataset(ds, indices, transform)
    return TransformDataset(ds, indices, transform)


def stratified_split(targets: Sequence[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split keeping each class's share: every class with 2+ samples gets at least one of each."""
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(targets):
        idx = np.flatnonzero(targets == cls)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return sorted(train), sorted(val)


def _known_targets(ds: Dataset) -> list[int] | None:
    """The labels, when the dataset has them without decoding its images."""
    if isinstance(ds, ImageDataset) and hasattr(ds.reader, "samples"):
        return [int(t) for _, t in ds.reader.samples]
    for attr in ("targets", "labels"):
        if hasattr(ds, attr):
            return [int(t) for t in getattr(ds, attr)]
    return None


def _targets(ds: Dataset) -> list[int]:
    known = _known_targets(ds)
    return known if known is not None else [int(ds[i][1]) for i in range(len(ds))]


def _split_dir(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def split_folder(root: str | Path, split: str = "validation") -> tuple[Path, str | None]:
    """The image folder of `split` under `root`, and the split folder's name, as timm's validate.py finds it
    (`--data-dir ROOT --split NAME`; 'validation' also finds val/, valid/, eval/, ...). A root without split
    folders is the class folders itself (name None); a root with other splits only is an error, so splits are
    never pooled into one set of classes."""
    root = Path(root)
    synonyms = _VAL_NAMES if split in _VAL_NAMES else _TRAIN_NAMES if split in _TRAIN_NAMES else ()
    found = _split_dir(root, (split, *synonyms))
    if found is not None:
        return found, found.name
    if not root.is_dir():
        return root, None  # the caller says it does not exist
    splits = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name in (*_TRAIN_NAMES, *_VAL_NAMES, "test"))
    if splits:
        raise TimmAssembleError(
            f"data dir {root} holds the splits {', '.join(splits)} but no '{split}' split: pass --split NAME "
            "(one of them) to evaluate it"
        )
    return root, None


class ScannedFolderReader(Reader):
    """timm's folder reader interface over `scan_image_folder`'s samples: the one discovery rule for training."""

    def __init__(self, scan: FolderScan) -> None:
        super().__init__()
        self.root = str(scan.root)
        self.samples = scan.samples
        self.class_to_idx = scan.class_to_idx

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        return open(path, "rb"), target

    def __len__(self) -> int:
        return len(self.samples)

    def _filename(self, index: int, basename: bool = False, absolute: bool = False) -> str:
        path = Path(self.samples[index][0])
        return path.name if basename else str(path if absolute else path.relative_to(self.root))


def scan_class_folders(folder: Path) -> FolderScan:
    """The folder's classes by the one rule; a class folder without images is named (it would shift the
    class indices), and so are images lying directly in `folder`."""
    scan = scan_image_folder(folder)
    if "" in scan.class_to_idx:
        raise TimmAssembleError(f"{folder} has images directly in it; put them in one folder per class")
    for name, count in scan.counts().items():
        if count == 0:
            skipped = scan.skipped.get(name, [])
            why = f"; skipped: {'; '.join(skipped[:3])}" if skipped else ""
            raise TimmAssembleError(
                f"class folder {folder / name} is empty (no file with an image extension Pillow opens, such as "
                f".jpg, .png, .webp, .tiff, .bmp, .gif{why}); add images or remove it"
            )
    return scan


def scan_once(folder: Path) -> FolderScan:
    """`scan_class_folders` once per launch: under several processes (a process group is up) the main process
    scans and the others receive its result, or its error, which every process then raises."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return scan_class_folders(folder)
    found: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            found = [_pack(scan_class_folders(folder))]
        except Exception as err:  # raised on every process, not only here: the others would wait for the scan
            found = [err]
    dist.broadcast_object_list(found, src=0)
    if isinstance(found[0], Exception):
        raise found[0]
    return _unpack(found[0])


def _pack(scan: FolderScan) -> tuple:
    """A scan as a few large objects (one string of NUL-separated paths, one array of targets): pickled fast."""
    paths = "\0".join(p for p, _ in scan.samples)
    targets = np.fromiter((t for _, t in scan.samples), dtype=np.int32, count=len(scan.samples)).tobytes()
    return str(scan.root), paths, targets, scan.class_to_idx, scan.skipped


def _unpack(packed: tuple) -> FolderScan:
    root, paths, targets, class_to_idx, skipped = packed
    names = paths.split("\0") if paths else []
    samples = list(zip(names, np.frombuffer(targets, dtype=np.int32).tolist(), strict=True))
    return FolderScan(Path(root), samples, class_to_idx, skipped)


def _folder_dataset(folder: Path) -> tuple[ImageDataset, str | None]:
    scan = scan_once(folder)
    return ImageDataset(str(folder), reader=ScannedFolderReader(scan)), scan.skipped_note()


def check_enough_classes(names: Sequence[str], where: str) -> None:
    if len(names) < 2:
        raise TimmAssembleError(
            f"{where} has {len(names)} class{'' if len(names) == 1 else 'es'} ({', '.join(names)}): a classifier "
            "needs at least 2, one folder per class"
        )


def _label_names(ds: Dataset) -> list[str] | None:
    reader = getattr(ds, "reader", None)
    class_to_idx = getattr(reader, "class_to_idx", None) or getattr(ds, "class_to_idx", None)
    if class_to_idx:
        return [name for name, _ in sorted(class_to_idx.items(), key=lambda kv: kv[1])]
    classes = getattr(ds, "classes", None)
    return [str(c) for c in classes] if classes else None


def _create(name: str, root: str | None, split: str, is_training: bool, download: bool, seed: int) -> Dataset:
    try:
        return create_dataset(name, root=root, split=split, is_training=is_training, download=download, seed=seed)
    except (RuntimeError, FileNotFoundError, AssertionError) as err:
        where = f"{root}" + (f" ({name})" if name else "")
        raise TimmAssembleError(f"cannot read the {split} data from {where}: {err}") from err


def build_data_splits(
    data_dir: str | Path | None,
    dataset: str = "",
    train_split: str = "train",
    val_split_name: str = "validation",
    val_fraction: float | None = None,
    download: bool = False,
    seed: int = 0,
) -> DataSplits:
    """Find and check the data: ImageFolder `train/`+`val/`, one folder split by `val_fraction`, or a
    timm named dataset. Everything that would stop training later fails here with one clear message."""
    if not dataset:
        if data_dir is None:
            raise TimmAssembleError("no data: pass --data-dir DIR (or --dataset NAME)")
        root = Path(data_dir)
        if not root.is_dir():
            raise TimmAssembleError(f"data dir {root} does not exist or is not a folder")
        if not any(root.iterdir()):
            raise TimmAssembleError(f"data dir {root} is empty")
    root_str = str(data_dir) if data_dir is not None else None

    notes: list[str] = []
    if val_fraction is not None:
        if dataset:
            full = _create(dataset, root_str, train_split, False, download, seed)
        else:
            full, note = _folder_dataset(_split_dir(root, (train_split, *_TRAIN_NAMES)) or root)
            notes += [note] if note else []
        if len(full) == 0:
            raise TimmAssembleError(f"no images found in {data_dir}")
        train_idx, val_idx = stratified_split(_targets(full), val_fraction, seed)
        if not val_idx:
            raise TimmAssembleError(f"--val-fraction {val_fraction} leaves no validation images in {data_dir}")
        names = _label_names(full) or [str(i) for i in range(max(_targets(full)) + 1)]
        check_enough_classes(names, str(data_dir or dataset))
        return DataSplits(full, full, names, train_idx, val_idx, notes)

    if not dataset:
        # timm falls back to the root itself when a split folder is missing; say which folder is missing
        has_train = any((root / s).is_dir() for s in (train_split, *_TRAIN_NAMES))
        has_val = any((root / s).is_dir() for s in (val_split_name, *_VAL_NAMES))
        if not (has_train and has_val):
            missing = "train/" if not has_train else "val/"
            raise TimmAssembleError(
                f"data dir {root} has no {missing} folder; use a train/ + val/ layout, or pass "
                "--val-fraction 0.1 to hold out part of a single folder"
            )
        train, train_note = _folder_dataset(_split_dir(root, (train_split, *_TRAIN_NAMES)))
        val, val_note = _folder_dataset(_split_dir(root, (val_split_name, *_VAL_NAMES)))
        notes += [n for n in (train_note, val_note) if n]
    else:
        train = _create(dataset, root_str, train_split, True, download, seed)
        val = _create(dataset, root_str, val_split_name, False, download, seed)
    for split, ds in (("train", train), ("validation", val)):
        if len(ds) == 0:
            raise TimmAssembleError(f"the {split} split of {data_dir or dataset} has no images")
    train_names, val_names = _label_names(train), _label_names(val)
    if train_names and val_names and train_names != val_names:
        only_train = sorted(set(train_names) - set(val_names))
        only_val = sorted(set(val_names) - set(train_names))
        raise TimmAssembleError(
            f"train and validation classes differ (only in train: {only_train[:5]}, only in val: {only_val[:5]}); "
            "every class folder must exist in both"
        )
    names = train_names or [str(i) for i in range(max(_targets(train)) + 1)]
    check_enough_classes(names, str(data_dir or dataset))
    return DataSplits(train, val, names, notes=notes)
