"""Pretrained weights through the Hub, offline: records, model cards, loading from a local Hub cache,
integrity checks and the error for missing weights."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
import safetensors.torch
import timm
import torch
from drive_testing import block_sockets
from hub_testing import NAME, go_offline, patch_records, seed_hub_cache
from huggingface_hub import ModelCard

import timm_assemble
from timm_assemble.cli import main
from timm_assemble.errors import TimmAssembleError
from timm_assemble.fileio import sha256_file
from timm_assemble.weights import records
from timm_assemble.weights.card import CardSpec, Metric, render_model_card
from timm_assemble.weights.publish import record_card_spec
from timm_assemble.weights.records import DEFAULT_HUB_ORG
from timm_assemble.weights.resolve import download_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_ID = f"{DEFAULT_HUB_ORG}/{NAME}"


@pytest.fixture(scope="module")
def converted(converted_r50_w8) -> Path:
    return converted_r50_w8


@pytest.fixture(scope="module")
def weights(converted) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(converted / "model.safetensors")


@pytest.fixture
def offline_cache(tmp_path, monkeypatch, converted) -> Path:
    cache = tmp_path / "hub"
    seed_hub_cache(cache, REPO_ID, converted)
    go_offline(monkeypatch, cache)
    return cache


def assert_same(state_dict: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], skip=()) -> None:
    """Every tensor of `state_dict` equals the reference bit for bit (except the `skip` prefixes)."""
    checked = 0
    for key, value in state_dict.items():
        if key.startswith(tuple(skip)):
            continue
        assert torch.equal(value, reference[key]), key
        checked += 1
    assert checked > 0


# --- records -------------------------------------------------------------------------------------------


def test_records_match_registry_and_paper(monkeypatch):
    monkeypatch.delenv("TIMM_ASSEMBLE_HUB_ORG", raising=False)
    recs = records.load_records()
    assert {"assemble_resnet50.clova_in1k", "assemble_resnet152.clova_in1k"} <= set(recs)
    for name, record in recs.items():
        assert timm.is_model(record.architecture)
        # the default cfg points at the record's repo (full org/name)
        assert timm.models.get_pretrained_cfg(name).hf_hub_id == record.hf_hub_id == record.repo_id
        assert record.hf_hub_id.split("/")[0] == DEFAULT_HUB_ORG
        assert record.license == "apache-2.0"
    # Table 7: E11 (Assemble-ResNet-50) and E12 (Assemble-ResNet-152)
    paper = {n: {m.type: m.value for m in r.metrics if m.provenance == "paper"} for n, r in recs.items()}
    assert paper["assemble_resnet50.clova_in1k"] == {"accuracy": 82.78, "mCE": 48.89}
    assert paper["assemble_resnet152.clova_in1k"] == {"accuracy": 84.19, "mCE": 43.27}


def test_hub_org_override(monkeypatch):
    monkeypatch.setenv("TIMM_ASSEMBLE_HUB_ORG", "my-mirror")
    record = records.get_record(NAME)
    assert record.repo_id == f"my-mirror/{NAME}"
    assert records.find_record_for_repo(f"my-mirror/{NAME}") == record
    assert records.find_record_for_repo(REPO_ID) == record
    assert records.find_record_for_repo(f"someone-else/{NAME}") is None
    assert records.find_record_for_repo(f"someone-else/{NAME}", any_org=True) == record


METRIC = dict(name="top-1", type="accuracy", value=80.0, dataset="ImageNet-1k", dataset_type="imagenet-1k")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(sha256="ABC"), "sha256 must be None or 64 lowercase hex"),
        (dict(status="published"), "published weight must record the sha256"),
        (dict(status="done"), "status must be one of"),
        (dict(status_note=None), "must say why in status_note"),
        (dict(name="resnet50.clova_in1k"), "must be '<architecture>.<tag>'"),
        (dict(hf_hub_id="no-org"), "hf_hub_id must be 'org/name'"),
        (dict(metrics=(Metric(**METRIC, split="val", provenance="measured"),)), "must give the command"),
        (dict(metrics=(Metric(**METRIC, split="val", provenance="paper"),)), "must give its reference"),
        (dict(metrics=(Metric(**METRIC, split="val", provenance="blog"),)), "provenance must be one of"),
        (dict(source=dataclasses.replace(records.get_record(NAME).source, sha256_status=None)), "say why in"),
        (
            dict(source=dataclasses.replace(records.get_record(NAME).source, files_sha256={"model.ckpt.index": "f"})),
            r"source.files_sha256\['model.ckpt.index'\]",
        ),
    ],
)
def test_bad_records_are_rejected(change, message):
    with pytest.raises(TimmAssembleError, match=f"weight record .*: .*{message}"):
        dataclasses.replace(records.get_record(NAME), **change)


def test_record_table_is_in_its_canonical_form():
    """`publish --update-record` rewrites the file with `render_record_table`: a hand edit must look the same,
    so that rewrite changes only the fields it updates."""
    assert records.RECORD_TABLE_PATH.read_text() == records.render_record_table(records.load_records().values())


# --- model cards ---------------------------------------------------------------------------------------


def test_record_card_has_hub_metadata(converted):
    config = json.loads((converted / "config.json").read_text())
    record = records.get_record(NAME)
    text = render_model_card(record_card_spec(record, REPO_ID, config, num_params=123_456))
    card = ModelCard(text)
    assert card.data.library_name == "timm"
    assert card.data.license == "apache-2.0"
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.datasets == ["imagenet-1k"]
    assert {"timm", "image-classification"} <= set(card.data.tags)
    results = {(r.dataset_type, r.metric_type): r for r in card.data.eval_results}
    top1 = results[("imagenet-1k", "accuracy")]
    assert top1.metric_value == 82.78 and top1.verified is False
    assert "Table 7" in top1.source_name and top1.source_url == "https://arxiv.org/abs/2001.06268"
    assert results[("imagenet-c", "mCE")].metric_value == 48.89
    body = card.text
    assert "import timm_assemble" in body
    assert f'timm.create_model("hf-hub:{REPO_ID}", pretrained=True)' in body
    assert "@misc{lee2020compounding" in body
    assert "0.12 M" in body and "not yet recorded" in body  # parameter count; honest source hash status
    assert "paper: Lee et al. 2020" in body


def test_generic_card_for_measured_metrics(converted):
    """The renderer serves our own fine-tuned exports: measured numbers carry their command."""
    config = json.loads((converted / "config.json").read_text())
    metric = Metric(
        name="top-1 accuracy",
        type="accuracy",
        value=91.25,
        dataset="Oxford Flowers-102",
        dataset_type="flowers",
        split="test",
        provenance="measured",
        command="timm-assemble validate --data flowers --model ...",
    )
    spec = CardSpec(
        repo_id="me/assemble_resnet50.flowers",
        config=config,
        summary="Fine-tuned on flowers.",
        provenance="Fine-tuned from the converted official weights.",
        metrics=[metric],
        datasets=["flowers"],
        base_model=REPO_ID,
        training_command="timm-assemble train --config flowers.yaml",
    )
    card = ModelCard(render_model_card(spec))
    assert card.data.base_model == REPO_ID
    (result,) = card.data.eval_results
    assert (result.metric_value, result.source_name) == (91.25, "measured with timm-assemble")
    assert "measured: `timm-assemble validate --data flowers --model ...`" in card.text
    assert "timm-assemble train --config flowers.yaml" in card.text


# --- loading from an offline Hub cache -----------------------------------------------------------------


def test_registry_name_loads_from_hub_cache(offline_cache, weights):
    model = timm.create_model(NAME, pretrained=True, width=8)
    assert model.pretrained_cfg["hf_hub_id"] == REPO_ID
    assert_same(model.state_dict(), weights)
    assert model.state_dict().keys() == weights.keys()


def test_hf_hub_name_loads_from_hub_cache(offline_cache, weights):
    model = timm.create_model(f"hf-hub:{REPO_ID}", pretrained=True)  # width comes from config.json
    assert isinstance(model, timm_assemble.AssembleResNet)
    assert_same(model.state_dict(), weights)


def test_torch_hub_loads_from_hub_cache(offline_cache, weights):
    model = torch.hub.load(str(REPO_ROOT), "assemble_resnet50", source="local", pretrained=True, width=8)
    assert_same(model.state_dict(), weights)


def test_features_only_and_new_head_keep_pretrained_weights(offline_cache, weights):
    features = timm.create_model(NAME, pretrained=True, width=8, features_only=True)
    assert_same(features.state_dict(), weights)
    assert not any(k.startswith("fc.") for k in features.state_dict())
    outs = features.eval()(torch.randn(1, 3, 64, 64))
    assert len(outs) == len(features.feature_info.channels())

    model = timm.create_model(NAME, pretrained=True, width=8, num_classes=10)
    assert model.fc.weight.shape[0] == 10
    assert_same(model.state_dict(), weights, skip=("fc.",))


def test_offline_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    go_offline(monkeypatch, tmp_path / "empty-cache")
    monkeypatch.setenv("TIMM_ASSEMBLE_CACHE", str(tmp_path / "weights-cache"))
    with pytest.raises(TimmAssembleError) as info:
        timm.create_model(NAME, pretrained=True, width=8)
    message = str(info.value)
    for part in (
        f"model.safetensors of Hub repo {REPO_ID} is not in the local Hub cache ({tmp_path / 'empty-cache'}) "
        "and HF_HUB_OFFLINE is set",
        f"cache: no entry {tmp_path / 'weights-cache' / NAME}-w8",
        f"`timm-assemble weights fetch {NAME}`",
        f"`timm-assemble weights install {NAME} --checkpoint PREFIX`",
    ):
        assert part in message
    assert "hf download" not in message  # nothing to pre-fetch while unpublished
    with pytest.raises(TimmAssembleError, match=f"config.json of Hub repo {REPO_ID}.*weights fetch {NAME}"):
        download_weights(NAME)
    patch_records(monkeypatch, tmp_path, status="published", sha256="a" * 64, size_bytes=1)
    prefetch = f"`hf download {REPO_ID} config.json model.safetensors --cache-dir CACHE` where the Hub is reachable"
    with pytest.raises(TimmAssembleError, match=f"{prefetch}, then set HF_HUB_CACHE=CACHE"):
        timm.create_model(NAME, pretrained=True, width=8)


def test_offline_hf_hub_name_is_a_clear_error(tmp_path, monkeypatch):
    """timm reads config.json before the model exists: our error, not huggingface_hub's, and at once."""
    go_offline(monkeypatch, tmp_path / "empty-cache")
    with pytest.raises(TimmAssembleError, match=f"hf-hub:{REPO_ID}: config.json of Hub repo {REPO_ID} is not in"):
        timm_assemble.create_model(f"hf-hub:{REPO_ID}", pretrained=True)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    attempts = block_sockets(monkeypatch)  # no network: one refused connection, no retries
    with pytest.raises(TimmAssembleError, match=f"config.json of Hub repo {REPO_ID} could not be reached"):
        timm_assemble.create_model(f"hf-hub:{REPO_ID}", pretrained=True)
    assert len(attempts) <= 2  # one request (IPv4 and IPv6 addresses at most), not huggingface_hub's 6


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors in {d}"),
        (lambda d: os.truncate(d / "model.safetensors", 1000), "{d}/model.safetensors is truncated"),
        (lambda d: (d / "config.json").write_text('{"architecture": '), "{d}/config.json is not valid JSON"),
        (lambda d: (d / "config.json").unlink(), "no config.json in {d}"),
        (lambda d: (d / "config.json").write_text("[1, 2]"), "{d}/config.json is not a timm model config"),
    ],
    ids=["no_weights", "truncated_weights", "invalid_config", "no_config", "not_a_config"],
)
def test_broken_local_dir_is_a_clear_error(tmp_path, converted, breakage, message):
    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    breakage(folder)
    with pytest.raises(TimmAssembleError, match=re.escape(message.format(d=folder))):
        timm_assemble.create_model(f"local-dir:{folder}", pretrained=True)


