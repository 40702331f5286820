"""Our converted-weights cache: official checkpoints converted once, verified on every load.

One entry per weight and architecture width, `$TIMM_ASSEMBLE_CACHE/<arch>.<tag>/` (default under the
Hugging Face home: `~/.cache/huggingface/timm_assemble/`). The width is part of the key (`<arch>.<tag>-w8`
for width 8) because a checkpoint of another width is another set of tensors: an entry is served only to a
request of the width it was converted at. An entry holds the converted folder (`model.safetensors`,
`config.json`, `README.md`) and `provenance.json`: where the source files came from, their sha256, and the
sha256 of the weights and config, which are checked before an entry is loaded.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from huggingface_hub import constants as hf_constants
from safetensors import SafetensorError, safe_open

from ..errors import TimmAssembleError
from ..fileio import atomic_write, sha256_file
from ..locks import folder_lock
from ..schema import PLAIN_NAME, SHA256, Check, MapOf, Maybe, check_schema, is_plain_name
from ..tensor_checks import check_finite
from ..version import __version__
from .hub_folder import CONFIG_NAME, WEIGHTS_NAME

CACHE_ENV = "TIMM_ASSEMBLE_CACHE"
PROVENANCE_NAME = "provenance.json"
DEFAULT_WIDTH = 64
_FORMAT = 1
ENTRY_WAIT_S = 6 * 3600  # another process downloading and converting the same weights: wait for it


# (resolved path, size, mtime_ns) -> sha256, so repeated loads in one process hash a file once.
_HASHED: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of `path`, remembered per (path, size, mtime) for this process."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path)
    return _HASHED[key]


def cache_root() -> Path:
    """`$TIMM_ASSEMBLE_CACHE`, else `<HF_HOME>/timm_assemble` (read on every call, so tests can set it)."""
    return Path(os.environ.get(CACHE_ENV) or Path(hf_constants.HF_HOME) / "timm_assemble")


def entry_key(name: str, width: int = DEFAULT_WIDTH) -> str:
    """`arch.tag` for the official width, `arch.tag-w<width>` for any other."""
    return name if width == DEFAULT_WIDTH else f"{name}-w{width}"


def entry_dir(name: str, width: int = DEFAULT_WIDTH) -> Path:
    return cache_root() / entry_key(name, width)


@dataclass(frozen=True)
class CacheEntry:
    """A cache entry as its provenance file describes it."""

    path: Path
    provenance: dict[str, Any]

    @property
    def name(self) -> str:
        return self.provenance["name"]

    @property
    def width(self) -> int:
        return int(self.provenance["model_args"].get("width", DEFAULT_WIDTH))

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_NAME

    @property
    def sha256(self) -> str:
        return self.provenance["result"][WEIGHTS_NAME]["sha256"]

    @property
    def size_bytes(self) -> int:
        return int(self.provenance["result"][WEIGHTS_NAME]["size"])


# what `read_entry` accepts: every field the package reads afterwards, and file names that stay in the entry
_FILE = {"sha256": SHA256, "size": Check(int, lambda v: v >= 0, "a size >= 0")}
PROVENANCE_SCHEMA = {
    "name": Check(str, lambda v: "." in v, "'<architecture>.<tag>'"),
    "model_args": {"width": Maybe(Check(int, lambda v: v >= 1, "a width >= 1"))},
    "source": {"kind": Maybe(str)},
    "result": Check(
        MapOf(_FILE, keys=is_plain_name, keys_what=PLAIN_NAME),
        lambda v: WEIGHTS_NAME in v,
        f"a record naming {WEIGHTS_NAME}",
    ),
}


_CONFIG = {"architecture": str, "model_args": Maybe({"width": Maybe(int)})}  # what is checked against the provenance


def read_entry(path: Path) -> CacheEntry:
    """The entry at `path`; a TimmAssembleError says what is missing or unreadable (one schema, one line)."""
    provenance_path = path / PROVENANCE_NAME
    if provenance_path.is_symlink():
        raise TimmAssembleError(f"cache entry {path}: {PROVENANCE_NAME} is a link (an entry holds its own files)")
    try:
        provenance = json.loads(provenance_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise TimmAssembleError(f"cache entry {path} has no {PROVENANCE_NAME}") from err
    except (OSError, ValueError) as err:
        raise TimmAssembleError(f"cache entry {path}: {PROVENANCE_NAME} is unreadable ({err})") from err
    check_schema(provenance, PROVENANCE_SCHEMA, f"cache entry {path}: {PROVENANCE_NAME}")
    return CacheEntry(path, provenance)


def entry_lock(name: str, timeout: float = ENTRY_WAIT_S) -> contextlib.AbstractContextManager:
    """One writer per official weight at a time (download folder and entries); the others wait for it."""
    root = cache_root()
    hint = "it is being written by that process"
    return folder_lock(root / ".locks" / name, "cache entry", hint, timeout, scratch_root=root)


def check_entry(path: Path) -> tuple[CacheEntry | None, list[str]]:
    """The one validator of a cache entry, behind both `weights verify` and loading: (entry, problems).

    An entry may be loaded only when `problems` is empty: its provenance reads, names the entry's own folder
    (`arch.tag[-wN]`), every recorded file has its recorded sha256, and config.json and the weights agree with
    the provenance's architecture and width and hold only finite values. Only files inside the entry are read.
    """
    try:
        entry = read_entry(path)
    except TimmAssembleError as err:
        return None, [str(err).removeprefix(f"cache entry {path}: ")]
    key = entry_key(entry.name, entry.width)
    if key != path.name:
        return entry, [
            f"{PROVENANCE_NAME} names {entry.name} at width {entry.width}, whose entry is {key}, not {path.name}"
        ]
    problems = []
    for filename, recorded in entry.provenance["result"].items():
        file = path / filename
        if file.is_symlink() or (file.exists() and not file.is_file()):
            problems.append(f"{filename} is a link or not a regular file (an entry holds its own files)")
        elif not file.is_file():
            problems.append(f"{filename} is missing")
        elif (actual := file_sha256(file)) != recorded["sha256"]:
            problems.append(f"{filename} has sha256 {actual}, recorded {recorded['sha256']}")
        elif (size := file.stat().st_size) != recorded["size"]:
            problems.append(f"{filename} has {size} bytes, recorded {recorded['size']}")
    return entry, problems or _content_problems(entry)


def _content_problems(entry: CacheEntry) -> list[str]:
    """What config.json and the weights say against the provenance (files whose hashes match it)."""
    architecture = entry.name.split(".", 1)[0]
    try:
        config = check_schema(json.loads((entry.path / CONFIG_NAME).read_text(encoding="utf-8")), _CONFIG, CONFIG_NAME)
    except TimmAssembleError as err:
        return [str(err)]
    except (OSError, ValueError) as err:
        return [f"{CONFIG_NAME} is unreadable ({err})"]
    config_arch, config_width = config["architecture"], config.get("model_args", {}).get("width", DEFAULT_WIDTH)
    if (config_arch, config_width) != (architecture, entry.width):
        return [f"{CONFIG_NAME} describes {config_arch} at width {config_width}, the provenance {architecture} at "
                f"width {entry.width}"]  # fmt: skip
    key = (entry.sha256, entry.name, entry.width)
    if key not in _WEIGHTS_CHECKED:
        _WEIGHTS_CHECKED[key] = _weights_problems(entry)
    return _WEIGHTS_CHECKED[key]


# (sha256, name, width) -> problems of a weights file's tensors, so repeated loads in one process read them once.
_WEIGHTS_CHECKED: dict[tuple[str, str, int], list[str]] = {}


def _weights_problems(entry: CacheEntry) -> list[str]:
    """The weights against the model loading builds (`name` at `width`, on the meta device: shapes only): every
    key, shape and kind of dtype, then finite values (read one tensor at a time)."""
    try:
        with torch.device("meta"):
            own = timm.create_model(entry.name, width=entry.width).state_dict()
    except Exception as err:  # an unregistered name, a width the model refuses: no model to load into
        return [f"{entry.name} at width {entry.width} cannot be built ({type(err).__name__}: {err})"]
    try:
        with safe_open(entry.weights, "pt") as weights:
            keys = list(weights.keys())
            if set(keys) != set(own):
                missing, extra = sorted(set(own) - set(keys)), sorted(set(keys) - set(own))
                return [f"{WEIGHTS_NAME} does not hold {entry.name} at width {entry.width}: missing {missing[:3]}, "
                        f"unexpected {extra[:3]}"]  # fmt: skip
            for key in keys:
                tensor = weights.get_slice(key)
                shape, floating = tuple(tensor.get_shape()), tensor.get_dtype() in _FLOAT_DTYPES
                if shape != tuple(own[key].shape) or floating != own[key].is_floating_point():
                    return [f"{WEIGHTS_NAME}: {key} is {tensor.get_dtype()}{list(shape)}, {entry.name} at width "
                            f"{entry.width} needs {own[key].dtype}{list(own[key].shape)}"]  # fmt: skip
            check_finite(((k, weights.get_tensor(k)) for k in keys), WEIGHTS_NAME)
    except (SafetensorError, OSError) as err:
        return [f"{WEIGHTS_NAME} is not a readable safetensors file ({err})"]
    except TimmAssembleError as err:
        return [str(err).split(";")[0]]
    return []


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def find_entry(name: str, width: int = DEFAULT_WIDTH) -> tuple[CacheEntry | None, str | None]:
    """The verified entry for `name` at `width`, else (None, why not); a corrupt entry is never returned."""
    path = entry_dir(name, width)
    if not path.is_dir():
        return None, f"no entry {path}"
    entry, problems = check_entry(path)
    if problems:
        return None, f"corrupt entry {path}: {'; '.join(problems)}"
    return entry, None


def entries_of(name: str) -> list[Path]:
    """The entry folders of `name` at any width, by folder name (what loading looks up), whatever they hold."""
    root = cache_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p.name == name or p.name.startswith(f"{name}-w")))


def list_entries() -> list[CacheEntry | tuple[Path, str]]:
    """Every entry folder of the cache: a CacheEntry, or (path, problem) for one that cannot be read."""
    root = cache_root()
    if not root.is_dir():
        return []
    found: list[CacheEntry | tuple[Path, str]] = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found.append(read_entry(path))
        except TimmAssembleError as err:
            found.append((path, str(err)))
    return found


def write_provenance(
    folder: Path,
    name: str,
    model_args: Mapping[str, Any],
    source: Mapping[str, Any],
) -> dict[str, Any]:
    """Record `source` and the sha256 of the converted files of `folder` (the entry being written)."""

    result = {
        filename: {"sha256": file_sha256(folder / filename), "size": (folder / filename).stat().st_size}
        for filename in (WEIGHTS_NAME, CONFIG_NAME)  # not the card: `publish` renders it anew into the entry
    }
    provenance = {
        "format": _FORMAT,
        "name": name,
        "architecture": name.split(".", 1)[0],
        "model_args": dict(model_args),
        "source": dict(source),
        "result": result,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timm_assemble_version": __version__,
    }
    atomic_write(folder / PROVENANCE_NAME, json.dumps(provenance, indent=2) + "\n")
    return provenance
