"""Helpers for the Hub tests: a converted fixture model, an offline Hub cache, and patched weight records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest

from timm_assemble.convert import convert_checkpoint
from timm_assemble.hub import records

CLOVA_TF = Path(__file__).resolve().parent / "fixtures" / "clova_tf"  # official-code outputs
R50_W8_CHECKPOINT = CLOVA_TF / "assemble_resnet50_w8" / "model.ckpt"
NAME = "assemble_resnet50.clova_in1k"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def convert_fixture(out_dir: Path) -> Path:
    """The official-code TF fixture (Assemble-ResNet50, width 8) converted by `timm-assemble convert`."""
    convert_checkpoint("assemble_resnet50", R50_W8_CHECKPOINT, out_dir)
    return out_dir


def seed_hub_cache(cache: Path, repo_id: str, folder: Path, files=("model.safetensors", "config.json")) -> Path:
    """Lay `folder`'s files out as huggingface_hub's cache does; returns the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in files:
        shutil.copyfile(folder / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)  # no trailing newline, as huggingface_hub writes it
    return snapshot


def go_offline(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """HF_HUB_OFFLINE with `cache` as the Hub cache; the default Hub org."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("TIMM_ASSEMBLE_HUB_ORG", raising=False)


def patch_records(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str = NAME, **changes) -> Path:
    """Copies of the shipped records with `changes` applied to record `name`, used in place of the real ones."""
    out = tmp_path / "records"
    out.mkdir()
    for path in records.RECORDS_DIR.glob("*.json"):
        data = json.loads(path.read_text())
        if data["name"] == name:
            data.update(changes)
        (out / path.name).write_text(json.dumps(data, indent=2))
    monkeypatch.setattr(records, "RECORDS_DIR", out)
    return out
