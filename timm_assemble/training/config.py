"""Training configuration: one dataclass, presets as small TOML files, command-line flags on top.

Resolution order (later wins): dataclass defaults < mode defaults (`finetune`) < preset file < flags the
user actually typed. `--print-config` shows the result in the same TOML format the presets use, so a
printed config can be saved and passed back with `--config FILE`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

from ..errors import TimmAssembleError
from ..options import base_type, check_bounds, field_types
from .timm_args import read_timm_args

PRESET_DIR = Path(__file__).parent / "presets"
DEMO_PRESET = "demo"
BASE_KEY = "base"  # a preset's `base = "e10"`: start from that preset's settings
NO_TEACHER = "none"  # --teacher none: no distillation, whatever the preset says
PRECISIONS = ("no", "fp16", "bf16")  # accelerate's names
AMP_DTYPES = {"float16": "fp16", "bfloat16": "bf16"}  # timm's --amp-dtype -> accelerate's name
SCHEDULERS = ("cosine", "tanh", "step", "multistep", "plateau", "poly")  # timm's create_scheduler_v2

_logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every knob of a training or fine-tuning run. Field docs double as `--help` text."""

    # what kind of run
    mode: str = field(default="train", metadata=dict(help="train (from scratch) or finetune", cli=False))
    preset: str | None = field(default=None, metadata=dict(help="preset name (e0..e12, fgvc, demo)", cli=False))
    description: str = field(default="", metadata=dict(help="free text shown in logs and model cards"))

    # data
    data_dir: str | None = field(default=None, metadata=dict(help="ImageFolder root (train/ and val/ or one folder)"))
    dataset: str = field(
        default="", metadata=dict(help="timm dataset name ('' = folder, e.g. torch/cifar10, hfds/NAME)")
    )
    train_split: str = field(default="train", metadata=dict(help="split name of the training data"))
    val_split: str = field(
        default="validation",
        metadata=dict(help="split name of the validation data (timm's --val-split)", flags=("--val-split-name",)),
    )
    val_fraction: float | None = field(
        default=None,
        metadata=dict(bounds="(0, 1)", help="hold out this fraction of one folder as validation (seeded, stratified)"),
    )
    dataset_download: bool = field(default=False, metadata=dict(help="let timm download a named dataset"))
    synthetic: bool = field(default=False, metadata=dict(help="use the built-in synthetic dataset"))
    synthetic_classes: int = field(default=8, metadata=dict(bounds="[2, inf)", help="classes of the synthetic dataset"))
    synthetic_images: int = field(
        default=48, metadata=dict(bounds="[1, inf)", help="training images per synthetic class")
    )
    synthetic_image_size: int = field(
        default=64, metadata=dict(bounds="[8, inf)", help="pixel size of the synthetic images")
    )
    workers: int = field(
        default=4, metadata=dict(bounds="[0, inf)", help="data loader worker processes per device", flags=("-j",))
    )
    strict_data: bool = field(default=False, metadata=dict(help="an unreadable image is an error, not a skip"))
    max_image_pixels: int | None = field(
        default=None,
        metadata=dict(
            help="skip images declaring more pixels than this, before decoding (default: Pillow's ~89 M)",
            bounds="[1, inf)",
        ),
    )

    # model
    model: str = field(default="assemble_resnet50", metadata=dict(help="timm model name or local-dir:DIR"))
    model_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=dict(help="architecture kwargs, e.g. width=32 (recorded in the export)")
    )
    pretrained: str = field(
        default="none",
        metadata=dict(
            help="start weights: none | default (--model's; bare --pretrained) | ARCH.TAG | local-dir:DIR | "
            "hf-hub:ID | FILE (--no-pretrained: none)",
            const="default",
            off="none",
            metavar="WEIGHTS",
        ),
    )
    pretrained_optional: bool = field(
        default=False, metadata=dict(help="if the pretrained weights cannot be loaded, train from scratch")
    )
    initial_checkpoint: str | None = field(
        default=None,
        metadata=dict(help="weights file loaded strictly into the built model, classifier included (timm's meaning)"),
    )
    scratch_model_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=dict(help="model kwargs used instead when training from scratch as fallback")
    )
    num_classes: int | None = field(
        default=None, metadata=dict(bounds="[2, inf)", help="expected class count (checked vs the data)")
    )
    img_size: int | None = field(
        default=None, metadata=dict(bounds="[1, inf)", help="training input size (default: model's)")
    )
    input_size: tuple[int, int, int] | None = field(
        default=None,
        metadata=dict(bounds="[1, inf)", help="training input size C H W, as timm's (square, 3 channels)", metavar="N"),
    )
    eval_img_size: int | None = field(
        default=None, metadata=dict(bounds="[1, inf)", help="evaluation input size (default: img_size)")
    )
    crop_pct: float | None = field(default=None, metadata=dict(bounds="(0, 1]", help="evaluation centre-crop fraction"))
    mean: list[float] | None = field(
        default=None,
        metadata=dict(
            bounds="[0, 1]", help="input mean per channel (one: every channel), 0..1 pixels (default: the model's)"
        ),
    )
    std: list[float] | None = field(
        default=None,
        metadata=dict(
            bounds="(0, inf)",
            help="input std per channel (one: every channel), 0..1 pixels; 1/255 = subtract the mean only (official)",
        ),
    )
    channels_last: bool = field(default=False, metadata=dict(help="channels_last memory format"))
    compile: bool = field(default=False, metadata=dict(help="torch.compile the model"))
    sync_bn: bool = field(
        default=False,
        metadata=dict(
            help="SyncBatchNorm across processes (CUDA); off: per-replica BatchNorm statistics, as the official recipe"
        ),
    )

    # augmentation and regularisation
    aa: str | None = field(
        default=None,
        metadata=dict(
            help="auto-augment: the official 'clova-imagenet' / 'clova-good' (CIFAR) policies, or timm's "
            "('original', 'rand-m9-mstd0.5', ...)"
        ),
    )
    scale: tuple[float, float] = field(
        default=(0.08, 1.0), metadata=dict(bounds="(0, 1]", help="RandomResizedCrop area range")
    )
    hflip: float = field(default=0.5, metadata=dict(bounds="[0, 1]", help="horizontal flip probability"))
    color_jitter: float | None = field(default=None, metadata=dict(bounds="[0, inf)", help="colour jitter strength"))
    reprob: float = field(default=0.0, metadata=dict(bounds="[0, 1]", help="random erasing probability"))
    label_smoothing: float = field(
        default=0.0, metadata=dict(bounds="[0, 1)", help="label smoothing", flags=("--smoothing",))
    )
    mixup: float = field(default=0.0, metadata=dict(bounds="[0, inf)", help="mixup alpha (0 = off)"))
    mixup_mode: str = field(
        default="batch",
        metadata=dict(
            help="pair: the official mixup (2N loaded images -> N, one lambda per sample, KD mixed alike); "
            "batch / elem: timm's Mixup (N -> N, one lambda per batch / per sample)",
            choices=("pair", "batch", "elem"),
        ),
    )
    cutmix: float = field(default=0.0, metadata=dict(bounds="[0, inf)", help="cutmix alpha (0 = off)"))
    mixup_prob: float = field(default=1.0, metadata=dict(bounds="[0, 1]", help="probability of mixing a batch"))
    mixup_switch_prob: float = field(
        default=0.5, metadata=dict(bounds="[0, 1]", help="probability of cutmix when both are on")
    )
    drop_rate: float = field(
        default=0.0, metadata=dict(bounds="[0, 1)", help="dropout before the classifier", flags=("--drop",))
    )
    drop_path_rate: float = field(
        default=0.0, metadata=dict(bounds="[0, 1)", help="stochastic depth rate", flags=("--drop-path",))
    )
    drop_block_rate: float = field(
        default=0.0,
        metadata=dict(
            bounds="[0, 1)",
            help="final DropBlock drop prob; keep-prob goes 1.0 -> 1-rate linearly per step",
            flags=("--drop-block",),
        ),
    )
    drop_block_start: float = field(
        default=1.0, metadata=dict(help="DropBlock keep-prob at the first step", bounds="(0, 1]")
    )
    drop_block_end: float | None = field(
        default=None,
        metadata=dict(
            help="DropBlock keep-prob at the last step, linear per step (unset: 1 - drop_block_rate)", bounds="(0, 1]"
        ),
    )
    zero_init_last: bool | None = field(
        default=None, metadata=dict(help="zero-gamma: last BN of each block starts at 0 (unset: model default)")
    )

    # knowledge distillation
    teacher: str | None = field(
        default=None, metadata=dict(help="KD teacher: timm name / local-dir:DIR; 'none' turns a preset's KD off")
    )
    teacher_weights: str | None = field(default=None, metadata=dict(help="KD teacher weights file"))
    kd_temperature: float = field(
        default=1.0, metadata=dict(bounds="(0, inf)", help="KD softmax temperature", timm=False)  # timm's: its KD task
    )
    kd_weight: float = field(
        default=1.0, metadata=dict(bounds="[0, inf)", help="KD loss weight (task loss weight is 1)")
    )
    teacher_logits: str | None = field(
        default=None,
        metadata=dict(help="teacher logits precomputed by `timm-assemble teacher-logits` (instead of a live teacher)"),
    )

    # BatchNorm
    bn_momentum: float | None = field(
        default=None,
        metadata=dict(
            help="BatchNorm momentum (PyTorch sense; official decay 0.997 = 0.003; unset: the model's, 0.1 for ours)",
            bounds="(0, 1]",
        ),
    )
    bn_eps: float | None = field(default=None, metadata=dict(help="BatchNorm eps (unset: model's)", bounds="(0, inf)"))
    reset_bn_stats: bool = field(
        default=False,
        metadata=dict(help="start BN running statistics fresh instead of the pretrained ones (official fine-tuning)"),
    )

    # EMA
    model_ema: bool = field(default=False, metadata=dict(help="keep an EMA of the weights; evaluate/export it"))
    model_ema_decay: float = field(default=0.9998, metadata=dict(bounds="(0, 1)", help="EMA decay per step"))
    model_ema_warmup: bool = field(
        default=True, metadata=dict(help="ramp the EMA decay up from 0 (timm ModelEmaV3 warm-up): short runs")
    )

    # optimisation
    opt: str = field(default="sgd", metadata=dict(help="optimizer (timm name: sgd, adamw, lamb, ...)"))
    lr: float | None = field(
        default=None, metadata=dict(bounds="(0, inf)", help="absolute lr (overrides lr_base scaling)")
    )
    lr_base: float = field(
        default=0.1, metadata=dict(bounds="(0, inf)", help="lr per lr_base_size images of global batch")
    )
    lr_base_size: int = field(default=256, metadata=dict(bounds="[1, inf)", help="global batch that lr_base refers to"))
    momentum: float = field(default=0.9, metadata=dict(bounds="[0, 1]", help="SGD momentum"))
    weight_decay: float = field(
        default=1e-4, metadata=dict(bounds="[0, inf)", help="weight decay (not on biases and norms)")
    )
    decay_biases: bool = field(
        default=False, metadata=dict(help="weight decay on biases too, only norm layers exempt (official)")
    )
    clip_grad: float | None = field(
        default=None, metadata=dict(bounds="(0, inf)", help="clip the gradient norm to this value")
    )
    layer_decay: float | None = field(
        default=None, metadata=dict(bounds="(0, 1]", help="layer-wise lr decay (group_matcher)")
    )
    backbone_lr_scale: float = field(
        default=1.0, metadata=dict(bounds="[0, inf)", help="lr multiplier of everything but the head")
    )
    freeze_backbone: bool = field(default=False, metadata=dict(help="train the classifier only (linear probe)"))
    sched: str = field(
        default="cosine", metadata=dict(help="timm scheduler", choices=SCHEDULERS)
    )
    sched_on_updates: bool = field(
        default=True, metadata=dict(help="step the schedule every update (--no-sched-on-updates: every epoch, timm's)")
    )
    decay_epochs: float = field(default=90, metadata=dict(bounds="(0, inf)", help="step: epochs between lr decays"))
    decay_milestones: list[int] = field(
        default_factory=lambda: [90, 180, 270], metadata=dict(bounds="[1, inf)", help="multistep: decay epochs")
    )
    decay_rate: float = field(
        default=0.1, metadata=dict(bounds="(0, inf)", help="step / multistep / plateau / poly decay", flags=("--dr",))
    )
    cooldown_epochs: int = field(default=0, metadata=dict(bounds="[0, inf)", help="epochs at min_lr after the decay"))
    patience_epochs: int = field(default=10, metadata=dict(bounds="[0, inf)", help="plateau: epochs without gain"))
    lr_noise: list[float] | None = field(
        default=None, metadata=dict(help="lr noise on/off epoch fraction(s) (timm's --lr-noise)", metavar="pct")
    )
    lr_noise_pct: float = field(default=0.67, metadata=dict(bounds="[0, inf)", help="lr noise limit"))
    lr_noise_std: float = field(default=1.0, metadata=dict(bounds="[0, inf)", help="lr noise std-dev"))
    lr_cycle_mul: float = field(default=1.0, metadata=dict(bounds="(0, inf)", help="lr cycle length multiplier"))
    lr_cycle_decay: float = field(default=0.5, metadata=dict(bounds="(0, inf)", help="lr decay per cycle"))
    lr_cycle_limit: int = field(default=1, metadata=dict(bounds="[1, inf)", help="lr cycles"))
    lr_k_decay: float = field(default=1.0, metadata=dict(bounds="(0, inf)", help="cosine / poly k-decay"))
    epochs: int = field(default=90, metadata=dict(bounds="[1, inf)", help="training epochs"))
    warmup_epochs: float = field(default=5.0, metadata=dict(bounds="[0, inf)", help="linear warm-up epochs"))
    warmup_lr: float = field(default=0.0, metadata=dict(bounds="[0, inf)", help="lr at the start of the warm-up"))
    warmup_prefix: bool = field(
        default=False,
        metadata=dict(
            help="decay over the steps after the warm-up, the warm-up a prefix of `epochs` (official); "
            "default: timm's, whose decay spans every step, the warm-up included",
            timm=False,  # timm's warmup_prefix leaves the decay unfinished at `epochs`; ours ends it there
        ),
    )
    min_lr: float = field(default=0.0, metadata=dict(bounds="[0, inf)", help="lr at the end of the cosine"))

    # run
    batch_size: int = field(
        default=128, metadata=dict(bounds="[1, inf)", help="batch per device per step", flags=("-b",))
    )
    grad_accum_steps: int = field(default=1, metadata=dict(bounds="[1, inf)", help="gradient accumulation steps"))
    amp: bool | None = field(
        default=None,
        metadata=dict(
            help="mixed precision (--amp) or full precision (--no-amp); wins over accelerate launch "
            "(unset: the launcher's, else the preset's)"
        ),
    )
    amp_dtype: str = field(
        default="float16", metadata=dict(help="dtype of --amp: float16 or bfloat16", choices=tuple(AMP_DTYPES))
    )
    mixed_precision: str | None = field(
        default=None,
        metadata=dict(
            help="older spelling of the two above: no = --no-amp, fp16 = --amp, bf16 = --amp --amp-dtype bfloat16",
            choices=PRECISIONS,
        ),
    )
    preset_mixed_precision: str | None = field(
        default=None,
        metadata=dict(help="the recipe's precision, used when neither --amp nor the launcher chose one", cli=False),
    )
    seed: int = field(default=42, metadata=dict(bounds="[0, 4294967295]", help="random seed"))
    output_dir: str | None = field(
        default=None, metadata=dict(help="run folder (default: OUTPUT/EXPERIMENT, i.e. outputs/MODE-MODEL-TIME)")
    )
    output: str | None = field(
        default=None, metadata=dict(help="parent folder of the run folder (timm's --output; unset: outputs)")
    )
    experiment: str | None = field(
        default=None, metadata=dict(help="run folder name under OUTPUT (timm's --experiment; unset: MODE-MODEL-TIME)")
    )
    resume: str | None = field(
        default=None, metadata=dict(help="'auto' (the output dir's newest complete checkpoint) or a checkpoint path")
    )
    overwrite: bool = field(
        default=False, metadata=dict(help="start over in an --output-dir that already holds checkpoints or a model")
    )
    eval_metric: str = field(default="top1", metadata=dict(help="metric that picks the best checkpoint"))
    hub_repo_id: str | None = field(
        default=None, metadata=dict(help="ORG/NAME the exported model card names (unset: publish --repo-id names it)")
    )

    # tracking, progress and publishing
    log_with: str | None = field(
        default=None, metadata=dict(help="accelerate trackers, comma-separated: tensorboard, wandb, mlflow, ..., all")
    )
    tracker_project: str = field(default="timm-assemble", metadata=dict(help="project name given to the trackers"))
    log_interval: int = field(
        default=50,
        metadata=dict(bounds="[1, inf)", help="optimizer steps between step-level logs (trackers, progress lines)"),
    )
    push_to_hub: str | None = field(
        default=None, metadata=dict(help="ORG/NAME: upload the exported best model to the Hub at the end of the run")
    )
    push_every: int = field(
        default=0, metadata=dict(bounds="[0, inf)", help="with --push-to-hub: also upload every N epochs (0 = off)")
    )

    @property
    def distilling(self) -> bool:
        return self.teacher != NO_TEACHER and bool(self.teacher or self.teacher_weights or self.teacher_logits)

    @property
    def drop_block_keep_probs(self) -> tuple[float, float] | None:
        """(first, last) DropBlock keep-prob of the linear per-step schedule; None when DropBlock is off."""
        end = self.drop_block_end if self.drop_block_end is not None else 1.0 - self.drop_block_rate
        return None if self.drop_block_start == 1.0 and end == 1.0 else (self.drop_block_start, end)

    @property
    def precision(self) -> str | None:
        """accelerate's name of the precision asked for with --amp / --no-amp (None: not asked)."""
        return None if self.amp is None else AMP_DTYPES[self.amp_dtype] if self.amp else "no"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def source_of(self, name: str) -> str | None:
        """Where setting `name` came from, as `resolve_config` recorded it: "flag", "preset NAME", "finetune's
        default" or a config file's path; None for a dataclass default (or a config built without it)."""
        return getattr(self, "_sources", {}).get(name)


