"""pretrained=True for the official tags without the Hub: fetched from a fake Google Drive (real gdown, fake
HTTP), converted, verified, cached; every failure one clear error and no cache entry; no network anywhere."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import gdown  # noqa: F401  (gdown.download, the module, is patched below)
import huggingface_hub.constants as hf_constants
import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from drive_testing import CLOVA_TF, FakeDrive, block_sockets, official_tree
from hub_testing import COMMIT, convert_fixture, errors_in_threads, go_offline, seed_hub_cache
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError

import timm_assemble  # noqa: F401  (registers the models)
from timm_assemble import cli
from timm_assemble.errors import TimmAssembleError
from timm_assemble.weights.cache import PROVENANCE_NAME, entry_dir
from timm_assemble.weights.records import DEFAULT_HUB_ORG
from timm_assemble.weights.resolve import file_sha256

R50, R152 = "assemble_resnet50.clova_in1k", "assemble_resnet152.clova_in1k"
FIXTURE = {R50: "assemble_resnet50_w8", R152: "assemble_resnet152_w8"}
DATA = "model.ckpt-112603.data-00000-of-00001"
TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def _threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty converted-weights cache and an empty Hub cache; online as far as huggingface_hub knows."""
    monkeypatch.setenv("TIMM_ASSEMBLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TIMM_ASSEMBLE_OFFICIAL_SOURCE", raising=False)
    monkeypatch.delenv("TIMM_ASSEMBLE_HUB_ORG", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(sys.modules["gdown.download"], "DEFAULT_COOKIES_FILE", str(tmp_path / "gdown-cookies.txt"))
    return tmp_path / "cache"


def drive(monkeypatch, **kwargs) -> FakeDrive:
    return FakeDrive(kwargs.pop("tree", None) or official_tree(), **kwargs).install(monkeypatch)


def official_error(model: torch.nn.Module, fixture: str) -> float:
    """Max |ours - official| / max |official| on the fixture images (official logits minus the background)."""
    x = torch.from_numpy(np.load(CLOVA_TF / fixture / "input.npy")).permute(0, 3, 1, 2)  # NHWC -> NCHW
    reference = torch.from_numpy(np.load(CLOVA_TF / fixture / "logits.npy"))[:, 1:]
    with torch.no_grad():
        logits = model.eval()(x)
    return float((logits - reference).abs().max() / reference.abs().max())


def assert_no_entry(cache: Path) -> None:
    """No entry and no half-written folder (partial downloads live apart, in .downloads)."""
    leftovers = [p.name for p in cache.iterdir() if p.name != ".downloads"] if cache.exists() else []
    assert leftovers == []


@pytest.mark.slow
@pytest.mark.parametrize("name", [R50])  # R152's conversion is pinned by test_convert; the download path is shared
def test_first_call_fetches_converts_caches_and_reproduces_official_logits(cache, monkeypatch, capsys, name):
    fake = drive(monkeypatch)
    model = timm.create_model(name, pretrained=True, width=8)
    assert official_error(model, FIXTURE[name]) <= TOLERANCE
    # only that model's checkpoint was downloaded: not the other model, not the `checkpoint` or log files
    assert fake.served == ["model.ckpt-112603.index", DATA]
    err = capsys.readouterr().err
    assert err.count("timm-assemble: fetching the official") == 1 and "Google Drive" in err and " MB" in err

    entry = entry_dir(name, 8)
    assert entry.name == f"{name}-w8" and not (cache / ".downloads").exists()
    provenance = json.loads((entry / PROVENANCE_NAME).read_text())
    src = CLOVA_TF / FIXTURE[name]
    assert provenance["source"]["files"] == {
        f"model.ckpt-112603{suffix}": {
            "sha256": file_sha256(src / f"model.ckpt{suffix}"),
            "size": (src / f"model.ckpt{suffix}").stat().st_size,
        }
        for suffix in (".index", ".data-00000-of-00001")
    }
    assert provenance["result"]["model.safetensors"]["sha256"] == file_sha256(entry / "model.safetensors")
    assert provenance["model_args"] == {"width": 8} and provenance["source"]["kind"] == "official source"

    fake.requests.clear()
    again = timm.create_model(name, pretrained=True, width=8)
    assert fake.requests == []  # the second call downloads nothing
    assert official_error(again, FIXTURE[name]) <= TOLERANCE
    features = timm.create_model(name, pretrained=True, width=8, features_only=True)
    head10 = timm.create_model(name, pretrained=True, width=8, num_classes=10)
    assert head10.fc.out_features == 10 and fake.requests == []
    for key, value in features.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


@pytest.mark.slow
def test_hub_first_when_the_hub_cache_has_the_repo(cache, monkeypatch, tmp_path):
    fake = drive(monkeypatch)
    converted = convert_fixture(tmp_path / "converted")
    seed_hub_cache(Path(hf_constants.HF_HUB_CACHE), f"{DEFAULT_HUB_ORG}/{R50}", converted)
    model = timm.create_model(R50, pretrained=True, width=8)
    assert fake.requests == [] and not cache.exists()
    snapshot = Path(hf_constants.HF_HUB_CACHE) / f"models--{DEFAULT_HUB_ORG}--{R50}" / "snapshots" / COMMIT
    saved = safetensors.torch.load_file(snapshot / "model.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_width_is_part_of_the_cache_key(cache, monkeypatch):
    fake = drive(monkeypatch)
    timm.create_model(R50, pretrained=True, width=8)
    fake.requests.clear()
    # the official source holds width 8 here: a width-64 request is refused at once, nothing downloaded
    with pytest.raises(TimmAssembleError, match="at width=64: the official checkpoint has width 8"):
        timm.create_model(R50, pretrained=True)
    assert fake.requests == [] and sorted(p.name for p in cache.iterdir()) == [f"{R50}-w8"]
    # a width-8 entry in the width-64 place is never served to a width-64 request
    (cache / f"{R50}-w8").rename(cache / R50)
    monkeypatch.setenv("TIMM_ASSEMBLE_OFFICIAL_SOURCE", "0")
    with pytest.raises(TimmAssembleError, match=f"corrupt entry {cache / R50}: provenance.json names {R50} at width 8"):
        timm.create_model(R50, pretrained=True)


def test_offline_missing_weights_error_makes_no_network_call(cache, monkeypatch, tmp_path):
    fake = drive(monkeypatch)
    attempts = block_sockets(monkeypatch)
    go_offline(monkeypatch, tmp_path / "hub")
    with pytest.raises(TimmAssembleError) as info:
        timm.create_model(R50, pretrained=True)
    message = str(info.value)
    for part in (
        f"model.safetensors of Hub repo {DEFAULT_HUB_ORG}/{R50} is not in the local Hub cache ({tmp_path / 'hub'}) "
        "and HF_HUB_OFFLINE is set",
        f"cache: no entry {cache / R50}",
        "official source: not tried (HF_HUB_OFFLINE is set)",
        f"`timm-assemble weights fetch {R50}`",
        f"`timm-assemble weights install {R50} --checkpoint PREFIX`",
    ):
        assert part in message
    assert attempts == [] and fake.requests == []


def test_official_source_can_be_turned_off(cache, monkeypatch):
    fake = drive(monkeypatch)
    monkeypatch.setenv("TIMM_ASSEMBLE_OFFICIAL_SOURCE", "0")
    with pytest.raises(TimmAssembleError, match="official source: off \\(TIMM_ASSEMBLE_OFFICIAL_SOURCE=0\\)"):
        timm.create_model(R50, pretrained=True, width=8)
    assert fake.requests == []
    assert_no_entry(cache)


# --- failures: one clear error each, no entry left ------------------------------------------------------


def _r50_files(*, drop=(), add=None) -> dict:
    """The official tree with files dropped from / added to the Assemble-ResNet50 checkpoint folder."""
    tree = official_tree()
    folder = tree["Assemble-ResNet50"]["checkpoint"]
    for name in drop:
        folder.pop(name)
    folder.update(add or {})
    return tree


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda: dict(down=True), "cannot reach Google Drive to list the official folder"),
        (lambda: dict(quota={DATA}), "Google Drive's download quota for this file is used up"),
        (
            lambda: dict(tree={"Assemble-ResNet50.zip": b"PK", "README.txt": b"hi"}),
            "layout is not as expected: no checkpoint \\(\\*.index\\) in a folder named for assemble_resnet50"
            "(.|\n)*Assemble-ResNet50.zip\n    README.txt",
        ),
        (
            lambda: dict(tree=_r50_files(drop=[DATA], add={"model.ckpt-9.index": b""})),
            "checkpoint Assemble-ResNet50/checkpoint/model.ckpt-112603 lacks data shards",
        ),
    ],
    ids=["no_network", "quota", "no_checkpoint", "missing_shard"],
)
def test_drive_failures(cache, monkeypatch, setup, message):
    drive(monkeypatch, **setup())
    with pytest.raises(TimmAssembleError, match=message) as info:
        timm.create_model(R50, pretrained=True, width=8)
    assert "timm-assemble weights" in str(info.value)  # says what to do next
    assert_no_entry(cache)


