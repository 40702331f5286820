"""`timm-assemble export MODEL --format onnx|torchscript|exported-program --out PATH`: a deployable model file.

The model (any timm name, ours or timm's own, `local-dir:DIR` or `hf-hub:ID`) is first turned into its
deploy copy (BatchNorm folded into the convs, DropBlock / drop-path / dropout removed; see
`timm_assemble.deploy`), then written with dynamic batch and image size. Before the file replaces anything
at PATH it is loaded back with its runtime (ONNX Runtime, `torch.jit.load`, `torch.export.load`) and its
output compared with the original eager model at two input sizes; the errors are printed and a file that
disagrees by more than the tolerance is not written. The exported model takes normalised images, as the
eager model does: the printed data config says how to preprocess.
"""

import argparse
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .cliargs import add_dataclass_arguments, from_args
from .deploy import deploy_model, relative_error
from .errors import TimmAssembleError
from .fileio import atomic_path

FORMATS = ("onnx", "torchscript", "exported-program")
PARITY_TOLERANCE = 1e-4  # largest |difference| relative to the largest |logit| of the eager model
_INSTALL_DEPLOY = "pip install 'timm-assemble[deploy]'"


@dataclass
class ExportConfig:
    model: str = field(metadata=dict(help="timm name, local-dir:DIR or hf-hub:ORG/NAME", positional=True))
    out: str = field(default="", metadata=dict(help="output file (.onnx, .pt, .pt2)", flags=("-o",)))
    format: str = field(default="onnx", metadata=dict(help="file format", choices=FORMATS))
    pretrained: bool = field(default=True, metadata=dict(help="load the model's pretrained weights"))
    checkpoint: str | None = field(default=None, metadata=dict(help="state dict to load (.safetensors or .pth)"))
    num_classes: int | None = field(default=None, metadata=dict(help="override the classifier size", bounds="[0, inf)"))
    img_size: int | None = field(
        default=None, metadata=dict(help="example and parity input size (default: the model's)", bounds="[16, inf)")
    )
    fold: bool = field(default=True, metadata=dict(help="fold BatchNorm into the convs first (deploy copy)"))
    opset: int = field(default=17, metadata=dict(help="ONNX opset version", bounds="[13, inf)"))
    overwrite: bool = field(default=False, metadata=dict(help="replace an existing file at --out"))


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    try:
        import onnx  # noqa: F401  (the TorchScript-based exporter needs it)
    except ImportError as err:
        raise TimmAssembleError(f"--format onnx needs the onnx package: {_INSTALL_DEPLOY}") from err
    with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer notes are not the user's concern
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch"}},
        )  # fmt: skip
    _annotate_symbolic_sizes(path)


def _annotate_symbolic_sizes(path: Path) -> None:
    """Write the symbolic size of every intermediate tensor (e.g. `floor(height/8)`) into the ONNX file.

    ONNX Runtime fuses a residual add into the conv that feeds it only when it can prove that both inputs have
    the same size. With a dynamic height and width its own inference loses the sizes after any op it cannot
    run in its blocked NCHWc layout (Assemble-ResNet's SK attention): the add then runs on its own, reshaped,
    after every such block. With the sizes written out it fuses, as in resnet50. Runtimes that do not need
    the sizes ignore them (standard `value_info`). A graph the inference cannot follow is left as exported:
    the sizes only speed it up.
    """
    import onnx

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    except ImportError as err:
        raise TimmAssembleError(f"--format onnx needs onnxruntime: {_INSTALL_DEPLOY}") from err
    try:
        annotated = SymbolicShapeInference.infer_shapes(onnx.load(str(path)), auto_merge=True)
    except Exception:  # the inference raises many types on ops it does not know; the plain file is still right
        return
    onnx.save(annotated, str(path))


def _load_onnx(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise TimmAssembleError(f"the ONNX parity check needs onnxruntime: {_INSTALL_DEPLOY}") from err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():  # torch deprecates TorchScript in favour of torch.export; it still works
        warnings.simplefilter("ignore", FutureWarning)
        try:
            scripted = torch.jit.script(model)
        except Exception as err:  # TorchScript raises its own error types for unsupported Python
            raise TimmAssembleError(
                f"TorchScript cannot compile {type(model).__name__}: {str(err).splitlines()[0]}; "
                "use --format onnx or exported-program"
            ) from err
        torch.jit.save(scripted, str(path))


def _load_torchscript(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path)).eval()


