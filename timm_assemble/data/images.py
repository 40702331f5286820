"""The one image reader of the package: any file Pillow opens becomes the 8-bit RGB (or L) image models expect.

Training, `predict`, `validate` and `robustness` all read through `open_image`, so one file gives the same
pixels everywhere. Pillow's own `convert("RGB")` is wrong for several common files, which is why this exists:

- 16-bit grayscale (`I;16`, `I;16B`, `I;16L`, and `I`, which Pillow uses for 16-bit PNGs) is clipped to
  white by `convert`; here it is scaled: 65535 -> 255 (an 8-bit image stored as 16-bit reads back exactly).
- transparency (`RGBA`, `LA`, `PA`, palette images with a transparent colour) is composited on white,
  as an image viewer shows it, instead of dropping the alpha channel and exposing whatever colour the
  transparent pixels happen to hold.
- the EXIF orientation tag is applied, so a phone photo is upright.

`1`, `L`, `P`, `CMYK` (Pillow's conversion, without colour management), `YCbCr`, `LAB`, `HSV` and `F`
(Pillow's conversion: values taken as 0-255) are converted by Pillow.

Which files are images is one rule too (`scan_image_folder`): the extensions Pillow opens, each skipped
file named, symlinks resolved once (a loop or a second link to one target is reported, not followed
again), and only regular files read. An image's declared size is checked against Pillow's
`MAX_IMAGE_PIXELS` before any pixel is decoded: a 12000x12000 header is refused, not decoded to black.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps
from timm.utils.misc import natural_key

from ..errors import TimmAssembleError

_logger = logging.getLogger(__name__)

# what Pillow raises for truncated, corrupt or unsupported files
READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}


# formats Pillow registers but cannot decode by itself (stubs, external programs, vector or video formats)
_NOT_DECODABLE = {"BUFR", "GRIB", "HDF5", "WMF", "MPEG", "EPS"}


def _image_extensions() -> tuple[str, ...]:
    Image.init()
    registered = Image.registered_extensions()
    return tuple(sorted(e for e, f in registered.items() if f in Image.OPEN and f not in _NOT_DECODABLE))


IMAGE_EXTENSIONS = _image_extensions()  # .png .jpg .jpeg .webp .tif .tiff .bmp .gif ... : every one Pillow opens


def set_max_image_pixels(pixels: int | None) -> None:
    """Raise (or lower) the declared-size limit every reader checks; None: Pillow's default (about 89 MP)."""
    Image.MAX_IMAGE_PIXELS = pixels if pixels is not None else _DEFAULT_MAX_PIXELS


_DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS


def check_declared_size(img: Image.Image) -> None:
    """Refuse an image whose header claims more pixels than the limit, before decoding allocates them."""
    limit = Image.MAX_IMAGE_PIXELS
    width, height = img.size
    if limit is not None and width * height > limit:
        raise Image.DecompressionBombError(
            f"declared size {width}x{height} ({width * height / 1e6:.0f} MP) is over the limit of "
            f"{limit / 1e6:.0f} MP (a decompression bomb, or raise the limit with --max-image-pixels)"
        )


