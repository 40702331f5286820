"""`timm-assemble study`: rungs, the e0-relative mCE, per-rung claims, and a real 3-rung study that is interrupted
and resumed (tiny width, 32 px, 1 epoch, synthetic shapes)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import tiny_data

from timm_assemble.cli import main
from timm_assemble.errors import TimmAssembleError
from timm_assemble.evaluation.robustness import robustness
from timm_assemble.fileio import sha256_file, write_new
from timm_assemble.training import engine
from timm_assemble.training import study as library
from timm_assemble.training.config import format_config


def test_rungs_parse_in_ladder_order_and_unknown_ones_are_named():
    assert library.parse_rungs("e6, e0,e3,e0") == ["e0", "e3", "e6"]
    assert library.parse_rungs("all") == list(library.LADDER) == [f"e{i}" for i in range(13)]
    with pytest.raises(TimmAssembleError, match="unknown rung.*e13"):
        library.parse_rungs("e0,e13")


def test_what_each_rung_adds_comes_from_its_preset_without_the_papers_numbers():
    assert library.what_it_adds("E3: ResNet-50-D + label smoothing + mixup. Paper: 79.10 top-1, 200 epochs.") == (
        "ResNet-50-D + label smoothing + mixup"
    )
    assert [library.distills(r) for r in ("e6", "e7", "e11")] == [False, True, True]


def test_kd_rungs_distil_only_with_a_teacher_for_the_users_classes(tmp_path):
    plain = library.StudyOptions(str(tmp_path), train=dict(data_dir=str(tmp_path), epochs=2))
    cfg, notes = library.rung_config(plain, "e7")
    assert cfg.teacher == "none" and "KD off" in notes[0] and cfg.output_dir == str(tmp_path / "e7")
    given = library.StudyOptions(str(tmp_path), train=dict(teacher_logits="t.safetensors", epochs=2))
    assert library.rung_config(given, "e7")[0].teacher_logits == "t.safetensors"
    assert library.rung_config(given, "e6")[0].teacher_logits is None  # KD flags go to the KD rungs only
    pretrained = library.StudyOptions(str(tmp_path), train=dict(epochs=2), start_from="pretrained")
    assert library.rung_config(pretrained, "e11")[0].pretrained == "default"
    cfg, notes = library.rung_config(pretrained, "e0")
    assert cfg.pretrained == "none" and "trains from scratch" in notes[0]


def test_mce_is_relative_to_rung_e0_on_the_same_corrupted_images():
    e0 = dict(
        input_size=[3, 32, 32], corruptions=["a", "b"], error={"a": {"3": 40.0}, "b": {"3": 20.0}}, ce_reference=None
    )
    better = dict(e0, error={"a": {"3": 20.0}, "b": {"3": 30.0}})  # CE 50% and 150%
    other_size = dict(better, input_size=[3, 64, 64])
    rows = [dict(rung="e0", robustness=e0), dict(rung="e3", robustness=better), dict(rung="e6", robustness=other_size)]
    values, note = library.mce_column(rows)
    assert values == [100.0, 100.0, None] and "relative to rung e0" in note
    other_set = [*rows[:2], dict(rung="e6", robustness=dict(better, corruption_set="imagenet-c"))]
    assert library.mce_column(other_set)[0] == [100.0, 100.0, None]  # other constants: not comparable
    assert library.mce_column(rows[1:])[0] == [None, None]  # no e0: no reference
    imagenet = [
        dict(r, robustness=dict(r["robustness"], ce_reference="alexnet", mce=60.0 + i)) for i, r in enumerate(rows)
    ]
    assert library.mce_column(imagenet) == ([60.0, 61.0, 62.0], library.mce_column(imagenet)[1])
    assert "AlexNet" in library.mce_column(imagenet)[1]
    cifar10 = [
        dict(r, robustness=dict(r["robustness"], ce_reference="robustbench-standard", mce=70.0 + i))
        for i, r in enumerate(rows)
    ]
    values, note = library.mce_column(cifar10)
    assert values == [70.0, 71.0, 72.0] and "RobustBench Standard WRN-28-10's published errors (cifar-c" in note
    mixed = [*cifar10[:2], dict(rows[2], robustness=dict(rows[2]["robustness"], ce_reference="alexnet", mce=1.0))]
    assert "relative to rung e0" in library.mce_column(mixed)[1]  # two references: not one scale


def test_mce_names_why_e0_has_no_corruption_errors_when_e0_is_in_the_study():
    off = "corruptions off (--corruptions none)"
    rows = [dict(rung=r, robustness=None, robustness_note=off) for r in ("e0", "e3")]
    values, note = library.mce_column(rows)
    assert values == [None, None] and "needs rung e0" not in note and off in note


def plan(tmp_path, rungs, **train):
    opts = library.StudyOptions(str(tmp_path / "study"), rungs=rungs, train=dict(data_dir=str(tmp_path), **train))
    return opts, {r: library.rung_config(opts, r) for r in rungs}


def test_resume_refuses_a_rung_trained_under_other_settings_before_anything_trains(tmp_path):
    old, planned = plan(tmp_path, ["e0", "e3"], epochs=1, img_size=32)
    for rung, (cfg, _) in planned.items():
        (tmp_path / "study" / rung).mkdir(parents=True)
        (tmp_path / "study" / rung / "config.toml").write_text(format_config(cfg))
    (tmp_path / "study" / "e0" / library.MARKER).write_text("{}")  # e0 complete, e3 interrupted
    library.check_resumable(dataclasses.replace(old, resume="auto"), planned)  # same settings: kept / resumed
    faster, replanned = plan(tmp_path, ["e0", "e3"], epochs=1, img_size=32, workers=7, log_interval=3)
    library.check_resumable(dataclasses.replace(faster, resume="auto"), replanned)  # how it runs, not what
    with pytest.raises(TimmAssembleError, match="pass --resume auto to keep it"):
        library.check_resumable(old, planned)
    new, replanned = plan(tmp_path, ["e0", "e3"], epochs=2, img_size=64)
    new.resume = "auto"
    with pytest.raises(TimmAssembleError) as err:
        library.check_resumable(new, replanned)
    message = str(err.value)
    assert "rungs e0, e3" in message and "epochs 1 -> 2" in message and "img_size 32 -> 64" in message
    assert "--rungs e0,e3 --overwrite" in message
    library.check_resumable(dataclasses.replace(new, overwrite=True), replanned)


def test_a_study_whose_rung_another_live_study_holds_writes_no_table_and_fails(tmp_path, capsys, fresh_accelerate):
    opts, _ = plan(tmp_path, ["e0"], epochs=1)
    study = tmp_path / "study"
    study.mkdir()
    other = dict(pid=os.getppid(), host=socket.gethostname(), started="now")  # alive, not us
    library.claim_path(study, "e0").write_text(json.dumps(other))
    with pytest.raises(TimmAssembleError, match=f"no table: e0 is held by PID {os.getppid()}"):
        library.run_study(opts)
    assert "e0: skipped, claimed by" in capsys.readouterr().out
    assert sorted(p.name for p in study.iterdir()) == [".e0.claim"]  # no study.md/csv/json/png


def test_a_final_table_is_current_only_for_exactly_the_complete_rungs(tmp_path):
    records = [dict(rung="e0", top1=50.0), dict(rung="e3", top1=60.0)]
    (tmp_path / "study.md").write_text("| rung |\n")
    (tmp_path / "study.json").write_text(json.dumps(dict(missing=[], rungs=records)))
    assert library.current_table(tmp_path, records)["rungs"] == records
    assert library.current_table(tmp_path, records[:1]) is None  # another rung completed since
    assert library.current_table(tmp_path, [records[0], dict(records[1], top1=61.0)]) is None  # e3 retrained
    (tmp_path / "study.json").write_text(json.dumps(dict(missing=["e6"], rungs=records)))
    assert library.current_table(tmp_path, records) is None  # written as partial


def test_a_rung_is_claimed_by_one_live_process_and_a_dead_owners_claim_is_taken_over(tmp_path):
    assert write_new(tmp_path / "x", "first") and not write_new(tmp_path / "x", "second")
    assert (tmp_path / "x").read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["x"]
    other = dict(pid=os.getppid(), host=socket.gethostname(), started="now")  # alive, not us
    library.claim_path(tmp_path, "e0").write_text(json.dumps(other))
    assert library.claim(tmp_path, "e0") is None and f"PID {os.getppid()}" in library.claim_owner(tmp_path, "e0")
    library.release(tmp_path, "e0")  # not ours: stays
    assert library.claim_path(tmp_path, "e0").exists()
    dead = dict(other, pid=2**22 + 12345)  # above Linux's pid_max: no such process
    library.claim_path(tmp_path, "e0").write_text(json.dumps(dead))
    assert library.claim(tmp_path, "e0")["pid"] == os.getpid()
    library.release(tmp_path, "e0")
    assert not library.claim_path(tmp_path, "e0").exists()


def snapshot(folder):
    """Every file's content hash and modification time."""
    return {p.relative_to(folder): (sha256_file(p), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_study_killed_in_its_second_rung_resumes_training_only_what_is_left(
    tmp_path, monkeypatch, fresh_accelerate, capsys
):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    data = tiny_data(tmp_path / "data", classes=3, train=16, val=4)
    study = tmp_path / "study"
    flags = [
        "study", "--data-dir", str(data), "--output-dir", str(study), "--epochs", "2", "--img-size", "32",
        "--model-kwargs", "width=8", "--batch-size", "16", "--workers", "0", "--corruptions", "gaussian_noise",
        "--severities", "3", "--bench-repeats", "1", "--bench-batch-size", "2",
    ]  # fmt: skip
    trained, epochs, kill = [], [], {"e3": 1}  # Ctrl-C in e3's second epoch, after its first checkpoint
    real_run, real_epoch = engine.run, engine.train_one_epoch

    def run_spy(cfg, command=None, **kwargs):
        trained.append(cfg.preset)
        return real_run(cfg, command, **kwargs)

    def epoch_spy(run, epoch):
        if kill.get(run.cfg.preset) == epoch:
            raise KeyboardInterrupt
        epochs.append((run.cfg.preset, epoch))
        return real_epoch(run, epoch)

    monkeypatch.setattr(engine, "run", run_spy)
    monkeypatch.setattr(engine, "train_one_epoch", epoch_spy)
    assert main([*flags, "--rungs", "e0"]) == 0
    first = snapshot(study / "e0")
    assert any(p.parts[0] == "checkpoints" for p in first) and (study / "e0" / "model" / "config.json").is_file()

    rungs = ["--rungs", "e0,e3,e6"]
    assert main([*flags, *rungs]) == 2  # e0 is finished: keeping it needs --resume auto
    assert main([*flags, *rungs, "--resume", "auto"]) == 130
    assert trained == ["e0", "e3"] and not library.claim_path(study, "e3").exists()
    assert not (study / "e3" / library.MARKER).exists() and (study / "e3" / "checkpoints" / "last").is_dir()

    kill.clear()
    del epochs[:]
    assert main([*flags, *rungs, "--resume", "auto"]) == 0
    assert trained == ["e0", "e3", "e3", "e6"]  # e0 kept
    assert epochs == [("e3", 1), ("e6", 0), ("e6", 1)]  # e3 resumed from its checkpoint, e6 trained
    assert snapshot(study / "e0") == first

    rows = list(csv.DictReader((study / "study.csv").open()))
    assert [r["rung"] for r in rows] == ["e0", "e3", "e6"] and rows[0]["mce"] == "100.0"
    assert {r["corruption_set"] for r in rows} == {"cifar-c"}  # 32 px validation images: CIFAR-10-C's corruptions
    assert all(float(r["img_per_s"]) > 0 and float(r["params_m"]) > 0 and float(r["gmacs"]) > 0 for r in rows)
    report = json.loads((study / "study.json").read_text())
    assert report["missing"] == [] and report["rows"][2]["adds"].startswith("ResNet-50-D + SK")
    assert float(rows[2]["delta_e0"]) == pytest.approx(float(rows[2]["top1"]) - float(rows[0]["top1"]), abs=0.02)
    markdown = (study / "study.md").read_text()
    assert markdown.startswith("| rung | what it adds | top-1 | Δ prev | Δ e0 |") and "| e6 |" in markdown
    assert "| mCE | corruption set |" in markdown and "| cifar-c |" in markdown
    assert "Corruption set cifar-c: shorter side 32 (bilinear), square centre crop, corrupted at 32 px." in markdown
    assert (study / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    before = snapshot(study)
    other = [*flags, *rungs, "--resume", "auto", "--epochs", "1", "--img-size", "64"]  # the last of a flag wins
    assert main(other) == 2  # other settings: refused before anything trains
    assert "epochs 2 -> 1; img_size 32 -> 64" in capsys.readouterr().err and snapshot(study) == before


def test_a_training_run_folder_is_no_study_folder(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.toml").write_text('model = "assemble_resnet50"\n')
    assert main(["study", "--rungs", "e0", "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"--output-dir {tmp_path / 'run'} is a training run folder (config.toml)" in err and err.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.toml"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--rungs", "e0"], "--output-dir STUDY is required"),
        (["--model", "resnet50", "--output-dir", "x"], "--model does not apply to a study"),
        (["--pretrained", "default", "--output-dir", "x"], "use --from pretrained"),
        (["--rungs", "e0,e42", "--output-dir", "x"], "unknown rung(s) e42"),
        (["--rungs", "all,e0", "--output-dir", "x"], "'all' is every rung (e0..e12) and stands alone"),
        (["--rungs", ",", "--output-dir", "x"], "--rungs ',' names no rung; pass --rungs all"),
        (["--resume", "ckpt/last", "--output-dir", "x"], "a study resumes with --resume auto"),
    ],
)
def test_bad_study_flags_are_one_line_and_exit_2(flags, message, capsys):
    assert main(["study", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def launch_two_processes(args: list[str], log, timeout: float = 300) -> int:
    """`accelerate launch --multi_gpu --num_processes 2` on CPU (gloo), output to a file; the process group is
    killed if it outlives `timeout`."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONPATH=str(root), PYTHONUNBUFFERED="1")
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    with log.open("w") as f:
        proc = subprocess.Popen([*launch, *args], cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_a_study_under_two_processes_trains_each_rung_on_both_and_writes_one_final_table(tmp_path):
    data = tiny_data(tmp_path / "data", classes=3, train=8, val=3)  # 24 train images, 9 (odd) validation images
    study, log = tmp_path / "study", tmp_path / "study.log"
    args = [
        "-m", "timm_assemble", "study", "--rungs", "e0,e3", "--data-dir", str(data), "--output-dir", str(study),
        "--epochs", "1", "--img-size", "32", "--model-kwargs", "width=8", "--batch-size", "4", "--workers", "0",
        "--corruptions", "gaussian_noise", "--severities", "3", "--robustness-images", "3", "--bench-repeats", "1",
        "--bench-batch-size", "2",
    ]  # fmt: skip
    rc = launch_two_processes(args, log)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "2 processes: every rung trains data-parallel on all of them" in text
    assert text.count("2 process(es) on cpu") == 2 and text.count("3 updates/epoch") == 2  # 24 / (2 x 4)
    assert text.count("data: 24 train / 9 val images") == 2  # e3's mixup pairs load each image twice: still 24
    for rung in ("e0", "e3"):
        rows = [json.loads(line) for line in (study / rung / "metrics.jsonl").read_text().splitlines()]
        assert [(r["epoch"], r["val_images"]) for r in rows] == [(1, 9)]  # every validation image once
    assert text.count(f"wrote {study / 'study.md'}") == 1 and text.count("| rung | what it adds |") == 1
    report = json.loads((study / "study.json").read_text())
    assert [r["rung"] for r in report["rows"]] == ["e0", "e3"] and report["missing"] == []
    assert report["rows"][0]["mce"] == 100.0
    assert not list(study.glob(".*.claim")) and not (study / ".timm-assemble.lock").exists()
    # each process corrupted and scored its share of the 3 images: together, what one process measures of them
    measured = json.loads((study / "e0" / library.MARKER).read_text())["robustness"]
    alone = robustness(
        f"local-dir:{study / 'e0' / 'model'}", measured["data_dir"], corruptions="gaussian_noise", severities="3",
        limit=3, img_size=32, batch_size=4, workers=0,
    )  # fmt: skip
    assert measured["error"] == alone["error"] and measured["num_images"] == {"gaussian_noise": {"3": 3}}
