"""`timm-assemble export MODEL --format onnx|torchscript|exported-program --out PATH`: a deployable model file."""

from dataclasses import dataclass, field

from ..deploy import export as library
from ..deploy.export import FORMATS, ONNX_MIN_OPSET, PARITY_TOLERANCE, export_model
from ..errors import TimmAssembleError
from ..evaluation.model import model_data_config, model_from_options
from ..evaluation.options import DataConfigOptions, ModelOptions, num_classes_field
from ..sizing import Claim, check_batch
from .args import Command


@dataclass
class ExportConfig(DataConfigOptions, ModelOptions):
    """`timm-assemble export` flags: timm's model and data-config flags, and the file to write."""

    model: str | None = field(
        default=None, metadata=dict(help="timm name, local-dir:DIR or hf-hub:ORG/NAME", positional=True)
    )
    num_classes: int | None = num_classes_field(low=0)
    out: str = field(default="", metadata=dict(help="output file (.onnx, .pt, .pt2)", flags=("-o",)))
    format: str = field(default="onnx", metadata=dict(help="file format", choices=FORMATS))
    fold: bool = field(default=True, metadata=dict(help="fold BatchNorm into the convs first (deploy copy)"))
    opset: int = field(
        default=ONNX_MIN_OPSET, metadata=dict(help="ONNX opset version", bounds=f"[{ONNX_MIN_OPSET}, inf)")
    )
    overwrite: bool = field(default=False, metadata=dict(help="replace an existing file at --out"))


def run(cfg: ExportConfig) -> int:
    if not cfg.out:
        raise TimmAssembleError("--out PATH is required")
    model = model_from_options(cfg)
    data = model_data_config(model, cfg.data_config_args())
    img_size = data["input_size"][-1]
    if img_size < 16:
        raise TimmAssembleError(f"export needs an input size of at least 16 px, got {img_size}")
    check_batch(model, (3, img_size, img_size), 2, [Claim("img_size", img_size, "--img-size")])  # the parity batch
    rows = export_model(model, cfg.out, cfg.format, img_size, cfg.fold, cfg.opset, cfg.overwrite)
    print(f"wrote {cfg.out} ({cfg.format}, {'BN folded' if cfg.fold else 'not folded'}, dynamic batch and size)")
    for r in rows:
        print(f"parity {'x'.join(map(str, r['shape']))}: deploy copy {r['deploy']:.1e}, "
              f"{cfg.format} {r['export']:.1e} (max relative error vs eager, tolerance {PARITY_TOLERANCE:g})")
    print(f"preprocess: resize/crop to {data['input_size'][-1]} px (crop_pct {data['crop_pct']}, "
          f"{data['interpolation']}), mean {tuple(round(v, 4) for v in data['mean'])}, "
          f"std {tuple(round(v, 4) for v in data['std'])}")  # fmt: skip
    return 0


COMMAND = Command(
    "export",
    "write a deployable ONNX / TorchScript / ExportedProgram file (BN folded, parity checked)",
    run,
    ExportConfig,
    inputs=("model", "checkpoint"),
    description=library.__doc__.split("\n\n", 1)[1] if library.__doc__ else None,
)
