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
