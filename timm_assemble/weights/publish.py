"""`timm-assemble publish DIR --repo-id ORG/NAME`: check a Hub folder, render its card, upload it.

Checks before anything leaves the machine: `config.json` names a registered architecture, the
safetensors file loads strictly into that model, and, when the repo is named like one of our weight
records, its sha256 equals the recorded one (a record without a sha256 cannot be published: record it
first, so every download can be verified). Upload is huggingface_hub's `create_repo` + `upload_folder`;
the token comes from the usual places (`HF_TOKEN`, `hf auth login`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch
from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError

from .. import __version__
from ..errors import TimmAssembleError
from ..fileio import atomic_write, owning
from ..model_stats import model_stats
from . import records
from .cache import DEFAULT_WIDTH, PROVENANCE_NAME, cache_root, file_sha256, read_entry
from .card import CardSpec, card_spec_from_text, render_model_card
from .hub_folder import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from .records import OfficialCheckpoint, WeightRecord, find_record_for_repo, write_record

UPLOAD_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)


@dataclass(frozen=True)
class UploadFile:
    name: str
    size: int
    sha256: str
    note: str = ""


@dataclass(frozen=True)
class PublishPlan:
    """What `publish` will upload, after every local check passed."""

    folder: Path
    repo_id: str
    private: bool
    architecture: str
    num_params: int
    record: WeightRecord | None
    weights_sha256: str
    card: str
    card_rendered: bool
    files: tuple[UploadFile, ...]
    commit_message: str
    record_update: WeightRecord | None = None  # the record to write into record_table.py once the upload succeeded

    @property
    def record_needs_sha256(self) -> bool:
        return self.record is not None and self.record.sha256 is None

    @property
    def record_fix(self) -> str:
        """The fields to add to an unpublished record before it can be published."""
        size = (self.folder / WEIGHTS_NAME).stat().st_size
        return f'sha256="{self.weights_sha256}", size_bytes={size}'


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise TimmAssembleError(f"{folder} has no {CONFIG_NAME}; export it with timm-assemble convert or export")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise TimmAssembleError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise TimmAssembleError(f"{path} has no 'architecture' field naming the timm model")
    return config


def _check_weights(folder: Path, config: dict[str, Any]) -> torch.nn.Module:
    """Build the config's model and load the weights strictly; returns the model."""
    architecture = config["architecture"]
    if not timm.is_model(architecture):
        raise TimmAssembleError(
            f"{folder / CONFIG_NAME} names architecture {architecture!r}, which is not a registered timm model"
        )
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise TimmAssembleError(f"{folder} has no {WEIGHTS_NAME}")
    model_args = dict(config.get("model_args") or {})
    model_args.setdefault("num_classes", config.get("num_classes"))
    try:
        model = timm.create_model(architecture, pretrained=False, **model_args)
    except TypeError as err:
        raise TimmAssembleError(f"model_args in {folder / CONFIG_NAME} do not fit {architecture}: {err}") from err
    try:
        state_dict = safetensors.torch.load_file(weights, device="cpu")
    except SafetensorError as err:
        raise TimmAssembleError(f"{weights} is not a readable safetensors file: {err}") from err
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0:3]
        raise TimmAssembleError(
            f"{weights} does not load strictly into {architecture} with {model_args}: {' '.join(first)}"
        ) from err
    return model


def updated_record(record: WeightRecord, folder: Path, weights_sha256: str) -> WeightRecord:
    """The record with the sha256 and size of `folder`'s weights and its source files' sha256.

    `folder` must be a cache entry of this weight (`timm-assemble weights fetch` / `install`) converted at the
    official width: its provenance file is where the source files' sha256 come from.
    """
    if not (folder / PROVENANCE_NAME).is_file():
        raise TimmAssembleError(
            f"--update-record needs a cache entry of {record.name} (with {PROVENANCE_NAME}): run "
            f"`timm-assemble weights fetch {record.name}` and publish the folder it prints"
        )
    entry = read_entry(folder)
    if entry.name != record.name or entry.width != DEFAULT_WIDTH:
        raise TimmAssembleError(
            f"{folder} holds {entry.name} at width {entry.width}; the record {record.name} is the official "
            f"weight (width {DEFAULT_WIDTH}), so it cannot describe this file"
        )
    files_sha256 = {name: f["sha256"] for name, f in entry.provenance["source"]["files"].items()}
    return dataclasses.replace(
        record,
        sha256=weights_sha256,
        size_bytes=(folder / WEIGHTS_NAME).stat().st_size,
        source=dataclasses.replace(record.source, files_sha256=files_sha256, sha256_status=None),
    )


