"""The weight records: one JSON file per published `arch.tag` in `timm_assemble/weights/records/`.

They ship inside the package so an installed copy can verify what it downloads; `weights/README.md`
describes the fields. A record states honestly what we know: fields we cannot know yet (the sha256 of a
file not yet converted) are null, with the status saying why.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TimmAssembleError
from .card import Metric

RECORDS_DIR = Path(__file__).resolve().parent / "records"

STATUSES = ("not published", "published")
SOURCE_KINDS = ("official checkpoint", "training run")
PROVENANCES = ("paper", "measured")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

HUB_ORG_ENV = "TIMM_ASSEMBLE_HUB_ORG"  # one place to point every weight at a mirror or fork
DEFAULT_HUB_ORG = "timm-assemble"


def hub_org() -> str:
    """The Hub organisation our weights are fetched from and published under, `$TIMM_ASSEMBLE_HUB_ORG` if set."""
    return os.environ.get(HUB_ORG_ENV, DEFAULT_HUB_ORG)


def hub_repo_id(name: str) -> str:
    """Full `org/name` repo id for one published weight, e.g. `timm-assemble/assemble_resnet50.clova_in1k`."""
    return f"{hub_org()}/{name}"


@dataclass(frozen=True)
class WeightRecord:
    """One published (or to-be-published) weight; see `weights/README.md` for the meaning of each field."""

    name: str
    architecture: str
    hf_hub_id: str
    status: str
    sha256: str | None
    size_bytes: int | None
    license: str
    datasets: tuple[str, ...]
    source: dict[str, Any]
    metrics: tuple[Metric, ...]
    status_note: str | None = None

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def repo_name(self) -> str:
        return self.hf_hub_id.split("/", 1)[1]

    @property
    def has_official_source(self) -> bool:
        """Converted from the authors' checkpoint folder, which `pretrained=True` can fetch itself."""
        return self.source.get("kind") == "official checkpoint" and "/folders/" in str(self.source.get("url", ""))

    @property
    def repo_id(self) -> str:
        """The repo to fetch from: the recorded name under the current org (`$TIMM_ASSEMBLE_HUB_ORG`)."""
        return hub_repo_id(self.repo_name)


def _fail(where: str, problem: str) -> TimmAssembleError:
    return TimmAssembleError(f"weight record {where}: {problem}")


def _check_sha256(value: Any, where: str, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256_RE.match(value):
        raise _fail(where, f"{field} must be null or 64 lowercase hex digits, got {value!r}")
    return value


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise _fail(where, f"field {key!r} must be a non-empty {kind.__name__}, got {value!r}")
    return value


def _parse_metric(data: Any, where: str) -> Metric:
    if not isinstance(data, dict):
        raise _fail(where, f"each metric must be an object, got {data!r}")
    provenance = data.get("provenance")
    if provenance not in PROVENANCES:
        raise _fail(where, f"metric provenance must be one of {PROVENANCES}, got {provenance!r}")
    if provenance == "measured" and not data.get("command"):
        raise _fail(where, "a measured metric must give the 'command' that produced it")
    if provenance == "paper" and not data.get("reference"):
        raise _fail(where, "a paper metric must give its 'reference' (paper, table, row)")
    value = data.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"metric value must be a number, got {value!r}")
    known = {"name", "type", "value", "dataset", "dataset_type", "split", "provenance", "reference", "command", "notes"}
    unknown = set(data) - known
    if unknown:
        raise _fail(where, f"unknown metric fields {sorted(unknown)}")
    return Metric(
        name=_require(data, "name", str, where),
        type=_require(data, "type", str, where),
        value=float(value),
        dataset=_require(data, "dataset", str, where),
        dataset_type=_require(data, "dataset_type", str, where),
        split=_require(data, "split", str, where),
        provenance=provenance,
        reference=data.get("reference"),
        command=data.get("command"),
        notes=data.get("notes"),
    )


