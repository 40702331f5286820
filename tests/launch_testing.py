"""`accelerate launch ...` as users type it, in a subprocess with its output going to a file (not a terminal).

One process: `ONE_PROCESS`; two real ranks on CPU (gloo): `TWO_PROCESSES`, the form the README gives for a
laptop. Every launch runs in its own session so that a test can kill the launcher alone or with its workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
ONE_PROCESS = ["--cpu", "--num_processes", "1"]
TWO_PROCESSES = ["--multi_gpu", "--num_processes", "2", "--main_process_port", "0"]  # with ACCELERATE_USE_CPU=1
TIMEOUT_S = 600


def launch_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    return env


def start(args: list[str], log: Path, launcher: list[str] = ONE_PROCESS, **env: str) -> subprocess.Popen:
    with log.open("w") as f:  # the child keeps its own handle: output goes to a file, not a terminal
        return subprocess.Popen(
            [*ACCELERATE, *launcher, *args], cwd=ROOT, env=launch_env(**env), stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_for(log: Path, text: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while text not in log.read_text():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before printing {text!r}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no {text!r} after {TIMEOUT_S} s")
        time.sleep(0.1)


def finish(args: list[str], log: Path, launcher: list[str] = ONE_PROCESS, rc: int = 0, **env: str) -> str:
    proc = start(args, log, launcher, **env)
    try:
        proc.wait(TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert (proc.returncode == 0) == (rc == 0), text[-3000:]
    return text


def workers(proc: subprocess.Popen) -> list[psutil.Process]:
    """The training processes a launcher started (its descendants running Python)."""
    return [p for p in psutil.Process(proc.pid).children(recursive=True) if "python" in p.name().lower()]


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by whatever adopted it, maybe late)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still running after `timeout` seconds (killed then, so that no test leaves any)."""
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.02)
    alive = [p for p in processes if _running(p)]
    for p in alive:
        p.kill()
    return alive


def metrics_rows(out: Path) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
