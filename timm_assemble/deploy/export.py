"""A deployable model file (ONNX, TorchScript, ExportedProgram), checked against the eager model.

The model (any timm name, ours or timm's own, `local-dir:DIR` or `hf-hub:ID`) is first turned into its
deploy copy (BatchNorm folded into the convs, DropBlock / drop-path / dropout removed; see
`timm_assemble.deploy.fold`), then written with dynamic batch and image size. Before the file replaces anything
at PATH it is loaded back with its runtime (ONNX Runtime, `torch.jit.load`, `torch.export.load`) and its
output compared with the original eager model at two input sizes; the errors are printed and a file that
disagrees by more than the tolerance is not written. The exported model takes normalised images, as the
eager model does: the printed data config says how to preprocess.
"""

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import TimmAssembleError
from ..fileio import atomic_path
from .fold import deploy_model, relative_error

FORMATS = ("onnx", "torchscript", "exported-program")
PARITY_TOLERANCE = 1e-4  # largest |difference| relative to the largest |logit| of the eager model
_INSTALL_DEPLOY = "pip install 'timm-assemble[deploy]'"
ONNX_MIN_OPSET = 18  # the lowest opset torch's exporter writes; it cannot convert lower for our models
_ONNX_MIN_TORCH = "2.7"  # string names in dynamic_shapes name the dims in the graph (batch, height, width)


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """torch's `torch.export`-based exporter, with every intermediate tensor's symbolic size in the file.

    The sizes (`value_info`, e.g. `((height - 1)//4) + 1`) are what lets ONNX Runtime fuse a residual add
    into the conv that feeds it after SK attention (whose broadcast multiply it cannot run in its blocked
    NCHWc layout, losing its own sizes there). `benchmarks/onnx_exporters.py` compares it with the
    TorchScript-based exporter it replaces: the same fused graph after ONNX Runtime's optimiser.
    """
    if torch.__version__ < _ONNX_MIN_TORCH:
        raise TimmAssembleError(f"--format onnx needs torch >= {_ONNX_MIN_TORCH}; this is {torch.__version__}")
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it and onnx; imported here for a clear error)
    except ImportError as err:
        raise TimmAssembleError(f"--format onnx needs the onnxscript package: {_INSTALL_DEPLOY}") from err
    try:
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=opset, input_names=["input"], output_names=["output"],
            dynamic_shapes=({0: "batch", 2: "height", 3: "width"},), optimize=True, verbose=False,
        )  # fmt: skip
    except torch.onnx.errors.OnnxExporterError as err:  # its own message is a how-to; the cause says what failed
        cause = (str(err.__cause__ or err).strip().splitlines() or ["?"])[0]
        raise TimmAssembleError(
            f"torch's ONNX exporter cannot export {type(model).__name__}: {cause}; use --format torchscript"
        ) from err
    written = program.model.opset_imports.get("")
    if written != opset:  # torch converts down or up only where onnx has adapters, else keeps its own
        raise TimmAssembleError(f"torch's ONNX exporter cannot write opset {opset} for this model (it wrote {written})")
    for node in program.model.graph.all_nodes():  # its debug notes: FX code and stack traces with this machine's
        node.metadata_props.clear()  # paths, 0.6 MB on Assemble-ResNet-50 at any width
    program.save(str(path), external_data=False)


def _load_onnx(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise TimmAssembleError(f"the ONNX parity check needs onnxruntime: {_INSTALL_DEPLOY}") from err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


# torch deprecates all of torch.jit (script, trace, save, load) in favour of torch.export; `--format
# exported-program` is the successor, TorchScript files still load in C++ and older deployments.
_TORCHSCRIPT_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():  # the user asked for TorchScript: torch's notice of its deprecation is noise
        warnings.filterwarnings("ignore", _TORCHSCRIPT_DEPRECATED, FutureWarning)
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
        warnings.filterwarnings("ignore", _TORCHSCRIPT_DEPRECATED, FutureWarning)
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


# torch.export treats sizes of 1 as special: an example at 32 px ends a stride-32 network at 1x1, and torch then
# wrote that 1 as the size of later maps (timm's test_efficientnet in channels_last), wrong at any larger input.
_MIN_TRACE_SIZE = 64


def parity_inputs(img_size: int, seed: int = 0) -> list[torch.Tensor]:
    """Two inputs that differ in batch and image size, so a frozen shape in the export shows."""
    gen = torch.Generator().manual_seed(seed)
    other = img_size + 32 if img_size < 512 else img_size - 32
    return [torch.randn(2, 3, img_size, img_size, generator=gen), torch.randn(1, 3, other, other, generator=gen)]


def _run(exported: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, path: Path) -> torch.Tensor:
    try:
        return exported(x)
    except Exception as err:  # each runtime has its own error types for a size the file cannot take
        shape = "x".join(map(str, x.shape))
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise TimmAssembleError(f"the export fails at input {shape}: {first}; nothing written to {path}") from err


@torch.no_grad()
def export_model(
    model: nn.Module, path: str | Path, format: str = "onnx", img_size: int = 224, fold: bool = True,
    opset: int = ONNX_MIN_OPSET, overwrite: bool = False,
) -> list[dict[str, float]]:  # fmt: skip
    """Write `model` (eval mode) to `path` in `format`; returns the parity rows (input shape, relative error).

    The file is written to a temporary name, loaded back and compared with `model` at two input sizes; it
    replaces `path` only when every relative error is <= PARITY_TOLERANCE.
    """
    if format not in FORMATS:
        raise TimmAssembleError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if format == "onnx" and opset < ONNX_MIN_OPSET:
        raise TimmAssembleError(f"--opset must be >= {ONNX_MIN_OPSET} (torch's exporter writes no lower); got {opset}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise TimmAssembleError(f"{path} already exists; pass --overwrite to replace it")
    model = model.eval()
    runnable = deploy_model(model) if fold else model
    inputs = parity_inputs(img_size)
    rows = []
    with atomic_path(path) as tmp:
        _WRITERS[format](runnable, parity_inputs(max(img_size, _MIN_TRACE_SIZE))[0], tmp, opset)
        exported = _LOADERS[format](tmp)
        for x in inputs:
            reference = model(x)
            rows.append(dict(shape=tuple(x.shape), deploy=relative_error(runnable(x), reference),
                             export=relative_error(_run(exported, x, path), reference)))  # fmt: skip
        worst = max(max(r["deploy"], r["export"]) for r in rows)
        if worst > PARITY_TOLERANCE:
            raise TimmAssembleError(
                f"export disagrees with the eager model: relative error {worst:.2e} > {PARITY_TOLERANCE:g}; "
                f"nothing written to {path}"
            )
    return rows
