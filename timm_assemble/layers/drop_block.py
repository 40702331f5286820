"""DropBlock as the official Assemble-ResNet code applies it, with a keep-prob the trainer sets each step.

timm's `DropBlock2d` cannot express the official behaviour: it samples block seeds over the whole map
(border blocks truncated) and draws one mask per sample. The official layer samples seeds only where a
whole block fits and draws one mask of shape [1, C, H, W], shared by the batch and independent per channel.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class DropBlock2d(nn.Module):
    """Official DropBlock: valid-centre seeds, mask [1, C, H, W], rescaled by the kept fraction of the mask.

    `drop_prob` is `1 - keep_prob` and is meant to change during training (see `set_drop_block_keep_prob`);
    `gamma_scale` weights the stage (0.25 in stage 3, 1.0 in stage 4 of Assemble-ResNet).
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7, gamma_scale: float = 1.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.block_size = block_size
        self.gamma_scale = gamma_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob <= 0.0:
            return x
        _, chs, height, width = x.shape
        kh, kw = min(self.block_size, height), min(self.block_size, width)
        valid_h, valid_w = height - kh + 1, width - kw + 1
        gamma = self.gamma_scale * self.drop_prob * height * width / (kh * kw) / (valid_h * valid_w)
        with torch.no_grad():
            seeds = torch.empty((1, chs, valid_h, valid_w), device=x.device, dtype=torch.float32)
            seeds.bernoulli_(min(gamma, 1.0))
            # Zero-padding by block-1 on each side turns each valid seed into its whole block, output H x W.
            dropped = F.max_pool2d(F.pad(seeds, (kw - 1, kw - 1, kh - 1, kh - 1)), (kh, kw), stride=1)
            keep = 1.0 - dropped
            keep.mul_(keep.numel() / (keep.sum() + 1e-8))
        return x * keep.to(x.dtype)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, gamma_scale={self.gamma_scale}"


def set_drop_block_keep_prob(model: nn.Module, keep_prob: float) -> int:
    """Set the keep-prob of every DropBlock in `model` (ours and timm's); returns how many were set."""
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
    from timm.layers import DropBlock2d as TimmDropBlock2d

    count = 0
    for module in model.modules():
        if isinstance(module, (DropBlock2d, TimmDropBlock2d)):
            module.drop_prob = 1.0 - keep_prob
            count += 1
    return count


def drop_block_keep_prob(step: int, total_steps: int, start: float, end: float) -> float:
    """Keep-prob at `step`: linear from `start` (step 0) to `end` (step `total_steps` and after), as the
    official `keep_prob_decay` (functions/model_fns.py:26-33, a power-1 polynomial decay over all steps)."""
    return end + (start - end) * (1.0 - min(1.0, step / max(1, total_steps)))