def test_checkpoint_of_the_other_model(cache, monkeypatch):
    tree = official_tree()
    tree["Assemble-ResNet50"], tree["Assemble-ResNet152"] = tree["Assemble-ResNet152"], tree["Assemble-ResNet50"]
    drive(monkeypatch, tree=tree)
    with pytest.raises(TimmAssembleError, match="is an assemble_resnet152 checkpoint, not assemble_resnet50"):
        timm.create_model(R50, pretrained=True, width=8)
    assert_no_entry(cache)
    assert not (cache / ".downloads" / R50).exists()  # a wrong download is not kept for resuming


@pytest.mark.slow
def test_cut_off_download_is_resumed(cache, monkeypatch):
    fake = drive(monkeypatch, cut_after={DATA: 1_000_000})
    with pytest.raises(TimmAssembleError, match=f"the download of .*{DATA} was cut off.*run `timm-assemble weights"):
        timm.create_model(R50, pretrained=True, width=8)
    assert_no_entry(cache)
    partial = list((cache / ".downloads" / R50).glob(f"{DATA}*.part"))
    received = partial[0].stat().st_size if len(partial) == 1 else -1
    assert 0 < received <= 1_000_000
    model = timm.create_model(R50, pretrained=True, width=8)  # the line holds now
    assert official_error(model, FIXTURE[R50]) <= TOLERANCE
    assert fake.ranges == [f"bytes={received}-"]  # only the missing bytes were fetched again


