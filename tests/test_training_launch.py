"""`accelerate launch ... train.py` as users type it: kill -9 and `--resume auto`, bf16 on CPU with TensorBoard.

The command lines are those of issue 13 with test-sized numbers (width-8 model, a few images, small batches)
and `--workers 0`; they run train.py in a subprocess under the real launcher, output going to a file.
"""

from __future__ import annotations

import os
import signal

import pytest
from launch_testing import finish, metrics_rows, start, wait_for
from training_helpers import tiny_data


@pytest.mark.slow
def test_kill_9_after_the_first_checkpoint_then_resume_auto(tmp_path):
    data = tiny_data(tmp_path / "data", classes=2, train=16, val=4, size=64)  # 32 images: 4 steps of 8
    out = tmp_path / "run"
    args = ["train.py", "--preset", "e11", "--teacher", "none", "--epochs", "2", "--warmup-epochs", "1"]
    args += ["--img-size", "64", "--batch-size", "8", "--data-dir", str(data), "--output-dir", str(out)]
    args += ["--model-kwargs", "width=8", "--workers", "0"]
    proc = start(args, tmp_path / "first.log")
    wait_for(tmp_path / "first.log", "saved checkpoint (epoch 1", proc)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the launcher and the training process
    assert proc.wait(60) == -signal.SIGKILL
    first = (tmp_path / "first.log").read_text()
    assert "epoch 2/2  train loss" not in first, "the run finished before it was killed"
    rows = metrics_rows(out)  # written after the checkpoint: the kill may have come before it
    assert [r["epoch"] for r in rows] in ([1], [])

    resumed = finish([*args, "--resume", "auto"], tmp_path / "resumed.log")
    assert "resumed from" in resumed and "at epoch 1, step 4" in resumed
    rows = metrics_rows(out)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["step"] == 8
    assert (out / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_bf16_on_cpu_with_tensorboard_and_plain_progress_lines(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = tiny_data(tmp_path / "data", classes=2, train=8, val=2)  # 16 images: 4 steps of 4
    out = tmp_path / "out"
    args = ["--mixed_precision", "bf16", "train.py", "--preset", "e11", "--teacher", "none"]
    args += ["--model-kwargs", "width=8", "--epochs", "1", "--warmup-epochs", "0", "--img-size", "32"]
    args += ["--batch-size", "4", "--log-with", "tensorboard", "--log-interval", "2", "--data-dir", str(data)]
    args += ["--output-dir", str(out), "--workers", "0"]
    text = finish(args, tmp_path / "run.log")
    assert "mixed precision: bf16 (chosen by accelerate launch / accelerate config)" in text
    assert "KD: off (--teacher none)" in text
    assert "\r" not in text  # no progress bar redraws in a file
    progress = [line for line in text.splitlines() if line.startswith("epoch 1/1  ") and " ETA " in line]
    assert [line.split()[2] for line in progress] == ["2/4", "4/4"]  # one line per log interval
    (events,) = out.glob("timm-assemble/events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload()
    assert [e.step for e in scalars.Scalars("train/loss")] == [2, 4]
    assert [e.step for e in scalars.Scalars("train/keep_prob")] == [2, 4]
    assert len((out / "summary.csv").read_text().splitlines()) == 2  # header + one row per epoch
