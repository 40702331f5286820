"""The training loop shared by `train.py` and `finetune.py`: timm pieces, accelerate for devices and processes.

accelerate does all device placement, mixed precision, gradient accumulation, distributed data parallel,
checkpoint state and metric gathering; there is no distributed code here. One epoch = train, evaluate,
append metrics, checkpoint (`last`, and `best` when the eval metric improved), export the best model.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
from accelerate.utils import ProjectConfiguration, broadcast_object_list, set_seed
from timm.data import create_transform, resolve_data_config
from timm.layers import convert_sync_batchnorm
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from timm.scheduler import create_scheduler_v2, scheduler_kwargs
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader

from ..data.auto_augment import create_train_transform
from ..data.datasets import DataSplits, SkippingCollate, build_data_splits
from ..data.images import set_max_image_pixels
from ..data.synthetic import make_synthetic_image_folder
from ..errors import SharedError, TimmAssembleError
from ..evaluation.scoring import topk_correct
from ..fileio import atomic_write, check_output_dir, leftover_names, outside_timm_run
from ..layers import drop_block_keep_prob, set_drop_block_keep_prob
from ..loading import load_weights
from ..locks import FolderLock
from ..processes import LauncherWatch, check_launch
from ..progress import Progress, format_seconds
from ..weights.publish import plan_publish, publish
from . import checkpoint as ckpt
from .best_model import check_push_target, export_best_model, released_base_model
from .config import NO_TEACHER, TrainConfig, format_config
from .losses import build_recipe, build_task
from .metrics import (
    METRICS_NAME,
    SUMMARY_NAME,
    confusion_counts,
    plot_confusion,
    plot_curves,
    read_metrics,
    write_metrics,
    write_summary,
)
from .model_setup import (
    BuiltModel,
    build_model,
    build_teacher,
    freeze_backbone,
    head_parameters,
    official_weight_decay_groups,
    reset_batch_norm_stats,
    set_train_mode,
)
from .precision import Precision, choose_precision, cpu_has_native_bf16
from .preflight import check_model_settings
from .teacher import TeacherView, recipe_train_data, teacher_transform

_logger = logging.getLogger(__name__)

CONFUSION_MAX_CLASSES = 50
CURVES_NAME, CONFUSION_NAME = "curves.png", "confusion_matrix.png"


@dataclass
class RunResult:
    output_dir: Path
    export_dir: Path | None
    best_metric: float | None
    best_epoch: int | None
    epochs_run: int
    steps: int
    metrics: list[dict[str, Any]]
    lr: float  # peak lr after linear scaling with the global batch


# ---------------------------------------------------------------------------------------------- setup


def synthetic_root(cfg: TrainConfig) -> Path:
    """The built-in dataset is cached under the temp dir, keyed by its parameters."""
    key = f"{cfg.synthetic_classes}c-{cfg.synthetic_images}i-{cfg.synthetic_image_size}px-s{cfg.seed}"
    return Path(tempfile.gettempdir()) / "timm-assemble-synthetic" / key  # not a valid module name: no shadowing


def prepare_data_dir(cfg: TrainConfig, accelerator: Accelerator) -> None:
    if not cfg.synthetic:
        return
    root = synthetic_root(cfg)
    with accelerator.local_main_process_first():
        make_synthetic_image_folder(
            root,
            num_classes=cfg.synthetic_classes,
            images_per_class={"train": cfg.synthetic_images, "val": max(4, cfg.synthetic_images // 2)},
            image_size=cfg.synthetic_image_size,
            seed=cfg.seed,
        )
    cfg.data_dir = str(root)
    cfg.dataset = ""


def resolve_output_dir(cfg: TrainConfig, accelerator: Accelerator) -> Path:
    """The run folder: given, or OUTPUT/EXPERIMENT as timm names it, by default ./outputs/<mode>-<model>-<time>
    (one name for all processes)."""
    if cfg.output_dir is None and cfg.experiment is not None:
        cfg.output_dir = str(Path(cfg.output or "outputs") / cfg.experiment)
    if cfg.resume not in (None, "auto"):
        checkpoint, run_dir = ckpt.resume_target(Path(cfg.resume))
        cfg.resume = str(checkpoint)
        if cfg.output_dir is None and run_dir is not None:
            cfg.output_dir = str(run_dir)  # --resume PATH alone continues the run that holds PATH
    if cfg.output_dir is None:
        if cfg.resume == "auto":
            raise TimmAssembleError(
                "--resume auto needs the run folder to continue: --output-dir DIR, or --output PARENT --experiment NAME"
            )
        if cfg.resume:
            raise TimmAssembleError(
                f"--resume {cfg.resume}: not in a run folder (RUN/checkpoints/NAME, a file in it, or RUN); "
                "for a checkpoint kept elsewhere pass --output-dir, the run folder to continue"
            )
        name = f"{cfg.mode}-{cfg.model.replace('/', '_').replace(':', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
        holder = [str(Path(cfg.output or "outputs") / name)]
        broadcast_object_list(holder)
        cfg.output_dir = holder[0]
    cfg.output_dir = str(outside_timm_run(Path(cfg.output_dir)))  # never into timm's own run folder
    return check_output_dir(Path(cfg.output_dir))


def lock_output_dir(out: Path, accelerator: Accelerator) -> FolderLock:
    """The main process owns the run folder until the run ends in any way; a second run into it stops here,
    every process with the same one line (the others would otherwise wait for the main one forever)."""
    lock = FolderLock(out, "output dir", "wait for it to finish, or choose another --output-dir")
    refusal: list[str | None] = [None]
    if accelerator.is_main_process:
        try:
            lock.acquire()
        except TimmAssembleError as err:
            refusal[0] = str(err)
    broadcast_object_list(refusal)
    if refusal[0] is not None:
        raise SharedError(refusal[0], main=accelerator.is_main_process)
    return lock


def build_transforms(cfg: TrainConfig, model: nn.Module) -> tuple[Any, Any, dict[str, Any]]:
    """Train transform (RandomResizedCrop, flip, AA, erasing) and eval transform, both from the model's
    data config (mean/std/interpolation), with the sizes the config asks for."""
    data_cfg = resolve_data_config(model=model)
    data_cfg.update({k: tuple(v) * (3 // len(v)) for k, v in (("mean", cfg.mean), ("std", cfg.std)) if v})
    img_size = cfg.img_size or data_cfg["input_size"][-1]
    eval_size = cfg.eval_img_size or img_size
    crop_pct = cfg.crop_pct or data_cfg["crop_pct"]
    train_tf = create_train_transform(
        input_size=img_size,
        scale=cfg.scale,
        hflip=cfg.hflip,
        color_jitter=cfg.color_jitter or 0.0,
        auto_augment=cfg.aa,
        interpolation=data_cfg["interpolation"],
        mean=data_cfg["mean"],
        std=data_cfg["std"],
        re_prob=cfg.reprob,
    )
    eval_tf = create_transform(
        input_size=eval_size,
        is_training=False,
        interpolation=data_cfg["interpolation"],
        mean=data_cfg["mean"],
        std=data_cfg["std"],
        crop_pct=crop_pct,
        crop_mode=data_cfg.get("crop_mode", "center"),
    )
    # what the exported model's data config says: the sizes and crop we trained and evaluated with (replacing
    # those of the weights we may have started from), and no tag or Hub id of those weights
    export_cfg = dict(
        input_size=(3, img_size, img_size),
        test_input_size=(3, eval_size, eval_size),
        test_crop_pct=crop_pct,
        interpolation=data_cfg["interpolation"],
        mean=tuple(data_cfg["mean"]),
        std=tuple(data_cfg["std"]),
        crop_pct=crop_pct,
        tag=None,
        hf_hub_id=None,
        pool_size=None,
    )
    return train_tf, eval_tf, export_cfg


def build_optimizer(cfg: TrainConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """timm optimizer; no weight decay on biases and norm weights; per-group `lr_scale` for the backbone
    (`--backbone-lr-scale`) or per depth (`--layer-decay`, through the model's group_matcher)."""
    common = dict(lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    if cfg.layer_decay:
        return create_optimizer_v2(model, cfg.opt, layer_decay=cfg.layer_decay, **common)
    no_wd = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    if cfg.decay_biases:
        groups = official_weight_decay_groups(model, cfg.weight_decay)
    else:
        groups = param_groups_weight_decay(model, cfg.weight_decay, no_weight_decay_list=no_wd)
    if cfg.backbone_lr_scale != 1.0:
        head = {id(p) for p in head_parameters(model)}
        split = []
        for group in groups:
            for is_head in (True, False):
                params = [p for p in group["params"] if (id(p) in head) == is_head]
                if params:
                    scale = 1.0 if is_head else cfg.backbone_lr_scale
                    split.append(dict(group, params=params, lr_scale=scale))
        groups = split
    return create_optimizer_v2(groups, cfg.opt, **common)


def keep_prob_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """DropBlock keep-prob, linear per step from drop_block_start to drop_block_end (1 - drop_block_rate)."""
    return drop_block_keep_prob(step, total_steps, *cfg.drop_block_keep_probs)


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Run:
    """What one run holds: built once by `setup`; `state` is what checkpoints carry and resume restores."""

    cfg: TrainConfig
    accelerator: Accelerator
    out: Path
    command: str
    built: BuiltModel
    splits: DataSplits
    model: nn.Module
    task: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    recipe: Any
    ema: ModelEmaV3 | None
    train_loader: DataLoader
    val_loader: DataLoader
    export_data_cfg: dict[str, Any]
    base_model: str | None
    precision: Precision
    lr: float
    global_batch: int
    updates_per_epoch: int
    frozen: int = 0
    start_from: ckpt.ResumePoint | None = None
    state: ckpt.TrainState = field(default_factory=ckpt.TrainState)
    lock: FolderLock | None = None

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def total_steps(self) -> int:
        return self.updates_per_epoch * self.cfg.epochs

    @property
    def export_dir(self) -> Path:
        return self.out / "model"

    @property
    def metrics_path(self) -> Path:
        return self.out / METRICS_NAME

    def log(self, message: str) -> None:
        self.accelerator.print(message)

    def report_skipped(self, bad: list[str]) -> int:
        for item in bad:
            if self.cfg.strict_data:
                raise TimmAssembleError(f"unreadable image {item} (--strict-data)")
            _logger.warning("skipped unreadable image %s", item)
        return len(bad)


def tracker_names(cfg: TrainConfig) -> list[str]:
    """`--log-with` as a list, each one checked: accelerate silently drops a tracker that is not installed."""
    if not cfg.log_with:
        return []
    names = [n.strip() for n in cfg.log_with.split(",") if n.strip()]
    if "all" in names:
        return ["all"]
    known, available = LOGGER_TYPE_TO_CLASS, {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in known:
            raise TimmAssembleError(f"--log-with {name}: not an accelerate tracker; known: {', '.join(sorted(known))}")
        if name not in available:
            hint = " (pip install 'timm-assemble[tensorboard]')" if name == "tensorboard" else f" (pip install {name})"
            raise TimmAssembleError(f"--log-with {name}: its package is not installed{hint}")
    return names


def tracker_config(cfg: TrainConfig, run: Run) -> dict[str, Any]:
    """The resolved config as hyper-parameters: trackers take numbers, strings and booleans only."""
    values = {**cfg.to_dict(), "lr_peak": run.lr, "global_batch": run.global_batch, "precision": run.precision.mode}
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items() if v is not None}


def check_sync_bn(cfg: TrainConfig, accelerator: Accelerator) -> None:
    """SyncBatchNorm runs on GPUs only: on CPU processes it would fail in the first batch."""
    if cfg.sync_bn and accelerator.num_processes > 1 and accelerator.device.type == "cpu":
        raise SharedError(
            "--sync-bn: SyncBatchNorm needs GPUs and these processes run on CPU; drop --sync-bn (per-replica "
            "BatchNorm, as the official recipe)",
            main=accelerator.is_main_process,
        )


def setup(cfg: TrainConfig, command: str | None = None) -> Run:
    """Everything before the first step, every check first: a bad input fails before anything is written."""
    precision = choose_precision(cfg)
    check_model_settings(cfg)
    if cfg.push_to_hub:
        check_push_target(cfg.push_to_hub)
    accelerator = Accelerator(
        mixed_precision=precision.mode,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        dynamo_backend="inductor" if cfg.compile else None,
        log_with=tracker_names(cfg) or None,
        project_config=ProjectConfiguration(logging_dir=tempfile.gettempdir()),  # the run folder, once known
    )
    check_launch(accelerator.num_processes, torch.cuda.is_available())
    check_sync_bn(cfg, accelerator)
    command = command or shlex.join(["python", *sys.argv])
    set_seed(cfg.seed)
    set_max_image_pixels(cfg.max_image_pixels)  # before the loaders' workers are forked: they inherit it
    prepare_data_dir(cfg, accelerator)
    out = resolve_output_dir(cfg, accelerator)
    lock = lock_output_dir(out, accelerator)
    try:
        return _setup_locked(cfg, command, accelerator, precision, out, lock)
    except BaseException:
        lock.release()
        raise


def _setup_locked(
    cfg: TrainConfig, command: str, accelerator: Accelerator, precision: Precision, out: Path, lock: FolderLock
) -> Run:
    ckpt.check_output_dir(out, cfg.resume, cfg.overwrite)
    accelerator.project_configuration.logging_dir = str(out)
    start_from = ckpt.select_resume(out, cfg.resume)

    splits = build_data_splits(
        cfg.data_dir, cfg.dataset, cfg.train_split, cfg.val_split, cfg.val_fraction, cfg.dataset_download, cfg.seed
    )
    num_classes = splits.num_classes
    built, teacher, frozen = build_models(cfg, num_classes)
    model = built.model
    recipe = build_recipe(cfg, num_classes, teacher)
    mixing = cfg.mixup > 0 or cfg.cutmix > 0
    if mixing and cfg.mixup_mode != "pair" and cfg.batch_size % 2:
        raise TimmAssembleError(f"mixup/cutmix pair samples: --batch-size must be even, got {cfg.batch_size}")
    base_model = released_base_model(cfg, model, built.pretrained)
    train_tf, eval_tf, export_data_cfg = build_transforms(cfg, model)
    if teacher is not None:
        train_tf = TeacherView(train_tf, teacher_transform(teacher))
    train_loader, val_loader = build_loaders(cfg, splits, train_tf, eval_tf, recipe.images_per_sample, mixing)

    global_batch = cfg.batch_size * accelerator.num_processes * cfg.grad_accum_steps
    lr = cfg.lr if cfg.lr is not None else cfg.lr_base * global_batch / cfg.lr_base_size
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher = teacher.to(memory_format=torch.channels_last)
    if cfg.sync_bn and accelerator.num_processes > 1:
        model = convert_sync_batchnorm(model)  # before the EMA copy, as timm's train.py
    model = model.to(accelerator.device)
    optimizer = build_optimizer(cfg, model, lr)
    ema = ModelEmaV3(model, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup) if cfg.model_ema else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    if teacher is not None:
        teacher = teacher.to(accelerator.device)
    updates_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
    scheduler = build_scheduler(cfg, optimizer, updates_per_epoch)
    task = build_task(model, cfg, num_classes, accelerator.device)
    identity = ckpt.run_identity(
        cfg.model, built.arch_kwargs, splits.label_names, cfg.data_dir or cfg.dataset, ema is not None
    )
    return Run(
        cfg, accelerator, out, command, built, splits, model, task, optimizer, scheduler, recipe, ema,
        train_loader, val_loader, export_data_cfg, base_model, precision, lr, global_batch, updates_per_epoch,
        frozen=frozen, start_from=start_from, state=ckpt.TrainState(run=identity), lock=lock,
    )  # fmt: skip


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, updates_per_epoch: int) -> Any:
    """timm's scheduler from the config's timm train.py scheduler settings, read by timm's own `scheduler_kwargs`;
    the loop calls both `step_update` (every update) and `step` (every epoch), as timm's train.py, and
    `sched_on_updates` picks which one moves the lr. With `warmup_prefix` the decay spans the steps after the
    warm-up (the official `learning_rate_with_decay`: cosine over total - warm-up steps) and the run still lasts
    `epochs`."""
    kwargs = scheduler_kwargs(cfg)
    kwargs["num_epochs"] = cfg.epochs - cfg.warmup_epochs if cfg.warmup_prefix else cfg.epochs
    scheduler, _ = create_scheduler_v2(optimizer, **kwargs, updates_per_epoch=updates_per_epoch)
    return scheduler


def build_models(cfg: TrainConfig, num_classes: int) -> tuple[BuiltModel, nn.Module | None, int]:
    """The student (checked against the data), the KD teacher if any, and how many tensors were frozen."""
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise TimmAssembleError(f"--num-classes is {cfg.num_classes} but the data has {num_classes} classes")
    built = build_model(cfg, num_classes)
    model = built.model
    if cfg.initial_checkpoint:
        load_weights(model, cfg.initial_checkpoint, what=f"--initial-checkpoint {cfg.initial_checkpoint}")
    if getattr(model, "num_classes", num_classes) != num_classes:
        raise TimmAssembleError(f"the model predicts {model.num_classes} classes but the data has {num_classes}")
    if cfg.drop_block_keep_probs is not None and set_drop_block_keep_prob(model, 1.0) == 0:
        raise TimmAssembleError(f"DropBlock is scheduled but {cfg.model} has no DropBlock layers")
    if cfg.reset_bn_stats:
        reset_batch_norm_stats(model)
    teacher = build_teacher(cfg, num_classes) if cfg.distilling and not cfg.teacher_logits else None
    frozen = freeze_backbone(model) if cfg.freeze_backbone else 0
    return built, teacher, frozen


def build_loaders(
    cfg: TrainConfig, splits: DataSplits, train_tf: Any, eval_tf: Any, images_per_sample: int, mixing: bool
) -> tuple[DataLoader, DataLoader]:
    train_ds, val_ds = splits.with_transforms(train_tf, eval_tf)
    train_ds, load_batch = recipe_train_data(cfg, train_ds, images_per_sample, splits.num_classes)
    loader_kw = dict(num_workers=cfg.workers, pin_memory=torch.cuda.is_available(), persistent_workers=False)
    train_loader = DataLoader(
        train_ds, batch_size=load_batch, shuffle=True, drop_last=True, collate_fn=SkippingCollate(even=mixing),
        **loader_kw,
    )  # fmt: skip
    val_loader = DataLoader(
        val_ds, batch_size=cfg.batch_size, shuffle=False, drop_last=False, collate_fn=SkippingCollate(), **loader_kw
    )
    return train_loader, val_loader


def resume(run: Run) -> None:
    """Restore the checkpoint (if any), make the run's outputs agree with it, write the run's config and command."""
    acc, cfg = run.accelerator, run.cfg
    if run.start_from is not None:
        differing = compare_configs(run.out / "config.toml", cfg)
        if differing and acc.is_main_process:
            _logger.warning("resuming with settings that differ from the saved config.toml: %s", ", ".join(differing))
        run.state = ckpt.load_checkpoint(acc, run.start_from, run.state.run)
    elif cfg.resume == "auto":
        run.log(f"--resume auto: {ckpt.scratch_note(run.out)}")
    run.scheduler.step_update(num_updates=run.state.step)
    run.scheduler.step(run.state.epoch)
    unlogged: list[dict[str, Any]] = []
    if acc.is_main_process:
        if run.start_from is None and cfg.overwrite:
            ckpt.clear_run(run.out)
        elif cfg.resume:
            unlogged = align_outputs(run)
        atomic_write(run.out / "config.toml", format_config(cfg))
        atomic_write(run.out / "command.txt", run.command + "\n")
    acc.wait_for_everyone()
    names = {"wandb": {"name": run.out.name}, "mlflow": {"run_name": run.out.name}}
    acc.init_trackers(cfg.tracker_project, config=tracker_config(cfg, run), init_kwargs=names)
    for row in unlogged:
        log_epoch(run, row)


def align_outputs(run: Run) -> list[dict[str, Any]]:
    """After a resume, every output holds exactly the epochs the checkpoint holds: metrics.jsonl, summary.csv,
    the plots and model/ are rewritten from it, and what a killed run left half-written is removed. Returns
    the checkpoint's rows the killed run had not recorded yet (its trackers had not seen them either).

    Rows come from the checkpoint (older checkpoints carry none: the file's rows up to its epoch are kept).
    model/ is exported again when missing or when the checkpoint is the best epoch (a kill may have come
    between the checkpoint and the export); a model/ that may hold a later epoch is moved aside, not deleted.
    """
    state, out = run.state, run.out
    for name in (METRICS_NAME, SUMMARY_NAME, CURVES_NAME, CONFUSION_NAME, "model", "config.toml", "command.txt"):
        for leftover in leftover_names(out / name, "tmp") + leftover_names(out / name, "old"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    try:
        old = read_metrics(run.metrics_path)
    except TimmAssembleError as err:  # the checkpoint's rows replace a damaged file
        _logger.warning("%s: rewritten from the checkpoint", err)
        old = []
    rows = state.rows or [r for r in old if r["epoch"] <= state.epoch]
    if rows != old:
        if rows:
            write_metrics(run.metrics_path, rows)
            write_summary(out / SUMMARY_NAME, rows)
        else:
            run.metrics_path.unlink(missing_ok=True)
            (out / SUMMARY_NAME).unlink(missing_ok=True)
    if rows:
        plot_curves(rows, out / CURVES_NAME, title=run.cfg.description or run.cfg.model)
        plot_best_confusion(run)
    later = any(r.get("best_epoch") == r["epoch"] > state.epoch for r in old)
    if run.export_dir.is_dir() and (state.best_epoch is None or later):
        aside = run.export_dir.with_name(f"model.moved-aside.{uuid.uuid4().hex[:8]}")
        os.replace(run.export_dir, aside)
        _logger.warning(
            "%s may hold an epoch the checkpoint does not (resumed at epoch %d): moved to %s",
            run.export_dir, state.epoch, aside,
        )  # fmt: skip
    if rows and state.best_epoch is not None and (state.best_epoch == state.epoch or not run.export_dir.is_dir()):
        export_best_epoch(run, rows)
    recorded = {r["epoch"] for r in old}
    return [r for r in rows if r["epoch"] not in recorded]


def export_best_epoch(run: Run, rows: list[dict[str, Any]]) -> None:
    """model/ of the checkpoint's best epoch: the weights in memory when that is the resumed epoch, else those
    of `checkpoints/best`."""
    state, out = run.state, run.export_dir
    row = next(r for r in rows if r["epoch"] == state.best_epoch)
    if state.best_epoch == state.epoch:
        export_best(run, row)
        return
    weights = ckpt.best_weights(run.out / "checkpoints", state.best_epoch, ema=run.ema is not None)
    if weights is None:
        _logger.warning("%s is missing and checkpoints/best cannot restore it: the next best epoch writes it", out)
        return
    model = copy.deepcopy(run.accelerator.unwrap_model(run.model)).cpu()
    model.load_state_dict(weights)
    export_best(run, row, model)


def describe(run: Run) -> None:
    """What is about to happen, in a few lines."""
    cfg, acc, built = run.cfg, run.accelerator, run.built
    n_params = sum(p.numel() for p in acc.unwrap_model(run.model).parameters())
    repeats = run.recipe.images_per_sample
    run.log(f"[{cfg.mode}] {cfg.description or cfg.model}")
    run.log(f"  weights: {built.source}" + (f" (base model {run.base_model})" if run.base_model else ""))
    for note in built.notes:
        run.log(f"  NOTE: {note}")
    run.log(
        f"  model {cfg.model} {built.arch_kwargs or ''}: {n_params / 1e6:.2f} M params, {run.num_classes} classes"
        + (f", backbone frozen ({run.frozen} tensors)" if run.frozen else "")
    )
    run.log(
        f"  data: {run.splits.num_train} train / {run.splits.num_val} val images from {cfg.data_dir or cfg.dataset}"
        + (f", each {repeats} times per epoch (official mixup pairs)" if repeats > 1 else "")
    )
    run.log(f"  classes: {run.splits.summary()}")
    for note in run.splits.notes:
        run.log(f"  NOTE: {note}")
    run.log(
        f"  {acc.num_processes} process(es) on {acc.device}, global batch {run.global_batch}, lr {run.lr:.4g}, "
        f"{run.updates_per_epoch} updates/epoch"
    )
    run.log(f"  mixed precision: {run.precision.mode} ({run.precision.reason})")
    if acc.num_processes > 1:
        bn = "synchronised across processes (--sync-bn)" if cfg.sync_bn else "per-replica statistics (no --sync-bn)"
        run.log(f"  BatchNorm: {bn}")
    elif cfg.sync_bn:
        run.log("  NOTE: --sync-bn changes nothing in one process")
    if run.precision.mode == "bf16" and acc.device.type == "cpu" and not cpu_has_native_bf16():
        run.log(
            "  NOTE: no native bf16 on this CPU (AVX512-BF16/AMX): slow reference convolutions, much slower than fp32"
        )
    if cfg.teacher == NO_TEACHER:
        run.log("  KD: off (--teacher none)")
    elif cfg.teacher_logits:
        run.log(f"  KD teacher logits {cfg.teacher_logits} T={cfg.kd_temperature} w={cfg.kd_weight}")
    elif cfg.distilling:
        teacher = " ".join(filter(None, (cfg.teacher, cfg.teacher_weights)))
        run.log(f"  KD teacher {teacher} T={cfg.kd_temperature} w={cfg.kd_weight}")
    if cfg.log_with:
        run.log(f"  tracking: {cfg.log_with} every {cfg.log_interval} steps (logging dir {run.out})")
    if cfg.push_to_hub:
        every = f" and every {cfg.push_every} epochs" if cfg.push_every else ""
        run.log(f"  push to the Hub: {cfg.push_to_hub} at the end{every}")
    if run.start_from is not None:
        point, state = run.start_from, run.state
        run.log(f"  resumed from {point.path} ({point.reason}) at epoch {state.epoch}, step {state.step}")
    run.log(f"  output: {run.out}")


def train_one_epoch(run: Run, epoch: int) -> dict[str, Any]:
    """One pass over the training data. The loss is summed on the device and read at log intervals only:
    no device sync per step."""
    acc, cfg, model = run.accelerator, run.cfg, run.model
    set_train_mode(model, cfg.freeze_backbone)
    run.task.train()
    set_train_mode(model, cfg.freeze_backbone)  # task.train() flips the student back to train mode
    loss_sum = torch.zeros((), device=acc.device)
    first_bad = torch.full((), -1, device=acc.device, dtype=torch.long)  # first step with a non-finite loss
    seen, skipped = 0, 0
    window = _Window(time.perf_counter())
    progress = Progress(len(run.train_loader), f"epoch {epoch + 1}/{cfg.epochs}", enabled=acc.is_main_process)
    keep_prob = 1.0
    start = time.perf_counter()
    for images, targets, bad in run.train_loader:
        skipped += run.report_skipped(bad)
        with acc.accumulate(model):
            if cfg.drop_block_keep_probs is not None:
                keep_prob = keep_prob_at(cfg, run.state.step, run.total_steps)
                set_drop_block_keep_prob(model, keep_prob)
            images, targets = run.recipe(images, targets)  # outside autocast: a live KD teacher in fp32
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with acc.autocast():
                loss = run.task(images, targets)["loss"]
            acc.backward(loss)
            if acc.sync_gradients and cfg.clip_grad:
                acc.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        bad = (first_bad < 0) & ~torch.isfinite(loss.detach())
        first_bad = torch.where(bad, run.state.step + 1, first_bad)  # on the device: no sync per step
        loss_sum += loss.detach().float() * images.shape[0]
        seen += images.shape[0]
        progress.advance()
        if acc.sync_gradients:
            run.state.step += 1
            run.scheduler.step_update(num_updates=run.state.step)
            if run.ema is not None:
                run.ema.update(acc.unwrap_model(model), step=run.state.step)
            if run.state.step % cfg.log_interval == 0:
                check_finite_loss(run, first_bad, epoch)
                log_step(run, progress, window.advance(float(loss_sum), seen), keep_prob)
    progress.close()
    check_finite_loss(run, first_bad, epoch)
    elapsed = time.perf_counter() - start
    totals = acc.reduce(torch.cat([loss_sum[None], torch.tensor([seen, skipped], device=acc.device).float()]), "sum")
    return dict(
        train_loss=float(totals[0] / totals[1].clamp(min=1)),
        images_per_s=float(totals[1]) / max(elapsed, 1e-9),
        skipped_images=int(totals[2]),
        keep_prob=keep_prob,
    )


def check_finite_loss(run: Run, first_bad: torch.Tensor, epoch: int) -> None:
    """Every process stops together when any saw a non-finite loss (one gather, at log intervals only)."""
    steps = run.accelerator.gather(first_bad[None])
    bad = steps[steps >= 0]
    if len(bad):
        raise _diverged(run, f"the loss is not finite at step {int(bad.min())} (epoch {epoch + 1})")


@dataclass
class _Window:
    """Loss and images since the previous log interval."""

    time: float
    loss_sum: float = 0.0
    images: int = 0

    def advance(self, loss_sum: float, images: int) -> tuple[float, float]:
        """(mean loss, images/s of this process) over the window, and start the next one."""
        now = time.perf_counter()
        n = max(images - self.images, 1)
        result = ((loss_sum - self.loss_sum) / n, n / max(now - self.time, 1e-9))
        self.time, self.loss_sum, self.images = now, loss_sum, images
        return result


def log_step(run: Run, progress: Progress, window: tuple[float, float], keep_prob: float) -> None:
    """Step-level numbers to the trackers and the progress output (the main process's loss)."""
    loss, images_per_s = window
    images_per_s *= run.accelerator.num_processes
    lr = run.optimizer.param_groups[0]["lr"]
    values = {"train/loss": loss, "train/lr": lr, "train/images_per_s": images_per_s}
    if run.cfg.drop_block_keep_probs is not None:
        values["train/keep_prob"] = keep_prob
    run.accelerator.log(values, step=run.state.step)
    shown = dict(step=str(run.state.step), loss=f"{loss:.4f}", lr=f"{lr:.3g}", img_s=f"{images_per_s:.1f}")
    if run.cfg.drop_block_keep_probs is not None:
        shown["keep"] = f"{keep_prob:.4f}"
    progress.report(shown)


@torch.no_grad()
def evaluate(run: Run, model: nn.Module) -> dict[str, Any]:
    """Loss, top-1/5 and the confusion matrix, summed on the device and read once at the end."""
    acc, n = run.accelerator, run.num_classes
    model.eval()
    sums = torch.zeros(4, device=acc.device, dtype=torch.float64)  # loss, count, top-1, top-5 hits
    confusion = torch.zeros((n, n), device=acc.device, dtype=torch.long)
    skipped = 0
    progress = Progress(len(run.val_loader), "eval", enabled=acc.is_main_process)
    for images, targets, bad in run.val_loader:
        skipped += run.report_skipped(bad)
        if run.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with acc.autocast():
            logits = model(images)
        logits, targets = acc.gather_for_metrics((logits.float(), targets))
        hits = topk_correct(logits, targets, (1, 5))
        loss = F.cross_entropy(logits, targets, reduction="sum")
        sums += torch.stack([loss, loss.new_tensor(len(targets)), *hits.to(loss.dtype)])
        confusion += confusion_counts(logits, targets, n)
        progress.advance()
    progress.close()
    loss_sum, count, top1, top5 = sums.tolist()
    count = max(count, 1)
    return dict(
        val_loss=loss_sum / count,
        top1=100.0 * top1 / count,
        top5=100.0 * top5 / count,
        val_images=int(sums[1]),
        val_skipped_images=int(acc.reduce(torch.tensor(skipped, device=acc.device), "sum")),
        confusion=confusion.cpu().numpy(),
    )


def _better(metric: str, new: float, old: float | None) -> bool:
    if not math.isfinite(new):  # a NaN score never replaces a best model
        return False
    if old is None:
        return True
    return new < old if metric == "loss" else new > old


def _metric_value(metric: str, stats: dict[str, Any]) -> float:
    return stats["val_loss"] if metric == "loss" else stats[metric]


def compare_configs(saved: Path, cfg: TrainConfig) -> list[str]:
    """Settings that differ from the run being resumed (informational: the user may extend epochs)."""
    if not saved.is_file():
        return []
    from .config import tomllib  # the one TOML parser (tomli on Python 3.10)

    old = tomllib.loads(saved.read_text())
    new = tomllib.loads(format_config(cfg))
    skip = {"resume", "overwrite", "output_dir", "data_dir"}
    return sorted(k for k in set(old) | set(new) if k not in skip and old.get(k) != new.get(k))


def end_of_epoch(run: Run, epoch: int, stats: dict[str, Any], started: float) -> None:
    """Evaluate, check the weights, checkpoint, then record what the checkpoint holds (metrics.jsonl,
    summary.csv, trackers), export the best and plot: a kill at any instant leaves no output ahead of it."""
    acc, cfg, state = run.accelerator, run.cfg, run.state
    ev = evaluate(run, run.model)
    row = dict(
        epoch=epoch + 1,
        step=state.step,
        lr=run.optimizer.param_groups[0]["lr"],
        **stats,
        **{k: v for k, v in ev.items() if k != "confusion"},
    )
    best_model, confusion, chosen = acc.unwrap_model(run.model, keep_torch_compile=False), ev["confusion"], ev
    if run.ema is not None:
        chosen = evaluate(run, run.ema.module)
        row.update(ema_val_loss=chosen["val_loss"], ema_top1=chosen["top1"], ema_top5=chosen["top5"])
        best_model, confusion = run.ema.module, chosen["confusion"]
    check_finite_weights(run, epoch)
    value = _metric_value(cfg.eval_metric, chosen)
    run.scheduler.step(epoch + 1, value)  # moves the lr when stepping per epoch (or on plateau), as timm's train.py
    row["epoch_time_s"] = time.perf_counter() - started
    is_best = _better(cfg.eval_metric, value, state.best_metric)
    if is_best:
        state.best_metric, state.best_epoch = value, epoch + 1
        if run.num_classes <= CONFUSION_MAX_CLASSES:
            state.best_confusion = confusion.tolist()
    row["best_" + cfg.eval_metric] = state.best_metric
    row["best_epoch"] = state.best_epoch
    state.epoch = epoch + 1
    state.rows = [*state.rows, row]
    run.log(epoch_line(run, row, is_best))
    ckpt.save_checkpoint(acc, run.out / "checkpoints", state, best=is_best)
    run.log(f"  saved checkpoint (epoch {state.epoch}, step {state.step}) in {run.out / 'checkpoints'}")
    log_epoch(run, row)
    if acc.is_main_process:
        write_metrics(run.metrics_path, state.rows)
        write_summary(run.out / SUMMARY_NAME, state.rows)
        if is_best:
            export_best(run, row, best_model)
            plot_best_confusion(run)
        plot_curves(state.rows, run.out / CURVES_NAME, title=cfg.description or cfg.model)
    if acc.is_main_process and cfg.push_every and state.epoch % cfg.push_every == 0 and state.epoch < cfg.epochs:
        push_during_run(run)
    acc.wait_for_everyone()


def log_epoch(run: Run, row: dict[str, Any]) -> None:
    """An epoch's numbers to the trackers."""
    run.accelerator.log({f"epoch/{k}": v for k, v in row.items() if isinstance(v, (int, float))}, step=row["step"])


def plot_best_confusion(run: Run) -> None:
    state = run.state
    if state.best_confusion is not None:
        title = f"best epoch {state.best_epoch}: {run.cfg.eval_metric} {state.best_metric:.2f}"
        plot_confusion(np.array(state.best_confusion), run.splits.label_names, run.out / CONFUSION_NAME, title=title)


def export_best(run: Run, row: dict[str, Any], model: nn.Module | None = None) -> None:
    """model/ from the weights that scored `row` (the EMA ones when the run keeps an EMA)."""
    if model is None:  # the eager module: timm's save_for_hf cannot take a torch.compile wrapper
        plain = run.accelerator.unwrap_model(run.model, keep_torch_compile=False)
        model = run.ema.module if run.ema is not None else plain
    export_best_model(
        model, run.export_dir, cfg=run.cfg, arch_kwargs=run.built.arch_kwargs,
        label_names=run.splits.label_names, data_cfg=run.export_data_cfg, row=row, command=run.command,
        weights_source=run.built.source, pretrained=run.built.pretrained, base_model=run.base_model,
    )  # fmt: skip


def _diverged(run: Run, what: str) -> TimmAssembleError:
    """The one line a diverged run stops with: what, where, and what to try."""
    return TimmAssembleError(
        f"training diverged: {what}; nothing of this epoch was saved (the last good checkpoint, "
        f"checkpoints/best and model/ are as they were); try a lower --lr (peak now {run.lr:.3g}), --clip-grad 1.0, "
        "or --mixed-precision no"
    )


def check_finite_weights(run: Run, epoch: int) -> None:
    """Stop before a checkpoint or export would save non-finite weights (the model's, and the EMA's)."""
    models = [("model", run.accelerator.unwrap_model(run.model))]
    if run.ema is not None:
        models.append(("EMA", run.ema.module))
    for label, model in models:
        tensors = [(n, t) for n, t in model.state_dict().items() if t.is_floating_point()]
        finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])
        if not bool(finite.all()):
            bad = [n for (n, _), ok in zip(tensors, finite.tolist(), strict=True) if not ok]
            raise _diverged(
                run,
                f"after epoch {epoch + 1} (step {run.state.step}) {len(bad)} of {len(tensors)} {label} tensors are "
                f"not finite (e.g. {bad[0]})",
            )