def record_card_spec(
    record: WeightRecord,
    repo_id: str,
    config: dict[str, Any],
    num_params: int,
    stats: dict[str, Any] | None = None,
) -> CardSpec:
    """The card of one of our recorded weights: paper metrics marked as such, source checkpoint named."""
    source = record.source
    if isinstance(source, OfficialCheckpoint):
        files = source.files_sha256
        hashes = (
            "\n".join(f"  - `{name}`: `{digest}`" for name, digest in files.items())
            if files
            else f"  - not recorded: {source.sha256_status}"
        )
        provenance = "\n".join(
            [
                f"- **Source:** official TensorFlow checkpoint {source.name} ({source.url})",
                f"- **Source files (sha256):**\n{hashes}",
                f"- **Code:** {source.code}; license {source.license}",
                "- **Conversion:** `timm-assemble convert` maps every checkpoint variable onto this architecture one "
                "to one (conv kernels HWIO -> OIHW, dense kernel transposed, BN statistics kept).",
                "- **Metrics:** *paper* marks the authors' reported results for this configuration; numbers measured "
                "on these converted weights are marked *measured*, with the command that produced them.",
            ]
        )
    else:
        provenance = "Trained with timm-assemble; the command is below."
    if record.sha256:
        provenance += f"\n\n`{WEIGHTS_NAME}` sha256: `{record.sha256}` (`pretrained=True` checks it before loading)."
    return CardSpec(
        repo_id=repo_id,
        config=config,
        summary=f"Assemble-ResNet image classifier `{record.name}` for timm (Lee et al., 2020): "
        f"{record.architecture} with weights from the {source.kind} described below.",
        provenance=provenance,
        metrics=record.metrics,
        datasets=record.datasets,
        license=record.license,
        timm_name=record.name,
        num_params=num_params,
        stats=stats,
        training_command=None if isinstance(source, OfficialCheckpoint) else source.command,
    )


def _generic_card_spec(
    repo_id: str, config: dict[str, Any], num_params: int, folder: Path, stats: dict[str, Any] | None = None
) -> CardSpec:
    return CardSpec(
        repo_id=repo_id,
        config=config,
        summary=f"Assemble-ResNet image classifier ({config['architecture']}) for timm.",
        provenance=f"Uploaded with `timm-assemble publish` from a local folder ({folder.name}); no weight record "
        "describes it, so no metrics or source are claimed here.",
        num_params=num_params,
        stats=stats,
    )


