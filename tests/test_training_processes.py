"""Several processes as one job: the launch checked against the process group, one voice, no orphans, and
two real ranks on CPU (gloo) training, validating and resuming as one process would."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import psutil
import pytest
import torch
from launch_testing import ROOT, TWO_PROCESSES, finish, launch_env, metrics_rows, start, wait_for, wait_gone, workers
from training_helpers import tiny_data

from timm_assemble import processes
from timm_assemble.cli import main as cli_main
from timm_assemble.errors import SharedError, exit_code
from timm_assemble.locks import FolderLock

CPU_FIX = "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2"


@pytest.mark.parametrize(
    "args, asked",
    [
        (["/usr/bin/accelerate", "launch", "--cpu", "--num_processes", "2", "train.py"], 2),
        (["python", "-m", "accelerate.commands.launch", "--num-processes=3", "-m", "timm_assemble", "train"], 3),
        (["accelerate", "launch", "train.py", "--num_processes", "4"], None),  # the script's own flag
        (["python", "train.py", "--num_processes", "2"], None),
        (["bash"], None),
    ],
)
def test_the_request_read_from_an_accelerate_launch_command_line(args, asked, monkeypatch):
    monkeypatch.setattr("accelerate.commands.config.default_config_file", "/nonexistent/default_config.yaml")
    assert processes.accelerate_launch_request(args) == asked


def test_the_request_read_from_the_accelerate_config_the_launcher_reads(tmp_path):
    config = tmp_path / "multi_cpu.yaml"  # MULTI_CPU without mpirun: accelerate starts ONE process
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_processes: 2\n")
    launch = ["accelerate", "launch", "--config_file", str(config)]
    assert processes.accelerate_launch_request([*launch, "train.py"]) == 2
    assert processes.accelerate_launch_request([*launch, "--num_processes", "3", "train.py"]) == 3


def test_a_launch_larger_than_the_process_group_stops_with_the_command_that_works(monkeypatch):
    for name in (*processes.WORLD_SIZE_VARS, *processes.RANK_VARS, "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["train.py", "--epochs", "2"])
    processes.check_launch(1, cuda_available=False)  # no launcher: nothing to compare
    monkeypatch.setenv("WORLD_SIZE", "2")
    processes.check_launch(1, cuda_available=False)  # exported by a job script, no rank: no launch yet
    monkeypatch.setenv("RANK", "0")
    processes.check_launch(2, cuda_available=False)  # the process group holds them all
    with pytest.raises(
        SharedError, match=r"asked for 2 processes \(WORLD_SIZE=2\)"
    ) as no_gpu:  # each rank alone: --multi_gpu without CUDA
        processes.check_launch(1, cuda_available=False)
    assert "--multi_gpu needs CUDA GPUs" in str(no_gpu.value) and f"{CPU_FIX} train.py --epochs 2" in str(no_gpu.value)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SharedError) as other_rank:
        processes.check_launch(1, cuda_available=False)
    assert not other_rank.value.main and exit_code("train.py", other_rank.value) == 2  # said once, by rank 0

    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(processes, "_parent_args", lambda: ["accelerate", "launch", "--cpu", "--num_processes", "2"])
    with pytest.raises(SharedError, match="single-process launcher ran") as cpu_flag:
        processes.check_launch(1, cuda_available=False)
    assert f"{CPU_FIX} train.py --epochs 2" in str(cpu_flag.value)


def test_commands_that_are_not_data_parallel_refuse_several_processes(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert cli_main(["benchmark", "--models", "resnet18"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "benchmark runs in one process (WORLD_SIZE=2 asked for 2)" in line


def test_one_voice_other_ranks_print_nothing_but_errors(monkeypatch, capsys, caplog):
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # put back after the test
    for rank, expected in (("0", ["a log warning", "an error"]), ("1", ["an error"])):
        monkeypatch.setenv("RANK", rank)
        caplog.clear()
        with warnings.catch_warnings(record=True) as shown:
            try:
                processes.quiet_unless_main()
                print("stdout line")
                warnings.warn("a warning", stacklevel=1)
                logging.getLogger("x").warning("a log warning")
                logging.getLogger("x").error("an error")
            finally:
                logging.disable(logging.NOTSET)
        assert [r.getMessage() for r in caplog.records] == expected
        assert len(shown) == (rank == "0")
    assert capsys.readouterr().out == "stdout line\n"  # rank 0's


WATCHED = textwrap.dedent("""
    import pathlib, sys, time
    from timm_assemble.processes import LauncherWatch, Stopped
    marker = pathlib.Path(sys.argv[1])
    with LauncherWatch(interval=0.05, grace=float(sys.argv[2])):
        try:
            marker.with_suffix(".started").write_text("")
            while True:
                time.sleep(0.05)
        finally:
            marker.write_text("unwound")
            if sys.argv[3] == "stuck":  # a main thread that cannot unwind (a collective waiting for a dead peer)
                while True:
                    try:
                        time.sleep(1)
                    except Stopped:
                        pass
