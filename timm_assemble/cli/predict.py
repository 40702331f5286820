"""`timm-assemble predict --model local-dir:DIR IMAGE...`: top-k labels with probabilities."""

import json
from dataclasses import dataclass, field

import torch

from ..data.images import set_max_image_pixels
from ..evaluation.options import DataConfigOptions, ModelOptions, RunOptions
from ..predict import BATCH, checked_images, format_text, load_model, predict
from .args import PIXELS_FIELD, Command
from .report import printable


@dataclass
class PredictOptions(RunOptions, DataConfigOptions, ModelOptions):
    """`timm-assemble predict` flags: timm's inference.py model, data-config and run flags, and the images."""

    images: list[str] = field(default_factory=list, metadata=dict(help="image files", positional=True, metavar="IMAGE"))
    model: str | None = field(
        default=None,
        metadata=dict(help="local-dir:DIR, hf-hub:ORG/NAME or a timm model name", required=True, flags=("-m",)),
    )
    batch_size: int = field(default=BATCH, metadata=dict(help="images per batch", bounds="[1, inf)", flags=("-b",)))
    workers: int = field(default=0, metadata=dict(help="image decoding processes", bounds="[0, inf)", flags=("-j",)))
    top_k: int = field(default=5, metadata=dict(help="how many labels per image", bounds="[1, inf)"))
    json: bool = field(default=False, metadata=dict(help="print JSON instead of text"))
    max_image_pixels: int | None = PIXELS_FIELD


def run(opts: PredictOptions) -> int:
    set_max_image_pixels(opts.max_image_pixels)
    images = checked_images(opts.images)  # a bad image fails before a model is loaded (or downloaded)
    model = load_model(
        opts.model, opts.device, pretrained=opts.pretrained, num_classes=opts.num_classes, checkpoint=opts.checkpoint,
        use_ema=opts.use_ema, model_kwargs=opts.create_kwargs(),
    )  # fmt: skip
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    results = predict(
        model, images, opts.top_k, opts.batch_size, opts.workers, opts.data_config_args(), opts.amp_mode,
        opts.channels_last,
    )  # fmt: skip
    print(json.dumps(results, indent=1) if opts.json else printable(format_text(results)))
    return 0


COMMAND = Command(
    "predict",
    "classify images: top-k labels with probabilities",
    run,
    PredictOptions,
    inputs=("model", "images"),
    description="Classify images with a model (e.g. the folder finetune exported), using the model's own "
    "preprocessing config. Prints the top-k labels with probabilities per image.",
)