def test_disk_full_while_converting(cache, monkeypatch):
    drive(monkeypatch)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("timm_assemble.weights.hub_folder.save_for_hf", full)
    with pytest.raises(TimmAssembleError, match="the disk is full"):
        timm.create_model(R50, pretrained=True, width=8)
    assert_no_entry(cache)


def test_disk_full_while_downloading(cache, monkeypatch):
    """gdown's own write of the partial file fails with ENOSPC: the same one-line error, no entry."""
    drive(monkeypatch)
    gdown_download = sys.modules["gdown.download"]

    class FullDisk:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

    def open_on_full_disk(path, mode="r", *args, **kwargs):
        file = open(path, mode, *args, **kwargs)
        return FullDisk(file) if str(path).endswith(".part") and "a" in mode else file

    monkeypatch.setattr(gdown_download, "open", open_on_full_disk, raising=False)
    with pytest.raises(TimmAssembleError, match=f"cannot write .*{R50}/model.ckpt-112603.index: the disk is full"):
        timm.create_model(R50, pretrained=True, width=8)
    assert_no_entry(cache)


@pytest.mark.slow
def test_corrupt_entry_is_never_loaded_and_is_refetched(cache, monkeypatch, capsys):
    fake = drive(monkeypatch)
    timm.create_model(R50, pretrained=True, width=8)
    weights = entry_dir(R50, 8) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("TIMM_ASSEMBLE_OFFICIAL_SOURCE", "0")
    with pytest.raises(TimmAssembleError, match="corrupt entry .*model.safetensors has sha256"):
        timm.create_model(R50, pretrained=True, width=8)
    monkeypatch.delenv("TIMM_ASSEMBLE_OFFICIAL_SOURCE")
    fake.served.clear()
    model = timm.create_model(R50, pretrained=True, width=8)
    assert fake.served == ["model.ckpt-112603.index", DATA] and "it is not used" in capsys.readouterr().err
    assert official_error(model, FIXTURE[R50]) <= TOLERANCE


# --- the weights command group -------------------------------------------------------------------------


