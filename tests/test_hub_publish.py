"""`timm-assemble publish`: every check and the real huggingface_hub upload code, against a fake Hub.

Only the last layer is replaced: huggingface_hub's HTTP client gets an httpx MockTransport that speaks the
Hub's create-repo, preupload, LFS batch/upload and commit endpoints. Xet storage is switched off so that
the upload goes through that HTTP client (hf_xet uploads from native code).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import safetensors.torch
from hub_testing import NAME, R50_W8_CHECKPOINT, TOKEN, patch_records, read_record_table
from huggingface_hub import ModelCard

from timm_assemble.cli import main
from timm_assemble.fileio import sha256_file
from timm_assemble.weights import publish, records
from timm_assemble.weights.records import DEFAULT_HUB_ORG

REPO_ID = f"{DEFAULT_HUB_ORG}/{NAME}"
@pytest.fixture(scope="module")
def converted(converted_r50_w8) -> Path:
    return converted_r50_w8


@pytest.fixture
def folder(tmp_path, converted) -> Path:
    """A fresh copy of the converted folder (publish writes the rendered card into it)."""
    out = tmp_path / "staging"
    out.mkdir()
    for f in converted.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


def record_sha(monkeypatch, tmp_path, folder: Path) -> str:
    """Record the folder's weights in a patched copy of the weight records, as a maintainer would."""
    sha = sha256_file(folder / "model.safetensors")
    patch_records(monkeypatch, tmp_path, sha256=sha, size_bytes=(folder / "model.safetensors").stat().st_size)
    return sha