def epoch_line(run: Run, row: dict[str, Any], is_best: bool) -> str:
    skipped = row["skipped_images"] + row["val_skipped_images"]
    return (
        f"epoch {row['epoch']}/{run.cfg.epochs}  train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
        f"top-1 {row['top1']:.2f}  top-5 {row['top5']:.2f}"
        + (f"  EMA top-1 {row['ema_top1']:.2f}" if "ema_top1" in row else "")
        + f"  lr {row['lr']:.3g}  {row['images_per_s']:.1f} img/s"
        + (f"  keep-prob {row['keep_prob']:.3f}" if run.cfg.drop_block_keep_probs is not None else "")
        + (f"  skipped {skipped} unreadable" if skipped else "")
        + f"  ({format_seconds(row['epoch_time_s'])})"
        + ("  *best*" if is_best else "")
    )


def push(run: Run) -> str:
    """Upload the exported best model with `timm-assemble publish`'s code; returns the commit URL.

    Any failure (the Hub's answer, the network, the token) becomes one TimmAssembleError that says how to
    retry: days of training must not end in a traceback because an upload failed."""
    repo_id = run.cfg.push_to_hub
    try:
        url = publish(plan_publish(run.export_dir, repo_id))
    except Exception as err:  # any failure, network included: reported with the command that retries it
        own = isinstance(err, TimmAssembleError)
        reason = str(err) if own else f"upload to {repo_id} failed: {type(err).__name__}: {err}"
        retry = f"timm-assemble publish {run.export_dir} --repo-id {repo_id}"
        raise TimmAssembleError(f"{reason}; retry with: {retry}") from err
    run.log(f"pushed the best model (epoch {run.state.best_epoch}) to {url}")
    return url


