"""`timm-assemble validate`: top-1 / top-5 / loss of any timm model on an image folder."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from ..cliargs import add_dataclass_arguments, from_args
from .common import (
    EvalModelOptions,
    ImageListDataset,
    Scorer,
    create_eval_model,
    index_image_folder,
    limit_samples,
    make_loader,
    model_data_config,
    model_kwargs,
    resize_crop,
    resolve_device,
    run_scorers,
    write_json,
)


def validate(
    model_name: str,
    data_dir: str,
    *,
    pretrained: bool = True,
    checkpoint: str | None = None,
    num_classes: int | None = None,
    img_size: int | None = None,
    crop_pct: float | None = None,
    batch_size: int = 64,
    workers: int = 2,
    limit: int | None = None,
    device: str = "cpu",
    amp: str = "none",
    channels_last: bool = False,
) -> dict[str, Any]:
    """Evaluate `model_name` on `data_dir/<class>/<image>` with the model's eval preprocessing."""
    dev = resolve_device(device)
    model = create_eval_model(model_name, pretrained=pretrained, num_classes=num_classes, checkpoint=checkpoint)
    data_config = model_data_config(model, img_size, crop_pct)
    index = index_image_folder(data_dir, model.num_classes)
    samples = limit_samples(index.samples, limit)
    geometry = resize_crop(data_config)
    loader = make_loader(ImageListDataset(samples, lambda img, _: geometry(img)), batch_size, workers)
    scorer = Scorer(model, data_config, dev, amp, channels_last)
    start = time.perf_counter()
    (metrics,) = run_scorers(loader, [scorer], f"validate {model_name}")
    seconds = time.perf_counter() - start
    return {
        "model": model_name,
        "data_dir": str(data_dir),
        "label_map": index.label_map,
        "num_classes": model.num_classes,
        "num_images": metrics["num_images"],
        "top1": round(metrics["top1"], 4),
        "top5": round(metrics["top5"], 4),
        "loss": round(metrics["loss"], 6),
        "data_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in data_config.items()},
        "device": str(dev),
        "amp": amp,
        "seconds": round(seconds, 3),
        "images_per_second": round(metrics["num_images"] / seconds, 2) if seconds > 0 else None,
    }


@dataclass
class ValidateOptions(EvalModelOptions):
    """`timm-assemble validate` flags."""

    data_dir: str | None = field(default=None, metadata=dict(help="image folder: DIR/<class>/<image>", required=True))


def run(args: argparse.Namespace) -> int:
    args = from_args(ValidateOptions, args)
    result = validate(
        args.model,
        args.data_dir,
        **model_kwargs(args),
    )
    size = result["data_config"]["input_size"][-1]
    print(
        f"{result['model']}: top-1 {result['top1']:.2f}  top-5 {result['top5']:.2f}  loss {result['loss']:.4f}  "
        f"({result['num_images']} images, {size}px, crop {result['data_config']['crop_pct']}, "
        f"{result['label_map']})"
    )
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="top-1/top-5/loss of a model on an image folder",
        description="Evaluate a timm model (registry name, local-dir:DIR or hf-hub:ID) on DIR/<class>/<image> "
        "with the model's own eval preprocessing. ImageNet folders named by synset map onto 1000-class models.",
    )
    add_dataclass_arguments(parser, ValidateOptions)
    parser.set_defaults(func=run)