""")


@pytest.mark.slow  # a subprocess importing torch: seconds
@pytest.mark.parametrize("stuck", ["unwinds", "stuck"])
def test_a_worker_whose_launcher_is_killed_stops_and_unwinds(tmp_path, stuck):
    """kill -9 of the launcher re-parents its worker; the worker stops within a fraction of a second and runs
    its cleanup (and exits after the grace period when it cannot finish it)."""
    marker = tmp_path / "worker"
    script = tmp_path / "worker.py"
    script.write_text(WATCHED)
    launcher = subprocess.Popen(
        ["bash", "-c", f'"{sys.executable}" {script} {marker} 1.0 {stuck} & wait'],
        env=launch_env(LOCAL_RANK="0"), cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.with_suffix(".started").exists():
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.05)
    (worker,) = psutil.Process(launcher.pid).children()
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    killed = time.monotonic()
    while not marker.exists() and time.monotonic() < killed + 1.0:
        time.sleep(0.01)
    assert marker.exists(), "the worker did not stop within a second of its launcher's death"
    # its exit: an interpreter with torch loaded takes seconds to tear down; the stuck one exits at once
    assert not wait_gone([worker], timeout=20 if stuck == "unwinds" else 3.0)


# -------------------------------------------------------------------------------------------- two real ranks


def _data(tmp_path):
    # 3 classes x 16 train images, 3 x 5 = 15 validation images: odd, so the last batch is uneven across 2 ranks
    return tiny_data(tmp_path / "data", classes=3, train=16, val=5, size=32)


def _args(script, data, out, epochs=2):
    args = [script, "--model", "assemble_resnet50", "--model-kwargs", "width=8", "--epochs", str(epochs)]
    args += ["--img-size", "32", "--batch-size", "8", "--data-dir", str(data)]
    args += ["--output-dir", str(out), "--workers", "0", "--seed", "3"]
    if script == "finetune.py":
        return [*args, "--pretrained", "none", "--warmup-epochs", "0"]
    return [*args, "--preset", "e11", "--teacher", "none"]  # e11's 5 warm-up epochs do not fit: a warning


def _said_once(text, *lines):
    for line in lines:
        assert text.count(line) == 1, f"{line!r} said {text.count(line)} times:\n{text[-3000:]}"


def _check_run(out, text, epochs, first_epoch=1):
    """Outputs written once by the main process; every validation image counted once; per-rank RNG states."""
    rows = metrics_rows(out)
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert all(r["val_images"] == 15 for r in rows)  # accelerate's padding of the uneven shards dropped
    assert "2 process(es)" in text and "3 updates/epoch" in text  # 48 images, 8 per rank: 6 in one process
    _said_once(text, *(f"saved checkpoint (epoch {e}, " for e in range(first_epoch, epochs + 1)), "  output: ")
    assert len((out / "summary.csv").read_text().splitlines()) == epochs + 1
    assert {p.name for p in (out / "checkpoints" / "last").glob("random_states_*.pkl")} == {
        "random_states_0.pkl", "random_states_1.pkl"
    }  # fmt: skip
    for name in ("curves.png", "confusion_matrix.png", "model/model.safetensors", "config.toml"):
        assert (out / name).is_file(), name
    assert not [p.name for p in out.rglob(".*") if p.name != ".timm-assemble.lock"]  # no temporary leftovers
    return rows


def _killed(ranks, out):
    """No worker outlives the kill (within a bounded time); the run folder's lock is free."""
    assert len(ranks) == 2 and not wait_gone(ranks, timeout=30), "a worker outlived the kill"
    FolderLock(out, "output dir", "").acquire().release()


