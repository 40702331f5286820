"""The model under evaluation: created through the one loader, in eval mode, with its eval data config."""

from typing import Any

import torch
from timm.data import resolve_data_config
from timm.models import parse_model_name

from ..errors import TimmAssembleError
from ..loading import create_model
from ..sizing import Claim, check_batch


def create_eval_model(
    name: str,
    pretrained: bool = True,
    num_classes: int | None = None,
    checkpoint: str | None = None,
    reset_classifier: bool = False,
    use_ema: bool = False,
    model_kwargs: dict[str, Any] | None = None,
) -> torch.nn.Module:
    """The model to evaluate, in eval mode: a registry name, `local-dir:DIR` or `hf-hub:ID`.

    `checkpoint` (.safetensors, or a .pth/.pt read with weights_only=True) replaces the weights after creation
    (`num_classes` sizes the model for it; `use_ema` takes a training checkpoint's EMA weights, as timm's
    `--use-ema`). `model_kwargs` go to `create_model`, as timm's validate.py passes them. On trained weights,
    a `num_classes` other than the trained one would put a random classifier on the model: an error unless
    `reset_classifier` asks for exactly that.
    """
    trained = checkpoint is None and (pretrained or parse_model_name(name)[0] is not None)
    kwargs: dict[str, Any] = {} if num_classes is None or trained else dict(num_classes=num_classes)
    kwargs.update(model_kwargs or {})
    try:
        model = create_model(name, pretrained=pretrained, weights=checkpoint, use_ema=use_ema, **kwargs)
    except TimmAssembleError as err:
        if not str(err).startswith("cannot load pretrained") or ":" in name:
            raise
        raise type(err)(f"{err} (use --no-pretrained for random weights, or --checkpoint FILE)") from err
    if trained and num_classes is not None and num_classes != model.num_classes:
        if not reset_classifier:
            raise TimmAssembleError(
                f"--num-classes {num_classes}: {name} was trained for {model.num_classes} classes, and a new "
                f"{num_classes}-class classifier would be random (chance-level scores); pass --reset-classifier to "
                f"evaluate that anyway, or --checkpoint FILE with {num_classes}-class weights"
            )
        model.reset_classifier(num_classes)
    return model.eval()


def model_data_config(
    model: torch.nn.Module, overrides: dict[str, Any] | None = None, batch_size: int | None = None
) -> dict:
    """The model's eval data config (test size, as timm's validate.py), with `overrides` in timm's argument names
    (img_size, input_size, crop_pct, crop_mode, interpolation, mean, std; use_train_size); with `batch_size`, that
    batch at that size is checked against the size budget first (the flag that set the size named)."""
    args = dict(overrides or {})
    use_train_size = args.pop("use_train_size", False)
    config = resolve_data_config(args, model=model, use_test_size=not use_train_size)
    if batch_size is not None:
        flag = next((f"--{k.replace('_', '-')}" for k in ("input_size", "img_size") if args.get(k)), None)
        size = Claim("img_size", config["input_size"][-1], flag or "the model's test size")
        check_batch(model, config["input_size"], batch_size, [Claim("batch_size", batch_size, "--batch-size"), size])
    return config


def model_from_options(opts: Any, reset_classifier: bool = False) -> torch.nn.Module:
    """The model a `ModelOptions` (the evaluation commands' model flags) names."""
    return create_eval_model(
        opts.model, opts.pretrained, opts.num_classes, opts.checkpoint, reset_classifier, opts.use_ema,
        opts.create_kwargs(),
    )  # fmt: skip
