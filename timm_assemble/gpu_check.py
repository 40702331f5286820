"""The first run on a GPU machine, as one command: every path that only a GPU exercises, each step a subprocess
(a failing step is recorded and the next one runs), one JSON and one table.

Steps: a 2-epoch bf16 training smoke (synthetic data) on one GPU, without and with `torch.compile`; the same smoke
data-parallel on every GPU (`accelerate launch --multi_gpu`); `robustness` of the smoke's model (15 corruptions at
severity 3, bf16) on one GPU and data-parallel on every GPU, where each process must score its share on its own
GPU and the errors must be the one-GPU ones; the as-published inference table with bf16 autocast, without and
with `torch.compile`. Without a CUDA GPU it says so in one line and runs the same steps as a dry run on
CPU at tiny sizes (the numbers mean nothing; two gloo processes stand for the GPUs; inference times the width-8 model
the first smoke exported, in fp32 where the CPU lacks native bf16 (its bf16 convolutions take seconds a batch);
torch.compile keeps its wrapper but compiles nothing, TORCH_COMPILE_DISABLE=1, as its CPU compile alone takes
minutes): the commands, flags and outputs are checked before a GPU is rented.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data.synthetic import make_synthetic_image_folder
from .fileio import atomic_write
from .training.precision import cpu_has_native_bf16

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch"]
CLI = ["-m", "timm_assemble"]
STEP_TIMEOUT_S = 3600
EVAL_FOLDER = "eval-images"  # the robustness steps' images, written before the steps run
EVAL_IMAGES = {True: (2, 32, 6), False: (10, 256, 16)}  # dry run or not: classes (the smokes'), px, images per class


@dataclass
class Step:
    """One command of the check; `result` is filled from its JSON or metrics after it ran."""

    name: str
    what: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    rc: int | None = None
    wall_s: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    log: str = ""


def plan(out: Path, gpus: int) -> list[Step]:
    """The steps; `gpus` 0 plans the CPU dry run (tiny sizes, two gloo processes for the multi-GPU step)."""
    dry = gpus == 0
    if dry:  # inference on the width-8 model the first smoke exports: a full-size build alone takes seconds
        bench = ["--models", f"local-dir:{out / 'train-1' / 'model'}", "--img-size", "32", "--batch-size", "2"]
        bench += ["--warmup", "0"]
        bench += ["--repeats", "1", "--iters", "1", "--device", "cpu"]
        sizes = ["--model-kwargs", "width=8", "--img-size", "32", "--batch-size", "4", "--workers", "0"]
        sizes += ["--synthetic-classes", str(EVAL_IMAGES[True][0]), "--synthetic-images", "4"]
        sizes += ["--synthetic-image-size", "32"]
        evaluation = ["--img-size", "32", "--batch-size", "4", "--workers", "0"]
    else:
        bench = ["--as-published"]
        sizes = ["--img-size", "224", "--batch-size", "64", "--workers", "8"]
        sizes += ["--synthetic-classes", str(EVAL_IMAGES[False][0]), "--synthetic-images", "256"]
        sizes += ["--synthetic-image-size", "256"]
        evaluation = ["--batch-size", "64", "--workers", "8"]
    env = {"ACCELERATE_USE_CPU": "1"} if dry else {}
    no_compile = {"TORCH_COMPILE_DISABLE": "1"} if dry else {}
    many = max(gpus, 2)

    amp = ["--amp", "--amp-dtype", "bfloat16"] if not dry or cpu_has_native_bf16() else []

    def infer(name: str, what: str, *extra: str) -> Step:
        argv = [sys.executable, *CLI, "benchmark", *bench, *amp, *extra]
        return Step(name, what, [*argv, "--json", str(out / f"{name}.json")], no_compile if extra else {})

    def launch(processes: int) -> list[str]:
        argv = [*LAUNCH, "--num_machines", "1", "--num_processes", str(processes), "--main_process_port", "0"]
        return argv + (["--multi_gpu"] if processes > 1 else [])

    def train(name: str, what: str, processes: int, *extra: str) -> Step:
        argv = [*launch(processes), *CLI, "train", "--model", "assemble_resnet50", "--synthetic", "--epochs", "2"]
        argv += ["--warmup-epochs", "0", *sizes, "--amp", "--amp-dtype", "bfloat16", *extra]
        return Step(name, what, [*argv, "--output-dir", str(out / name)], {**env, **(no_compile if extra else {})})

    def robustness(name: str, what: str, processes: int) -> Step:
        argv = [*launch(processes), *CLI, "robustness", "--model", f"local-dir:{out / 'train-1' / 'model'}"]
        argv += ["--data-dir", str(out / EVAL_FOLDER), "--corruptions", "common", "--severities", "3", *evaluation]
        return Step(name, what, [*argv, *amp, "--json", str(out / f"{name}.json")], env)

    steps = [
        train("train-1", "2-epoch bf16 training smoke, one GPU", 1),
        train("train-1-compile", "the same with torch.compile", 1, "--compile"),
    ]
    if gpus != 1:  # one GPU: the smoke on every GPU is train-1
        steps.append(train(f"train-{many}", f"the same smoke on {many} {'processes' if dry else 'GPUs'}", many))
    steps.append(robustness("robustness-1", "robustness of train-1's model, one GPU", 1))
    if gpus != 1:
        where = f"{many} {'processes' if dry else 'GPUs'}"
        steps.append(robustness(f"robustness-{many}", f"the same on {where}: robustness-1's errors", many))
    return [
        *steps,
        infer("infer", "as-published inference table" + (", bf16 autocast" if amp else ", fp32 (no native bf16)")),
        infer("infer-compile", "the same with torch.compile", "--compile"),
    ]


def run_step(step: Step, out: Path) -> None:
    """Run one step with its output in OUT/<name>.log; record exit status, wall time and its numbers."""
    log = out / f"{step.name}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **step.env)
    env.pop("ACCELERATE_MIXED_PRECISION", None)  # --amp decides
    started = time.perf_counter()
    with log.open("w") as f:
        f.write(f"$ {shlex.join(step.argv)}\n")
        f.flush()
        proc = subprocess.Popen(step.argv, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            step.rc = proc.wait(STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # a hung collective: the step fails, the check goes on
            os.killpg(proc.pid, signal.SIGKILL)
            step.rc = proc.wait()
            f.write(f"\nkilled after {STEP_TIMEOUT_S} s\n")
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    step.wall_s = round(time.perf_counter() - started, 1)
    step.log = str(log)
    step.result = step_result(step, out)


def step_result(step: Step, out: Path) -> dict[str, Any]:
    """The numbers a step produced: img/s per model (inference), or the last epoch's row (training)."""
    bench, metrics = out / f"{step.name}.json", out / step.name / "metrics.jsonl"
    if bench.is_file() and "mean_error" in (found := json.loads(bench.read_text())):  # robustness
        images = {n for per in found["num_images"].values() for n in per.values()}
        errors = list(found["mean_error"].values())
        return {"images": max(images), "mean error": round(sum(errors) / len(errors), 4)}
    if bench.is_file():
        return {m["model"]: m.get("infer_img_per_s") for m in found.get("models", [])}
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        keep = ("epoch", "step", "train_loss", "top1", "val_images", "images_per_s", "epoch_time_s")
        return {k: rows[-1].get(k) for k in keep} if rows else {}
    return {}


