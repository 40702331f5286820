"""The weight records: one `WeightRecord` literal per published `arch.tag`, in `record_table.py`.

They ship inside the package so an installed copy can verify what it downloads; `weights/README.md`
describes the fields. A record states honestly what we know: what we cannot know yet (the sha256 of a file
not yet converted) is None, with a note saying why. `publish --update-record` rewrites `record_table.py`
with `render_record_table`, the one form a test holds the committed file to.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import runpy
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import TimmAssembleError
from ..fileio import atomic_write
from .card import Metric

RECORD_TABLE_PATH = Path(__file__).resolve().parent / "record_table.py"

STATUSES = ("not published", "published")
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


def _check_sha256(value: str | None, where: str, field: str) -> None:
    if value is not None and not (isinstance(value, str) and _SHA256_RE.match(value)):
        raise TimmAssembleError(f"weight record {where}: {field} must be None or 64 lowercase hex digits: {value!r}")


@dataclass(frozen=True)
class OfficialCheckpoint:
    """The authors' TensorFlow checkpoint, which `pretrained=True` converts when the Hub lacks the weight."""

    name: str
    url: str  # the Google Drive folder `pretrained=True` and `weights fetch` download from
    code: str
    license: str
    files_sha256: dict[str, str] | None = None  # each checkpoint file's sha256, once recorded
    sha256_status: str | None = None  # why files_sha256 is None

    kind: ClassVar[str] = "official checkpoint"


@dataclass(frozen=True)
class TrainingRun:
    """Weights we trained ourselves: the command that trained them."""

    command: str

    kind: ClassVar[str] = "training run"


@dataclass(frozen=True)
class WeightRecord:
    """One published (or to-be-published) weight; see `weights/README.md` for the meaning of each field."""

    name: str
    architecture: str
    hf_hub_id: str
    license: str
    source: OfficialCheckpoint | TrainingRun
    status: str = "not published"
    status_note: str | None = None  # why a weight is not published
    sha256: str | None = None  # of the published model.safetensors
    size_bytes: int | None = None
    datasets: tuple[str, ...] = ()
    metrics: tuple[Metric, ...] = ()

    def __post_init__(self) -> None:
        """The rules a literal's types cannot state; each broken one is a TimmAssembleError naming the field."""
        problem = _record_problem(self)
        if problem:
            raise TimmAssembleError(f"weight record {self.name}: {problem}")
        _check_sha256(self.sha256, self.name, "sha256")
        if isinstance(self.source, OfficialCheckpoint):
            for file_name, digest in (self.source.files_sha256 or {}).items():
                _check_sha256(digest, self.name, f"source.files_sha256[{file_name!r}]")

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def repo_name(self) -> str:
        return self.hf_hub_id.split("/", 1)[1]

    @property
    def has_official_source(self) -> bool:
        """Converted from the authors' checkpoint folder, which `pretrained=True` can fetch itself."""
        return isinstance(self.source, OfficialCheckpoint) and "/folders/" in self.source.url

    @property
    def repo_id(self) -> str:
        """The repo to fetch from: the recorded name under the current org (`$TIMM_ASSEMBLE_HUB_ORG`)."""
        return hub_repo_id(self.repo_name)


def _record_problem(record: WeightRecord) -> str | None:
    if not record.name.startswith(record.architecture + ".") or record.name == record.architecture + ".":
        return f"name must be '<architecture>.<tag>' with architecture {record.architecture!r}"
    if record.hf_hub_id.count("/") != 1 or not all(record.hf_hub_id.split("/")):
        return f"hf_hub_id must be 'org/name', got {record.hf_hub_id!r}"
    if record.status not in STATUSES:
        return f"status must be one of {STATUSES}, got {record.status!r}"
    if record.status == "published" and (record.sha256 is None or record.size_bytes is None):
        return "a published weight must record the sha256 and size_bytes of its model.safetensors"
    if record.status != "published" and not record.status_note:
        return "an unpublished weight must say why in status_note"
    source = record.source
    if isinstance(source, OfficialCheckpoint) and source.files_sha256 is None and not source.sha256_status:
        return "source.files_sha256 is None: say why in source.sha256_status"
    for metric in record.metrics:
        if metric.provenance not in PROVENANCES:
            return f"metric provenance must be one of {PROVENANCES}, got {metric.provenance!r}"
        if metric.provenance == "measured" and not metric.command:
            return f"the measured metric {metric.name!r} must give the command that produced it"
        if metric.provenance == "paper" and not metric.reference:
            return f"the paper metric {metric.name!r} must give its reference (paper, table, row)"
    return None