def open_image(source: str | os.PathLike | BinaryIO, mode: str = "RGB") -> Image.Image:
    """Decode `source` fully into an 8-bit image of `mode` ("RGB" or "L"); raises one of READ_ERRORS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, as an error
        try:
            img = Image.open(source)
        except Image.DecompressionBombError as err:  # over twice the limit: Pillow refuses by itself
            raise Image.DecompressionBombError(f"{err} (raise the limit with --max-image-pixels)") from None
    with img:
        check_declared_size(img)
        img.load()
        return to_mode(img, mode)


def to_mode(img: Image.Image, mode: str = "RGB") -> Image.Image:
    """`img` upright, 8 bits per channel, alpha composited on white, in `mode`."""
    img = _upright(img)
    if img.mode in _SIXTEEN_BIT:
        wide = np.asarray(img).astype(np.int64).clip(0, 65535)
        img = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img if img.mode == mode else img.convert(mode)


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about malformed EXIF it can still read
            return ImageOps.exif_transpose(img)
    except Exception:  # the pixels are fine, only the orientation tag is unreadable
        return img


@dataclass
class FolderScan:
    """What `scan_image_folder` found: samples `(path, class index)`, classes, and every entry it skipped."""

    root: Path
    samples: list[tuple[str, int]]
    class_to_idx: dict[str, int]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # class ("" for the root) -> "name (why)"

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.class_to_idx, 0)
        names = list(self.class_to_idx)
        for _, target in self.samples:
            counts[names[target]] += 1
        return counts

    def skipped_note(self, limit: int = 3) -> str | None:
        """One line: how many entries were skipped, per class, with the first few named."""
        if not self.skipped:
            return None
        total = sum(map(len, self.skipped.values()))
        parts = [
            f"{cls or '.'}: {len(items)} ({'; '.join(items[:limit])}{'; ...' if len(items) > limit else ''})"
            for cls, items in sorted(self.skipped.items())
        ]
        return f"skipped {total} entries of {self.root}: " + ", ".join(parts)


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"))
    kinds += ((stat.S_ISBLK, "a device"),)
    return next((name for test, name in kinds if test(mode)), "not a regular file")


class _Walk:
    """One walk of a folder tree: every real folder and file visited once, whatever links point at them.

    As cheap as timm's `os.walk`: a file's type and inode come from its directory entry (no stat per file, no sort
    per folder); only folders and links are stat'ed and sorted. Real files that are one file (hard links) are
    resolved after the walk, the first in sample order kept; a link to a file is the duplicate, never its target.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = len(str(root)) + 1  # a path's length before its name relative to the root
        self.seen_dirs: dict[tuple[int, int], str] = {}
        self.skipped: dict[str, list[str]] = {}
        self.per_class: dict[str, list[str]] = {}
        self.seen_files: dict[tuple[int, int], tuple[str, str]] = {}  # (dev, inode) -> the (path, class) kept
        self.same_files: dict[tuple[int, int], list[tuple[str, str]]] = {}  # hard links: every real name of a file
        self.linked_files: list[tuple[tuple[int, int], str, str]] = []  # (key, path, class) of links to files
        # the real class folders, known before any link is followed: a link from one class into another
        # class's folder is the duplicate, whatever the walk order
        self.class_dirs: dict[tuple[int, int], str] = {}
        for entry in os.scandir(root):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                info = entry.stat(follow_symlinks=False)
                self.class_dirs[(info.st_dev, info.st_ino)] = entry.path

    def relative(self, path: str) -> str:
        return path[self.prefix :] or "."

    def skip(self, cls: str, path: str, why: str) -> None:
        self.skipped.setdefault(cls, []).append(f"{self.relative(path)} ({why})")

    def folder(self, path: str, cls: str, ancestors: frozenset[tuple[int, int]]) -> None:
        """Visit `path` (a folder, or a link to one) unless it was visited already or loops back."""
        info = os.stat(path)
        key = (info.st_dev, info.st_ino)
        if key in ancestors:
            return self.skip(cls, path, "symlink loop")
        owner = self.seen_dirs.get(key) or self.class_dirs.get(key)
        if owner is not None and owner != path:
            return self.skip(cls, path, f"same folder as {self.relative(owner)}")
        self.seen_dirs[key] = path
        at_root = path == str(self.root)
        if not at_root:
            self.per_class.setdefault(cls, [])  # an empty class folder is still a class (and reported as empty)
        ancestors = ancestors | {key}
        later: list[os.DirEntry] = []  # folders and links, in name order after the files: links last
        with os.scandir(path) as it:
            for entry in it:
                entry_cls = "" if at_root else cls  # a file (or a skipped entry) directly in the root has no class
                if entry.name.startswith("."):
                    self.skip(entry_cls, entry.path, "hidden")
                elif entry.is_file(follow_symlinks=False):  # the entry's type and inode: no stat (timm's os.walk)
                    if os.path.splitext(entry.name)[1].lower() not in _IMAGE_SUFFIXES:
                        self.skip(entry_cls, entry.path, "not an image extension")
                    else:
                        self.real_file(entry.path, entry_cls, (info.st_dev, entry.inode()))
                elif entry.is_dir(follow_symlinks=False) or entry.is_symlink():
                    later.append(entry)
                else:
                    kind = _kind(entry.stat(follow_symlinks=False).st_mode)
                    self.skip(entry_cls, entry.path, f"{kind}, not a regular file")
        for entry in sorted(later, key=lambda e: (e.is_symlink(), natural_key(e.name))):
            self.link_or_folder(entry.path, entry.name if at_root else cls, entry.is_symlink(), ancestors)

    def link_or_folder(self, path: str, cls: str, link: bool, ancestors: frozenset[tuple[int, int]]) -> None:
        if not link:
            return self.folder(path, cls, ancestors)
        at_root = os.path.dirname(path) == str(self.root)
        try:
            info = os.stat(path)
        except OSError:
            return self.skip("" if at_root else cls, path, "broken symlink")
        if stat.S_ISDIR(info.st_mode):
            return self.folder(path, cls, ancestors)
        cls = "" if at_root else cls
        if not stat.S_ISREG(info.st_mode):
            return self.skip(cls, path, f"{_kind(info.st_mode)}, not a regular file")
        if os.path.splitext(path)[1].lower() not in _IMAGE_SUFFIXES:
            return self.skip(cls, path, "not an image extension")
        self.linked_files.append(((info.st_dev, info.st_ino), path, cls))

    def real_file(self, path: str, cls: str, key: tuple[int, int]) -> None:
        first = self.seen_files.setdefault(key, (path, cls))
        if first[0] == path:
            self.per_class.setdefault(cls, []).append(path)
        else:
            self.same_files.setdefault(key, [first]).append((path, cls))

    def resolve(self) -> None:
        """Each file once: of a file's real names the first in sample order (whatever the walk met first), then the
        links to files not found yet; the others are named as skipped."""
        for key, names in self.same_files.items():
            first, *others = sorted(names, key=lambda n: natural_key(n[0]))
            met = self.seen_files[key]
            if first != met:
                self.per_class[met[1]].remove(met[0])
                self.per_class.setdefault(first[1], []).append(first[0])
                self.seen_files[key] = first
            for path, cls in others:
                self.skip(cls, path, f"same file as {self.relative(first[0])}")
        for key, path, cls in self.linked_files:
            if key in self.seen_files:
                self.skip(cls, path, f"same file as {self.relative(self.seen_files[key][0])}")
            else:
                self.seen_files[key] = (path, cls)
                self.per_class.setdefault(cls, []).append(path)


_IMAGE_SUFFIXES = frozenset(IMAGE_EXTENSIONS)


def scan_image_folder(root: str | os.PathLike) -> FolderScan:
    """`root/<class>/**/<image>` by the one rule (see the module doc); images directly in `root` get class ""."""
    walk = _Walk(Path(root))
    walk.folder(str(walk.root), "", frozenset())
    walk.resolve()
    names = sorted(walk.per_class, key=natural_key)
    class_to_idx = {name: i for i, name in enumerate(names)}
    samples = [(p, class_to_idx[cls]) for cls, paths in walk.per_class.items() for p in paths]
    return FolderScan(walk.root, sorted(samples, key=lambda s: natural_key(s[0])), class_to_idx, walk.skipped)


def image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder stands for the image files in it and its subfolders (the one rule, sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        scan = scan_image_folder(path)
        if not scan.samples:
            raise TimmAssembleError(f"folder {path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        if note := scan.skipped_note():
            _logger.warning("%s", note)
        files.extend(Path(p) for p, _ in scan.samples)
    return files
