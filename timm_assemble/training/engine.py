"""The training loop shared by `train.py` and `finetune.py`: timm pieces, accelerate for devices and processes.

accelerate does all device placement, mixed precision, gradient accumulation, distributed data parallel,
checkpoint state and metric gathering; there is no distributed code here. One epoch = train, evaluate,
append metrics, checkpoint (`last`, and `best` when the eval metric improved), export the best model.
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import broadcast_object_list, set_seed
from timm.data import create_transform, resolve_data_config
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.datasets import DataSplits, SkippingCollate, build_data_splits
from ..data.synthetic import make_synthetic_image_folder
from ..errors import TimmAssembleError
from ..fileio import atomic_write
from ..layers import set_drop_block_keep_prob
from . import checkpoint as ckpt
from .config import TrainConfig, format_config
from .export import export_best_model
from .losses import build_criterion, build_mixup, build_task
from .metrics import (
    METRICS_NAME,
    append_metrics,
    plot_confusion,
    plot_curves,
    read_metrics,
    topk_correct,
    write_metrics,
)
from .models import build_model, build_teacher, freeze_backbone, head_parameters, set_train_mode

_logger = logging.getLogger(__name__)

CONFUSION_MAX_CLASSES = 50


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
    """The run folder: given, or ./outputs/<mode>-<model>-<time> (one name for all processes)."""
    if cfg.output_dir is None:
        if cfg.resume == "auto":
            raise TimmAssembleError("--resume auto needs --output-dir (the run folder to continue)")
        if cfg.resume:
            resume = Path(cfg.resume)
            if resume.parent.name != "checkpoints":
                raise TimmAssembleError("--resume PATH: pass --output-dir too (the run folder to continue)")
            cfg.output_dir = str(resume.parent.parent)
        else:
            name = f"{cfg.mode}-{cfg.model.replace('/', '_').replace(':', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
            holder = [str(Path("outputs") / name)]
            broadcast_object_list(holder)
            cfg.output_dir = holder[0]
    out = Path(cfg.output_dir)
    has_run = (out / "checkpoints").is_dir() or (out / METRICS_NAME).is_file()
    if has_run and not cfg.resume:
        raise TimmAssembleError(
            f"{out} already holds a run; pass --resume auto to continue it, or choose another --output-dir"
        )
    return out


def resume_path(cfg: TrainConfig, out: Path) -> Path | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        return ckpt.find_checkpoint(out / "checkpoints" / "last")
    path = Path(cfg.resume)
    if ckpt.find_checkpoint(path) is None:
        raise TimmAssembleError(f"--resume {path}: not a checkpoint folder (no {ckpt.STATE_NAME})")
    return path


def build_transforms(cfg: TrainConfig, model: nn.Module) -> tuple[Any, Any, dict[str, Any]]:
    """Train transform (RandomResizedCrop, flip, AA, erasing) and eval transform, both from the model's
    data config (mean/std/interpolation), with the sizes the config asks for."""
    data_cfg = resolve_data_config(model=model)
    img_size = cfg.img_size or data_cfg["input_size"][-1]
    eval_size = cfg.eval_img_size or img_size
    crop_pct = cfg.crop_pct or data_cfg["crop_pct"]
    train_tf = create_transform(
        input_size=img_size,
        is_training=True,
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
    """DropBlock keep-prob, linear from 1.0 at step 0 to 1 - drop_block_rate at the last step."""
    return 1.0 - cfg.drop_block_rate * min(1.0, step / max(1, total_steps))


# ---------------------------------------------------------------------------------------------- loop


def train_one_epoch(ctx: _Run, epoch: int) -> dict[str, Any]:
    acc, cfg, model = ctx.accelerator, ctx.cfg, ctx.model
    set_train_mode(model, cfg.freeze_backbone)
    ctx.task.train()
    set_train_mode(model, cfg.freeze_backbone)  # task.train() flips the student back to train mode
    loss_sum = torch.zeros((), device=acc.device)
    seen = torch.zeros((), device=acc.device)
    skipped = 0
    start = time.perf_counter()
    bar = tqdm(
        ctx.train_loader,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not acc.is_local_main_process,
        leave=False,
        dynamic_ncols=True,
    )
    keep_prob = 1.0
    for images, targets, bad in bar:
        skipped += ctx.report_skipped(bad)
        with acc.accumulate(model):
            if cfg.drop_block_rate > 0:
                keep_prob = keep_prob_at(cfg, ctx.state.step, ctx.total_steps)
                set_drop_block_keep_prob(model, keep_prob)
            if ctx.mixup is not None:
                images, targets = ctx.mixup(images, targets)
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with acc.autocast():
                loss = ctx.task(images, targets)["loss"]
            acc.backward(loss)
            if acc.sync_gradients and cfg.clip_grad:
                acc.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            ctx.optimizer.step()
            ctx.optimizer.zero_grad(set_to_none=True)
        if acc.sync_gradients:
            ctx.state.step += 1
            ctx.scheduler.step_update(num_updates=ctx.state.step)
            if ctx.ema is not None:
                ctx.ema.update(acc.unwrap_model(model), step=ctx.state.step)
        loss_sum += loss.detach().float() * images.shape[0]
        seen += images.shape[0]
        if acc.is_local_main_process:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{ctx.optimizer.param_groups[0]['lr']:.3g}")
    elapsed = time.perf_counter() - start
    totals = acc.reduce(torch.stack([loss_sum, seen, torch.tensor(float(skipped), device=acc.device)]), "sum")
    return dict(
        train_loss=float(totals[0] / totals[1].clamp(min=1)),
        images_per_s=float(totals[1]) / max(elapsed, 1e-9),
        skipped_images=int(totals[2]),
        keep_prob=keep_prob,
    )


@torch.no_grad()
def evaluate(ctx: _Run, model: nn.Module) -> dict[str, Any]:
    acc = ctx.accelerator
    model.eval()
    n = ctx.num_classes
    loss_sum, count, correct = 0.0, 0, [0, 0]
    confusion = np.zeros((n, n), dtype=np.int64)
    skipped = 0
    bar = tqdm(ctx.val_loader, desc="eval", disable=not acc.is_local_main_process, leave=False, dynamic_ncols=True)
    for images, targets, bad in bar:
        skipped += ctx.report_skipped(bad)
        if ctx.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with acc.autocast():
            logits = model(images)
        logits, targets = acc.gather_for_metrics((logits.float(), targets))
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        count += targets.shape[0]
        c1, c5 = topk_correct(logits, targets, (1, 5))
        correct[0] += c1
        correct[1] += c5
        np.add.at(confusion, (targets.cpu().numpy(), logits.argmax(1).cpu().numpy()), 1)
    skipped = int(acc.reduce(torch.tensor(skipped, device=acc.device), "sum"))
    return dict(
        val_loss=loss_sum / max(count, 1),
        top1=100.0 * correct[0] / max(count, 1),
        top5=100.0 * correct[1] / max(count, 1),
        val_images=count,
        val_skipped_images=skipped,
        confusion=confusion,
    )


class _Run:
    """Everything one run holds; built by `run`, used by the epoch functions."""

    accelerator: Accelerator
    cfg: TrainConfig
    model: nn.Module
    task: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    mixup: Any
    ema: ModelEmaV3 | None
    train_loader: DataLoader
    val_loader: DataLoader
    state: ckpt.TrainState
    total_steps: int
    num_classes: int

    def report_skipped(self, bad: list[str]) -> int:
        for item in bad:
            if self.cfg.strict_data:
                raise TimmAssembleError(f"unreadable image {item} (--strict-data)")
            _logger.warning("skipped unreadable image %s", item)
        return len(bad)


def _better(metric: str, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new < old if metric == "loss" else new > old


def _metric_value(metric: str, stats: dict[str, Any]) -> float:
    return stats["val_loss"] if metric == "loss" else stats[metric]


def _compare_configs(saved: Path, cfg: TrainConfig) -> list[str]:
    """Settings that differ from the run being resumed (informational: the user may extend epochs)."""
    if not saved.is_file():
        return []
    import tomllib

    old = tomllib.loads(saved.read_text())
    new = tomllib.loads(format_config(cfg))
    skip = {"resume", "output_dir", "data_dir"}
    return sorted(k for k in set(old) | set(new) if k not in skip and old.get(k) != new.get(k))


def run(cfg: TrainConfig, command: str | None = None) -> RunResult:
    """Train (or fine-tune) as `cfg` says; returns where the results are. Raises TimmAssembleError for bad input."""
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise TimmAssembleError("mixed_precision fp16 needs a CUDA GPU; pass --mixed-precision bf16 or no")
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        dynamo_backend="inductor" if cfg.compile else None,
    )
    command = command or shlex.join(["python", *sys.argv])
    set_seed(cfg.seed)
    prepare_data_dir(cfg, accelerator)
    out = resolve_output_dir(cfg, accelerator)
    ckpt_dir = out / "checkpoints"
    start_from = resume_path(cfg, out)

    # ---- data and model, every check before any training
    splits: DataSplits = build_data_splits(
        cfg.data_dir, cfg.dataset, cfg.train_split, cfg.val_split_name, cfg.val_split, cfg.dataset_download, cfg.seed
    )
    num_classes = splits.num_classes
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise TimmAssembleError(f"--num-classes is {cfg.num_classes} but the data has {num_classes} classes")
    built = build_model(cfg, num_classes)
    model = built.model
    if getattr(model, "num_classes", num_classes) != num_classes:
        raise TimmAssembleError(f"the model predicts {model.num_classes} classes but the data has {num_classes}")
    if cfg.drop_block_rate > 0 and set_drop_block_keep_prob(model, 1.0) == 0:
        raise TimmAssembleError(f"--drop-block-rate is set but {cfg.model} has no DropBlock layers")
    teacher = build_teacher(cfg, num_classes) if cfg.distilling else None
    frozen = freeze_backbone(model) if cfg.freeze_backbone else 0
    mixup = build_mixup(cfg, num_classes)
    if mixup is not None and cfg.batch_size % 2:
        raise TimmAssembleError(f"mixup/cutmix pair samples: --batch-size must be even, got {cfg.batch_size}")
    train_tf, eval_tf, export_data_cfg = build_transforms(cfg, model)
    train_ds, val_ds = splits.with_transforms(train_tf, eval_tf)
    if len(train_ds) < cfg.batch_size:
        raise TimmAssembleError(
            f"--batch-size {cfg.batch_size} is larger than the training set ({len(train_ds)} images)"
        )
    loader_kw = dict(num_workers=cfg.workers, pin_memory=torch.cuda.is_available(), persistent_workers=False)
    train_loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=SkippingCollate(even=mixup is not None),
        **loader_kw,
    )
    val_loader = DataLoader(
        val_ds, batch_size=cfg.batch_size, shuffle=False, drop_last=False, collate_fn=SkippingCollate(), **loader_kw
    )

    global_batch = cfg.batch_size * accelerator.num_processes * cfg.grad_accum_steps
    lr = cfg.lr if cfg.lr is not None else cfg.lr_base * global_batch / cfg.lr_base_size
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher = teacher.to(memory_format=torch.channels_last)
    model = model.to(accelerator.device)
    optimizer = build_optimizer(cfg, model, lr)
    ema = ModelEmaV3(model, decay=cfg.model_ema_decay, use_warmup=cfg.model_ema_warmup) if cfg.model_ema else None
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    if teacher is not None:
        teacher = teacher.to(accelerator.device)
    updates_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=cfg.sched,
        num_epochs=cfg.epochs,
        warmup_epochs=cfg.warmup_epochs,
        warmup_lr=cfg.warmup_lr,
        min_lr=cfg.min_lr,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )
    criterion = build_criterion(cfg, mixup)
    task = build_task(model, criterion, cfg, teacher, accelerator.device)

    ctx = _Run()
    ctx.accelerator, ctx.cfg, ctx.model, ctx.task = accelerator, cfg, model, task
    ctx.optimizer, ctx.scheduler, ctx.mixup, ctx.ema = optimizer, scheduler, mixup, ema
    ctx.train_loader, ctx.val_loader, ctx.num_classes = train_loader, val_loader, num_classes
    ctx.total_steps = updates_per_epoch * cfg.epochs
    ctx.state = ckpt.TrainState()

    # ---- resume
    metrics_path = out / METRICS_NAME
    if start_from is not None:
        differing = _compare_configs(out / "config.toml", cfg)
        if differing and accelerator.is_main_process:
            _logger.warning("resuming with settings that differ from the saved config.toml: %s", ", ".join(differing))
        ctx.state = ckpt.load_checkpoint(accelerator, start_from, ema)
        if accelerator.is_main_process:
            write_metrics(metrics_path, [r for r in read_metrics(metrics_path) if r["epoch"] <= ctx.state.epoch])
    elif cfg.resume == "auto" and accelerator.is_main_process:
        _logger.info("--resume auto: no checkpoint in %s yet, starting a new run", out)
    scheduler.step_update(num_updates=ctx.state.step)

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "config.toml", format_config(cfg))
        atomic_write(out / "command.txt", command + "\n")
    accelerator.wait_for_everyone()

    n_params = sum(p.numel() for p in accelerator.unwrap_model(model).parameters())
    log = accelerator.print
    log(f"[{cfg.mode}] {cfg.description or cfg.model}")
    log(f"  weights: {built.source}")
    for note in built.notes:
        log(f"  NOTE: {note}")
    log(
        f"  model {cfg.model} {built.arch_kwargs or ''}: {n_params / 1e6:.2f} M params, {num_classes} classes"
        + (f", backbone frozen ({frozen} tensors)" if frozen else "")
    )
    log(f"  data: {len(train_ds)} train / {len(val_ds)} val images from {cfg.data_dir or cfg.dataset}")
    log(
        f"  {accelerator.num_processes} process(es) on {accelerator.device}, global batch {global_batch}, "
        f"lr {lr:.4g}, {updates_per_epoch} updates/epoch, mixed precision {accelerator.mixed_precision}"
    )
    if teacher is not None:
        log(f"  KD teacher {cfg.teacher or ''} {cfg.teacher_weights or ''} T={cfg.kd_temperature} w={cfg.kd_weight}")
    if start_from is not None:
        log(f"  resumed from {start_from} at epoch {ctx.state.epoch}, step {ctx.state.step}")
    log(f"  output: {out}")

    export_dir = out / "model"
    for epoch in range(ctx.state.epoch, cfg.epochs):
        train_loader.set_epoch(epoch)
        t0 = time.perf_counter()
        stats = train_one_epoch(ctx, epoch)
        ev = evaluate(ctx, model)
        row = dict(
            epoch=epoch + 1,
            step=ctx.state.step,
            lr=optimizer.param_groups[0]["lr"],
            **stats,
            **{k: v for k, v in ev.items() if k != "confusion"},
        )
        eval_target, confusion = accelerator.unwrap_model(model), ev["confusion"]
        if ema is not None:
            ema_ev = evaluate(ctx, ema.module)
            row.update(ema_val_loss=ema_ev["val_loss"], ema_top1=ema_ev["top1"], ema_top5=ema_ev["top5"])
            eval_target, confusion = ema.module, ema_ev["confusion"]
            value = _metric_value(cfg.eval_metric, ema_ev)
        else:
            value = _metric_value(cfg.eval_metric, ev)
        row["epoch_time_s"] = time.perf_counter() - t0
        is_best = _better(cfg.eval_metric, value, ctx.state.best_metric)
        if is_best:
            ctx.state.best_metric, ctx.state.best_epoch = value, epoch + 1
        row["best_" + cfg.eval_metric] = ctx.state.best_metric
        ctx.state.epoch = epoch + 1
        if accelerator.is_main_process:
            append_metrics(metrics_path, row)
        log(
            f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
            f"top-1 {row['top1']:.2f}  top-5 {row['top5']:.2f}"
            + (f"  EMA top-1 {row['ema_top1']:.2f}" if ema is not None else "")
            + f"  lr {row['lr']:.3g}  {row['images_per_s']:.1f} img/s"
            + (f"  keep-prob {row['keep_prob']:.3f}" if cfg.drop_block_rate > 0 else "")
            + (
                f"  skipped {row['skipped_images'] + row['val_skipped_images']} unreadable"
                if row["skipped_images"] + row["val_skipped_images"]
                else ""
            )
            + ("  *best*" if is_best else "")
        )
        ckpt.save_checkpoint(accelerator, ckpt_dir, ctx.state, ema, best=is_best)
        if accelerator.is_main_process:
            if is_best:
                export_best_model(
                    eval_target,
                    export_dir,
                    cfg=cfg,
                    arch_kwargs=built.arch_kwargs,
                    label_names=splits.label_names,
                    data_cfg=export_data_cfg,
                    row=row,
                    command=command,
                    weights_source=built.source,
                    pretrained=built.pretrained,
                )
                if num_classes <= CONFUSION_MAX_CLASSES:
                    plot_confusion(
                        confusion,
                        splits.label_names,
                        out / "confusion_matrix.png",
                        title=f"best epoch {epoch + 1}: top-1 {value:.2f}",
                    )
            plot_curves(read_metrics(metrics_path), out / "curves.png", title=cfg.description or cfg.model)
        accelerator.wait_for_everyone()

    rows = read_metrics(metrics_path)
    log(
        f"done: best {cfg.eval_metric} {ctx.state.best_metric:.2f} at epoch {ctx.state.best_epoch}; "
        f"exported model: {export_dir.resolve()}"
        if ctx.state.best_metric is not None
        else "done"
    )
    accelerator.end_training()
    return RunResult(
        out,
        export_dir if export_dir.exists() else None,
        ctx.state.best_metric,
        ctx.state.best_epoch,
        ctx.state.epoch,
        ctx.state.step,
        rows,
        lr,
    )


__all__ = ["RunResult", "TrainConfig", "asdict", "run"]