def format_table(report: dict[str, Any]) -> str:
    lines = [f"GPU check on {report['device']} ({report['mode']})", "", "| step | what | exit | wall s | result |"]
    lines.append("|---|---|---|---|---|")
    for s in report["steps"]:
        result = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in s["result"].items())
        lines.append(f"| {s['name']} | {s['what']} | {s['rc']} | {s['wall_s']} | {result or '-'} |")
    return "\n".join(lines) + "\n"


def gpu_check(out: str | os.PathLike, dry_run: bool | None = None) -> dict[str, Any]:
    """Run every step into `out`; writes gpu_check.json and gpu_check.md there and returns the report.
    `dry_run` None: a dry run exactly when no CUDA GPU is visible."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dry_run is None:
        dry_run = gpus == 0
    if gpus == 0:
        print("no CUDA GPU on this machine: dry run of the same steps on CPU at tiny sizes (the numbers mean nothing)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes, size, per_class = EVAL_IMAGES[bool(dry_run)]
    make_synthetic_image_folder(out / EVAL_FOLDER, classes, images_per_class=per_class, image_size=size, splits=())
    steps = plan(out, 0 if dry_run else gpus)
    for i, step in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {step.name}: {step.what}", flush=True)
        run_step(step, out)
        print(f"  exit {step.rc} in {step.wall_s} s (log {step.log})", flush=True)
    device = torch.cuda.get_device_name(0) + f" x{gpus}" if gpus else "CPU"
    report = dict(
        device=device, mode="dry run on CPU" if dry_run else f"{gpus} GPU(s)", torch=torch.__version__,
        cuda=torch.version.cuda, steps=[asdict(s) for s in steps],
    )  # fmt: skip
    table = format_table(report)
    print(table, end="")
    atomic_write(out / "gpu_check.json", json.dumps(report, indent=2) + "\n")
    atomic_write(out / "gpu_check.md", table)
    print(f"wrote {out / 'gpu_check.json'} and gpu_check.md")
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check", help="folder of the JSON, the table and every step's log")
    parser.add_argument("--dry-run", action="store_true", help="the CPU dry run even where a GPU is")
    args = parser.parse_args(argv)
    report = gpu_check(args.out, dry_run=True if args.dry_run else None)
    return 0 if all(s["rc"] == 0 for s in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