def test_local_overrides_skip_the_hub(tmp_path, monkeypatch, converted, weights):
    """A local file or folder needs neither the Hub nor the record: the guard stays out of the way."""
    go_offline(monkeypatch, tmp_path / "empty-cache")
    model = timm.create_model(f"local-dir:{converted}", pretrained=True)
    assert_same(model.state_dict(), weights)
    model = timm.create_model(
        NAME, pretrained=True, width=8, pretrained_cfg_overlay=dict(file=str(converted / "model.safetensors"))
    )
    assert_same(model.state_dict(), weights)


# --- integrity ------------------------------------------------------------------------------------------


def test_recorded_sha256_is_checked_on_load_and_download(
    tmp_path, monkeypatch, offline_cache, converted, weights, capsys
):
    sha = sha256_file(converted / "model.safetensors")
    patch_records(monkeypatch, tmp_path, sha256=sha, size_bytes=(converted / "model.safetensors").stat().st_size)
    model = timm.create_model(NAME, pretrained=True, width=8)
    assert_same(model.state_dict(), weights)

    assert main(["download", NAME]) == 0  # the deprecated alias still works for existing scripts
    out, err = capsys.readouterr()
    assert f"sha256 ok          {sha}" in out
    assert f"deprecated: `hf download {REPO_ID} config.json model.safetensors` fetches the same files" in err
    assert f"{offline_cache}/models--{DEFAULT_HUB_ORG}--{NAME}/snapshots" in out