def test_publish_uploads_exactly_what_dry_run_lists(tmp_path, monkeypatch, folder, hub, capsys):
    sha = record_sha(monkeypatch, tmp_path, folder)
    weights_bytes = (folder / "model.safetensors").read_bytes()

    assert main(["publish", str(folder), "--repo-id", REPO_ID, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert hub.requests == []  # a dry run sends nothing
    assert "dry run: nothing was uploaded" in dry and f"sha256 matches record {NAME}" in dry
    listed = {line.split()[0]: line.split()[4] for line in dry.splitlines() if " bytes  sha256 " in line}

    assert main(["publish", str(folder), "--repo-id", REPO_ID]) == 0
    out = capsys.readouterr().out
    assert f"published: https://huggingface.co/{REPO_ID}/commit/{'c' * 40}" in out

    assert hub.created == [{"name": NAME, "organization": DEFAULT_HUB_ORG, "visibility": "public", "type": "model"}]
    assert hub.auth == {f"Bearer {TOKEN}"}  # token from HF_TOKEN, the usual mechanism
    files = hub.committed_files()
    assert set(files) == set(listed) == {"config.json", "model.safetensors", "README.md"}
    assert {name: hashlib.sha256(data).hexdigest() for name, data in files.items()} == listed
    assert files["model.safetensors"] == weights_bytes and listed["model.safetensors"] == sha
    assert files["README.md"] == (folder / "README.md").read_bytes()  # the rendered card, written atomically
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "timm" and card.data.eval_results[0].metric_value == 82.78
    assert "import timm_assemble" in card.text and sha in card.text
    assert (
        safetensors.torch.load(files["model.safetensors"]).keys()
        == safetensors.torch.load_file(folder / "model.safetensors").keys()
    )


def test_publish_private_to_a_mirror_org(tmp_path, monkeypatch, folder, hub):
    record_sha(monkeypatch, tmp_path, folder)
    assert main(["publish", str(folder), "--repo-id", f"my-mirror/{NAME}", "--private"]) == 0
    assert hub.created == [{"name": NAME, "organization": "my-mirror", "visibility": "private", "type": "model"}]
    assert "model.safetensors" in hub.committed_files()


def test_publish_refuses_sha256_mismatch(tmp_path, monkeypatch, folder, hub, capsys):
    patch_records(monkeypatch, tmp_path, sha256="1" * 64, size_bytes=10)
    for extra in (["--dry-run"], []):
        assert main(["publish", str(folder), "--repo-id", REPO_ID, *extra]) == 2
        err = capsys.readouterr().err
        assert f"but the weight record {NAME} says {'1' * 64}" in err
    assert hub.requests == []


def test_publish_needs_a_recorded_sha256(folder, hub, capsys):
    """The shipped record has no sha256 yet: a dry run says what to record, a real publish refuses."""
    assert main(["publish", str(folder), "--repo-id", REPO_ID, "--dry-run"]) == 0
    sha = sha256_file(folder / "model.safetensors")
    assert f'add sha256="{sha}"' in capsys.readouterr().out
    assert main(["publish", str(folder), "--repo-id", REPO_ID]) == 2
    assert f'has no sha256, so downloads could not be verified: record sha256="{sha}"' in capsys.readouterr().err
    assert hub.requests == []


def test_publish_without_a_token(tmp_path, monkeypatch, folder, hub, capsys):
    record_sha(monkeypatch, tmp_path, folder)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    assert main(["publish", str(folder), "--repo-id", REPO_ID]) == 2
    assert "no Hugging Face token: run `hf auth login` or set HF_TOKEN" in capsys.readouterr().err
    assert hub.requests == []


def test_publish_unrecorded_repo_keeps_its_own_card(folder, hub):
    """Fine-tuned exports (no weight record) upload their own card; no sha256 to compare."""
    (folder / "README.md").write_text("---\nlibrary_name: timm\n---\n# my fine-tune\n")
    (folder / "notes.txt").write_text("not part of a model repo")
    assert main(["publish", str(folder), "--repo-id", "me/assemble_resnet50.flowers"]) == 0
    files = hub.committed_files()
    assert set(files) == {"config.json", "model.safetensors", "README.md"}
    assert files["README.md"].decode().endswith("# my fine-tune\n")


def test_publish_renders_our_own_card_for_the_repo(folder, hub, capsys):
    """A card we rendered for a local folder (convert, a training run) is rendered again for --repo-id: usage,
    model-index and links name that repo, never a local stand-in."""
    assert "local-dir:/path/to/this/folder" in (folder / "README.md").read_text()
    assert main(["publish", str(folder), "--repo-id", "me/demo", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert 'timm.create_model("hf-hub:me/demo", pretrained=True)' in out and "pip install timm-assemble" in out
    assert "local-dir:" not in out.split("<!-- timm-assemble card spec")[0] and "local/" not in out
    assert main(["publish", str(folder), "--repo-id", "me/demo"]) == 0
    card = hub.committed_files()["README.md"].decode()
    assert card.count("hf-hub:me/demo") == 1 and "# Model card for demo" in card


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("unregistered", "names architecture 'resnet_that_does_not_exist', which is not a registered timm model"),
        ("wrong_width", "does not load strictly into assemble_resnet50"),
        ("wrong_arch", f"repo {REPO_ID} is the weight record {NAME} (architecture assemble_resnet50), but"),
        ("no_weights", "has no model.safetensors"),
        ("not_safetensors", "is not a readable safetensors file"),
        ("bad_repo_id", "--repo-id must be ORG/NAME"),
    ],
)
def test_publish_checks_the_folder(folder, hub, capsys, breakage, message):
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    repo_id = REPO_ID
    if breakage == "unregistered":
        config["architecture"] = "resnet_that_does_not_exist"
        repo_id = "me/my-model"  # no weight record: the registry check itself must catch it
    elif breakage == "wrong_width":
        config["model_args"]["width"] = 16
    elif breakage == "wrong_arch":
        config["architecture"] = "assemble_resnet152"
        config["model_args"]["width"] = 8
    elif breakage == "no_weights":
        (folder / "model.safetensors").unlink()
    elif breakage == "not_safetensors":
        (folder / "model.safetensors").write_bytes(b"\x80\x04 pickle, not safetensors")
    elif breakage == "bad_repo_id":
        repo_id = NAME
    config_path.write_text(json.dumps(config))
    assert main(["publish", str(folder), "--repo-id", repo_id, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert hub.requests == []


@pytest.mark.slow
def test_fetch_then_publish_with_update_record(tmp_path, monkeypatch, hub, capsys):
    """The maintainers' path: a `weights install`/`fetch` cache entry published as is, the record filled in."""
    table = patch_records(monkeypatch, tmp_path)
    monkeypatch.setenv("TIMM_ASSEMBLE_CACHE", str(tmp_path / "cache"))
    assert main(["weights", "install", NAME, "--checkpoint", str(R50_W8_CHECKPOINT)]) == 0
    entry = tmp_path / "cache" / f"{NAME}-w8"
    capsys.readouterr()
    # a width-8 entry is not the official weight: refused before anything is sent
    assert main(["publish", str(entry), "--repo-id", REPO_ID, "--update-record"]) == 2
    assert "holds assemble_resnet50.clova_in1k at width 8; the record" in capsys.readouterr().err
    assert hub.requests == []

    monkeypatch.setattr(publish, "DEFAULT_WIDTH", 8)  # stand-in for a full-width entry
    assert main(["publish", str(entry), "--repo-id", REPO_ID, "--update-record", "--dry-run"]) == 0
    assert "gets sha256, size_bytes, the source files' sha256 (2 files)" in capsys.readouterr().out
    assert hub.requests == [] and read_record_table(table)[NAME].sha256 is None
    assert main(["publish", str(entry), "--repo-id", REPO_ID, "--update-record"]) == 0
    assert f"updated {NAME} in {table}" in capsys.readouterr().out

    record = read_record_table(table)[NAME]
    sha = sha256_file(entry / "model.safetensors")
    source_sha = {p.name: sha256_file(p) for p in R50_W8_CHECKPOINT.parent.glob("model.ckpt.*")}
    assert record.status == "published" and record.status_note is None
    assert record.sha256 == sha and record.size_bytes == (entry / "model.safetensors").stat().st_size
    assert record.source.files_sha256 == source_sha and record.source.sha256_status is None
    assert table.read_text() == records.render_record_table(read_record_table(table).values())  # canonical form
    card = hub.committed_files()["README.md"].decode()
    assert all(f"`{name}`: `{digest}`" in card for name, digest in source_sha.items()) and sha in card
    assert main(["weights", "verify", NAME]) == 0  # the card rendered into the entry leaves it intact
