"""Fetching published weights: `timm-assemble download`, the sha256 integrity check, and clear errors.

timm loads our weights through `hf_hub_download`; when the file is not there (offline, not published yet)
huggingface_hub raises errors that name neither the repo nor a way out. `missing_weights_error` turns them
into a TimmAssembleError that says which repo/file is missing and how to get the weights instead;
`verify_weights_file` refuses a file whose sha256 differs from its weight record. Where `pretrained=True`
looks for weights is decided in `timm_assemble.hub.pretrained`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..cliargs import add_dataclass_arguments, from_args
from ..errors import TimmAssembleError
from ..export import CONFIG_NAME, WEIGHTS_NAME
from ..fileio import sha256_file
from .records import WeightRecord, find_record_for_repo, get_record, load_records

# What huggingface_hub raises when a file cannot be had; each becomes a TimmAssembleError.
HUB_MISSING_ERRORS = (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, OfflineModeIsEnabled)

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


def verify_weights_file(path: str | Path, record: WeightRecord) -> str | None:
    """Refuse a weights file whose sha256 differs from the record; returns the sha256 when one is recorded."""
    if record.sha256 is None:
        return None
    actual = file_sha256(path)
    if actual != record.sha256:
        raise TimmAssembleError(
            f"integrity check failed for {record.name}: {path} has sha256 {actual}, but the weight record "
            f"expects {record.sha256}. The file is corrupt or is not the published weight; delete it (or run "
            f"`hf cache delete`) and download again with `timm-assemble download {record.name}`"
        )
    return actual


def missing_weights_error(
    name: str, repo_id: str, filename: str, err: BaseException, cache_dir: str | Path | None = None
) -> TimmAssembleError:
    """A TimmAssembleError naming the missing repo/file, why it is missing, and how to get the weights."""
    cache = Path(cache_dir) if cache_dir is not None else Path(hf_constants.HF_HUB_CACHE)
    if isinstance(err, RepositoryNotFoundError):
        reason = "cannot be fetched: the repository does not exist, or is private or gated for this token"
    elif isinstance(err, RevisionNotFoundError):
        reason = "cannot be fetched: the requested revision does not exist"
    elif isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        if hf_constants.HF_HUB_OFFLINE:
            reason = f"is not in the local Hub cache ({cache}) and HF_HUB_OFFLINE is set"
        else:
            reason = (
                f"could not be downloaded (no connection to {hf_constants.ENDPOINT}?) and is not in the "
                f"local Hub cache ({cache})"
            )
    else:
        reason = "does not exist in the repository"
    record = find_record_for_repo(repo_id)
    status = prefetch = ""
    if record is not None and record.status != "published":
        status = f" Its weight record says: {record.status} ({(record.status_note or '').rstrip('.')})."
    else:
        prefetch = (
            f" To pre-fetch for an offline machine: `timm-assemble download {name} --cache-dir CACHE` where the "
            "Hub is reachable, then set HF_HUB_CACHE=CACHE and HF_HUB_OFFLINE=1."
        )
    if record is not None and record.has_official_source:
        how = (
            f"Without the Hub, `timm.create_model('{record.name}', pretrained=True)` converts the official "
            f"checkpoint into our cache: `timm-assemble weights fetch {record.name}` does it ahead of time, "
            f"`timm-assemble weights install {record.name} --checkpoint PREFIX` from a copy of the checkpoint."
        )
    else:
        how = "Check the name and the connection, or load a local copy with `timm.create_model('local-dir:DIR')`."
    return TimmAssembleError(
        f"pretrained weights for {name} are not available: {filename} of Hub repo {repo_id} {reason}.{status} "
        f"{how}{prefetch}"
    )


def _resolve_name(name: str) -> WeightRecord:
    """A record by `arch.tag`, or by bare architecture when it has exactly one record."""
    if "." not in name:
        matches = [r for r in load_records().values() if r.architecture == name]
        if len(matches) == 1:
            return matches[0]
    return get_record(name)


def download_weights(
    name: str, cache_dir: str | Path | None = None, revision: str | None = None
) -> tuple[WeightRecord, dict[str, Path], str | None]:
    """Fetch a recorded weight's `config.json` and `model.safetensors` into the Hub cache and verify them.

    Returns the record, the cached paths by file name, and the verified sha256 (None when the record has
    none yet, i.e. the file could not be verified).
    """
    record = _resolve_name(name)
    paths = {}
    for filename in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            paths[filename] = Path(hf_hub_download(record.repo_id, filename, revision=revision, cache_dir=cache_dir))
        except HUB_MISSING_ERRORS as err:
            raise missing_weights_error(record.name, record.repo_id, filename, err, cache_dir) from err
    sha256 = verify_weights_file(paths[WEIGHTS_NAME], record)
    return record, paths, sha256


@dataclass
class DownloadOptions:
    """`timm-assemble download` flags."""

    name: str = field(
        default="",
        metadata=dict(help="weight name, e.g. assemble_resnet50.clova_in1k", positional=True, metavar="ARCH.TAG"),
    )
    cache_dir: Path | None = field(
        default=None, metadata=dict(help="Hub cache folder (None: $HF_HUB_CACHE); point HF_HUB_CACHE here offline")
    )
    revision: str | None = field(default=None, metadata=dict(help="Hub revision (branch, tag or commit); None: main"))


def run(args: argparse.Namespace) -> int:
    args = from_args(DownloadOptions, args)
    record, paths, sha256 = download_weights(args.name, cache_dir=args.cache_dir, revision=args.revision)
    print(f"{record.name}: {record.repo_id}")
    for filename, path in paths.items():
        print(f"  {filename:<18} {path}")
    if sha256 is not None:
        print(f"  sha256 ok          {sha256}")
    else:
        print(
            f"warning: the record of {record.name} has no sha256 ({record.status}); {WEIGHTS_NAME} was not "
            f"verified (its sha256 is {file_sha256(paths[WEIGHTS_NAME])})",
            file=sys.stderr,
        )
    cache = args.cache_dir or hf_constants.HF_HUB_CACHE
    print(
        f'offline use: HF_HUB_OFFLINE=1 HF_HUB_CACHE={os.fspath(cache)} python -c "import timm, timm_assemble; '
        f"timm.create_model('{record.name}', pretrained=True)\""
    )
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="pre-fetch published weights into the Hub cache and verify their sha256",
        description="Download a recorded weight (config.json + model.safetensors) into the Hugging Face Hub "
        "cache, for machines that will run offline, and check model.safetensors against the sha256 in its "
        "weight record (a mismatch is refused).",
    )
    add_dataclass_arguments(parser, DownloadOptions)
    parser.set_defaults(func=run)
