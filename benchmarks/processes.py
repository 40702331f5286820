"""One process against two on the same data: `train`, `finetune` and `robustness` as users launch them, and a
launcher kill.

    python benchmarks/processes.py [--epochs 2] [--images 64] [--val 15] [--out DIR] [--json FILE]

Each job runs under `accelerate launch` (one process: `--cpu --num_processes 1`; two: the CPU form
`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2`, gloo) with a width-8 Assemble-ResNet-50
at 32 px, in a subprocess whose output goes to a file. The table gives updates per epoch (from the run's
log), wall time, validation images counted per epoch, the final top-1, and whether every output was written
once (one metrics row, summary row and "saved checkpoint" line per epoch; one model/, curves.png,
confusion_matrix.png). `robustness` scores the exported one-process `train` model on the training images (the
15 common corruptions x 5 severities, corrupted on the fly at 32 px): wall time, images per pass, and whether
the two-process errors are the one-process ones and the report was written once. Then two-process `train` is
killed with SIGKILL of its launcher after the first checkpoint: the seconds until no worker is left, whether
the output lock is free and no temporary file is left, and whether `--resume auto` completes every epoch once.
Run it on an idle machine: wall times are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from timm_assemble.data.synthetic import make_synthetic_image_folder
from timm_assemble.errors import TimmAssembleError
from timm_assemble.locks import FolderLock

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = {
    1: ["--cpu", "--num_processes", "1"],
    2: ["--multi_gpu", "--num_processes", "2", "--main_process_port", "0"],  # with ACCELERATE_USE_CPU=1: gloo
}


def job(mode: str, data: Path, out: Path, epochs: int) -> list[str]:
    args = [f"{mode}.py", "--model", "assemble_resnet50", "--model-kwargs", "width=8", "--epochs", str(epochs)]
    args += ["--warmup-epochs", "0", "--img-size", "32", "--batch-size", "8", "--workers", "0", "--seed", "3"]
    args += ["--data-dir", str(data), "--output-dir", str(out)]
    return args + (["--pretrained", "none"] if mode == "finetune" else ["--preset", "e11", "--teacher", "none"])


def launch(processes: int, args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with log.open("w") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "accelerate.commands.launch", *LAUNCHERS[processes], *args],
            cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def rows_of(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def written_once(out: Path, log: str, epochs: int) -> bool:
    rows = rows_of(out)
    summary = (out / "summary.csv").read_text().splitlines() if (out / "summary.csv").exists() else []
    saves = len(re.findall(r"saved checkpoint \(epoch \d+", log))
    files = all((out / name).exists() for name in ("model/model.safetensors", "curves.png", "confusion_matrix.png"))
    once = [r["epoch"] for r in rows] == list(range(1, epochs + 1)) and len(summary) == epochs + 1 == saves + 1
    return once and files


def measure(mode: str, processes: int, data: Path, work: Path, epochs: int) -> dict:
    out, log = work / f"{mode}-{processes}", work / f"{mode}-{processes}.log"
    start = time.perf_counter()
    rc = launch(processes, job(mode, data, out, epochs), log).wait()
    wall = time.perf_counter() - start
    text, rows = log.read_text(), rows_of(out)
    updates = re.search(r"(\d+) updates/epoch", text)
    return dict(
        mode=mode, processes=processes, rc=rc, updates_per_epoch=int(updates.group(1)) if updates else None,
        wall_s=round(wall, 1), val_images=sorted({r["val_images"] for r in rows}),
        top1=round(rows[-1]["top1"], 2) if rows else None, written_once=written_once(out, text, epochs),
    )  # fmt: skip


def measure_robustness(processes: int, model: Path, data: Path, work: Path) -> dict:
    out, log = work / f"robustness-{processes}.json", work / f"robustness-{processes}.log"
    args = ["-m", "timm_assemble", "robustness", "--model", f"local-dir:{model}", "--data-dir", str(data)]
    args += ["--img-size", "32", "--batch-size", "32", "--workers", "0", "--json", str(out)]
    start = time.perf_counter()
    rc = launch(processes, args, log).wait()
    wall = time.perf_counter() - start
    result = json.loads(out.read_text()) if out.exists() else {}
    counts = sorted({n for per in result.get("num_images", {}).values() for n in per.values()})
    return dict(
        processes=processes, rc=rc, wall_s=round(wall, 1), images_per_pass=counts, error=result.get("error"),
        written_once=log.read_text().count(f"wrote {out}") == 1,
    )  # fmt: skip


def launcher_kill(data: Path, work: Path, epochs: int) -> dict:
    out, log = work / "killed", work / "killed.log"
    args = job("train", data, out, epochs)
    proc = launch(2, args, log)
    while "saved checkpoint (epoch 1" not in log.read_text():
        if proc.poll() is not None:
            return dict(error=f"the run ended (rc {proc.returncode}) before its first checkpoint")
        time.sleep(0.1)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "python" in p.name().lower()]
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.perf_counter()
    _, alive = psutil.wait_procs(workers, timeout=60)
    gone_s = time.perf_counter() - killed
    for p in alive:
        p.kill()
    try:
        FolderLock(out, "output dir", "").acquire().release()
        lock_free = True
    except TimmAssembleError:
        lock_free = False
    leftovers = sorted(p.name for p in out.rglob(".*") if p.name != ".timm-assemble.lock")
    rc = launch(2, [*args, "--resume", "auto"], work / "resumed.log").wait()
    return dict(
        workers=len(workers), survivors=len(alive), workers_gone_s=round(gone_s, 1), lock_free=lock_free,
        leftovers_after_kill=leftovers, resume_rc=rc, epochs_after_resume=[r["epoch"] for r in rows_of(out)],
        leftovers_after_resume=sorted(p.name for p in out.rglob(".*") if p.name != ".timm-assemble.lock"),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=64, help="training images per class (3 classes)")
    parser.add_argument("--val", type=int, default=5, help="validation images per class (3 x 5 = 15: odd)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="timm-assemble-processes-"))
    data = make_synthetic_image_folder(
        work / "data", num_classes=3, images_per_class={"train": args.images, "val": args.val}, image_size=32, seed=0
    )
    table = [measure(mode, n, data, work, args.epochs) for mode in ("train", "finetune") for n in (1, 2)]
    print("| job | processes | updates/epoch | wall s | val images | top-1 | written once | rc |")
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        print(
            f"| {r['mode']} | {r['processes']} | {r['updates_per_epoch']} | {r['wall_s']} | {r['val_images']} | "
            f"{r['top1']} | {r['written_once']} | {r['rc']} |"
        )
    robust = [measure_robustness(n, work / "train-1" / "model", data / "train", work) for n in (1, 2)]
    print("| job | processes | wall s | images per pass | errors = 1 process's | written once | rc |")
    print("|---|---|---|---|---|---|---|")
    for r in robust:
        same = r["error"] == robust[0]["error"] and r["error"] is not None
        print(
            f"| robustness | {r['processes']} | {r['wall_s']} | {r['images_per_pass']} | {same} | "
            f"{r['written_once']} | {r['rc']} |"
        )
    kill = launcher_kill(data, work, args.epochs)
    print("launcher kill -9 (2 processes):", json.dumps(kill))
    if args.json:
        args.json.write_text(json.dumps(dict(table=table, robustness=robust, launcher_kill=kill), indent=1) + "\n")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
