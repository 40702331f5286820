"""Helpers for the Hub tests: a converted fixture model, an offline Hub cache, patched weight records, and
concurrent callers of the weights cache."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import runpy
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import httpx2
import huggingface_hub.constants as hf_constants
import pytest
from huggingface_hub import ModelCard

from timm_assemble.convert import convert_checkpoint
from timm_assemble.weights import records

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
    """The shipped records with `changes` applied to record `name`, used in place of the real ones; returns the
    copy of `record_table.py` that record updates are written to."""
    table = [dataclasses.replace(r, **changes) if r.name == name else r for r in records.load_records().values()]
    path = tmp_path / "record_table.py"
    path.write_text(records.render_record_table(table))
    monkeypatch.setattr(records, "RECORD_TABLE_PATH", path)
    return path


def read_record_table(path: Path) -> dict[str, records.WeightRecord]:
    """The records a written `record_table.py` holds, by name (the file is run as Python, as the package does)."""
    return {r.name: r for r in runpy.run_path(str(path))["RECORDS"]}



def errors_in_threads(target: Callable[[], object], count: int, timeout: float = 120) -> list[BaseException]:
    """Run `target` in `count` threads at once; returns what they raised (a thread's exception is otherwise only
    a pytest warning, which no assertion sees)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as err:  # reported to the caller
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors

TOKEN = "hf_test_token_not_real"


class FakeHub:
    """The Hub's upload endpoints, in memory; records every request it sees."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict] = []
        self.lfs: dict[str, bytes] = {}
        self.commits: list[list[dict]] = []
        self.auth: set[str | None] = set()
        self.validated: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path, body = request.url.path, request.read()
        self.requests.append((request.method, path))
        if path == "/api/agent-harnesses":  # huggingface_hub's best-effort telemetry lookup
            return httpx2.Response(404)
        if request.url.host == "huggingface.co":
            self.auth.add(request.headers.get("authorization"))
        if request.method == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            self.created.append(payload)
            repo = f"{payload['organization']}/{payload['name']}"
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{repo}", "name": repo, "id": "1"})
        if request.method == "POST" and path == "/api/validate-yaml":  # the Hub checks a card's metadata
            content = json.loads(body)["content"]
            self.validated.append(content)
            try:
                ModelCard(content, ignore_metadata_errors=False)
            except ValueError as err:
                return httpx2.Response(400, json={"errors": [{"message": str(err)}]})
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if request.method == "POST" and path.endswith("/preupload/main"):
            files = json.loads(body)["files"]
            modes = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                    "shouldIgnore": False,
                    "oid": None,
                }
                for f in files
            ]
            return httpx2.Response(200, json={"files": modes})
        if request.method == "POST" and path.endswith(".git/info/lfs/objects/batch"):
            objects = [
                {
                    "oid": o["oid"],
                    "size": o["size"],
                    "authenticated": True,
                    "actions": {"upload": {"href": f"https://lfs.fake-hub.test/{o['oid']}"}},
                }
                for o in json.loads(body)["objects"]
            ]
            return httpx2.Response(200, json={"transfer": "basic", "objects": objects})
        if request.method == "PUT" and request.url.host == "lfs.fake-hub.test":
            self.lfs[path.strip("/")] = body
            return httpx2.Response(200)
        if request.method == "POST" and "/commit/main" in path:
            self.commits.append([json.loads(line) for line in body.decode().splitlines() if line])
            repo = path.split("/api/models/")[1].split("/commit/")[0]
            return httpx2.Response(
                200,
                json={
                    "commitUrl": f"https://huggingface.co/{repo}/commit/{'c' * 40}",
                    "commitOid": "c" * 40,
                    "pullRequestUrl": None,
                },
            )
        return httpx2.Response(500, json={"error": f"fake hub: unexpected {request.method} {path}"})

    def committed_files(self) -> dict[str, bytes]:
        """Path -> content of the (single) commit, LFS files resolved through the uploaded objects."""
        (commit,) = self.commits
        files = {}
        for op in commit:
            if op["key"] == "file":
                files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
            elif op["key"] == "lfsFile":
                files[op["value"]["path"]] = self.lfs[op["value"]["oid"]]
                assert op["value"]["oid"] == hashlib.sha256(files[op["value"]["path"]]).hexdigest()
        return files
