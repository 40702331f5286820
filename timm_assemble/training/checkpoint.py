"""Checkpoints: accelerate `save_state` into a temporary folder, marked complete, then renamed into place.

`checkpoints/last` is the newest epoch, `checkpoints/best` a real copy of the best one (never a hard link,
so damage to one never reaches the other). A checkpoint folder holds what accelerate saves (model,
optimizer, scaler, RNG states per process and the EMA weights, registered with
`register_for_checkpointing`), `train_state.json` (epoch, step, best metric and what the run trains) and,
written last, `complete.json`: every file with its size. A folder without a valid marker, or whose files
do not match it, is never resumed from. The lr schedule is a pure function of the step: no state of its own.

A save that fails (disk full, read-only folder, killed) leaves `last` and `best` as they were: the new
checkpoint is renamed over them only once complete, `best` before `last`. The checkpoint also carries the
metrics rows up to its epoch: on resume they are the truth `metrics.jsonl` and `summary.csv` are rewritten
from, so no output ever holds an epoch the checkpoint does not.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from ..errors import TimmAssembleError
from ..fileio import atomic_write, leftover_names, os_error_of, remove_output, replace_dir, temp_name, write_error
from ..schema import Check, ListOf, MapOf, Maybe, check_schema

STATE_NAME = "train_state.json"
MARKER_NAME = "complete.json"
SLOTS = ("last", "best")
RUN_KEYS = ("model", "model_kwargs", "num_classes", "label_names", "model_ema")  # must match to resume


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer updates completed
    best_metric: float | None = None
    best_epoch: int | None = None
    run: dict[str, Any] = field(default_factory=dict)  # what is trained (`run_identity`): checked on resume
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows up to `epoch`
    best_confusion: list[list[int]] | None = None  # the best epoch's confusion matrix (what its plot draws)


@dataclass
class ResumePoint:
    path: Path
    state: TrainState
    reason: str  # why this checkpoint was taken, for the log


def run_identity(
    model: str, model_kwargs: dict[str, Any], label_names: Sequence[str], data: str, model_ema: bool
) -> dict[str, Any]:
    """What a checkpoint is a checkpoint of (as it reads back from JSON); `data` is only named, not compared."""
    identity = dict(
        model=model,
        model_kwargs=model_kwargs,
        num_classes=len(label_names),
        label_names=list(label_names),
        model_ema=model_ema,
        data=data,
    )
    return json.loads(json.dumps(identity, default=str))


# ---------------------------------------------------------------------------------------------- checks


def _inside(name: str) -> bool:
    """A relative path that stays inside the checkpoint folder (the marker is read back, so it is not trusted)."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


_COUNT = Check(int, lambda v: v >= 0, "a count >= 0")
_NUMBER_OR_NULL = Check(object, lambda v: v is None or (type(v) in (int, float)), "a number or null")
MARKER_SCHEMA = {"files": MapOf(_COUNT, keys=_inside, keys_what="a path inside the checkpoint")}
STATE_SCHEMA = {
    "epoch": _COUNT,
    "step": _COUNT,
    "best_metric": Maybe(_NUMBER_OR_NULL),
    "best_epoch": Maybe(Check(object, lambda v: v is None or (type(v) is int and v >= 0), "an epoch or null")),
    "run": Maybe(dict),
    "rows": Maybe(ListOf(Check(dict, lambda r: type(r.get("epoch")) is int, "a metrics row with an epoch"))),
    "best_confusion": Maybe(ListOf(ListOf(_COUNT))),
}


def inspect_checkpoint(path: Path) -> tuple[TrainState | None, str]:
    """The saved state, or None and the one reason `path` cannot be resumed from."""
    if not path.exists():
        return None, "does not exist"
    if not path.is_dir():
        return None, "is a file, not a checkpoint folder"
    try:
        files = check_schema(json.loads((path / MARKER_NAME).read_text()), MARKER_SCHEMA, MARKER_NAME)["files"]
    except FileNotFoundError:
        return None, f"is incomplete (no {MARKER_NAME}: its save was interrupted)"
    except (ValueError, TimmAssembleError) as err:
        return None, f"{MARKER_NAME} is damaged (not the JSON the save wrote: {err})"
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            return None, f"{name} is missing"
        if file.stat().st_size != size:
            actual = file.stat().st_size
            return None, f"{name} is {'truncated' if actual < size else 'damaged'} ({actual} of {size} bytes)"
    try:
        saved = check_schema(json.loads((path / STATE_NAME).read_text()), STATE_SCHEMA, STATE_NAME)
    except (ValueError, TimmAssembleError) as err:
        return None, f"{STATE_NAME} is not valid ({err})"
    return TrainState(**{k: saved[k] for k in STATE_SCHEMA if k in saved}), ""