def test_sha256_mismatch_is_refused(tmp_path, monkeypatch, offline_cache, capsys):
    wrong = "0" * 64
    patch_records(monkeypatch, tmp_path, sha256=wrong, size_bytes=1)
    with pytest.raises(TimmAssembleError, match=f"integrity check failed for {NAME}: .* expects {wrong}"):
        timm.create_model(NAME, pretrained=True, width=8)
    assert main(["download", NAME]) == 2
    err = capsys.readouterr().err
    assert err.startswith("timm-assemble download: error: integrity check failed") and err.count("\n") == 1


def test_corrupted_cached_file_is_refused(tmp_path, monkeypatch, converted):
    """The same file with one flipped byte in the cache: the record's sha256 catches it."""
    sha = sha256_file(converted / "model.safetensors")
    patch_records(monkeypatch, tmp_path, sha256=sha, size_bytes=(converted / "model.safetensors").stat().st_size)
    cache = tmp_path / "hub"
    snapshot = seed_hub_cache(cache, REPO_ID, converted)
    data = bytearray((snapshot / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (snapshot / "model.safetensors").write_bytes(bytes(data))
    go_offline(monkeypatch, cache)
    with pytest.raises(TimmAssembleError, match="integrity check failed"):
        download_weights("assemble_resnet50")  # a bare architecture with one record resolves to it


def test_download_without_recorded_sha256_warns(offline_cache, capsys):
    assert main(["download", NAME, "--cache-dir", str(offline_cache)]) == 0
    captured = capsys.readouterr()
    assert "was not verified" in captured.err and "not published" in captured.err
    assert f"HF_HUB_CACHE={offline_cache}" in captured.out


def test_download_unknown_name(capsys):
    assert main(["download", "resnet50.a1_in1k"]) == 2
    assert "no weight record named 'resnet50.a1_in1k'; known: assemble_resnet152" in capsys.readouterr().err


def test_pretrained_cfg_is_not_mutated(offline_cache):
    """The guard only reads the cfg: the registry default stays as it was."""
    before = copy.deepcopy(timm.models.get_pretrained_cfg(NAME).to_dict())
    timm.create_model(NAME, pretrained=True, width=8)
    assert timm.models.get_pretrained_cfg(NAME).to_dict() == before
