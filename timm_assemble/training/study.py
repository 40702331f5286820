"""The paper's compounding table on any dataset: the E0..E12 ladder trained rung by rung, then measured side by side.

Each rung trains with its preset (`training/presets/eN.toml`) on one budget for all (the study's epochs and image
size replace the presets' 120-600 epochs and 224/256 px), in a run folder `STUDY/<rung>/` that is a normal train run
(checkpoints, `model/`, metrics). After training, the rung is measured on the same validation images: top-1/top-5
(the run's own evaluation of the exported best epoch) and the error under corruptions; a marker
`STUDY/<rung>/study-rung.json` written last makes the rung complete. The table is assembled from the complete rungs:
throughput, params and MACs of all of them in one process (interleaved), the corruption error normalised by rung
e0's errors on the same corrupted images (by AlexNet's on ImageNet, by RobustBench Standard's on CIFAR-10), and the
deltas along the ladder.

A killed study continues with `--resume auto`: complete rungs are kept and an interrupted one resumes from its own
checkpoints, when their saved settings (`STUDY/<rung>/config.toml`) are the ones asked now; a rung trained under
other settings is refused before anything trains, naming them.

Under N processes (`accelerate launch --num_processes N -m timm_assemble study ...`) every rung trains data-parallel
on all N, one rung after another, and is measured by the main process. Studies may also share one study folder (the
rungs sharded across launches, each a process group of its own): a rung is claimed (`STUDY/.<rung>.claim`, created
exclusively, naming the owner's PID and host) for its training and measurement, and another study skips it. The
table is final only when every asked rung is complete: the study that completes the last one writes it, once (under
the study folder's lock); a study that ends with a rung held by another exits non-zero, naming the holder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import timm
import torch.distributed as dist
from accelerate import PartialState
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import broadcast_object_list

from ..data.datasets import split_folder
from ..errors import TimmAssembleError
from ..evaluation.benchmark import benchmark
from ..evaluation.reference_errors import PUBLISHED
from ..evaluation.robustness import robustness
from ..evaluation.scoring import Shard
from ..fileio import atomic_path, atomic_write, check_output_dir, write_new
from ..locks import FolderLock
from ..processes import process_state
from . import engine
from .config import TrainConfig, format_config, list_presets, load_preset, resolve_config, tomllib

LADDER = tuple(name for name in list_presets() if name[0] == "e" and name[1:].isdigit())
DEFAULT_RUNGS = ("e0", "e3", "e6", "e9", "e11")
KD_FIELDS = ("teacher", "teacher_weights", "teacher_logits")
MARKER = "study-rung.json"
NO_CORRUPTIONS = "none"
HOW_NOT_WHAT = {"workers", "log_interval", "tracker_project", "push_every", "compile", "channels_last"}  # how, not what
MEASURE_WAIT = timedelta(days=7)  # a rung's measurement between two collectives (corruptions: hours), then its marker


@dataclass
class StudyOptions:
    """A study: which rungs, on what budget, measured how. `train` holds the train flags every rung gets."""

    output_dir: str
    rungs: list[str] = field(default_factory=lambda: list(DEFAULT_RUNGS))
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields: data, epochs, img_size, model_kwargs
    start_from: str = "scratch"  # or "pretrained": ImageNet weights where the rung's network has them
    resume: str | None = None  # "auto": keep complete rungs, resume an interrupted one
    overwrite: bool = False
    corruptions: str = "common"
    severities: str = "1-5"
    corruption_set: str | None = None  # None: the set matching the validation images (cifar-c for 32 px)
    robustness_images: int | None = None
    seed: int = 0
    bench_batch_size: int | None = None
    bench_repeats: int = 5
    device: str | None = None
    command: str = "timm-assemble study"


def parse_rungs(text: str) -> list[str]:
    """`e0,e3,e6` or `all` -> rung names in ladder order."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if "all" in names:
        if len(names) > 1:
            raise TimmAssembleError(
                f"--rungs {text}: 'all' is every rung ({LADDER[0]}..{LADDER[-1]}) and stands alone; "
                "pass --rungs all, or list the rungs (e.g. e0,e3,e6)"
            )
        return list(LADDER)
    if not names:
        raise TimmAssembleError(f"--rungs {text!r} names no rung; pass --rungs all, or list them (e.g. e0,e3,e6)")
    unknown = [n for n in names if n not in LADDER]
    if unknown:
        raise TimmAssembleError(f"--rungs: unknown rung(s) {', '.join(unknown)}; known: {', '.join(LADDER)}")
    return sorted(set(names), key=LADDER.index)


