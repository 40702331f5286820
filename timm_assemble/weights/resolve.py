"""Where `pretrained=True` gets its weights: the one place that owns the resolution order.

For a weight whose record names an official source (`assemble_resnet50.clova_in1k`,
`assemble_resnet152.clova_in1k`):

1. the Hub repo of the weight record, whenever it has the file (the local Hub cache is looked at first, then
   one request without retries, so a machine without network learns it in milliseconds, not after a minute
   of huggingface_hub's back-off); timm loads it, sha256-checked against the record;
2. our converted-weights cache (`timm_assemble.weights.cache`), sha256-checked before it is loaded;
3. the official source (`timm_assemble.weights.official`): download, convert, cache, load. Off with
   `TIMM_ASSEMBLE_OFFICIAL_SOURCE=0`, and with `HF_HUB_OFFLINE=1` (offline means no download at all).

Any other Hub weight loads as timm loads it, with the record's sha256 check and a clear missing-file error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError, safe_open
from timm.models import is_model, parse_model_name, resolve_pretrained_cfg

from ..errors import TimmAssembleError, WeightsUnavailableError
from .cache import DEFAULT_WIDTH, cache_root, file_sha256, find_entry, list_entries
from .hub_folder import CONFIG_NAME, WEIGHTS_NAME
from .records import WeightRecord, find_record_for_repo, get_record, hub_org, load_records

# What huggingface_hub raises when a file cannot be had; each becomes a TimmAssembleError.
HUB_MISSING_ERRORS = (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, OfflineModeIsEnabled)
OFFICIAL_SOURCE_ENV = "TIMM_ASSEMBLE_OFFICIAL_SOURCE"


def official_source_enabled() -> bool:
    return os.environ.get(OFFICIAL_SOURCE_ENV, "1").strip() != "0"


def hub_file_on_hub(repo_id: str, filename: str, revision: str | None = None) -> tuple[bool | None, str]:
    """The one Hub probe: a HEAD request without retries (hf_hub_download retries a failed connection for ~25 s).

    Returns (True, "on the Hub"), (False, why) when the Hub answers that the file does not exist, or
    (None, why) when the Hub cannot be reached.
    """
    where = f"{filename} of Hub repo {repo_id}"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=hf_constants.HF_HUB_ETAG_TIMEOUT)
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        return False, f"{where} does not exist ({type(err).__name__})"
    except Exception as err:  # any network failure: the Hub is out of reach, which only means "try the next source"
        return None, f"{where} could not be reached ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
    return True, "on the Hub"


def hub_has_file(
    repo_id: str, filename: str, revision: str | None = None, cache_dir: str | Path | None = None
) -> tuple[bool, str]:
    """(True, where) when timm can load `filename` from the Hub, else (False, why not); one request at most."""
    cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    if isinstance(cached, str):
        return True, f"in the local Hub cache ({cached})"
    if hf_constants.HF_HUB_OFFLINE:
        cache = cache_dir or hf_constants.HF_HUB_CACHE
        where = f"{filename} of Hub repo {repo_id}"
        return False, f"{where} is not in the local Hub cache ({cache}) and HF_HUB_OFFLINE is set"
    on_hub, reason = hub_file_on_hub(repo_id, filename, revision)
    return bool(on_hub), reason


def hub_file_of(model_name: str) -> tuple[str, str, str | None] | None:
    """(repo_id, filename, revision) of the first Hub file timm fetches for `model_name` with pretrained
    weights, or None when it fetches nothing from the Hub (a `local-dir:`, a URL or a file)."""
    try:
        source, target = parse_model_name(model_name)
        if source == "hf-hub":
            repo_id, _, revision = target.partition("@")
            return repo_id, CONFIG_NAME, revision or None
        if source or not is_model(target.split(".", 1)[0]):
            return None  # a local-dir:, or a name timm itself will refuse without the Hub
        cfg = resolve_pretrained_cfg(target).to_dict()
    except (ValueError, RuntimeError):  # a malformed name or an unknown tag: left to the loader, which says so
        return None
    hub = _hub_source(cfg)
    return None if hub is None else (hub[0], cfg.get("hf_hub_filename") or WEIGHTS_NAME, hub[1])


def verify_weights_file(path: str | Path, record: WeightRecord) -> str | None:
    """Refuse a weights file whose sha256 differs from the record; returns the sha256 when one is recorded."""
    if record.sha256 is None:
        return None
    actual = file_sha256(path)
    if actual != record.sha256:
        raise TimmAssembleError(
            f"integrity check failed for {record.name}: {path} has sha256 {actual}, but the weight record "
            f"expects {record.sha256}. The file is corrupt or is not the published weight; delete it (or run "
            f"`hf cache delete`) and download again: `{hf_download_command(record.repo_id)}`"
        )
    return actual


def missing_weights_error(
    name: str, repo_id: str, filename: str, err: BaseException, cache_dir: str | Path | None = None
) -> WeightsUnavailableError:
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
        prefetch = f" To pre-fetch for an offline machine: {hub_prefetch(repo_id)}."
    if record is not None and record.has_official_source:
        how = (
            f"Without the Hub, `timm.create_model('{record.name}', pretrained=True)` converts the official "
            f"checkpoint into our cache. {without_hub(record.name)}."
        )
    else:
        how = "Check the name and the connection, or load a local copy with `timm.create_model('local-dir:DIR')`."
    return WeightsUnavailableError(
        f"pretrained weights for {name} are not available: {filename} of Hub repo {repo_id} {reason}.{status} "
        f"{how}{prefetch}"
    )


def hf_download_command(repo_id: str) -> str:
    """huggingface_hub's own command for the two files timm loads from one of our repos."""
    return f"hf download {repo_id} {CONFIG_NAME} {WEIGHTS_NAME}"


