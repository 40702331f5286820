"""`timm-assemble predict --model local-dir:DIR IMAGE...`: top-k labels with probabilities."""

import json
from dataclasses import dataclass, field

from ..data.images import set_max_image_pixels
from ..evaluation.options import default_device
from ..predict import checked_images, format_text, load_model, predict
from .args import PIXELS_FIELD, Command
from .report import printable


@dataclass
class PredictOptions:
    """`timm-assemble predict` flags."""

    images: list[str] = field(default_factory=list, metadata=dict(help="image files", positional=True, metavar="IMAGE"))
    model: str | None = field(
        default=None, metadata=dict(help="local-dir:DIR, hf-hub:ORG/NAME or a timm model name", required=True)
    )
    top_k: int = field(default=5, metadata=dict(help="how many labels per image", bounds="[1, inf)"))
    json: bool = field(default=False, metadata=dict(help="print JSON instead of text"))
    device: str = field(default_factory=default_device, metadata=dict(help="torch device (cuda when available)"))
    max_image_pixels: int | None = PIXELS_FIELD


def run(opts: PredictOptions) -> int:
    set_max_image_pixels(opts.max_image_pixels)
    images = checked_images(opts.images)  # a bad image fails before a model is loaded (or downloaded)
    results = predict(load_model(opts.model, opts.device), images, opts.top_k)
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
