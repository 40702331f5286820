"""Inference throughput of several models in several execution modes, all interleaved in one process.

Modes: `eager` (fp32), `bf16` (CPU/CUDA autocast), `compile` (`torch.compile`, inductor with freezing:
weights become constants, so conv+BN fold at compile time) and `onnxruntime` (the BN-folded deploy copy
exported to ONNX, run by ONNX Runtime with all graph optimisations). Every (model, mode) pair is one entry
of the same interleaved timing loop as `timm-assemble benchmark` (`time_interleaved`); the models of one
mode run back to back in every repeat, and a model's ratio to the reference model is the median over
repeats of the ratio within the repeat (`paired_ratio`), which a shared machine's drifting load cancels
out of.
"""

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import TimmAssembleError
from .benchmark import cpu_name, paired_ratio, throughput_summary, time_interleaved
from .model import create_eval_model
from .options import autocast

MODES = ("eager", "bf16", "compile", "onnxruntime")


def _torch_step(model: nn.Module, x: torch.Tensor, amp: str = "none") -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), autocast(x.device, amp):
            model(x)

    return step


def _compiled_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    import torch._inductor.config as inductor_config

    compiled = torch.compile(model)

    def step() -> None:  # freezing only applies in inference mode; the patch is scoped to these calls
        with inductor_config.patch(freezing=True), torch.inference_mode():
            compiled(x)

    return step


def _onnxruntime_step(model: nn.Module, x: torch.Tensor, workdir: Path, name: str) -> Callable[[], None]:
    from ..deploy.export import export_model

    try:
        import onnxruntime as ort
    except ImportError as err:
        raise TimmAssembleError("mode onnxruntime needs onnxruntime: pip install 'timm-assemble[deploy]'") from err
    path = workdir / f"{name}.onnx"
    export_model(model, path, "onnx", img_size=x.shape[-1])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.contiguous().cpu().numpy()}
    return lambda: session.run(None, feed)


def make_step(model: nn.Module, mode: str, x: torch.Tensor, workdir: Path, name: str) -> Callable[[], None]:
    """One inference call of `model` on the batch `x` in `mode` (x is channels_last for the torch modes)."""
    if mode == "eager":
        return _torch_step(model, x)
    if mode == "bf16":
        return _torch_step(model, x, "bf16")
    if mode == "compile":
        return _compiled_step(model, x)
    if mode == "onnxruntime":
        if x.device.type != "cpu":
            raise TimmAssembleError("mode onnxruntime runs on the CPU only here; drop it for --device cuda")
        return _onnxruntime_step(model, x, workdir, name)
    raise TimmAssembleError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def compare_modes(
    models: Sequence[str],
    modes: Sequence[str] = MODES,
    *,
    batch_size: int = 8,
    img_size: int = 224,
    warmup: int = 2,
    repeats: int = 7,
    iters: int = 1,
    device: str = "cpu",
    seed: int = 0,
    reference: str | None = None,
) -> dict[str, Any]:
    """img/s of every model in every mode (median of `repeats` interleaved rounds) and its paired ratio to
    `reference` (default: the last model) in the same mode; random weights."""
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes or not models:
        raise TimmAssembleError(f"need models and modes from {', '.join(MODES)}; got modes {list(modes)}")
    reference = reference or models[-1]
    if reference not in models:
        raise TimmAssembleError(f"the reference model {reference!r} must be one of the models {list(models)}")
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, img_size, img_size, generator=gen).to(dev)
    x = x.contiguous(memory_format=torch.channels_last)
    steps: dict[tuple[str, str], Callable[[], None]] = {}
    with tempfile.TemporaryDirectory(prefix="timm-assemble-modes-") as workdir:
        for name in models:
            model = create_eval_model(name, pretrained=False).to(dev).to(memory_format=torch.channels_last)
            for mode in modes:
                steps[(name, mode)] = make_step(model, mode, x, Path(workdir), name)
        groups = [[(n, m) for n in models] for m in modes]
        times = time_interleaved(steps, warmup, repeats, iters, dev, "modes", groups=groups)
    rows = [
        dict(model=n, mode=m, **throughput_summary(times[(n, m)], batch_size),
             **paired_ratio(times[(n, m)], times[(reference, m)]))
        for n, m in steps
    ]  # fmt: skip
    return {
        "config": dict(device=str(dev), device_name=cpu_name() if dev.type == "cpu" else torch.cuda.get_device_name(),
                       torch_threads=torch.get_num_threads(), torch=torch.__version__, batch_size=batch_size,
                       img_size=img_size, channels_last=True, warmup=warmup, repeats=repeats, iters_per_repeat=iters,
                       reference=reference),
        "rows": rows,
    }  # fmt: skip


def format_modes(result: dict[str, Any]) -> str:
    """Markdown table: one row per model, img/s per mode, and the paired ratio to the reference per mode."""
    rows = result["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    cfg = result["config"]
    reference = cfg["reference"]
    rate = {(r["model"], r["mode"]): r for r in rows}
    lines = [
        f"{cfg['device_name']} ({cfg['device']}, {cfg['torch_threads']} threads), batch {cfg['batch_size']}, "
        f"{cfg['img_size']}px, channels_last (torch modes), median of {cfg['repeats']} interleaved repeats; "
        f"ratio: median over repeats of img/s / img/s of {reference} in the same repeat [quartiles]",
        "",
        "| model | " + " | ".join(f"{m} img/s" for m in modes) + " | "
        + " | ".join(f"{m} / {reference}" for m in modes) + " |",
        "|---|" + "---:|" * (2 * len(modes)),
    ]  # fmt: skip
    for name in models:
        cells = [f"{rate[(name, m)]['img_per_s']:.1f}" for m in modes]
        ratios = [
            f"{r['ratio']:.2f}" + (f" [{r['ratio_q1']:.2f}-{r['ratio_q3']:.2f}]" if name != reference else "")
            for r in (rate[(name, m)] for m in modes)
        ]
        lines.append(f"| `{name}` | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)