@pytest.mark.slow
def test_weights_commands(cache, monkeypatch, capsys):
    fake = drive(monkeypatch)
    assert cli.main(["weights", "list"]) == 0
    assert "no cached weights in" in capsys.readouterr().out
    assert cli.main(["weights", "fetch", R50]) == 0
    out = capsys.readouterr().out
    assert f"fetched:\n{entry_dir(R50, 8)}" in out and f"--repo-id {DEFAULT_HUB_ORG}/{R50} --update-record" in out
    fake.requests.clear()
    assert cli.main(["weights", "fetch", R50]) == 0 and fake.requests == []
    assert "already cached (verified)" in capsys.readouterr().out

    prefix = CLOVA_TF / FIXTURE[R50] / "model.ckpt"
    assert cli.main(["weights", "install", R50, "--checkpoint", str(prefix)]) == 2
    assert "is already a verified entry; pass --force" in capsys.readouterr().err
    assert cli.main(["weights", "install", R50, "--checkpoint", str(CLOVA_TF / FIXTURE[R152] / "model.ckpt")]) == 2
    assert "is an assemble_resnet152 checkpoint" in capsys.readouterr().err
    assert cli.main(["weights", "install", R50, "--checkpoint", str(prefix), "--force"]) == 0
    capsys.readouterr()

    assert cli.main(["weights", "list"]) == 0
    sha = file_sha256(entry_dir(R50, 8) / "model.safetensors")
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"{R50}-w8"))
    assert "installed checkpoint" in row and "3.7" in row and sha in row
    assert cli.main(["weights", "verify", R50]) == 0
    (entry_dir(R50, 8) / "config.json").write_text("{}")
    assert cli.main(["weights", "verify", R50]) == 2
    captured = capsys.readouterr()
    assert "CORRUPT" in captured.out and "config.json has sha256" in captured.out
    assert "1 corrupt cache entry" in captured.err and captured.err.count("\n") == 1
    assert cli.main(["weights", "fetch", "assemble_r50.x"]) == 2