def what_it_adds(description: str) -> str:
    """A preset's description without its rung name and the paper's numbers: `ResNet-50-D + label smoothing`."""
    text = description.split(": ", 1)[-1]
    return text.split(" Paper:", 1)[0].rstrip(". ")


def distills(rung: str) -> bool:
    return bool(load_preset(rung).get("teacher"))


def has_imagenet_weights(arch: str) -> bool:
    return bool(timm.list_pretrained(arch))


def rung_config(opts: StudyOptions, rung: str) -> tuple[TrainConfig, list[str]]:
    """The rung's train config (its preset under the study's flags) and notes on what the study changed."""
    notes: list[str] = []
    overrides = {k: v for k, v in opts.train.items() if k not in KD_FIELDS}
    teacher = {k: v for k, v in opts.train.items() if k in KD_FIELDS}
    if distills(rung):
        if teacher:
            overrides.update(teacher)
        else:
            overrides["teacher"] = "none"
            notes.append(
                f"KD off: the preset's teacher {load_preset(rung)['teacher']} knows ImageNet's classes only; to "
                "distil pass --teacher ARCH --teacher-weights FILE (a teacher for your classes), --teacher-logits "
                "FILE, or on ImageNet the preset's teacher as --teacher"
            )
    arch = load_preset(rung)["model"]
    if opts.start_from == "pretrained":
        if has_imagenet_weights(arch):
            overrides["pretrained"] = "default"
            notes.append(f"starts from {arch}'s ImageNet weights")
        else:
            notes.append(f"no ImageNet weights for {arch}: trains from scratch")
    overrides.update(output_dir=str(Path(opts.output_dir) / rung), resume=opts.resume, overwrite=opts.overwrite)
    return resolve_config("train", overrides, preset=rung), notes


# ---------------------------------------------------------------------------------------------- claims


def claim_path(study: Path, rung: str) -> Path:
    return study / f".{rung}.claim"


def _alive_here(owner: dict[str, Any]) -> bool | None:
    """Whether the claim's process runs (None: on another host, unknown)."""
    if owner.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def claim(study: Path, rung: str) -> dict[str, Any] | None:
    """Claim `rung` for this process; None when another live process holds it (a dead owner's claim is taken over)."""
    path = claim_path(study, rung)
    me = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    for _ in range(2):
        if write_new(path, json.dumps(me)):
            return me
        try:
            owner = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            owner = {}
        if _alive_here(owner) is not False:
            return None
        path.unlink(missing_ok=True)  # its owner is gone (killed): take it over
    return None


def release(study: Path, rung: str) -> None:
    path = claim_path(study, rung)
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def claim_owner(study: Path, rung: str) -> str:
    try:
        owner = json.loads(claim_path(study, rung).read_text())
    except (OSError, ValueError):
        return "another process"
    return f"PID {owner.get('pid')} on {owner.get('host')} since {owner.get('started')}"


# ---------------------------------------------------------------------------------------------- one rung


def read_marker(study: Path, rung: str) -> dict[str, Any] | None:
    path = study / rung / MARKER
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise TimmAssembleError(f"{path} is unreadable ({err}); delete it to measure rung {rung} again") from err


