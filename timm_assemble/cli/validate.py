"""`timm-assemble validate`: top-1 / top-5 / loss of a model on an image folder; under `accelerate launch` / torchrun
with several processes each scores its share of the images and the main process reports."""

from dataclasses import dataclass, field

from ..data.images import set_max_image_pixels
from ..evaluation.options import EvalOptions
from ..evaluation.scoring import sharded_evaluation
from ..evaluation.validate import validate
from .args import PIXELS_FIELD, Command
from .report import JSON_FIELD, check_outputs, report


@dataclass
class ValidateOptions(EvalOptions):
    """`timm-assemble validate` flags."""

    data_dir: str | None = field(
        default=None,
        metadata=dict(help="image folder DIR/<class>/<image>, or DIR/<split>/<class>/<image>", required=True),
    )
    json: str | None = JSON_FIELD
    max_image_pixels: int | None = PIXELS_FIELD


def run(opts: ValidateOptions) -> int:
    check_outputs(opts)
    set_max_image_pixels(opts.max_image_pixels)
    settings = {k: v for k, v in vars(opts).items() if k not in ("model", "data_dir", "json", "max_image_pixels")}
    with sharded_evaluation() as shard:
        result = validate(opts.model, opts.data_dir, shard=shard, **settings)
    if shard is not None and shard.rank != 0:
        return 0
    size = result["data_config"]["input_size"][-1]
    table = (
        f"{result['model']}: top-1 {result['top1']:.2f}  top-5 {result['top5']:.2f}  loss {result['loss']:.4f}  "
        f"({result['num_images']} images, {size}px, crop {result['data_config']['crop_pct']}, "
        f"{result['label_map']})"
    )
    if result["split"] is not None:
        table = f"split '{result['split']}' of {result['data_dir']}\n{table}"
    return report(result, table, opts.json)


COMMAND = Command(
    "validate",
    "top-1/top-5/loss of a model on an image folder",
    run,
    ValidateOptions,
    inputs=("model", "data_dir", "checkpoint"),
    description="Evaluate a timm model (registry name, local-dir:DIR or hf-hub:ID) on DIR/<class>/<image> "
    "with the model's own eval preprocessing. ImageNet folders named by synset map onto 1000-class models.",
)
