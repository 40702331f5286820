"""`timm-assemble study`: the paper's compounding table (E0 .. E12) trained and measured on your data."""

import argparse
from dataclasses import dataclass, field, fields

from ..errors import TimmAssembleError
from ..evaluation.corruption_sets import CORRUPTION_SETS
from ..training import study as library
from ..training.config import FIELDS, TrainConfig
from .args import Command, add_dataclass_arguments, from_args
from .train import INPUTS, launch_command, quiet_logging


@dataclass
class StudyFlags:
    """The study's own flags; every train flag (`--epochs`, `--img-size`, `--model-kwargs`, ...) goes to every rung."""

    rungs: str = field(
        default=",".join(library.DEFAULT_RUNGS),
        metadata=dict(help=f"comma-separated rungs or 'all' ({', '.join(library.LADDER)})"),
    )
    start_from: str = field(
        default="scratch",
        metadata=dict(
            help="pretrained: every rung whose network has ImageNet weights starts from them, the others from scratch",
            choices=("scratch", "pretrained"),
            flags=("--from",),
        ),
    )
    corruptions: str = field(
        default="common",
        metadata=dict(help="corruptions measured per rung: names or groups (common, noise, blur, ...), or 'none'"),
    )
    severities: str = field(default="1-5", metadata=dict(help="corruption severities, e.g. 1-5, 3 or 1,3,5"))
    corruption_set: str | None = field(
        default=None,
        metadata=dict(
            choices=list(CORRUPTION_SETS),
            help="the corruptions' constants and resolution (default: the set matching the validation images)",
        ),
    )
    robustness_images: int | None = field(
        default=None, metadata=dict(help="corrupt an evenly spaced subset of N validation images", bounds="[1, inf)")
    )
    bench_batch_size: int | None = field(
        default=None, metadata=dict(help="throughput batch (None: 8 on CPU, 256 on CUDA)", bounds="[1, inf)")
    )
    bench_repeats: int = field(default=5, metadata=dict(help="interleaved throughput rounds", bounds="[1, inf)"))
    device: str | None = field(default=None, metadata=dict(help="device of the measurements (None: cuda if any)"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, StudyFlags)
    add_dataclass_arguments(parser, TrainConfig, defaults=TrainConfig(), only_typed=True)


def run(args: argparse.Namespace) -> int:
    flags = from_args(StudyFlags, args)
    for name, instead in (("model", "each rung's network is its preset's"), ("pretrained", "use --from pretrained")):
        if name in vars(args):
            raise TimmAssembleError(f"--{name} does not apply to a study: {instead}")
    train = {k: v for k, v in vars(args).items() if k in FIELDS and k not in ("mode", "preset")}
    output_dir = train.pop("output_dir", None)
    if output_dir is None:
        raise TimmAssembleError("--output-dir STUDY is required (the study folder, one run folder per rung)")
    if "scale" in train:
        train["scale"] = tuple(train["scale"])
    control = {k: train.pop(k) for k in ("resume", "overwrite") if k in train}
    argv = list(args.argv)
    quiet_logging()
    library.run_study(
        library.StudyOptions(
            output_dir=output_dir,
            rungs=library.parse_rungs(flags.rungs),
            train=train,
            command=launch_command(f"{args.program} study", argv[argv.index("study") + 1 :]),
            **control,
            **{f.name: getattr(flags, f.name) for f in fields(StudyFlags) if f.name != "rungs"},
        )  # fmt: skip
    )
    return 0


COMMAND = Command(
    "study",
    "train and measure the E0..E12 ladder on your data: the paper's compounding table",
    run,
    description=library.__doc__.split("\n\n", 1)[0] if library.__doc__ else None,
    add_arguments=add_arguments,
    inputs=INPUTS,
)
