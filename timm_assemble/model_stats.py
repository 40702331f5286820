"""What a model costs per image: parameters, GMACs and activations, the "Model Stats" of timm's model cards.

FLOPs are counted by torch's FlopCounterMode (convolution and matmul-type ops; 1 MAC = 2 FLOPs). Activations are
counted as fvcore's activation count, which timm's published numbers come from: the output elements of every
convolution and linear layer.
"""

from typing import Any

import torch


def count_flops(model: torch.nn.Module, input_size: tuple[int, int, int], device: torch.device) -> float | None:
    """Forward FLOPs for one image (None: the model cannot run that input)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *input_size, device=device)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    except RuntimeError:
        return None
    return float(counter.get_total_flops())


def count_activations(model: torch.nn.Module, input_size: tuple[int, int, int]) -> int:
    """Output elements of every convolution and linear layer for one image."""
    total = [0]

    def add(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        total[0] += output.numel()

    layers = [m for m in model.modules() if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))]
    hooks = [m.register_forward_hook(add) for m in layers]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return total[0]


def model_stats(model: torch.nn.Module, input_size: tuple[int, int, int]) -> dict[str, Any]:
    """Params (M), GMACs and activations (M) at `input_size` (C, H, W), in eval mode, as timm's cards list them."""
    was_training = model.training
    model.eval()
    try:
        flops = count_flops(model, tuple(input_size), next(model.parameters()).device)
        activations = count_activations(model, tuple(input_size))
    finally:
        model.train(was_training)
    return dict(
        params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        gmacs=None if flops is None else round(flops / 2e9, 2),
        activations_m=round(activations / 1e6, 2),
        image_size=[int(input_size[1]), int(input_size[2])],
    )