def load_records() -> dict[str, WeightRecord]:
    """All records by `arch.tag`, from `RECORD_TABLE_PATH` (read at call time, so tests can point elsewhere)."""
    stat = RECORD_TABLE_PATH.stat()
    return dict(_run_table(RECORD_TABLE_PATH, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _run_table(path: Path, mtime_ns: int, size: int) -> tuple[tuple[str, WeightRecord], ...]:
    """The table file run as Python (not imported: it imports this module's classes), once per version."""
    return tuple((record.name, record) for record in runpy.run_path(str(path))["RECORDS"])


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


def write_record(record: WeightRecord) -> Path:
    """Replace the record of the same name in `record_table.py` (atomically); returns the file written."""
    table = [record if r.name == record.name else r for r in load_records().values()]
    atomic_write(RECORD_TABLE_PATH, render_record_table(table))
    return RECORD_TABLE_PATH


_TABLE_DOCSTRING = """The weight records, one literal each; `records.py` and `weights/README.md` say what they mean.

`timm-assemble publish --update-record` rewrites this file in this form; edit it by hand the same way
(`tests/test_hub.py` checks the file is exactly what `render_record_table` makes of its records).
"""


def render_record_table(records: Iterable[WeightRecord]) -> str:
    """The source of `record_table.py` holding `records`: keyword literals, defaults left out, long text wrapped."""
    records = list(records)
    names = sorted({"WeightRecord"} | {type(r.source).__name__ for r in records})
    imports = "from timm_assemble.weights.card import Metric\n" if any(r.metrics for r in records) else ""
    imports += f"from timm_assemble.weights.records import {', '.join(names)}\n"
    body = "".join(f"    {_literal(record, 4)},\n" for record in records)
    return f'"""{_TABLE_DOCSTRING}"""\n\n{imports}\nRECORDS = (\n{body})\n'


def _literal(value: Any, indent: int) -> str:
    """`value` as Python source at `indent`: dataclasses by keyword, containers one item a line."""
    if dataclasses.is_dataclass(value):
        fields = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
        defaults = {f.name: f.default for f in dataclasses.fields(value)}
        items = [f"{name}={_literal(v, indent + 4)}" for name, v in fields if v != defaults[name]]
        return _block(f"{type(value).__name__}(", items, ")", indent)
    if isinstance(value, tuple):
        return _block("(", [_literal(v, indent + 4) for v in value], ")", indent)
    if isinstance(value, dict):
        return _block("{", [f"{_literal(k, 0)}: {_literal(v, indent + 4)}" for k, v in value.items()], "}", indent)
    if isinstance(value, str) and len(value) > 100 - indent:  # keeps `key="..."` lines within 120 columns
        parts = textwrap.wrap(value, 96 - indent, drop_whitespace=False, break_on_hyphens=False)
        if "".join(parts) == value:
            return _block("(", [_literal(p, 0) for p in parts], ")", indent, separator="")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid Python literal, in the project's double quotes
    return repr(value)


def _block(opening: str, items: list[str], closing: str, indent: int, separator: str = ",") -> str:
    pad = " " * indent
    one_line = opening + ", ".join(items) + ("," if opening == "(" and len(items) == 1 else "") + closing
    if separator and len(one_line) <= 60 and "\n" not in one_line:
        return one_line
    return opening + "\n" + "".join(f"{pad}    {item}{separator}\n" for item in items) + pad + closing