def resume_target(path: Path) -> tuple[Path, Path | None]:
    """The checkpoint folder `--resume PATH` names and the run folder that holds it (None: held by no run).

    PATH is a checkpoint folder (RUN/checkpoints/NAME), a file inside one (as timm resumes from its
    `last.pth.tar`), or a run folder (its newest checkpoint, `checkpoints/last`).
    """
    if path.is_file() and path.parent.parent.name == "checkpoints":
        path = path.parent
    if (path / "checkpoints").is_dir():
        return path / "checkpoints" / "last", path
    return path, path.parent.parent if path.parent.name == "checkpoints" else None


def candidates(ckpt_dir: Path) -> list[Path]:
    """Where --resume auto looks: `last`, the backup a kill between `last`'s two renames left, and `best`."""
    return [ckpt_dir / "last", *leftover_names(ckpt_dir / "last", "old"), ckpt_dir / "best"]


def select_resume(out_dir: Path, resume: str | None) -> ResumePoint | None:
    """The checkpoint to continue from: `--resume PATH` as given, or `auto`: the newest complete one.

    None means a new run: `auto` when no checkpoint was completed yet starts from scratch, and says why
    (a job killed during its first save is requeued with the same command and must not fail forever).
    """
    if not resume:
        return None
    if resume != "auto":
        path = Path(resume)
        state, problem = inspect_checkpoint(path)
        if state is None:
            raise TimmAssembleError(f"--resume {path}: {problem}")
        return ResumePoint(path, state, "as --resume asked")
    found, problems = _complete_candidates(out_dir / "checkpoints")
    if not found:
        return None
    point = max(found, key=lambda p: (p.state.epoch, p.state.step))  # ties: the first candidate
    ckpt_dir = out_dir / "checkpoints"
    if not (ckpt_dir / "last").exists():
        problems.insert(0, f"{ckpt_dir / 'last'} does not exist")
    point.reason = "the newest complete checkpoint" + (f"; skipped: {'; '.join(problems)}" if problems else "")
    return point


def _complete_candidates(ckpt_dir: Path) -> tuple[list[ResumePoint], list[str]]:
    """The complete checkpoints among the candidates, and why each other one that exists cannot be used."""
    found, problems = [], []
    for path in candidates(ckpt_dir):
        if path.exists():
            state, problem = inspect_checkpoint(path)
            if state is None:
                problems.append(f"{path} {problem}")
            else:
                found.append(ResumePoint(path, state, ""))
    return found, problems


def scratch_note(out_dir: Path) -> str:
    """Why `--resume auto` starts from scratch in `out_dir` (said at the start of the run)."""
    ckpt_dir = out_dir / "checkpoints"
    _, problems = _complete_candidates(ckpt_dir)
    if not (problems or run_files(out_dir)):
        return f"no checkpoint in {out_dir} yet: a new run"
    why = "; ".join(problems) if problems else "none was saved"
    return f"no complete checkpoint in {ckpt_dir} ({why}): starting from scratch"


def run_files(out_dir: Path) -> list[str]:
    """What in `out_dir` a new run would replace: checkpoints, the exported model, the metrics."""
    names = []
    if (out_dir / "checkpoints").is_dir() and any((out_dir / "checkpoints").iterdir()):
        names.append("checkpoints/")
    if (out_dir / "model").exists():
        names.append("model/")
    if (out_dir / "metrics.jsonl").exists():
        names.append("metrics.jsonl")
    return names