def parse_record(data: dict[str, Any], where: str = "<record>") -> WeightRecord:
    """Validate one record's JSON; every inconsistency is a TimmAssembleError naming the field."""
    if not isinstance(data, dict):
        raise _fail(where, "must be a JSON object")
    known = {
        "name",
        "architecture",
        "hf_hub_id",
        "status",
        "status_note",
        "sha256",
        "size_bytes",
        "license",
        "datasets",
        "source",
        "metrics",
    }
    unknown = set(data) - known
    if unknown:
        raise _fail(where, f"unknown fields {sorted(unknown)}")
    name = _require(data, "name", str, where)
    architecture = _require(data, "architecture", str, where)
    if not name.startswith(architecture + ".") or name == architecture + ".":
        raise _fail(where, f"name {name!r} must be '<architecture>.<tag>' with architecture {architecture!r}")
    hf_hub_id = _require(data, "hf_hub_id", str, where)
    if hf_hub_id.count("/") != 1 or not all(hf_hub_id.split("/")):
        raise _fail(where, f"hf_hub_id must be 'org/name', got {hf_hub_id!r}")
    status = data.get("status")
    if status not in STATUSES:
        raise _fail(where, f"status must be one of {STATUSES}, got {status!r}")
    sha256 = _check_sha256(data.get("sha256"), where, "sha256")
    size_bytes = data.get("size_bytes")
    if size_bytes is not None and (isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes <= 0):
        raise _fail(where, f"size_bytes must be null or a positive integer, got {size_bytes!r}")
    if status == "published" and (sha256 is None or size_bytes is None):
        raise _fail(where, "a published weight must record the sha256 and size_bytes of its model.safetensors")
    if status != "published" and not data.get("status_note"):
        raise _fail(where, "an unpublished weight must say why in 'status_note'")
    source = _require(data, "source", dict, where)
    kind = source.get("kind")
    if kind not in SOURCE_KINDS:
        raise _fail(where, f"source.kind must be one of {SOURCE_KINDS}, got {kind!r}")
    if kind == "official checkpoint":
        _require(source, "name", str, where)
        _require(source, "url", str, where)
        files = source.get("sha256")
        if files is None:
            if not source.get("sha256_status"):
                raise _fail(where, "source.sha256 is null: say why in source.sha256_status")
        elif not isinstance(files, dict) or not files:
            raise _fail(where, "source.sha256 must be null or map each checkpoint file name to its sha256")
        else:
            for file_name, digest in files.items():
                _check_sha256(digest, where, f"source.sha256[{file_name!r}]")
    else:
        _require(source, "command", str, where)
    datasets = data.get("datasets", [])
    if not isinstance(datasets, list) or not all(isinstance(d, str) and d for d in datasets):
        raise _fail(where, f"datasets must be a list of Hub dataset ids, got {datasets!r}")
    metrics = data.get("metrics", [])
    if not isinstance(metrics, list):
        raise _fail(where, "metrics must be a list")
    return WeightRecord(
        name=name,
        architecture=architecture,
        hf_hub_id=hf_hub_id,
        status=status,
        sha256=sha256,
        size_bytes=size_bytes,
        license=_require(data, "license", str, where),
        datasets=tuple(datasets),
        source=dict(source),
        metrics=tuple(_parse_metric(m, where) for m in metrics),
        status_note=data.get("status_note"),
    )


def load_records(records_dir: str | Path | None = None) -> dict[str, WeightRecord]:
    """All records by `arch.tag` (from `RECORDS_DIR` by default); the file name must be the record's name."""
    records = {}
    for path in sorted(Path(records_dir or RECORDS_DIR).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise _fail(path.name, f"invalid JSON ({err})") from err
        record = parse_record(data, where=path.name)
        if path.stem != record.name:
            raise _fail(path.name, f"file name must be {record.name}.json")
        records[record.name] = record
    return records


def record_path(name: str) -> Path:
    """The JSON file of record `name` (in `RECORDS_DIR`, read at call time so tests can point elsewhere)."""
    return RECORDS_DIR / f"{name}.json"


def get_record(name: str) -> WeightRecord:
    """The record for `arch.tag`, or an error listing the names we have."""
    records = load_records()
    if name not in records:
        raise TimmAssembleError(f"no weight record named {name!r}; known: {', '.join(sorted(records))}")
    return records[name]


def find_record_for_repo(repo_id: str, *, any_org: bool = False) -> WeightRecord | None:
    """The record published as `repo_id` (`org/name[@revision]`), if any.

    Exact matches accept the recorded org and the current `$TIMM_ASSEMBLE_HUB_ORG`; with `any_org` the
    repo name alone decides (publishing under a record's name, in any org, must publish that record's file).
    """
    repo_id = repo_id.split("@", 1)[0]
    for record in load_records().values():
        if repo_id in (record.hf_hub_id, record.repo_id) or (any_org and repo_id.split("/")[-1] == record.repo_name):
            return record
    return None
