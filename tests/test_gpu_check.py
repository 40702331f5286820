"""benchmarks/gpu_check.sh (timm_assemble.gpu_check): the steps planned for 0, 1 and 4 GPUs, and the CPU dry run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from timm_assemble import gpu_check

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("gpus", [0, 1, 4])
def test_the_check_plans_bf16_inference_and_training_with_and_without_compile_on_one_and_every_gpu(tmp_path, gpus):
    steps = {s.name: s for s in gpu_check.plan(tmp_path, gpus)}
    many, robust = f"train-{max(gpus, 2)}", f"robustness-{max(gpus, 2)}"
    spread = [many] if gpus != 1 else []
    assert list(steps) == [
        "train-1", "train-1-compile", *spread, "robustness-1", *([robust] if spread else []), "infer", "infer-compile"
    ]  # fmt: skip
    for name, step in steps.items():
        assert ("--compile" in step.argv) == name.endswith("-compile")
        assert (step.env.get("TORCH_COMPILE_DISABLE") == "1") == (gpus == 0 and name.endswith("-compile"))
        if name.startswith("train"):
            assert step.argv[step.argv.index("--amp-dtype") + 1] == "bfloat16" and "--epochs" in step.argv
            assert step.argv[step.argv.index("--num_processes") + 1] == ("1" if "-1" in name else str(max(gpus, 2)))
            assert ("--multi_gpu" in step.argv) == (name == many)
            assert (step.env.get("ACCELERATE_USE_CPU") == "1") == (gpus == 0)
    for name in ("robustness-1", *([robust] if spread else [])):
        argv = steps[name].argv
        assert argv[argv.index("--model") + 1] == f"local-dir:{tmp_path / 'train-1' / 'model'}"
        assert argv[argv.index("--num_processes") + 1] == ("1" if name == "robustness-1" else str(max(gpus, 2)))
        assert ("--multi_gpu" in argv) == (name == robust) and argv[argv.index("--severities") + 1] == "3"
    assert ("--as-published" in steps["infer"].argv) == (gpus > 0)
    if gpus:
        assert steps["infer"].argv[steps["infer"].argv.index("--amp-dtype") + 1] == "bfloat16"


@pytest.mark.slow
def test_without_a_gpu_the_check_says_so_in_one_line_and_dry_runs_every_step(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "check"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--out", str(out)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first = proc.stdout.splitlines()[0]
    assert first.startswith("no CUDA GPU on this machine: dry run of the same steps on CPU")
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "dry run on CPU"
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == [
        "train-1", "train-1-compile", "train-2", "robustness-1", "robustness-2", "infer", "infer-compile"
    ]  # fmt: skip
    assert all(s["rc"] == 0 for s in steps.values())
    for name in ("train-1", "train-1-compile", "train-2"):
        assert steps[name]["result"]["epoch"] == 2 and (out / name / "model" / "model.safetensors").is_file()
    assert steps["train-2"]["result"]["step"] * 2 == steps["train-1"]["result"]["step"]  # data sharded on 2 ranks
    assert all(v > 0 for v in steps["infer-compile"]["result"].values())
    assert steps["robustness-2"]["result"] == steps["robustness-1"]["result"]  # shared out, counted once
    assert steps["robustness-1"]["result"]["images"] == 12
    assert "| train-1-compile |" in (out / "gpu_check.md").read_text()
