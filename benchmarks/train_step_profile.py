"""Operator profile of the training engine's step at small images (torch.profiler, CPU).

    python benchmarks/train_step_profile.py --model assemble_resnet50 --img-size 64 --batch-size 8
    python benchmarks/train_step_profile.py --model resnet50 --img-size 64 --batch-size 8

Runs `timm_assemble.training.engine` on generated images with mixup, label smoothing, EMA (and DropBlock
for Assemble models): one warm-up epoch, then one profiled epoch; prints the top operators by self CPU time.
The table's times are only meaningful on an otherwise idle machine; the operator counts and shares are
what it is for (which work a step does).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import timm_assemble  # noqa: F401
from timm_assemble.data.synthetic import make_synthetic_image_folder
from timm_assemble.training import engine
from timm_assemble.training.config import resolve_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="assemble_resnet50")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per profiled epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        per_class = args.batch_size * args.steps // 2
        data = make_synthetic_image_folder(
            Path(tmp) / "data", num_classes=2, images_per_class={"train": per_class, "val": 2},
            image_size=args.img_size, seed=0,
        )  # fmt: skip
        extra = dict(drop_block_rate=0.1) if args.model.startswith("assemble_resnet") else {}
        cfg = resolve_config(
            "train",
            dict(
                data_dir=str(data),
                output_dir=str(Path(tmp) / "run"),
                model=args.model,
                img_size=args.img_size,
                batch_size=args.batch_size,
                epochs=2,
                warmup_epochs=0,
                workers=0,
                mixup=0.2,
                label_smoothing=0.1,
                model_ema=True,
                log_interval=10**6,
                **extra,
            ),  # fmt: skip
        )
        real_epoch = engine.train_one_epoch

        def profiled_epoch(run, epoch):
            if epoch == 0:
                return real_epoch(run, epoch)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                stats = real_epoch(run, epoch)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
            return stats

        engine.train_one_epoch = profiled_epoch
        engine.run(cfg, command="benchmarks/train_step_profile.py")


if __name__ == "__main__":
    main()