def hub_prefetch(repo_id: str) -> str:
    """How to carry one of our Hub weights to a machine without the Hub (the one text errors point to)."""
    return (
        f"`{hf_download_command(repo_id)} --cache-dir CACHE` where the Hub is reachable, then set "
        "HF_HUB_CACHE=CACHE and HF_HUB_OFFLINE=1"
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


def check_hub_config(model_id: str, cache_dir: str | Path | None = None) -> None:
    """For a repo of ours, that `hf-hub:model_id` has its config.json, found with one request and no retries."""
    repo_id, _, revision = model_id.partition("@")
    record = find_record_for_repo(repo_id)
    if record is None and repo_id.split("/")[0] != hub_org():
        return  # not ours: timm's own behaviour
    available, reason = hub_has_file(repo_id, CONFIG_NAME, revision or None, cache_dir)
    if available:
        return
    how = "Check the repo id, or run where the Hub is reachable."
    if record is not None and record.has_official_source:
        how = f"Without the Hub, `{record.name}` loads from our converted-weights cache. {without_hub(record.name)}."
    raise WeightsUnavailableError(f"hf-hub:{model_id}: {reason}. {how}")


def _official_width_elsewhere(name: str, width: int) -> int | None:
    """The width of a cached official-source entry of `name` at another width (the width Drive holds)."""
    for entry in list_entries():
        if not isinstance(entry, tuple) and entry.name == name and entry.width != width:
            if entry.provenance.get("source", {}).get("kind") == "official source":
                return entry.width
    return None


def _unavailable(name: str, width: int, reasons: list[str]) -> WeightsUnavailableError:
    what = name if width == DEFAULT_WIDTH else f"{name} at width={width}"
    record = get_record(name)
    hub = f"; from the Hub: {hub_prefetch(record.repo_id)}" if record.status == "published" else ""
    return WeightsUnavailableError(
        f"pretrained weights for {what} are not available: " + "; ".join(reasons) + f". {without_hub(name)}{hub}"
    )


def without_hub(name: str) -> str:
    """How to get an official weight onto a machine without the Hub (the one text every error points to)."""
    return (
        f"Where there is internet: `timm-assemble weights fetch {name}` (then copy {cache_root()} here, or point "
        f"TIMM_ASSEMBLE_CACHE at the copy); with a copy of the official checkpoint (Google Drive folder of "
        f"clovaai/assembled-cnn): `timm-assemble weights install {name} --checkpoint PREFIX`"
    )


def official_weights(name: str, width: int, hub_reason: str) -> Path:
    """The verified cached weights of `name` at `width`, fetching them from the official source if allowed."""
    from .official import fetch_official  # gdown is imported only when the official source is used

    entry, why = find_entry(name, width)
    if entry is not None:
        return entry.weights
    reasons = [hub_reason, f"cache: {why}"]
    if why.startswith("corrupt"):
        print(f"timm-assemble: {why}; it is not used", file=sys.stderr)
    if hf_constants.HF_HUB_OFFLINE:
        raise _unavailable(name, width, [*reasons, "official source: not tried (HF_HUB_OFFLINE is set)"])
    if not official_source_enabled():
        raise _unavailable(name, width, [*reasons, f"official source: off ({OFFICIAL_SOURCE_ENV}=0)"])
    other = _official_width_elsewhere(name, width)
    if other is not None:
        raise TimmAssembleError(
            f"no pretrained weights for {name} at width={width}: the official checkpoint has width {other} "
            f"(cached in {cache_root()}); drop width={width} or use pretrained=False"
        )
    try:
        entry = fetch_official(name, width, reuse=True)  # another process may be fetching it: wait, then reuse
    except TimmAssembleError as err:
        raise WeightsUnavailableError(
            f"pretrained weights for {name}: {'; '.join(reasons)}; official source: {err}"
        ) from err
    if entry.width != width:
        raise TimmAssembleError(
            f"no pretrained weights for {name} at width={width}: the official checkpoint has width {entry.width} "
            f"(now cached in {entry.path}); drop width={width} or use pretrained=False"
        )
    return entry.weights


def check_local_weights(folder: Path) -> None:
    """A `local-dir:` folder's weights exist and are a complete safetensors file (timm's errors name neither)."""
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        if (folder / "pytorch_model.bin").is_file():
            return
        raise WeightsUnavailableError(
            f"local-dir:{folder}: no {WEIGHTS_NAME} in {folder.resolve()}; write the folder again with "
            "`timm-assemble convert` or `timm-assemble export`, or load it with pretrained=False"
        )
    try:
        with safe_open(weights, "pt"):
            pass
    except (SafetensorError, OSError) as err:
        raise TimmAssembleError(
            f"local-dir:{folder}: {weights} is truncated or not a safetensors file ({err}); copy or write it again"
        ) from err


def _hub_source(cfg: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(repo_id, revision) when timm will load this pretrained cfg from the Hub, else None.

    Mirrors timm's source priority: `local-dir:` and explicit `state_dict`/`file` overrides come first.
    """
    source = cfg.get("source") or ""
    if source == "local-dir" or not cfg.get("hf_hub_id"):
        return None
    if source != "hf-hub" and (cfg.get("state_dict") is not None or cfg.get("file")):
        return None
    repo_id, _, revision = str(cfg["hf_hub_id"]).partition("@")
    return repo_id, revision or None


@contextmanager
def pretrained_guard(variant: str, pretrained: bool, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Wrap `build_model_with_cfg` for a model entrypoint; yields the kwargs to build with.

    `kwargs` are the entrypoint's kwargs (`pretrained_cfg`, `pretrained_cfg_overlay`, `cache_dir`, `width`
    as timm passes them). For an official weight that the Hub does not have, the yielded kwargs point timm
    at the cached file (`pretrained_cfg_overlay=dict(file=...)`); Hub weights are sha256-checked against
    their record and a missing Hub file becomes a TimmAssembleError.
    """
    hub = None
    if pretrained:
        cfg = resolve_pretrained_cfg(
            variant,
            pretrained_cfg=kwargs.get("pretrained_cfg"),
            pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay"),
        ).to_dict()
        hub = _hub_source(cfg)
    if pretrained and cfg.get("source") == "local-dir":
        check_local_weights(Path(cfg["file"]))
    if hub is None:
        yield kwargs
        return
    repo_id, revision = hub
    name = f"{cfg['architecture']}.{cfg['tag']}" if cfg.get("tag") else cfg.get("architecture") or variant
    filename = cfg.get("hf_hub_filename") or WEIGHTS_NAME
    cache_dir = kwargs.get("cache_dir")
    record = find_record_for_repo(repo_id)
    if record is not None and record.repo_id != repo_id and cfg.get("source") != "hf-hub":
        repo_id = record.repo_id  # $TIMM_ASSEMBLE_HUB_ORG: the same weight under a mirror's org
        overlay = dict(kwargs.get("pretrained_cfg_overlay") or {}, hf_hub_id=repo_id)
        kwargs = dict(kwargs, pretrained_cfg_overlay=overlay)
    if record is not None and record.has_official_source and cfg.get("source") != "hf-hub" and filename == WEIGHTS_NAME:
        on_hub, hub_reason = hub_has_file(repo_id, filename, revision, cache_dir)
        if not on_hub:
            weights = official_weights(record.name, int(kwargs.get("width", DEFAULT_WIDTH)), f"Hub: {hub_reason}")
            overlay = dict(kwargs.get("pretrained_cfg_overlay") or {}, file=str(weights))
            yield dict(kwargs, pretrained_cfg_overlay=overlay)
            return
    try:
        if record is not None and record.sha256 is not None and filename == WEIGHTS_NAME:
            path = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir)
            verify_weights_file(path, record)
        yield kwargs
    except HUB_MISSING_ERRORS as err:
        raise missing_weights_error(name, repo_id, filename, err, cache_dir) from err