def push_during_run(run: Run) -> None:
    """`--push-every N`: a failed upload is a warning, training goes on (the next push or the final one retries)."""
    try:
        push(run)
    except TimmAssembleError as err:
        _logger.warning("push after epoch %d failed, training goes on: %s", run.state.epoch, err)


def finish(run: Run) -> RunResult:
    """The final upload (when asked for) and the run's summary. A failed upload is raised after every process
    is done and everything is saved."""
    acc, state = run.accelerator, run.state
    failed: TimmAssembleError | None = None
    if run.cfg.push_to_hub and acc.is_main_process and run.export_dir.is_dir():
        try:
            push(run)
        except TimmAssembleError as err:
            failed = err
    acc.wait_for_everyone()
    if state.best_metric is not None:
        run.log(
            f"done: best {run.cfg.eval_metric} {state.best_metric:.2f} at epoch {state.best_epoch}; "
            f"exported model: {run.export_dir.resolve()}"
        )
    else:
        run.log("done")
    if failed is not None:
        raise TimmAssembleError(f"training finished and is saved, but {failed}") from failed
    export_dir = run.export_dir if run.export_dir.exists() else None
    rows = read_metrics(run.metrics_path)
    return RunResult(run.out, export_dir, state.best_metric, state.best_epoch, state.epoch, state.step, rows, run.lr)


def end_training(accelerator: Accelerator, keep_process_group: bool) -> None:
    if not keep_process_group:
        accelerator.end_training()
        return
    for tracker in accelerator.trackers:  # what end_training does besides destroying the process group
        tracker.finish()


def run(cfg: TrainConfig, command: str | None = None, keep_process_group: bool = False) -> RunResult:
    """Train (or fine-tune) as `cfg` says; returns where the results are. Raises TimmAssembleError for bad input.
    `keep_process_group`: the caller trains again in the same launch (a study's next rung), so the process group
    outlives the run (accelerate's `end_training` destroys it and it cannot be rebuilt on torchrun's store)."""
    with LauncherWatch():  # a worker whose launcher is gone stops, cleaning up as it unwinds
        current = setup(cfg, command)
        try:
            resume(current)
            describe(current)
            for epoch in range(current.state.epoch, cfg.epochs):
                current.train_loader.set_epoch(epoch)
                started = time.perf_counter()
                stats = train_one_epoch(current, epoch)
                end_of_epoch(current, epoch, stats, started)
            return finish(current)
        finally:
            end_training(current.accelerator, keep_process_group)
            if current.lock is not None:
                current.lock.release()


__all__ = ["Run", "RunResult", "TrainConfig", "run"]