def _export_program(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    auto = torch.export.Dim.AUTO
    program = torch.export.export(model, (example,), dynamic_shapes=({0: auto, 2: auto, 3: auto},))
    buffer = io.BytesIO()  # torch.export.save wants a name ending in .pt2; the temporary file's does not
    torch.export.save(program, buffer)
    path.write_bytes(buffer.getvalue())


def _load_program(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.export.load(io.BytesIO(path.read_bytes())).module()


_WRITERS = {"onnx": _export_onnx, "torchscript": _export_torchscript, "exported-program": _export_program}
_LOADERS = {"onnx": _load_onnx, "torchscript": _load_torchscript, "exported-program": _load_program}


def parity_inputs(img_size: int, seed: int = 0) -> list[torch.Tensor]:
    """Two inputs that differ in batch and image size, so a frozen shape in the export shows."""
    gen = torch.Generator().manual_seed(seed)
    other = img_size + 32 if img_size < 512 else img_size - 32
    return [torch.randn(2, 3, img_size, img_size, generator=gen), torch.randn(1, 3, other, other, generator=gen)]


@torch.no_grad()
def export_model(
    model: nn.Module, path: str | Path, format: str = "onnx", img_size: int = 224, fold: bool = True,
    opset: int = 17, overwrite: bool = False,
) -> list[dict[str, float]]:  # fmt: skip
    """Write `model` (eval mode) to `path` in `format`; returns the parity rows (input shape, relative error).

    The file is written to a temporary name, loaded back and compared with `model` at two input sizes; it
    replaces `path` only when every relative error is <= PARITY_TOLERANCE.
    """
    if format not in FORMATS:
        raise TimmAssembleError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise TimmAssembleError(f"{path} already exists; pass --overwrite to replace it")
    model = model.eval()
    runnable = deploy_model(model) if fold else model
    inputs = parity_inputs(img_size)
    rows = []
    with atomic_path(path) as tmp:
        _WRITERS[format](runnable, inputs[0], tmp, opset)
        exported = _LOADERS[format](tmp)
        for x in inputs:
            reference = model(x)
            rows.append(dict(shape=tuple(x.shape), deploy=relative_error(runnable(x), reference),
                             export=relative_error(exported(x), reference)))  # fmt: skip
        worst = max(max(r["deploy"], r["export"]) for r in rows)
        if worst > PARITY_TOLERANCE:
            raise TimmAssembleError(
                f"export disagrees with the eager model: relative error {worst:.2e} > {PARITY_TOLERANCE:g}; "
                f"nothing written to {path}"
            )
    return rows


def run(args: argparse.Namespace) -> int:
    from .evaluation.common import create_eval_model, model_data_config

    cfg: ExportConfig = from_args(ExportConfig, args)
    if not cfg.out:
        raise TimmAssembleError("--out PATH is required")
    model = create_eval_model(cfg.model, pretrained=cfg.pretrained, num_classes=cfg.num_classes,
                              checkpoint=cfg.checkpoint)  # fmt: skip
    data = model_data_config(model)
    img_size = cfg.img_size or data["input_size"][-1]
    rows = export_model(model, cfg.out, cfg.format, img_size, cfg.fold, cfg.opset, cfg.overwrite)
    print(f"wrote {cfg.out} ({cfg.format}, {'BN folded' if cfg.fold else 'not folded'}, dynamic batch and size)")
    for r in rows:
        print(f"parity {'x'.join(map(str, r['shape']))}: deploy copy {r['deploy']:.1e}, "
              f"{cfg.format} {r['export']:.1e} (max relative error vs eager, tolerance {PARITY_TOLERANCE:g})")
    print(f"preprocess: resize/crop to {data['input_size'][-1]} px (crop_pct {data['crop_pct']}, "
          f"{data['interpolation']}), mean {tuple(round(v, 4) for v in data['mean'])}, "
          f"std {tuple(round(v, 4) for v in data['std'])}")  # fmt: skip
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a deployable ONNX / TorchScript / ExportedProgram file (BN folded, parity checked)",
        description=__doc__.split("\n\n", 1)[1],
    )
    add_dataclass_arguments(parser, ExportConfig)
    parser.set_defaults(func=run)
