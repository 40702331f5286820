"""`timm-assemble benchmark`: models side by side (throughput, latency, memory, params, FLOPs), or execution modes."""

from dataclasses import dataclass, field
from typing import Any

from ..errors import TimmAssembleError
from ..evaluation import benchmark as library
from ..evaluation.modes import MODES, compare_modes, format_modes
from ..evaluation.options import (
    amp_dtype_field,
    amp_field,
    amp_mode,
    channels_last_field,
    device_field,
    input_size_field,
    model_kwargs_field,
    num_classes_field,
)
from .args import Command
from .report import JSON_FIELD, check_outputs, report

OURS, DEFAULT_PEERS = library.OURS, library.DEFAULT_PEERS


@dataclass
class BenchmarkOptions:
    """`timm-assemble benchmark` flags."""

    models: list[str] | None = field(
        default=None,
        metadata=dict(help=f"timm names (None: {' '.join(OURS + DEFAULT_PEERS)})", flags=("--model", "-m")),
    )
    model_kwargs: dict[str, Any] = model_kwargs_field()
    num_classes: int | None = num_classes_field()
    device: str = device_field()
    batch_size: int | None = field(
        default=None,
        metadata=dict(help="images per batch (None: 8 on CPU, 256 on CUDA)", bounds="[1, inf)", flags=("-b",)),
    )
    img_size: int | None = field(default=None, metadata=dict(help="input size (None: 224)", bounds="[1, inf)"))
    input_size: tuple[int, int, int] | None = input_size_field()
    as_published: bool = field(
        default=False,
        metadata=dict(
            help="each model at its own eval size beside its published top-1 there (default models: the weights "
            "in reference_results.json 'as_published')"
        ),
    )
    amp: bool = amp_field()
    amp_dtype: str = amp_dtype_field()
    channels_last: bool = channels_last_field()
    compile: bool = field(default=False, metadata=dict(help="torch.compile every model first"))
    train: bool = field(default=False, metadata=dict(help="also time a training step (fwd + bwd + SGD)"))
    warmup: int = field(default=2, metadata=dict(help="untimed batches per model", bounds="[0, inf)"))
    repeats: int = field(default=5, metadata=dict(help="interleaved timed rounds", bounds="[1, inf)"))
    iters: int = field(default=3, metadata=dict(help="batches per model per round", bounds="[1, inf)"))
    seed: int = field(default=0, metadata=dict(help="seed of the random input batch"))
    threads: int | None = field(
        default=None, metadata=dict(help="torch CPU threads (None: torch's choice)", bounds="[1, inf)")
    )
    modes: list[str] | None = field(
        default=None,
        metadata=dict(
            help=f"compare execution modes instead ({', '.join(MODES)}): img/s per model and mode, ratios to "
            "--reference in the same mode (random weights)",
            choices=list(MODES),
        ),
    )
    reference: str | None = field(
        default=None, metadata=dict(help="with --modes: the model the ratios are to (None: the last)")
    )
    json: str | None = JSON_FIELD
    plot: str | None = field(
        default=None, metadata=dict(help="throughput vs published ImageNet top-1", metavar="OUT.png")
    )


def run(opts: BenchmarkOptions) -> int:
    check_outputs(opts)
    if opts.input_size is not None:
        if opts.input_size[0] != 3 or opts.input_size[1] != opts.input_size[2]:
            raise TimmAssembleError(f"--input-size: benchmark times 3-channel square inputs, got {opts.input_size}")
        if opts.img_size not in (None, opts.input_size[-1]):
            raise TimmAssembleError("--input-size and --img-size disagree: give one of them")
        opts.img_size = opts.input_size[-1]
    if opts.modes:
        models = opts.models or ["assemble_resnet50", "assemble_resnet152", "resnet50"]
        result = compare_modes(
            models, opts.modes, batch_size=opts.batch_size or 8, img_size=opts.img_size or 224, warmup=opts.warmup,
            repeats=opts.repeats, iters=opts.iters, device=opts.device, seed=opts.seed, reference=opts.reference,
        )  # fmt: skip
        return report(result, format_modes(result), opts.json)
    if opts.as_published and opts.img_size is not None:
        raise TimmAssembleError("--as-published runs every model at its own eval size; drop --img-size")
    models = opts.models or list(library.as_published_models() if opts.as_published else OURS + DEFAULT_PEERS)
    result = library.benchmark(
        models, device=opts.device, batch_size=opts.batch_size, img_size=opts.img_size or 224,
        amp=amp_mode(opts.amp, opts.amp_dtype),
        channels_last=opts.channels_last, compile=opts.compile, train=opts.train, warmup=opts.warmup,
        repeats=opts.repeats, iters=opts.iters, seed=opts.seed, threads=opts.threads, as_published=opts.as_published,
        model_kwargs=opts.model_kwargs, num_classes=opts.num_classes,
    )  # fmt: skip
    return report(result, library.format_table(result), opts.json, opts.plot, library.plot_throughput)


COMMAND = Command(
    "benchmark",
    "throughput, latency, memory, params and FLOPs of models side by side",
    run,
    BenchmarkOptions,
    inputs=("models", "reference"),
    description=library.__doc__.split("\n\n", 1)[1] if library.__doc__ else None,
)