FIELDS = {f.name: f for f in fields(TrainConfig)}
# timm train.py argument -> our field: every field of timm's meaning under its own name and its timm-spelled flags
# (`--smoothing`), so what an args.yaml may set is what the trainer takes, read off the fields themselves
TIMM_KEYS = {
    name.lstrip("-").replace("-", "_"): f.name
    for f in FIELDS.values()
    if f.metadata.get("timm", True) and f.metadata.get("cli", True)
    for name in (f.name, *f.metadata.get("flags", ()))
    if name.startswith("--") or name == f.name
}
_TYPES = {name: base_type(t) for name, t in field_types(TrainConfig).items()}

# Transfer learning starts from good weights: fewer epochs, smaller lr, short warm-up.
FINETUNE_DEFAULTS: dict[str, Any] = dict(
    mode="finetune",
    pretrained="default",
    epochs=15,
    warmup_epochs=1,
    lr_base=0.01,
    batch_size=64,
    label_smoothing=0.1,
)


def list_presets() -> list[str]:
    """Preset names in ladder order (e2 before e10); files named `_*.toml` are shared bases, not presets."""
    names = [p.stem for p in PRESET_DIR.glob("*.toml") if not p.stem.startswith("_")]
    return sorted(names, key=lambda n: (n.rstrip("0123456789"), int(n[len(n.rstrip("0123456789")) :] or -1)))


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check a value from a preset/config file against the field's type; TOML has no None, lists for tuples."""
    if name not in FIELDS:
        raise TimmAssembleError(f"{source}: unknown setting '{name}'")
    if name in ("scale",):
        numbers = isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        )
        if not (numbers and len(value) == 2):
            raise TimmAssembleError(f"{source}: '{name}' must be a list of two numbers, got {value!r}")
        return tuple(float(v) for v in value)
    kind = _TYPES[name]
    if kind is bool and not isinstance(value, bool):
        raise TimmAssembleError(f"{source}: '{name}' must be true or false, got {value!r}")
    if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TimmAssembleError(f"{source}: '{name}' must be a number, got {value!r}")
    if kind is int and isinstance(value, float):
        raise TimmAssembleError(f"{source}: '{name}' must be a whole number, got {value!r}")
    if kind is float and isinstance(value, int):
        return float(value)
    return value