def validation_folder(cfg: TrainConfig) -> Path | None:
    """The clean validation images as a folder (what the corruptions are applied to); None for a named dataset or a
    held-out fraction of one folder."""
    if cfg.dataset or cfg.val_fraction is not None or not cfg.data_dir:
        return None
    folder, split = split_folder(cfg.data_dir, cfg.val_split)
    return folder if split is not None else None


def best_row(result: engine.RunResult) -> dict[str, Any]:
    return next(r for r in result.metrics if r["epoch"] == result.best_epoch)


def measure(
    opts: StudyOptions, rung: str, cfg: TrainConfig, result: engine.RunResult, notes: list[str], shard: Shard | None
) -> dict:
    """The rung's numbers: top-1/5 of the exported best epoch, errors under corruption at the training size (each
    process scoring its `shard` of the images)."""
    row = best_row(result)
    ema = "ema_top1" in row
    record: dict[str, Any] = dict(
        rung=rung, adds=what_it_adds(cfg.description), model=cfg.model, model_kwargs=cfg.model_kwargs,
        weights=cfg.pretrained, epochs=cfg.epochs, img_size=cfg.img_size,
        eval_img_size=cfg.eval_img_size or cfg.img_size,
        teacher=None if cfg.teacher == "none" else cfg.teacher or cfg.teacher_logits, notes=notes,
        top1=row["ema_top1" if ema else "top1"], top5=row["ema_top5" if ema else "top5"], best_epoch=result.best_epoch,
        train_seconds=round(sum(r.get("epoch_time_s", 0.0) for r in result.metrics), 1),
        model_dir=str(result.export_dir), robustness=None,
    )  # fmt: skip
    folder = validation_folder(cfg)
    if opts.corruptions == NO_CORRUPTIONS:
        record["robustness_note"] = "corruptions off (--corruptions none)"
    elif folder is None:
        record["robustness_note"] = "no validation folder to corrupt (named dataset or --val-split)"
    else:
        found = robustness(
            f"local-dir:{result.export_dir}", str(folder), corruptions=opts.corruptions, severities=opts.severities,
            seed=opts.seed, img_size=cfg.img_size, batch_size=cfg.batch_size, workers=cfg.workers,
            limit=opts.robustness_images, device=opts.device or engine_device(), corruption_set=opts.corruption_set,
            shard=shard,
        )  # fmt: skip
        keep = ("input_size", "corruptions", "severities", "error", "num_images", "clean_top1", "label_map", "mce",
                "ce_reference", "corruption_set", "geometry", "geometry_detail")  # fmt: skip
        record["robustness"] = {k: found[k] for k in keep} | {"data_dir": str(folder)}
    return record


def engine_device() -> str:
    from .precision import cuda_in_use

    return "cuda" if cuda_in_use() else "cpu"


def measurement_barrier(state: PartialState) -> Any:
    """A gloo group for measuring a rung: every process scores its share of the corrupted images and the counts are
    summed over it, then the others wait on it while the main process writes the rung's marker. Its timeout outlasts
    a measurement (the default group's, 10-30 min, is shorter than the corruptions of a large validation set). If a
    process fails, the launcher ends the others. None in one process."""
    return dist.new_group(backend="gloo", timeout=MEASURE_WAIT) if state.num_processes > 1 else None


def run_rung(opts: StudyOptions, rung: str, cfg: TrainConfig, notes: list[str], barrier: Any = None) -> None:
    """Train (or resume) and measure the rung on every process; the main one writes the marker, last."""
    AcceleratorState._reset_state()  # each rung builds its own Accelerator (mixed precision may differ)
    GradientState._reset_state()
    state = PartialState()
    if state.is_main_process:
        for note in notes:
            print(f"{rung}: {note}")
    result = engine.run(cfg, command=f"{opts.command}  # rung {rung}", keep_process_group=True)
    shard = None if barrier is None else Shard.of(state, barrier)
    record = measure(opts, rung, cfg, result, notes, shard)
    if state.is_main_process:
        atomic_write(Path(opts.output_dir) / rung / MARKER, json.dumps(record, indent=2) + "\n")
    if barrier is not None:
        dist.barrier(group=barrier)


