"""`timm-assemble weights`: fill, inspect and check the converted-weights cache that `pretrained=True` reads.

    weights fetch ARCH.TAG                        the official source -> cache (warm a cache before going offline)
    weights install ARCH.TAG --checkpoint PREFIX  a checkpoint copied in by hand -> cache (no internet needed)
    weights list                                  what is cached: name, source, size, sha256, date
    weights verify ARCH.TAG                       re-hash its cached entries against their provenance
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TimmAssembleError
from ..weights.cache import CACHE_ENV, CacheEntry, cache_root, check_entry, entries_of, find_entry, list_entries
from ..weights.records import get_record
from .args import Command


def _name_field() -> Any:
    return field(
        default="",
        metadata=dict(positional=True, metavar="ARCH.TAG", help="weight name, e.g. assemble_resnet50.clova_in1k"),
    )


@dataclass
class FetchArgs:
    name: str = _name_field()
    force: bool = field(default=False, metadata=dict(help="fetch and convert again even when a verified entry exists"))


@dataclass
class InstallArgs:
    name: str = _name_field()
    checkpoint: str = field(
        default="",
        metadata=dict(
            metavar="PREFIX",
            help="the official checkpoint, path without '.index' (e.g. .../model.ckpt-112603); required",
        ),
    )
    force: bool = field(default=False, metadata=dict(help="replace a verified entry of the same width"))


@dataclass
class ListArgs:
    pass


@dataclass
class VerifyArgs:
    name: str = _name_field()


def _official_name(name: str) -> str:
    record = get_record(name)
    if not record.has_official_source:
        raise TimmAssembleError(f"{name} has no official source to convert from (its weights come from the Hub)")
    return record.name


def _describe(entry: CacheEntry) -> str:
    return (
        f"{entry.path}\n  {entry.name}, width {entry.width}, model.safetensors {entry.size_bytes / 1e6:.1f} MB, "
        f"sha256 {entry.sha256}\n  load: timm.create_model('{entry.name}', pretrained=True"
        + ("" if entry.width == 64 else f", width={entry.width}")
        + f") after `import timm_assemble`\n  publish: timm-assemble publish {entry.path} "
        f"--repo-id {get_record(entry.name).repo_id} --update-record --dry-run"
    )


def run_fetch(opts: FetchArgs) -> int:
    from ..weights.official import fetch_official  # gdown only when fetching

    name = _official_name(opts.name)
    checked = [check_entry(path) for path in entries_of(name)]
    verified = [e for e, bad in checked if not bad and e.provenance["source"].get("kind") == "official source"]
    if verified and not opts.force:
        print(f"already cached (verified); --force fetches again:\n{_describe(verified[0])}")
        return 0
    print(f"fetched:\n{_describe(fetch_official(name))}")
    return 0


def run_install(opts: InstallArgs) -> int:
    from ..weights.official import checkpoint_width, install_checkpoint

    name = _official_name(opts.name)
    if not opts.checkpoint:
        raise TimmAssembleError("--checkpoint PREFIX is required (the checkpoint path without '.index')")
    prefix = Path(opts.checkpoint).expanduser().resolve()
    existing, _ = find_entry(name, checkpoint_width(name, prefix))
    if existing is not None and not opts.force:
        raise TimmAssembleError(f"{existing.path} is already a verified entry; pass --force to replace it")
    entry = install_checkpoint(name, prefix, {"kind": "installed checkpoint", "checkpoint": str(prefix)})
    print(f"installed:\n{_describe(entry)}")
    return 0


def run_list(opts: ListArgs) -> int:
    entries = list_entries()
    if not entries:
        print(f"no cached weights in {cache_root()} (set {CACHE_ENV} to use another folder)")
        return 0
    print(f"cache: {cache_root()}")
    print(f"{'entry':<40} {'source':<20} {'size MB':>8}  {'sha256':<64}  created")
    for entry in entries:
        if isinstance(entry, tuple):
            print(f"{entry[0].name:<40} unreadable: {entry[1]}")
            continue
        source = entry.provenance["source"].get("kind", "?")
        print(
            f"{entry.path.name:<40} {source:<20} {entry.size_bytes / 1e6:>8.1f}  {entry.sha256}  "
            f"{entry.provenance.get('created', '?')}"
        )
    return 0


def run_verify(opts: VerifyArgs) -> int:
    """Check every entry folder of the name with the validator loading uses: `ok` here is what loads."""
    paths = entries_of(get_record(opts.name).name)
    if not paths:
        raise TimmAssembleError(f"nothing cached for {opts.name} in {cache_root()}")
    bad = []
    for path in paths:
        _, problems = check_entry(path)
        print(f"{'CORRUPT' if problems else 'ok     '} {path}" + "".join(f"\n    {p}" for p in problems))
        bad += [str(path)] if problems else []
    if bad:
        raise TimmAssembleError(
            f"{len(bad)} corrupt cache entr{'y' if len(bad) == 1 else 'ies'} ({', '.join(bad)}): never loaded; "
            f"replace with `timm-assemble weights fetch {opts.name} --force` or `timm-assemble weights install "
            f"{opts.name} --checkpoint PREFIX --force`"
        )
    return 0


COMMAND = Command(
    "weights",
    "official pretrained weights: fetch, install, list and verify the converted-weights cache",
    description="The converted-weights cache that `timm.create_model(ARCH.TAG, pretrained=True)` reads when "
    f"the Hub has no file ({CACHE_ENV}, default <HF_HOME>/timm_assemble).",
    subcommands=(
        Command("fetch", "download the official checkpoint, convert it, cache it", run_fetch, FetchArgs),
        Command(
            "install", "convert a checkpoint copied in by hand into the cache", run_install, InstallArgs,
            inputs=("checkpoint",),
        ),
        Command("list", "list the cached weights: name, source, size, sha256, date", run_list, ListArgs),
        Command("verify", "re-hash cached weights against their provenance", run_verify, VerifyArgs),
    ),
)