@pytest.mark.slow
def test_train_on_two_processes_kill_9_of_the_launcher_then_resume_auto(tmp_path, capsys):
    """Launched, killed with its workers orphaned, resumed: the same epochs as a run never killed."""
    data = _data(tmp_path)
    whole = finish(_args("train.py", data, tmp_path / "whole"), tmp_path / "whole.log", TWO_PROCESSES,
                   ACCELERATE_USE_CPU="1")  # fmt: skip
    expected = _check_run(tmp_path / "whole", whole, 2)
    _said_once(whole, "warm-up of 5 epochs does not fit 2 epochs")  # one voice: not once per rank

    out = tmp_path / "run"
    proc = start(_args("train.py", data, out), tmp_path / "first.log", TWO_PROCESSES, ACCELERATE_USE_CPU="1")
    wait_for(tmp_path / "first.log", "saved checkpoint (epoch 1", proc)
    ranks = workers(proc)
    os.kill(proc.pid, signal.SIGKILL)  # the launcher alone: its workers are in their own process groups
    _killed(ranks, out)
    assert "epoch 2/2  train loss" not in (tmp_path / "first.log").read_text()

    resumed = finish([*_args("train.py", data, out), "--resume", "auto"], tmp_path / "resumed.log", TWO_PROCESSES,
                     ACCELERATE_USE_CPU="1")  # fmt: skip
    _said_once(resumed, "resumed from", "epoch 2/2  train loss")
    rows = _check_run(out, resumed, 2, first_epoch=2)
    same = ("train_loss", "val_loss", "top1", "step", "val_images")  # restored RNG states: the same epoch 2
    assert [{k: r[k] for k in same} for r in rows] == [{k: r[k] for k in same} for r in expected]

    # the run's top-1 of its exported (best) model is what one process measures with `validate`
    best = next(r for r in rows if r["epoch"] == rows[-1]["best_epoch"])
    args = ["validate", "--model", f"local-dir:{out / 'model'}", "--data-dir", str(data / "val")]
    assert cli_main([*args, "--json", str(tmp_path / "validate.json")]) == 0
    assert "\r" not in capsys.readouterr().err  # progress off a terminal: plain lines, no bar redraws
    measured = json.loads((tmp_path / "validate.json").read_text())
    assert measured["num_images"] == 15 and measured["top1"] == pytest.approx(best["top1"], abs=1e-3)
    assert measured["loss"] == pytest.approx(best["val_loss"], rel=1e-4)


@pytest.mark.slow
def test_finetune_on_two_processes_kill_9_of_one_worker_then_resume_auto(tmp_path):
    data = _data(tmp_path)
    out = tmp_path / "run"
    proc = start(_args("finetune.py", data, out), tmp_path / "first.log", TWO_PROCESSES, ACCELERATE_USE_CPU="1")
    wait_for(tmp_path / "first.log", "saved checkpoint (epoch 1", proc)
    ranks = workers(proc)
    ranks[-1].kill()  # one rank dies: torchrun stops the other
    _killed(ranks, out)
    assert proc.wait(60) != 0

    resumed = finish([*_args("finetune.py", data, out), "--resume", "auto"], tmp_path / "resumed.log",
                     TWO_PROCESSES, ACCELERATE_USE_CPU="1")  # fmt: skip
    _said_once(resumed, "resumed from", "epoch 2/2  train loss")
    _check_run(out, resumed, 2, first_epoch=2)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the launch that degrades is that of a machine without GPUs")
def test_accelerate_launch_cpu_with_two_processes_stops_with_one_line_and_writes_nothing(tmp_path):
    """accelerate runs `--cpu` in its single-process launcher: the request is read from its command line.
    (`--multi_gpu` without CUDA, two ranks that each see one, is the WORLD_SIZE case tested above.)"""
    out = tmp_path / "run"
    text = finish(
        _args("train.py", _data(tmp_path), out, epochs=1), tmp_path / "run.log", ["--cpu", "--num_processes", "2"], rc=2
    )
    ours = text.split("RuntimeError: ")[0]  # then accelerate's launcher echoes the process's stderr
    errors = [line for line in ours.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1 and f"run: {CPU_FIX} train.py " in errors[0], text[-3000:]
    assert not out.exists()


def test_sync_bn_as_timm_recorded_and_refused_on_cpu_processes(tmp_path):
    from types import SimpleNamespace

    from timm_assemble.training.config import format_config, resolve_config
    from timm_assemble.training.engine import check_sync_bn

    (tmp_path / "args.yaml").write_text("model: resnet18\nval_split: validation\nsync_bn: true\n")
    from_timm = resolve_config("train", {}, config_file=str(tmp_path / "args.yaml"))
    assert from_timm.sync_bn and "sync_bn = true" in format_config(from_timm)
    assert not resolve_config("train", {}).sync_bn  # off by default: per-replica BatchNorm, as the official recipe
    cpu_ranks = SimpleNamespace(num_processes=2, device=torch.device("cpu"), is_main_process=True)
    with pytest.raises(SharedError, match="--sync-bn: SyncBatchNorm needs GPUs"):
        check_sync_bn(from_timm, cpu_ranks)
    check_sync_bn(from_timm, SimpleNamespace(num_processes=1, device=torch.device("cpu"), is_main_process=True))
