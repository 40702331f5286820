"""Selective-kernel convolution, the light variant of the Assemble-ResNet paper.

Not timm's `SelectiveKernel` (two conv paths, one BN each): here ONE 3x3 conv produces both candidate
feature maps as the two halves of a 2x-wide output, and a squeeze-excite style attention picks between
them per channel.
"""

import torch
import torch.nn as nn

from .tracing import is_exporting


class SKConv2d(nn.Module):
    """3x3 conv to `2 * out_chs`, split into U1 | U2, output `a1 * U1 + a2 * U2` with a softmax over (a1, a2).

    The attention is `fc2(ReLU(BN(fc1(mean(U1 + U2)))))` with hidden width `max(out_chs // 2, min_attn_chs)`
    and no biases; `fc1` / `fc2` are the official `sk_fc_1` / `sk_fc_2` 1x1 convs.
    A softmax over two logits equals a sigmoid of their difference, so the mix is one fused `lerp`.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        min_attn_chs: int = 32,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.out_chs = out_chs
        attn_chs = max(out_chs // 2, min_attn_chs)
        self.conv = nn.Conv2d(in_chs, 2 * out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn = norm_layer(2 * out_chs)
        self.act = act_layer(inplace=True)
        # The official 1x1 convs act on a 1x1 map: as Linear layers they skip the conv machinery entirely.
        self.fc1 = nn.Linear(out_chs, attn_chs, bias=False)
        self.bn_fc1 = nn.BatchNorm1d(attn_chs)
        self.act_fc1 = act_layer(inplace=True)
        self.fc2 = nn.Linear(attn_chs, 2 * out_chs, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(x)))
        chs = self.out_chs
        # Channel slices by constant sizes only: an exported graph then has no shape arithmetic, and ONNX
        # Runtime can follow the map sizes through the block (and fuse its residual add into the last conv).
        # split, not two slices: the backward is one cat instead of two zero-filled 2C maps plus an add.
        u1, u2 = torch.split(x, chs, dim=1)
        # mean(U1 + U2) == mean(U1) + mean(U2): pool the 2C map once instead of materialising U.
        pooled = x.mean((2, 3))
        logits = self.fc2(self.act_fc1(self.bn_fc1(self.fc1(pooled[:, :chs] + pooled[:, chs:]))))
        weight_u1 = torch.sigmoid(logits[:, :chs] - logits[:, chs:])[:, :, None, None]
        if is_exporting():  # ONNX has no lerp: its two-sided decomposition costs a select and 3 extra map passes
            return u2 + weight_u1 * (u1 - u2)
        return torch.lerp(u2, u1, weight_u1)