@pytest.mark.slow
def test_install_then_offline_pretrained_reproduces_official_logits(tmp_path):
    """The exact commands of the README: `weights install` into a cache, then pretrained=True offline."""
    prefix = CLOVA_TF / FIXTURE[R50] / "model.ckpt"
    env = {**os.environ, "TIMM_ASSEMBLE_CACHE": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf")}
    install = subprocess.run(
        ["timm-assemble", "weights", "install", R50, "--checkpoint", str(prefix)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    code = (
        "import numpy as np, timm, timm_assemble, torch\n"
        f"model = timm.create_model('{R50}', pretrained=True, width=8).eval()\n"
        f"x = torch.from_numpy(np.load('{CLOVA_TF / FIXTURE[R50] / 'input.npy'}')).permute(0, 3, 1, 2)\n"
        f"ref = torch.from_numpy(np.load('{CLOVA_TF / FIXTURE[R50] / 'logits.npy'}'))[:, 1:]\n"
        "with torch.no_grad():\n"
        "    print(float((model(x) - ref).abs().max() / ref.abs().max()))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert float(run.stdout.strip().splitlines()[-1]) <= TOLERANCE


def test_timm_weights_use_the_hub_cache_only_while_the_hub_is_out_of_reach(monkeypatch):
    """Fine-tuning a timm model: one probe (a HEAD request, no retries) of the file timm fetches first decides;
    a Hub that answers, even "no such file", is left to timm; our own models resolve by themselves."""
    from timm_assemble.training import model_setup

    def offline_while_loading(name: str) -> bool:
        with model_setup._hub_offline_unless_reachable(name, pretrained=True):
            return hf_constants.HF_HUB_OFFLINE

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    block_sockets(monkeypatch)
    assert offline_while_loading("resnet18.a1_in1k") and not hf_constants.HF_HUB_OFFLINE
    probed = []
    monkeypatch.setattr(model_setup, "hub_file_on_hub", lambda *file: probed.append(file) or (False, "no such file"))
    assert not offline_while_loading("resnet18.a1_in1k") and not offline_while_loading("hf-hub:org/repo@v2")
    assert not offline_while_loading(R50) and not offline_while_loading("local-dir:/nowhere")
    for malformed in ("timm/resnet18.a1_in1k", "resnet18.no_such_tag", "hf_hub:"):  # left to the loader's error
        assert not offline_while_loading(malformed)
    assert probed == [("timm/resnet18.a1_in1k", "model.safetensors", None), ("org/repo", "config.json", "v2")]


@pytest.mark.slow
def test_finetune_demo_starts_from_the_official_weights(cache, monkeypatch):
    """The demo's `pretrained=default` goes through the same resolution: the converted official network."""
    from timm_assemble.training import model_setup as training_models
    from timm_assemble.training.config import resolve_config

    drive(monkeypatch)
    cfg = resolve_config("finetune", {"model_kwargs": {"width": 8}}, preset="demo")
    assert cfg.pretrained == "default" and cfg.pretrained_optional
    built = training_models.build_model(cfg, 8)
    assert built.pretrained and built.source == "pretrained assemble_resnet50" and not built.notes
    official = safetensors.torch.load_file(entry_dir(R50, 8) / "model.safetensors")
    backbone = {k: v for k, v in built.model.state_dict().items() if not k.startswith("fc.")}
    assert backbone and all(torch.equal(v, official[k]) for k, v in backbone.items())
    assert built.model.fc.out_features == 8


def test_two_writers_of_one_entry_fetch_once(cache, monkeypatch):
    """Two loaders at once (two threads here, processes alike: the lock is an flock): one downloads and converts,
    the other waits and takes its entry; neither sees the entry missing."""
    from timm_assemble.weights.resolve import official_weights

    fake = drive(monkeypatch)
    got = []
    errors = errors_in_threads(lambda: got.append(official_weights(R50, 8, "hub: not tried")), 2)
    assert not errors and len(got) == 2 and got[0] == got[1]
    downloads = [r for r in fake.requests if "uc?" in r or "download" in r]
    single = len(downloads)
    fake.requests.clear()
    official_weights(R50, 8, "hub: not tried")  # cached now: nothing asked
    assert fake.requests == [] and single > 0
    assert sorted(p.name for p in cache.iterdir()) == [f"{R50}-w8"]  # the lock folder is gone again


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda p: p["result"].update({"../../../etc/passwd": p["result"]["config.json"]}), "which is not a file name"),
        (lambda p: p["result"]["model.safetensors"].update(sha256="abc"), "sha256 must be 64 hex digits"),
        (lambda p: p.update(model_args={"width": "8"}), "model_args.width must be a whole number"),
        (lambda p: p["result"].pop("model.safetensors"), "result must be a record naming model.safetensors"),
        (lambda p: p.update(result=[]), "result must be an object"),
    ],
    ids=["path-outside-the-entry", "bad-sha", "width-a-string", "no-weights-record", "result-a-list"],
)
@pytest.mark.slow
def test_a_tampered_provenance_is_one_line_and_nothing_outside_is_read(cache, monkeypatch, tamper, message):
    drive(monkeypatch)
    timm.create_model(R50, pretrained=True, width=8)
    path = entry_dir(R50, 8) / PROVENANCE_NAME
    provenance = json.loads(path.read_text())
    tamper(provenance)
    path.write_text(json.dumps(provenance))
    from timm_assemble.weights.cache import find_entry, read_entry

    with pytest.raises(TimmAssembleError, match=message) as info:
        read_entry(entry_dir(R50, 8))
    assert "\n" not in str(info.value)
    entry, why = find_entry(R50, 8)
    assert entry is None and why.startswith("corrupt entry") and message in why


# --- one validator: `weights verify` and loading give the same verdict ------------------------------------


def _rehash(entry: Path) -> None:
    """Record the entry's files as they are now: a tampering that also forges the provenance's hashes."""
    provenance = json.loads((entry / PROVENANCE_NAME).read_text())
    for filename, record in provenance["result"].items():
        if (entry / filename).is_file():
            record.update(sha256=file_sha256(entry / filename), size=(entry / filename).stat().st_size)
    (entry / PROVENANCE_NAME).write_text(json.dumps(provenance))


def _edit_provenance(entry: Path, edit) -> None:
    provenance = json.loads((entry / PROVENANCE_NAME).read_text())
    edit(provenance)
    (entry / PROVENANCE_NAME).write_text(json.dumps(provenance))


def _weights_file(entry: Path) -> Path:
    """The entry's weights file, to read: a FIFO left by another tampering would block the reader forever."""
    path = entry / "model.safetensors"
    if not path.is_file():
        raise OSError(f"{path} is not a regular file (an earlier tampering)")
    return path


def _edit_weights(entry: Path, edit) -> None:
    state = safetensors.torch.load_file(_weights_file(entry))
    edit(state)
    safetensors.torch.save_file(state, entry / "model.safetensors")
    _rehash(entry)


def _edit_config(entry: Path, edit) -> None:
    config = json.loads((entry / "config.json").read_text())
    edit(config)
    (entry / "config.json").write_text(json.dumps(config))
    _rehash(entry)


def _flip_byte(entry: Path, at: float) -> None:
    data = bytearray(_weights_file(entry).read_bytes())
    data[int(at * (len(data) - 1))] ^= 0x01
    (entry / "model.safetensors").write_bytes(bytes(data))


def _truncate(entry: Path, at: float) -> None:
    path = _weights_file(entry)
    path.write_bytes(path.read_bytes()[: int(at * path.stat().st_size)])


def _link_outside(entry: Path, filename: str) -> None:
    """The same file, moved out of the entry and linked back: its hash still matches."""
    outside = entry.parent / f".outside-{filename}"
    (entry / filename).rename(outside)
    (entry / filename).symlink_to(outside)


# every tampering: (name, function of the entry folder and a number in [0, 1))
TAMPERINGS = {
    "name-other-model": lambda e, x: _edit_provenance(e, lambda p: p.update(name=R152)),
    "name-unknown-tag": lambda e, x: _edit_provenance(e, lambda p: p.update(name="assemble_resnet50.other")),
    "name-not-a-string": lambda e, x: _edit_provenance(e, lambda p: p.update(name=50)),
    "width-other": lambda e, x: _edit_provenance(e, lambda p: p["model_args"].update(width=16)),
    "width-absent": lambda e, x: _edit_provenance(e, lambda p: p["model_args"].pop("width")),
    "width-huge": lambda e, x: _edit_provenance(e, lambda p: p["model_args"].update(width=10**9)),
    "sha-other": lambda e, x: _edit_provenance(e, lambda p: p["result"]["model.safetensors"].update(sha256="0" * 64)),
    "size-other": lambda e, x: _edit_provenance(e, lambda p: p["result"]["config.json"].update(size=1)),
    "extra-file-recorded": lambda e, x: _edit_provenance(e, lambda p: p["result"].update(x=p["result"]["config.json"])),
    "source-a-list": lambda e, x: _edit_provenance(e, lambda p: p.update(source=[])),
    "provenance-not-json": lambda e, x: (e / PROVENANCE_NAME).write_text("{"),
    "provenance-a-list": lambda e, x: (e / PROVENANCE_NAME).write_text("[]"),
    "flip-a-weights-byte": _flip_byte,
    "truncate-weights": _truncate,
    "config-deleted": lambda e, x: (e / "config.json").unlink(),
    "config-other-width+rehash": lambda e, x: _edit_config(e, lambda c: c["model_args"].update(width=16)),
    "config-other-arch+rehash": lambda e, x: _edit_config(e, lambda c: c.update(architecture="assemble_resnet152")),
    "config-a-list+rehash": lambda e, x: ((e / "config.json").write_text("[]"), _rehash(e)),
    "nan-tensor+rehash": lambda e, x: _edit_weights(e, lambda s: s["layer1.big.0.conv1.weight"].view(-1).__setitem__(
        int(x * s["layer1.big.0.conv1.weight"].numel()), float("nan"))),
    "inf-bias+rehash": lambda e, x: _edit_weights(e, lambda s: s["fc.bias"].fill_(float("-inf"))),
    "key-dropped+rehash": lambda e, x: _edit_weights(e, lambda s: s.pop("fc.bias")),
    "key-added+rehash": lambda e, x: _edit_weights(e, lambda s: s.update(extra=torch.zeros(2))),
    "float64-tensor+rehash": lambda e, x: _edit_weights(e, lambda s: s.update(fc=s["fc.bias"].double()) or s.update(
        {"fc.bias": s.pop("fc")})),
    "int-tensor+rehash": lambda e, x: _edit_weights(e, lambda s: s.update({"fc.bias": s["fc.bias"].long()})),
    "other-width-weights+rehash": lambda e, x: _edit_weights(e, lambda s: s.update(
        {"bn1.weight": torch.ones(16), "bn1.bias": torch.zeros(16)})),
    "folder-renamed-to-width-64": lambda e, x: e.rename(e.with_name(R50)),
    "source-kind-a-list": lambda e, x: _edit_provenance(e, lambda p: p["source"].update(kind=["x"])),
    "weights-a-link-outside": lambda e, x: _link_outside(e, "model.safetensors"),
    "provenance-a-link-outside": lambda e, x: _link_outside(e, PROVENANCE_NAME),
    "weights-a-fifo": lambda e, x: ((e / "model.safetensors").unlink(), os.mkfifo(e / "model.safetensors")),
    "untouched": lambda e, x: None,
}


@pytest.fixture(scope="module")
def pristine_entry(tmp_path_factory) -> Path:
    """A width-8 entry of R50 installed from the official-code fixture, copied for every tampering."""
    from timm_assemble.weights.official import install_checkpoint

    root = tmp_path_factory.mktemp("pristine")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIMM_ASSEMBLE_CACHE", str(root))
        return install_checkpoint(R50, CLOVA_TF / FIXTURE[R50] / "model.ckpt", {"kind": "installed checkpoint"}).path


def _verdicts(cache: Path) -> tuple[bool, bool, str]:
    """(verify says ok, loading succeeds, its error) for the entry folder in `cache`."""
    (folder,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    width = int(folder.name.rpartition("-w")[2]) if "-w" in folder.name else 64
    assert cli.main(["weights", "list"]) == 0  # lists any entry, readable or not
    code = cli.main(["weights", "verify", R50])
    try:
        timm.create_model(R50, pretrained=True, width=width)
    except TimmAssembleError as err:
        return code == 0, False, str(err)
    return code == 0, True, ""


def _tampered_cache(pristine: Path, tmp_path: Path, monkeypatch, tampers: list[str], x: float) -> Path:
    """A copy of the pristine entry in a fresh cache (offline, official source off), tampered in turn."""
    cache = Path(tempfile.mkdtemp(dir=tmp_path))
    shutil.copytree(pristine, cache / pristine.name)
    monkeypatch.setenv("TIMM_ASSEMBLE_CACHE", str(cache))
    monkeypatch.setenv("TIMM_ASSEMBLE_OFFICIAL_SOURCE", "0")
    go_offline(monkeypatch, tmp_path / "hub")
    for tamper in tampers:
        entry = next(p for p in cache.iterdir() if not p.name.startswith("."))
        # undone or made impossible by another tampering (torch: -inf into an integer tensor is a RuntimeError)
        undone = (OSError, ValueError, LookupError, TypeError, AttributeError, RuntimeError, SafetensorError)
        with contextlib.suppress(*undone):
            TAMPERINGS[tamper](entry, x)
    return cache


def _assert_same_verdict(cache: Path, capsys, tampers: list[str]) -> bool:
    """Verify's verdict and loading's are the same, and a refusal gives the same one-line reason; returns it."""
    verify_ok, load_ok, error = _verdicts(cache)
    report = capsys.readouterr()
    assert verify_ok == load_ok, (tampers, report.out, report.err, error)
    if not verify_ok:  # for the same reason, one line
        problem = report.out.split("\n    ", 1)[1].splitlines()[0]
        assert problem in error and "\n" not in error
    return verify_ok


@pytest.mark.parametrize("tamper", sorted(TAMPERINGS))
def test_verify_and_load_agree_on_each_tampering(pristine_entry, tmp_path, monkeypatch, capsys, tamper):
    """`weights verify` and `pretrained=True` call one validator: ok exactly when the entry loads, else the
    same problem in both (a tampered name or width was 'nothing cached' / 'ok' before)."""
    cache = _tampered_cache(pristine_entry, tmp_path, monkeypatch, [tamper], 0.5)
    assert _assert_same_verdict(cache, capsys, [tamper]) == (tamper in ("untouched", "float64-tensor+rehash"))


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tampers=st.lists(st.sampled_from(sorted(TAMPERINGS)), min_size=1, max_size=3, unique=True), x=st.floats(0, 0.99))
@example(tampers=["weights-a-fifo", "nan-tensor+rehash", "flip-a-weights-byte"], x=0.5)  # no reader opens the FIFO
@example(tampers=["weights-a-link-outside", "weights-a-fifo", "truncate-weights"], x=0.5)
@example(tampers=["config-a-list+rehash", "int-tensor+rehash", "inf-bias+rehash"], x=0.0)
def test_verify_and_load_agree_on_random_tamperings(pristine_entry, tmp_path, monkeypatch, capsys, tampers, x):
    """Any combination (a forged hash may make a flipped byte a valid weight: then both load it)."""
    _assert_same_verdict(_tampered_cache(pristine_entry, tmp_path, monkeypatch, tampers, x), capsys, tampers)
