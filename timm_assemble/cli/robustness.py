"""`timm-assemble robustness`: ImageNet-C corruption errors, CE and mCE; under `accelerate launch` / torchrun with
several processes each scores its share of the images and the main process reports."""

from dataclasses import dataclass, field

from ..data.images import set_max_image_pixels
from ..evaluation import robustness as library
from ..evaluation.corruption_sets import CORRUPTION_SETS
from ..evaluation.options import EvalOptions
from ..evaluation.scoring import sharded_evaluation
from .args import PIXELS_FIELD, Command
from .report import JSON_FIELD, check_outputs, report


@dataclass
class RobustnessOptions(EvalOptions):
    """`timm-assemble robustness` flags."""

    data_dir: str | None = field(default=None, metadata=dict(help="clean image folder DIR/<class>/<image>"))
    imagenet_c: str | None = field(
        default=None,
        metadata=dict(help="pre-corrupted folders DIR/<corruption>/<severity>/<class>/<image>", metavar="DIR"),
    )
    corruptions: str = field(
        default="common",
        metadata=dict(help="comma-separated names or groups (common, extra, all, noise, blur, weather, digital)"),
    )
    severities: str = field(default="1-5", metadata=dict(help="e.g. 1-5, 3 or 1,3,5"))
    baseline: str | None = field(
        default=None,
        metadata=dict(
            help="normalise CE by this model instead of the published errors (AlexNet's on ImageNet-C, RobustBench "
            "Standard's on CIFAR-10-C)",
            metavar="MODEL",
        ),
    )
    seed: int = field(default=0, metadata=dict(help="seed of the on-the-fly corruptions"))
    jpeg_quality: int | None = field(
        default=None,
        metadata=dict(
            help="JPEG round trip after corrupting (0 = none); default: as the set's files were stored (85 for "
            "imagenet-c, tiny-imagenet-c and imagenet-c-inception; none for cifar-c's .npy arrays)",
            bounds="[0, 100]",
        ),
    )
    geometry: str = field(
        default="corruption-set",
        metadata=dict(
            choices=list(library.GEOMETRIES),
            help="on the fly: corruption-set = the set's own geometry (imagenet-c: resize 256, crop 224), corrupt, "
            "then the model's input as for a file of its benchmark; model-input = corrupt the model's eval resize/crop",
        ),
    )
    corruption_set: str | None = field(
        default=None,
        metadata=dict(
            choices=list(CORRUPTION_SETS),
            help="whose constants and resolution: imagenet-c (224 px), cifar-c (32), tiny-imagenet-c (64), "
            "imagenet-c-inception (299); default: the one matching the data's images",
        ),
    )
    json: str | None = JSON_FIELD
    plot: str | None = field(default=None, metadata=dict(help="bar chart of CE per corruption", metavar="OUT.png"))
    max_image_pixels: int | None = PIXELS_FIELD


def run(opts: RobustnessOptions) -> int:
    check_outputs(opts)
    set_max_image_pixels(opts.max_image_pixels)
    settings = {k: v for k, v in vars(opts).items() if k not in ("model", "json", "plot", "max_image_pixels")}
    with sharded_evaluation() as shard:
        result = library.robustness(opts.model, shard=shard, **settings)
        if shard is not None and shard.rank != 0:
            return 0
        return report(result, library.format_table(result), opts.json, opts.plot, library.plot_ce)


COMMAND = Command(
    "robustness",
    "ImageNet-C corruption errors, CE, mCE and relative mCE",
    run,
    RobustnessOptions,
    inputs=("model", "data_dir", "imagenet_c", "baseline", "checkpoint"),
    description=library.__doc__.split("\n\n", 1)[1] if library.__doc__ else None,
)
