"""The official source: the authors' Google Drive folder, listed and downloaded with gdown, converted once.

`fetch_official` lists the folder (`gdown.download_folder(..., skip_download=True)`), picks the one
checkpoint of the requested model (an `*.index` file in a folder whose name carries the model's depth, 50
or 152, plus its `.data-*` shards: no other file name is assumed), downloads only those files with
progress bars into `<cache>/.downloads/<arch>.<tag>/` (a cut-off download is resumed by the next attempt),
and `install_checkpoint` converts them (every tensor CRC-32C checked) into a cache entry written as a
whole or not at all. Every failure is one TimmAssembleError that says what to do next.
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import gdown
import requests
import timm
import torch
from gdown.exceptions import DownloadError, FileURLRetrievalError

from ..convert import convert_checkpoint
from ..convert.mapping import STEM_KERNEL, detect_official_model
from ..convert.tensor_bundle import TensorBundleReader
from ..errors import TimmAssembleError
from ..fileio import atomic_dir, owning, write_error
from .cache import (
    DEFAULT_WIDTH,
    CacheEntry,
    cache_root,
    entry_dir,
    entry_lock,
    file_sha256,
    find_entry,
    read_entry,
    write_provenance,
)
from .records import get_record

# Seconds gdown waits for Drive (connect, between bytes): a dead network fails fast, a slow one still works.
DRIVE_TIMEOUT = (10, 60)
_DATA_SHARD = re.compile(r"^(?P<prefix>.+)\.data-(?P<index>\d{5})-of-(?P<count>\d{5})$")
_QUOTA_TEXT = "too many users have viewed or downloaded"


@dataclass(frozen=True)
class DriveFile:
    """One file of the Drive folder: its Drive id and its path below the folder."""

    id: str
    path: str


def drive_folder_id(name: str) -> str:
    """The Drive folder id in the weight record's source URL."""
    url = get_record(name).source.url
    match = re.search(r"/folders/([-\w]{25,})", url)
    if match is None:
        raise TimmAssembleError(f"the weight record of {name} names no Google Drive folder (source url {url!r})")
    return match.group(1)


def _no_network(what: str, err: BaseException, name: str) -> TimmAssembleError:
    return TimmAssembleError(
        f"cannot reach Google Drive to {what} ({type(err).__name__}: {err}). Check the connection and run "
        f"`timm-assemble weights fetch {name}` again, or download the checkpoint in a browser and run "
        f"`timm-assemble weights install {name} --checkpoint PREFIX`"
    )


def _drive_refused(what: str, err: BaseException, name: str, url: str) -> TimmAssembleError:
    text = " ".join(str(err).split())
    if _QUOTA_TEXT in text.lower():
        reason = (
            "Google Drive's download quota for this file is used up ('too many users have viewed or downloaded "
            "this file recently'); try again in a few hours (Drive resets it within 24 h)"
        )
    else:
        reason = f"Google Drive refused it ({text})"
    return TimmAssembleError(
        f"cannot {what}: {reason}. Or download the checkpoint in a browser from {url} and run "
        f"`timm-assemble weights install {name} --checkpoint PREFIX`"
    )


def list_drive_folder(name: str) -> list[DriveFile]:
    """Every file of the official Drive folder (names and ids only; nothing is downloaded)."""
    folder_id = drive_folder_id(name)
    url = get_record(name).source.url
    try:
        listed = gdown.download_folder(id=folder_id, skip_download=True, quiet=True, timeout=DRIVE_TIMEOUT)
    except requests.RequestException as err:
        raise _no_network(f"list the official folder {url}", err, name) from err
    except DownloadError as err:
        raise _drive_refused(f"list the official folder {url}", err, name, url) from err
    return [DriveFile(f.id, PurePosixPath(f.path).as_posix()) for f in listed]


def _step(prefix: str) -> int:
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def select_checkpoint(files: Sequence[DriveFile], name: str) -> list[DriveFile]:
    """The files of `name`'s checkpoint in a folder listing: its `.index` and every `.data-*` shard.

    The model's folder is recognised by its depth (50 or 152) as a number of its own in the folder path;
    of several checkpoints there the one with the highest step is taken.
    """
    architecture = get_record(name).architecture
    depth = re.search(r"(\d+)$", architecture).group(1)
    mentions_depth = re.compile(rf"(?<!\d){depth}(?!\d)")
    in_model_folder = [f for f in files if mentions_depth.search(str(PurePosixPath(f.path).parent))]
    indexes = [f for f in in_model_folder if f.path.endswith(".index")]
    found = "\n".join(f"    {f.path}" for f in files) or "    (nothing)"
    if not indexes:
        raise TimmAssembleError(
            f"the official folder's layout is not as expected: no checkpoint (*.index) in a folder named for "
            f"{architecture} (depth {depth}). It holds:\n{found}\nDownload the checkpoint by hand and run "
            f"`timm-assemble weights install {name} --checkpoint PREFIX`"
        )
    index = max(indexes, key=lambda f: _step(f.path[: -len(".index")]))
    prefix = index.path[: -len(".index")]
    shards = {}
    for f in files:
        match = _DATA_SHARD.match(f.path)
        if match and match["prefix"] == prefix:
            shards[int(match["index"])] = (f, int(match["count"]))
    counts = {count for _, count in shards.values()}
    if len(counts) != 1 or set(shards) != set(range(counts.pop())):
        raise TimmAssembleError(
            f"the official folder's layout is not as expected: checkpoint {prefix} lacks data shards "
            f"({sorted(shards)} of {sorted({c for _, c in shards.values()}) or '?'} found). It holds:\n{found}\n"
            f"Download the checkpoint by hand and run `timm-assemble weights install {name} --checkpoint PREFIX`"
        )
    return [index, *(shards[i][0] for i in sorted(shards))]