def _read_toml(path: Path, source: str) -> dict[str, Any]:
    if path.exists() and not path.is_file():  # a folder, FIFO or device: reading would fail or block
        raise TimmAssembleError(f"config file {path} is not a regular file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise TimmAssembleError(f"config file {path} does not exist") from err
    except OSError as err:
        raise TimmAssembleError(f"config file {path} cannot be read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise TimmAssembleError(f"{source}: not valid TOML: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except tomllib.TOMLDecodeError as err:
        raise TimmAssembleError(f"{source}: not valid TOML: {err}") from err


def _checked(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """A file's settings, each type-checked and within its field's bounds."""
    settings = {k: _coerce(k, v, source) for k, v in raw.items()}
    check_bounds(TrainConfig(**{k: v for k, v in settings.items() if k != "mode"}), source)
    return settings


def load_config_file(path: str | Path, source: str | None = None) -> dict[str, Any]:
    """Settings from a config TOML file, or from the args.yaml of a timm train.py run (only the keys it sets)."""
    path = Path(path)
    source = source or str(path)
    if path.suffix in (".yaml", ".yml"):
        return _checked(read_timm_args(path, TIMM_KEYS), f"{source} (timm train.py arguments)")
    return _checked(_read_toml(path, source), source)


def _preset_settings(name: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset's own keys on top of those of its `base = "NAME"` preset (recursively): each preset of the
    ladder states only how it differs from the one it builds on."""
    path = PRESET_DIR / f"{name.lower()}.toml"
    if not path.is_file():
        available = ", ".join(list_presets())
        where = f" (the base of preset {chain[-1]})" if chain else ""
        raise TimmAssembleError(f"unknown preset '{name}'{where}; available: {available}")
    if name.lower() in chain:
        raise TimmAssembleError(f"preset bases form a loop: {' -> '.join((*chain, name.lower()))}")
    source = f"preset {name.lower()}"
    raw = _read_toml(path, source)
    base = raw.pop(BASE_KEY, None)
    if base is not None and not isinstance(base, str):
        raise TimmAssembleError(f"{source}: '{BASE_KEY}' must name another preset, got {base!r}")
    settings = _preset_settings(base, (*chain, name.lower())) if base else {}
    settings.update(_checked(raw, source))
    return settings


def load_preset(name: str) -> dict[str, Any]:
    """A preset's settings. Its `mixed_precision` is the recipe's default only: accelerate launch (or
    `accelerate config`) and `--mixed-precision` decide first, so it is kept as `preset_mixed_precision`."""
    settings = _preset_settings(name)
    if "mixed_precision" in settings:
        settings["preset_mixed_precision"] = settings.pop("mixed_precision")
    settings["preset"] = name.lower()
    return settings


def resolve_config(
    mode: str, overrides: dict[str, Any], preset: str | None = None, config_file: str | None = None
) -> TrainConfig:
    """Merge defaults, mode defaults, preset, config file and explicit flags into one checked config."""
    if mode not in ("train", "finetune"):
        raise ValueError(mode)
    values: dict[str, Any] = dict(FINETUNE_DEFAULTS) if mode == "finetune" else {}
    sources = dict.fromkeys(values, "finetune's default")
    if preset:
        values.update(layer := load_preset(preset))
        sources.update(dict.fromkeys(layer, f"preset {preset.lower()}"))
    if config_file:
        values.update(layer := load_config_file(config_file))
        sources.update(dict.fromkeys(layer, str(config_file)))
    if "img_size" in overrides and "eval_img_size" not in overrides:
        # a preset's evaluation size belongs to its training size (256 for 224): with another --img-size it would
        # evaluate a 64 px model at 256 px, sixteen times the pixels, so evaluation follows --img-size instead
        values.pop("eval_img_size", None)
    values.update(overrides)
    sources.update(dict.fromkeys(overrides, "flag"))
    values["mode"] = mode
    if "mixed_precision" in values:  # folded into amp / amp_dtype: they come from where it came from
        sources.update(amp=sources["mixed_precision"], amp_dtype=sources["mixed_precision"])
    _fold_mixed_precision(values, overrides)
    _fold_input_size(values)
    cfg = TrainConfig(**values)
    cfg._sources = sources  # what `source_of` reads; not a setting, so not a field
    check_bounds(cfg)  # flags were checked at parse time; this catches values given through the Python API
    if "warmup_epochs" not in overrides:
        _fit_warmup(cfg)
    validate(cfg)
    return cfg


def _fold_mixed_precision(values: dict[str, Any], overrides: dict[str, Any]) -> None:
    """`mixed_precision` (our older spelling, flags and config files) becomes timm's `amp` + `amp_dtype`."""
    old = values.pop("mixed_precision", None)
    if old is None:
        return
    if old not in PRECISIONS:
        raise TimmAssembleError(f"mixed_precision must be no, fp16 or bf16, got {old!r}")
    amp = old != "no"
    dtype = {v: k for k, v in AMP_DTYPES.items()}.get(old, values.get("amp_dtype", "float16"))
    if "mixed_precision" in overrides and (
        overrides.get("amp", amp) != amp or (amp and overrides.get("amp_dtype", dtype) != dtype)
    ):
        raise TimmAssembleError(f"--mixed-precision {old} contradicts --amp / --amp-dtype: give one of them")
    values.update(amp=amp, amp_dtype=dtype)


def _fold_input_size(values: dict[str, Any]) -> None:
    """timm's `input_size` (C H W) is this trainer's square, 3-channel `img_size`."""
    size = values.pop("input_size", None)
    if size is None:
        return
    channels, height, width = size
    if channels != 3 or height != width:
        raise TimmAssembleError(f"input_size {tuple(size)}: this trainer trains 3-channel square inputs (3 H H)")
    if values.get("img_size") not in (None, height):
        raise TimmAssembleError(f"input_size {tuple(size)} and img_size {values['img_size']} disagree: give one")
    values["img_size"] = height


def _fit_warmup(cfg: TrainConfig) -> None:
    """A default or preset warm-up longer than a short run shrinks to half the run, with a note."""
    if cfg.warmup_epochs and cfg.warmup_epochs >= cfg.epochs:
        shorter = cfg.epochs / 2
        _logger.warning(
            "warm-up of %g epochs does not fit %d epochs: shortened to %g", cfg.warmup_epochs, cfg.epochs, shorter
        )
        cfg.warmup_epochs = shorter


def validate(cfg: TrainConfig) -> None:
    """Reject settings that cannot work, before anything heavy happens."""
    checks = [
        (
            cfg.warmup_epochs < cfg.epochs or cfg.warmup_epochs == 0,
            f"warmup_epochs ({cfg.warmup_epochs}) must be smaller than epochs ({cfg.epochs})",
        ),
        (cfg.scale[0] <= cfg.scale[1], f"scale must be (min, max), got {cfg.scale}"),
        (
            not (cfg.drop_block_rate and cfg.drop_block_end is not None),
            "drop_block_rate and drop_block_end both set the final DropBlock keep-prob: set one of them",
        ),
        (cfg.mixup_mode in ("pair", "batch", "elem"), f"bad mixup_mode {cfg.mixup_mode!r}"),
        (cfg.mean is None or len(cfg.mean) in (1, 3), f"mean takes 1 or 3 values (timm's), got {cfg.mean}"),
        (cfg.std is None or len(cfg.std) in (1, 3), f"std takes 1 or 3 values (timm's), got {cfg.std}"),
        (cfg.sched in SCHEDULERS, f"sched must be one of {', '.join(SCHEDULERS)}, got {cfg.sched!r}"),
        (
            not (cfg.sched == "plateau" and cfg.sched_on_updates),
            "--sched plateau follows the eval metric once per epoch: add --no-sched-on-updates (timm's default)",
        ),
        (not (cfg.mixup_mode == "pair" and cfg.cutmix > 0), "mixup_mode 'pair' (the official mixup) has no cutmix"),
        (
            not (cfg.distilling and cfg.mixup > 0 and cfg.mixup_mode != "pair"),
            "KD mixes the teacher probabilities with the labels' per-sample lambda: use mixup_mode 'pair'",
        ),
        (cfg.amp_dtype in AMP_DTYPES, f"amp_dtype must be float16 or bfloat16, got {cfg.amp_dtype!r}"),
        (
            cfg.preset_mixed_precision in (None, *PRECISIONS),
            f"the preset's mixed_precision must be no, fp16 or bf16, got {cfg.preset_mixed_precision!r}",
        ),
        (
            not (cfg.teacher == NO_TEACHER and cfg.teacher_weights),
            "--teacher none turns distillation off; --teacher-weights needs a teacher architecture",
        ),
        (not cfg.push_every or bool(cfg.push_to_hub), "--push-every needs --push-to-hub ORG/NAME"),
        (cfg.eval_metric in ("top1", "top5", "loss"), f"eval_metric must be top1, top5 or loss, got {cfg.eval_metric}"),
        (not (cfg.freeze_backbone and cfg.layer_decay), "freeze_backbone and layer_decay exclude each other"),
        (cfg.resume in (None, "auto") or bool(cfg.resume), "resume must be 'auto' or a checkpoint path"),
        (
            not _is_number(cfg.val_split),
            f"--val-split is the validation split's name, as in timm (got {cfg.val_split}); "
            f"to hold out a fraction of one folder use --val-fraction {cfg.val_split}",
        ),
        (
            cfg.output_dir is None or (cfg.output is None and cfg.experiment is None),
            "--output-dir is the whole run folder: give it, or --output / --experiment, not both",
        ),
        (cfg.mode == "finetune" or not cfg.freeze_backbone, "freeze_backbone needs weights: use finetune.py"),
    ]
    for ok, message in checks:
        if not ok:
            raise TimmAssembleError(message)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    raise TypeError(type(value))


def format_config(cfg: TrainConfig) -> str:
    """The resolved config as TOML; unset (None) values appear as comments."""
    lines = []
    for name, value in cfg.to_dict().items():
        lines.append(f"# {name} = (unset)" if value is None else f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