def check_repo_id(repo_id: str, flag: str = "--repo-id") -> None:
    """A model repo id huggingface_hub accepts, in ORG/NAME form (`flag` names it in the error)."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise TimmAssembleError(f"{flag} {repo_id!r} is not a valid Hub repo id: {err}") from err
    if repo_id.count("/") != 1:
        raise TimmAssembleError(f"{flag} must be ORG/NAME, got {repo_id!r}")


def plan_publish(folder: str | Path, repo_id: str, private: bool = False, update_record: bool = False) -> PublishPlan:
    """Run every local check and render the card; raises TimmAssembleError on the first problem."""
    folder = Path(folder)
    check_repo_id(repo_id)
    if not folder.is_dir():
        raise TimmAssembleError(f"{folder} is not a folder")
    config = _read_config(folder)
    record = find_record_for_repo(repo_id, any_org=True)
    if record is not None and record.architecture != config["architecture"]:
        raise TimmAssembleError(
            f"repo {repo_id} is the weight record {record.name} (architecture {record.architecture}), "
            f"but {folder / CONFIG_NAME} is {config['architecture']}"
        )
    model = _check_weights(folder, config)
    num_params = sum(p.numel() for p in model.parameters())
    stats = model_stats(model, tuple(config.get("pretrained_cfg", {}).get("input_size") or (3, 224, 224)))
    weights_sha256 = file_sha256(folder / WEIGHTS_NAME)
    record_update = None
    if update_record:
        if record is None:
            raise TimmAssembleError(f"--update-record: no weight record is published as {repo_id}")
        if record.sha256 is not None and record.sha256 != weights_sha256:
            raise TimmAssembleError(f"--update-record: the record {record.name} already has sha256 {record.sha256}")
        record = record_update = updated_record(record, folder, weights_sha256)
    if record is not None:
        if record.sha256 is not None and record.sha256 != weights_sha256:
            raise TimmAssembleError(
                f"{folder / WEIGHTS_NAME} has sha256 {weights_sha256}, but the weight record {record.name} "
                f"says {record.sha256}; publish the recorded file, or update the record if it is meant to change"
            )
        card = render_model_card(record_card_spec(record, repo_id, config, num_params, stats))
        card_rendered = True
    elif (folder / CARD_NAME).is_file():
        card = (folder / CARD_NAME).read_text(encoding="utf-8")
        spec = card_spec_from_text(card)  # a card of ours (training, convert): the same card, for this repo
        card_rendered = spec is not None
        if spec is not None:
            card = render_model_card(dataclasses.replace(spec, repo_id=repo_id, title=None, stats=spec.stats or stats))
    else:
        card = render_model_card(_generic_card_spec(repo_id, config, num_params, folder, stats))
        card_rendered = True
    files = []
    for name in UPLOAD_FILES:
        if name == CARD_NAME:
            data = card.encode("utf-8")
            note = "rendered model card" if card_rendered else "the folder's own model card"
            files.append(UploadFile(name, len(data), hashlib.sha256(data).hexdigest(), note))
        else:
            path = folder / name
            files.append(UploadFile(name, path.stat().st_size, file_sha256(path)))
    return PublishPlan(
        folder=folder,
        repo_id=repo_id,
        private=private,
        architecture=config["architecture"],
        num_params=num_params,
        record=record,
        weights_sha256=weights_sha256,
        card=card,
        card_rendered=card_rendered,
        files=tuple(files),
        commit_message=f"Upload {repo_id.split('/')[-1]} with timm-assemble {__version__}",
        record_update=record_update,
    )


def describe_plan(plan: PublishPlan) -> str:
    """The dry-run report: the checks that passed and exactly which files (with sha256) would go up."""
    visibility = "private" if plan.private else "public"
    if plan.record is None:
        record_line = "no weight record for this repo name: nothing to compare"
    elif plan.record_needs_sha256:
        record_line = (
            f"record {plan.record.name} has no sha256 yet: publishing needs it; add {plan.record_fix} to "
            f"its literal in {records.RECORD_TABLE_PATH} after checking this folder, or publish a "
            "`timm-assemble weights fetch` cache entry with --update-record"
        )
    elif plan.record_update is not None:
        record_line = (
            f"after the upload, its record in {records.RECORD_TABLE_PATH} gets sha256, size_bytes, the source files' "
            f"sha256 ({len(plan.record_update.source.files_sha256)} files) and status published"
        )
    else:
        record_line = f"sha256 matches record {plan.record.name}"
    lines = [
        f"repo:    {plan.repo_id} ({visibility} if created; an existing repo keeps its visibility)",
        f"checks:  {plan.architecture} is registered; {WEIGHTS_NAME} loads strictly "
        f"({plan.num_params / 1e6:.2f} M parameters); {record_line}",
        f"commit:  {plan.commit_message!r} (create_repo, then upload_folder from {plan.folder})",
        "files:",
    ]
    for f in plan.files:
        note = f"  ({f.note})" if f.note else ""
        lines.append(f"  {f.name:<18} {f.size:>12} bytes  sha256 {f.sha256}{note}")
    return "\n".join(lines)


def _write_card(folder: Path, card: str) -> None:
    """Atomically replace `folder/README.md` with the card that is about to be uploaded (a cache entry's card is
    the cache's own file)."""
    with owning(cache_root()):
        atomic_write(folder / CARD_NAME, card)


def publish(plan: PublishPlan, token: str | None = None) -> str:
    """Upload a checked plan; returns the commit URL."""
    if plan.record_needs_sha256:
        raise TimmAssembleError(
            f"the weight record {plan.record.name} has no sha256, so downloads could not be verified: record "
            f"{plan.record_fix} in its literal in {records.RECORD_TABLE_PATH}, then publish again"
        )
    token = token or get_token()
    if token is None:
        raise TimmAssembleError("no Hugging Face token: run `hf auth login` or set HF_TOKEN")
    if plan.card_rendered:
        _write_card(plan.folder, plan.card)
    api = HfApi(token=token)
    try:
        api.create_repo(plan.repo_id, repo_type="model", private=plan.private, exist_ok=True)
        info = api.upload_folder(
            repo_id=plan.repo_id,
            folder_path=plan.folder,
            allow_patterns=list(UPLOAD_FILES),
            commit_message=plan.commit_message,
        )
    except (HfHubHTTPError, ValueError) as err:  # HTTP failures; ValueError: the Hub rejected the card's metadata
        reason = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise TimmAssembleError(f"upload to {plan.repo_id} failed: {reason}") from err
    if plan.record_update is not None:
        write_record(dataclasses.replace(plan.record_update, status="published", status_note=None))
    return info.commit_url