def download_size_mb(architecture: str, width: int) -> float:
    """Size of the model's float32 variables (the checkpoint's size without optimizer state), in MB."""
    with torch.device("meta"):
        model = timm.create_model(architecture, num_classes=1001, width=width)
    return sum(t.numel() for t in model.state_dict().values()) * 4 / 1e6


def download_checkpoint(name: str, files: Sequence[DriveFile], folder: Path) -> Path:
    """Download `files` into `folder` (resuming partial files); returns the checkpoint prefix."""
    url = get_record(name).source.url
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        out = folder / PurePosixPath(f.path).name
        try:
            gdown.download(id=f.id, output=str(out), quiet=False, resume=True, timeout=DRIVE_TIMEOUT)
        except FileURLRetrievalError as err:
            raise _drive_refused(f"download {f.path}", err, name, url) from err
        except DownloadError as err:
            raise TimmAssembleError(
                f"the download of {f.path} was cut off ({' '.join(str(err).split())}). The part already "
                f"received is kept in {folder}: run `timm-assemble weights fetch {name}` again to resume"
            ) from err
        except requests.RequestException as err:
            raise _no_network(f"download {f.path}", err, name) from err
        except OSError as err:
            raise write_error(out, err) from err
    return folder / PurePosixPath(files[0].path).name[: -len(".index")]


def checkpoint_width(name: str, prefix: Path) -> int:
    """The width of the official checkpoint at `prefix`, after checking it is `name`'s architecture."""
    reader = TensorBundleReader(prefix)
    architecture = get_record(name).architecture
    detected = detect_official_model(list(reader))
    if detected != architecture:
        what = f"an {detected} checkpoint" if detected else "not an official Assemble-ResNet checkpoint"
        raise TimmAssembleError(
            f"{reader.index_path} is {what}, not {architecture}: give the checkpoint of {architecture} "
            f"(`timm-assemble weights install {name} --checkpoint PREFIX`)"
        )
    return int(reader.entry(STEM_KERNEL).shape[3])


def install_checkpoint(name: str, prefix: str | Path, source: Mapping[str, Any]) -> CacheEntry:
    """Convert the official checkpoint `prefix` into `name`'s cache entry (replacing any entry of its width);
    another process writing `name` is waited for."""
    with entry_lock(name):
        return _install(name, Path(prefix), source)


def _install(name: str, prefix: Path, source: Mapping[str, Any]) -> CacheEntry:
    width = checkpoint_width(name, prefix)
    target = entry_dir(name, width)
    inputs = [prefix.with_name(prefix.name + ".index"), *sorted(prefix.parent.glob(prefix.name + ".data-*"))]
    files = {p.name: {"sha256": file_sha256(p), "size": p.stat().st_size} for p in inputs}
    with owning(cache_root()), atomic_dir(target, overwrite=True) as tmp:  # disk full: partial entry removed
        convert_checkpoint(get_record(name).architecture, prefix, tmp, overwrite=True)
        write_provenance(tmp, name, {"width": width}, {**source, "files": files})
    return read_entry(target)


def fetch_official(name: str, width: int = DEFAULT_WIDTH, reuse: bool = False) -> CacheEntry:
    """List, download, convert and cache `name` from the official Drive folder; returns the new entry.

    One process at a time per weight: the others wait, and with `reuse` take the entry the first one wrote
    (a multi-process launch fetches once) instead of downloading it again."""
    with entry_lock(name):
        entry, _ = find_entry(name, width) if reuse else (None, None)
        return entry or _fetch(name, width)


def _fetch(name: str, width: int) -> CacheEntry:
    record = get_record(name)
    files = select_checkpoint(list_drive_folder(name), name)
    folder = cache_root() / ".downloads" / name
    print(
        f"timm-assemble: fetching the official {record.architecture} checkpoint from Google Drive "
        f"({record.source.url}): {', '.join(f.path for f in files)}, about "
        f"{download_size_mb(record.architecture, width):.0f} MB; it is converted once into {cache_root()}",
        file=sys.stderr,
    )
    prefix = download_checkpoint(name, files, folder)
    source = {
        "kind": "official source",
        "url": record.source.url,
        "drive_files": {f.path: f.id for f in files},
    }
    try:
        entry = _install(name, prefix, source)
    except TimmAssembleError as err:
        if getattr(err.__cause__, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
            shutil.rmtree(folder, ignore_errors=True)  # a wrong or corrupt download must not be resumed
        raise
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # the downloads folder, once nothing is left in it
        folder.parent.rmdir()
    return entry