def describe_budget(configs: dict[str, TrainConfig]) -> str:
    presets = {r: load_preset(r) for r in configs}
    own = ", ".join(f"{r} {p['epochs']}" for r, p in presets.items())
    epochs = sorted({c.epochs for c in configs.values()})
    sizes = sorted({f"{c.img_size}/{c.eval_img_size or c.img_size}" for c in configs.values()})
    preset_sizes = sorted({f"{p['img_size']}/{p.get('eval_img_size', p['img_size'])}" for p in presets.values()})
    return (
        f"budget: {'/'.join(map(str, epochs))} epochs per rung (the presets': {own}); "
        f"train/eval size {', '.join(sizes)} px (the presets': {', '.join(preset_sizes)}); "
        "small budgets do not reproduce the paper's deltas"
    )


def settings_changed(study: Path, rung: str, cfg: TrainConfig) -> str | None:
    """How the rung's saved settings differ from the asked ones (`train --resume`'s comparison), None if they
    do not (or nothing is saved yet)."""
    saved = study / rung / "config.toml"
    differing = [k for k in engine.compare_configs(saved, cfg) if k not in HOW_NOT_WHAT]
    if not differing:
        return None
    old, new = tomllib.loads(saved.read_text()), tomllib.loads(format_config(cfg))
    return "; ".join(f"{k} {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in differing)


def check_resumable(opts: StudyOptions, planned: dict[str, tuple[TrainConfig, list[str]]]) -> None:
    """Before anything trains: a finished rung needs --resume auto, and a rung kept or resumed must have been trained
    under the settings asked now (a table compares rungs on one budget)."""
    study = Path(opts.output_dir)
    if opts.overwrite:
        return
    finished = [r for r in planned if read_marker(study, r) is not None]
    if finished and not opts.resume:
        raise TimmAssembleError(
            f"{study / finished[0]} is a finished rung; pass --resume auto to keep it and continue the study, "
            "or --overwrite to train it again"
        )
    changed = {r: c for r, (cfg, _) in planned.items() if opts.resume and (c := settings_changed(study, r, cfg))}
    if changed:
        rung, what = next(iter(changed.items()))
        raise TimmAssembleError(
            f"--resume auto: rung{'s' if len(changed) > 1 else ''} {', '.join(changed)} in {study} "
            f"{'were' if len(changed) > 1 else 'was'} trained with other settings ({rung}: {what}); run the study "
            f"with its settings, train {'them' if len(changed) > 1 else 'it'} again with --rungs "
            f"{','.join(changed)} --overwrite, or choose another --output-dir"
        )


def run_study(opts: StudyOptions) -> dict[str, Any]:
    """Train and measure the asked rungs that are not complete yet, then assemble the table of all complete ones."""
    study = Path(opts.output_dir)
    if opts.start_from not in ("scratch", "pretrained"):
        raise TimmAssembleError(f"--from must be scratch or pretrained, got {opts.start_from!r}")
    if opts.resume not in (None, "auto"):
        raise TimmAssembleError(f"--resume {opts.resume}: a study resumes with --resume auto (each rung its own)")
    if (study / "config.toml").is_file():  # a train/finetune run's own folder: its files are not a study's
        raise TimmAssembleError(
            f"--output-dir {study} is a training run folder (config.toml); a study keeps one folder per rung beside "
            "its table: choose another --output-dir"
        )
    rungs = parse_rungs(",".join(opts.rungs))
    planned = {r: rung_config(opts, r) for r in rungs}  # every config checked before anything trains
    check_resumable(opts, planned)
    state = process_state()
    barrier = measurement_barrier(state)
    if state.is_main_process:
        check_output_dir(study).mkdir(parents=True, exist_ok=True)  # not into an input or a timm run folder
        print(describe_budget({r: c for r, (c, _) in planned.items()}))
        if state.num_processes > 1:
            print(f"{state.num_processes} processes: every rung trains data-parallel on all of them, in turn")
    started = time.perf_counter()
    held: dict[str, str] = {}
    for rung, (cfg, notes) in planned.items():
        decision = [_decide(opts, rung) if state.is_main_process else None]
        broadcast_object_list(decision)  # every process trains the same rungs
        if decision[0] == "busy" and state.is_main_process:
            held[rung] = claim_owner(study, rung)
        if decision[0] != "run":
            continue
        try:
            run_rung(opts, rung, cfg, notes, barrier)
        finally:
            if state.is_main_process:
                release(study, rung)
    state.destroy_process_group()  # the rungs kept it for one another; the table is the main process's alone
    if not state.is_main_process:
        return {}
    held = {r: who for r, who in held.items() if read_marker(study, r) is None}  # finished meanwhile: fine
    if held:
        raise TimmAssembleError(
            f"no table: {', '.join(f'{r} is held by {who}' for r, who in held.items())}; the study that completes "
            "the last rung writes the table (or run this command again with --resume auto when it has finished)"
        )
    return write_final_table(opts, rungs, time.perf_counter() - started)


def _decide(opts: StudyOptions, rung: str) -> str:
    """`run` (claimed by this process), `kept` (complete) or `busy` (another process holds it), said in one line."""
    study = Path(opts.output_dir)
    if read_marker(study, rung) is not None and not opts.overwrite:
        print(f"{rung}: complete, kept")
        return "kept"
    if claim(study, rung) is None:
        print(
            f"{rung}: skipped, claimed by {claim_owner(study, rung)} (delete {claim_path(study, rung)} if it is gone)"
        )
        return "busy"
    (study / rung / MARKER).unlink(missing_ok=True)  # --overwrite: not complete until measured again
    return "run"


# ---------------------------------------------------------------------------------------------- the table


def relative_ce(errors: dict[str, dict[str, float]], base: dict[str, dict[str, float]]) -> float | None:
    """mCE (%) of `errors` normalised per corruption by `base`'s summed errors over the same severities."""
    ces = []
    for name, per_severity in errors.items():
        total = sum(base.get(name, {}).get(s, 0.0) for s in per_severity)
        if name not in base or total <= 0:
            return None
        ces.append(sum(per_severity.values()) / total)
    return round(100.0 * sum(ces) / len(ces), 2) if ces else None


def mce_column(records: list[dict[str, Any]]) -> tuple[list[float | None], str]:
    """mCE per rung: normalised by a benchmark's published errors where every rung has them (AlexNet's on
    ImageNet under imagenet-c, RobustBench Standard's on CIFAR-10 under cifar-c), else relative to rung e0."""
    robust = [r["robustness"] for r in records]
    references = {x["ce_reference"] if x and x.get("mce") is not None else None for x in robust}
    if robust and len(references) == 1 and (published := PUBLISHED.get(references.pop())):
        how = f"{published.corruption_set} protocol, corrupted on the fly"
        return [x["mce"] for x in robust], f"mCE: normalised by {published.model}'s published errors ({how})"
    reference = next((r for r in records if r["rung"] == "e0"), None)
    if reference is None:
        return [None] * len(records), "mCE: needs rung e0 (the reference) in the study"
    e0 = reference["robustness"]
    if e0 is None:
        return [None] * len(records), f"mCE: not measured for e0, the reference ({reference.get('robustness_note')})"
    values = []
    for x in robust:
        same = x is not None and all(x.get(k) == e0.get(k) for k in ("input_size", "corruptions", "corruption_set"))
        values.append(relative_ce(x["error"], e0["error"]) if same else None)
    corruptions = ", ".join(e0["corruptions"])
    constants = f"the {e0['corruption_set']} set's " if e0.get("corruption_set") else ""
    return values, f"mCE: relative to rung e0 on the same corrupted images (100 = e0; {constants}{corruptions})"


def table_rows(records: list[dict[str, Any]], speed: dict[str, dict[str, Any]]) -> tuple[list[dict], str]:
    mces, mce_note = mce_column(records)
    rows = []
    for i, (r, mce) in enumerate(zip(records, mces, strict=True)):
        bench = speed.get(r["rung"], {})
        rows.append(
            dict(
                rung=r["rung"], adds=r["adds"], top1=round(r["top1"], 2), top5=round(r["top5"], 2),
                delta_prev=None if i == 0 else round(r["top1"] - records[i - 1]["top1"], 2),
                delta_e0=round(r["top1"] - records[0]["top1"], 2) if records[0]["rung"] == "e0" else None,
                mce=mce, corruption_set=(r["robustness"] or {}).get("corruption_set"),
                img_per_s=bench.get("infer_img_per_s"), params_m=bench.get("params_m"),
                gmacs=bench.get("gmacs"), epochs=r["epochs"], img_size=r["img_size"],
                kd="on" if r["teacher"] else "off" if distills(r["rung"]) else "-",
            )
        )  # fmt: skip
    return rows, mce_note


def _num(value: Any, fmt: str = ".2f", signed: bool = False) -> str:
    if value is None:
        return "-"
    return format(value, ("+" if signed else "") + fmt)


def format_markdown(report: dict[str, Any]) -> str:
    head = (
        "| rung | what it adds | top-1 | Δ prev | Δ e0 | top-5 | mCE | corruption set | img/s | params (M) | GMACs "
        "| epochs | px |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in report["rows"]:
        adds = r["adds"] + (" (KD off)" if r["kd"] == "off" else "")
        lines.append(
            f"| {r['rung']} | {adds} | {_num(r['top1'])} | {_num(r['delta_prev'], signed=True)} | "
            f"{_num(r['delta_e0'], signed=True)} | {_num(r['top5'])} | {_num(r['mce'], '.1f')} | "
            f"{r.get('corruption_set') or '-'} | "
            f"{_num(r['img_per_s'], '.1f')} | {_num(r['params_m'])} | {_num(r['gmacs'], '.3g')} | {r['epochs']} | "
            f"{r['img_size']} |"
        )
    lines += ["", *report["notes"]]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["rung"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def plot_study(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Left: top-1 vs inference throughput, the ladder drawn as a path. Right: mCE per rung."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report["rows"]
    fig = Figure(figsize=(11, 4.4))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=(3, 2)))
    timed = [r for r in rows if r["img_per_s"] is not None]
    left.plot([r["img_per_s"] for r in timed], [r["top1"] for r in timed], "-o", color="tab:blue", lw=1.2)
    for r in timed:
        left.annotate(r["rung"], (r["img_per_s"], r["top1"]), textcoords="offset points", xytext=(5, 4), fontsize=9)
    left.set_xlabel(f"inference img/s ({report['speed']['config'].get('device_name', '?')})" if timed else "img/s")
    left.set_ylabel("top-1 (%)")
    left.set_title("the ladder: top-1 vs throughput")
    left.grid(alpha=0.3)
    right.bar(range(len(rows)), [r["mce"] or 0.0 for r in rows], color="tab:orange")
    right.set_xticks(range(len(rows)), [r["rung"] for r in rows])
    right.axhline(100, color="black", lw=0.8, ls=":")
    right.set_ylabel("mCE (%)")
    right.set_title(report["mce_note"].split(" on ", 1)[0].split(" (", 1)[0], fontsize=9)
    if all(r["mce"] is None for r in rows):
        right.text(0.5, 0.5, "no mCE", transform=right.transAxes, ha="center")
    fig.suptitle(report["title"], fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def measure_speed(opts: StudyOptions, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every complete rung's exported model in one interleaved benchmark at the training size."""
    if not records:
        return {"config": {}, "models": []}
    models = [f"local-dir:{r['model_dir']}" for r in records]
    return benchmark(
        models, device=opts.device, batch_size=opts.bench_batch_size, img_size=records[0]["img_size"],
        repeats=opts.bench_repeats, seed=opts.seed,
    )  # fmt: skip


def write_final_table(opts: StudyOptions, asked: list[str], seconds: float) -> dict[str, Any]:
    """The table, once: under the study folder's lock (studies sharing the folder finish one at a time), and not
    again when the table on disk already holds exactly the complete rungs (printed instead)."""
    study = Path(opts.output_dir)
    lock = FolderLock(study, "study folder", hint="another study is writing its table; wait a moment")
    lock.acquire(timeout=600)
    try:
        written = current_table(study, complete_records(study))
        if written is not None:
            print((study / "study.md").read_text(), end="")
            print(f"{study / 'study.md'} already holds these rungs: kept")
            return written
        return assemble(opts, asked, seconds)
    finally:
        lock.release()


def complete_records(study: Path) -> list[dict[str, Any]]:
    """The markers of the complete rungs in the study folder, in ladder order."""
    return [m for m in (read_marker(study, r) for r in LADDER if (study / r).is_dir()) if m is not None]


def current_table(study: Path, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The report in study.json when it is final and made of exactly these rung records; None otherwise."""
    try:
        report = json.loads((study / "study.json").read_text())
    except (OSError, ValueError):
        return None
    final = isinstance(report, dict) and report.get("missing") == [] and report.get("rungs") == records
    return report if final and (study / "study.md").is_file() else None


def assemble(opts: StudyOptions, asked: list[str], seconds: float) -> dict[str, Any]:
    """The table of every complete rung in the study folder; the rungs asked for or started but not complete are
    named as missing. Writes study.md, study.csv, study.json and study.png."""
    study = Path(opts.output_dir)
    present = [r for r in LADDER if (study / r).is_dir()]
    records = complete_records(study)
    done = [r["rung"] for r in records]
    missing = [r for r in LADDER if (r in asked or r in present) and r not in done]
    speed = measure_speed(opts, records)
    by_rung = {r["rung"]: row for r, row in zip(records, speed["models"], strict=True)}
    rows, mce_note = table_rows(records, by_rung)
    data = records[0]["robustness"]["data_dir"] if records and records[0]["robustness"] else opts.train.get("data_dir")
    notes = [
        f"top-1/top-5: the run's own evaluation of its best epoch on the validation split ({data}).",
        mce_note + ".",
        *sorted(
            {
                f"Corruption set {x['corruption_set']}: {x.get('geometry_detail')}."
                for x in (r["robustness"] for r in records)
                if x and x.get("corruption_set")
            }
        ),
        f"img/s, params, GMACs: all rungs in one process, interleaved, batch {speed['config'].get('batch_size')}, "
        f"{speed['config'].get('img_size')} px, on {speed['config'].get('device_name')}.",
        "Epochs in 'what it adds' are the paper's; this study's are in the epochs column. Small budgets do not "
        "reproduce the paper's deltas.",
    ]
    if missing:
        notes.append(f"Missing (not complete yet): {', '.join(missing)}; run the same command with --resume auto.")
    title = f"{study.name}: {len(rows)} rungs" + (f", missing {', '.join(missing)}" if missing else "")
    report = dict(
        title=title, rows=rows, missing=missing, mce_note=mce_note, notes=notes, speed=speed, rungs=records,
        seconds_this_call=round(seconds, 1),
    )  # fmt: skip
    markdown = format_markdown(report)
    print(markdown, end="")
    atomic_write(study / "study.md", markdown)
    write_csv(study / "study.csv", rows)
    atomic_write(study / "study.json", json.dumps(report, indent=2) + "\n")
    plot_study(report, study / "study.png")
    print(f"wrote {study / 'study.md'}, study.csv, study.json, study.png")
    return report


__all__ = ["DEFAULT_RUNGS", "LADDER", "StudyOptions", "assemble", "parse_rungs", "run_study"]
