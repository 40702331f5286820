"""Read the `args.yaml` that timm's `train.py` writes into its run folder, as our training settings.

Every key is either translated (same meaning, maybe another name), ignored because it cannot change what is
trained (logging, loader speed, distributed plumbing), or accepted only at timm's default value: a run that
set such a key to anything else cannot be reproduced here, and the keys that did are named in one error.
Defaults are those of timm's `train.py` (huggingface/pytorch-image-models, 2026-08).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import TimmAssembleError

# timm key -> our field, where only the name differs (same value, same meaning)
RENAMED = {
    "smoothing": "label_smoothing",
    "drop": "drop_rate",
    "drop_path": "drop_path_rate",
    "drop_block": "drop_block_rate",
}
SAME = (
    "dataset train_split val_split dataset_download model num_classes img_size crop_pct channels_last "
    "grad_accum_steps model_kwargs batch_size workers seed log_interval eval_metric amp amp_dtype opt momentum "
    "weight_decay clip_grad layer_decay sched lr lr_base lr_base_size warmup_lr min_lr epochs hflip color_jitter "
    "aa reprob mixup cutmix mixup_prob mixup_switch_prob mixup_mode bn_momentum bn_eps model_ema model_ema_decay "
    "model_ema_warmup sync_bn"
).split()
# keys whose value cannot change what is trained (or that are handled with another key)
IGNORED = set(
    "config data local_rank device device_modules pin_mem no_prefetcher save_images checkpoint_hist "
    "recovery_interval worker_seeding use_multi_epochs_loader synchronize_step no_ddp_bb dist_bn wandb_tags "
    "wandb_resume_id validation_batch_size torchcompile_mode fuser dataset_trust_remote_code grad_checkpointing "
    "lr_base_scale log_wandb wandb_project pretrained_path train_batch_sizes train_size_probs train_size_schedule "
    "train_size_schedule_spread train_size_random_mix variable_batch_loss_scale train_batches_per_epoch "
    # translated below, each with its own rule
    "scale resume initial_checkpoint output experiment data_dir torchcompile warmup_epochs pretrained".split()
)
# timm's defaults that are not None / False / '' / 0 / [] / {} (those are the default of every other key)
TIMM_DEFAULTS: dict[str, Any] = dict(
    clip_mode="norm", ratio=[3 / 4, 4 / 3], remode="pixel", recount=1, train_interpolation="random",
    lr_noise_pct=0.67, lr_noise_std=1.0, lr_cycle_mul=1.0, lr_cycle_decay=0.5, lr_cycle_limit=1, lr_k_decay=1.0,
    decay_milestones=[90, 180, 270], decay_epochs=90, patience_epochs=10, decay_rate=0.1, val_interval=1,
    kd_distill_type="logit", kd_loss_type="kl", kd_temperature=4.0, kd_token_distill_type="soft",
    naflex_train_seq_lens=[128, 256, 576, 784, 1024], naflex_max_seq_len=576, naflex_loss_scale="linear",
)  # fmt: skip


def _at_default(key: str, value: Any) -> bool:
    default = TIMM_DEFAULTS.get(key)
    if isinstance(default, list) and isinstance(value, list) and len(value) == len(default):
        return all(abs(float(a) - float(b)) < 1e-6 for a, b in zip(value, default, strict=True))
    return value == default or (key not in TIMM_DEFAULTS and value in (None, False, "", 0, [], {}))


def _lr_scaling_problem(args: dict[str, Any]) -> str | None:
    """timm scales lr_base by sqrt(batch) for adaptive optimizers when lr_base_scale is unset; ours is linear."""
    if args.get("lr") is not None:
        return None
    opt = str(args.get("opt", "sgd"))
    scale = args.get("lr_base_scale") or ("sqrt" if "ada" in opt or "lamb" in opt else "linear")
    return None if scale == "linear" else f"lr_base_scale ({scale})"


def _translated(args: dict[str, Any]) -> dict[str, Any]:
    settings = {name: args[name] for name in SAME if name in args}
    settings.update({ours: args[key] for key, ours in RENAMED.items() if key in args})
    if args.get("data_dir") or args.get("data"):
        settings["data_dir"] = args.get("data_dir") or args["data"]
    if "scale" in args:
        settings["scale"] = list(args["scale"])
    if "warmup_epochs" in args:
        settings["warmup_epochs"] = float(args["warmup_epochs"])
    settings["pretrained"] = args.get("pretrained_path") or ("default" if args.get("pretrained") else "none")
    for key in ("resume", "initial_checkpoint", "output", "experiment"):
        if args.get(key):
            settings[key] = args[key]
    if args.get("torchcompile"):
        settings["compile"] = True
    if args.get("log_wandb"):
        settings["log_with"] = "wandb"
        if args.get("wandb_project"):
            settings["tracker_project"] = args["wandb_project"]
    return {k: v for k, v in settings.items() if v is not None}  # timm's None: unset (the model's value, no lr, ...)


def read_timm_args(path: str | Path) -> dict[str, Any]:
    """Our settings for the run a timm `args.yaml` describes (only keys the file sets, unchecked types)."""
    path = Path(path)
    try:
        args = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise TimmAssembleError(f"config file {path} does not exist") from err
    except yaml.YAMLError as err:
        raise TimmAssembleError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(args, dict):
        raise TimmAssembleError(f"{path}: not a timm args.yaml (a mapping of train.py's arguments)")
    handled = set(SAME) | set(RENAMED) | IGNORED
    foreign = [k for k, v in args.items() if k not in handled and not _at_default(k, v)]
    if args.get("torchcompile") not in (None, "inductor"):
        foreign.append(f"torchcompile ({args['torchcompile']})")
    if args.get("sched", "cosine") not in ("cosine", "tanh"):  # the others read decay / patience settings we lack
        foreign.append(f"sched ({args['sched']})")
    if args.get("val_split") in (None, ""):
        foreign.append("val_split (empty: no validation)")
    lr_problem = _lr_scaling_problem(args)
    if lr_problem:
        foreign.append(lr_problem)
    if foreign:
        raise TimmAssembleError(
            f"{path}: timm train.py settings this trainer cannot honour at these values: {', '.join(foreign)}"
        )
    return _translated(args)