def check_output_dir(out_dir: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to start over in a folder that holds a run, unless asked to (`--overwrite`)."""
    for name in SLOTS:
        path = out_dir / "checkpoints" / name
        if path.exists() and not path.is_dir() and not overwrite:
            raise TimmAssembleError(
                f"{path} is a file, not a checkpoint folder; move it away or choose another --output-dir"
            )
    held = run_files(out_dir)
    if held and not resume and not overwrite:
        raise TimmAssembleError(
            f"{out_dir} already holds a run ({', '.join(held)}); pass --resume auto to continue it, "
            "--overwrite to start over, or choose another --output-dir"
        )


def clear_run(out_dir: Path) -> None:
    """Starting over (`--overwrite`): drop the old checkpoints and metrics; `model/` goes at the first export."""
    remove_output(out_dir / "checkpoints")  # never one the new run reads (--initial-checkpoint inside it)
    remove_output(out_dir / "metrics.jsonl")


def check_same_run(point: ResumePoint, run: dict[str, Any]) -> None:
    """One line naming both sides when the checkpoint trains another model, class count or class set."""
    saved = point.state.run
    differing = [k for k in RUN_KEYS if k in saved and saved[k] != run.get(k)]
    if not differing:
        return

    def describe(identity: dict[str, Any]) -> str:
        parts = [f"{k} {_short(identity.get(k))}" for k in differing]
        return ", ".join(parts) + f" (data {identity.get('data')})"

    raise TimmAssembleError(
        f"cannot resume from {point.path}: it was saved by a run with {describe(saved)}; this run has "
        f"{describe(run)}; resume with the same settings, or choose another --output-dir"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------- save / load


def save_checkpoint(accelerator: Accelerator, ckpt_dir: Path, state: TrainState, best: bool) -> Path:
    """Every process calls this (accelerate saves per-process RNG states); the main one marks and renames."""
    holder = [str(temp_name(ckpt_dir / "last"))]
    broadcast_object_list(holder)  # one temporary name, unique to this save, for every process
    tmp = Path(holder[0])
    main = accelerator.is_main_process
    try:
        if main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()  # every process has written its RNG state before the folder moves
        if main:
            atomic_write(tmp / STATE_NAME, json.dumps(asdict(state), indent=1))
            _write_marker(tmp)
            if best:
                _copy_into_place(tmp, ckpt_dir / "best")
            replace_dir(tmp, ckpt_dir / "last")
            remove_leftovers(ckpt_dir)
    except BaseException as err:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        os_error = os_error_of(err)
        if os_error is None:
            raise
        user_error = write_error(os_error.filename or tmp, os_error, _state_bytes(accelerator) * (2 if best else 1))
        then = (
            f"the checkpoint of epoch {state.epoch - 1} is intact: free space, then rerun with --resume auto"
            if state.epoch > 1
            else "free space, then rerun the same command with --resume auto: it starts over"
        )
        raise TimmAssembleError(f"{user_error} ({then})") from err
    accelerator.wait_for_everyone()
    return ckpt_dir / "last"


def remove_leftovers(ckpt_dir: Path) -> None:
    """Temporary and backup folders earlier saves of this run left when killed (the run folder's lock holder
    made them): once a complete `last` exists they are dead weight."""
    for slot in SLOTS:
        for path in leftover_names(ckpt_dir / slot, "tmp") + leftover_names(ckpt_dir / slot, "old"):
            shutil.rmtree(path, ignore_errors=True)


def _write_marker(folder: Path) -> None:
    """Written last: the folder is complete, and these are the sizes its files must have."""
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    atomic_write(folder / MARKER_NAME, json.dumps(dict(files=files), indent=1))


def _copy_into_place(src: Path, dst: Path) -> None:
    """A full copy of `src` replaces `dst` (the copy is made beside it, then renamed)."""
    staging = temp_name(dst)
    try:
        staging.mkdir()
        for path in sorted(src.rglob("*")):  # not copytree: it folds OS errors into one without an errno
            target = staging / path.relative_to(src)
            target.mkdir() if path.is_dir() else shutil.copy2(path, target)
        replace_dir(staging, dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _state_bytes(accelerator: Accelerator) -> int:
    """About what one checkpoint takes: the tensors of everything accelerate saves."""
    total = 0
    for obj in (*accelerator._models, *accelerator._optimizers, *accelerator._custom_objects):
        stack = [obj.state_dict()]
        while stack:
            item = stack.pop()
            if isinstance(item, torch.Tensor):
                total += item.numel() * item.element_size()
            elif isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
    return total


def best_weights(ckpt_dir: Path, epoch: int, ema: bool) -> dict[str, torch.Tensor] | None:
    """The weights `checkpoints/best` holds for `epoch` (the EMA's when the run keeps one); None when it holds
    another epoch or cannot be read."""
    from safetensors.torch import load_file

    path = ckpt_dir / "best"
    state, _ = inspect_checkpoint(path)
    if state is None or state.epoch != epoch:
        return None
    try:
        if ema:  # ModelEmaV3's state dict: its copy of the model is `module`
            saved = torch.load(path / "custom_checkpoint_0.pkl", map_location="cpu", weights_only=True)
            return {k.removeprefix("module."): v for k, v in saved.items()}
        return load_file(path / "model.safetensors")
    except Exception:  # damaged in a way the sizes do not show: the export stays missing, training goes on
        return None


def load_checkpoint(accelerator: Accelerator, point: ResumePoint, run: dict[str, Any]) -> TrainState:
    """Restore everything accelerate tracks (EMA included) from `point`; `run` must be what it was saved by."""
    check_same_run(point, run)
    try:
        for custom in sorted(point.path.glob("custom_checkpoint_*.pkl")):
            torch.load(custom, map_location="cpu", weights_only=True)  # accelerate unpickles these unrestricted
        accelerator.load_state(str(point.path))
    except Exception as err:  # a file damaged in a way its size does not show
        detail = (str(err).strip().splitlines() or [""])[0][:200]
        raise TimmAssembleError(f"cannot load checkpoint {point.path}: {type(err).__name__}: {detail}") from err
    return point.state
