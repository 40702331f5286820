"""Big-Little Net modules (Chen et al., ICLR 2019) in the form Assemble-ResNet uses them.

A big-little stage runs a deep, wide, downsampled "big" branch next to a shallow, narrow, full-resolution
"little" branch, merges them at the little branch's resolution and refines the sum with one block.
"""

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function

from .tracing import is_exporting


def _conv_bn(in_chs: int, out_chs: int, kernel_size: int, stride: int, norm_layer: type[nn.Module]) -> nn.Sequential:
    conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, bn=norm_layer(out_chs)))


class _UpsampleAdd2x(torch.autograd.Function):
    """`little + big` repeated 2x2, written into a fresh tensor.

    Autograd's own version of the broadcast add costs a training step dearly: its gradient for `big` is a
    strided 6-D reduction, and the output is a view, so the in-place ReLU after it goes through CopySlices
    (zero-filled copies of the whole map). Here the output is no view and the gradient for `big` is a 2x2
    sum-pool. The forward is the same add, bit for bit.
    """

    @staticmethod
    def forward(ctx, little: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        batch, chs, height, width = big.shape
        out = torch.empty_like(little, dtype=torch.promote_types(little.dtype, big.dtype))
        split = (batch, chs, height, 2, width, 2)
        torch.add(little.view(split), big[:, :, :, None, :, None], out=out.view(split))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        grad_big = F.avg_pool2d(grad, 2, divisor_override=1) if ctx.needs_input_grad[1] else None
        return grad, grad_big


def _broadcast_add_2x(little: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
    batch, chs, height, width = big.shape
    return (little.view(batch, chs, height, 2, width, 2) + big[:, :, :, None, :, None]).view(little.shape)


@torch.jit.unused
def _upsample_add_2x(little: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
    if torch.compiler.is_compiling():  # Dynamo takes no strided out=; AOTAutograd functionalises the view anyway
        return _broadcast_add_2x(little, big)
    return _UpsampleAdd2x.apply(little, big)


@register_notrace_function  # branches on shapes: an FX leaf
def upsample_add(little: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
    """`little + nearest_upsample(big, little's size)`; at exactly 2x a broadcast add, no upsampled copy.

    Traced or exported graphs (ONNX, torch.export) take the upsample path, the one valid at every input size:
    a trace would otherwise freeze the shape test of the input it saw. All paths give the same numbers.
    """
    height, width = big.shape[-2], big.shape[-1]
    if not is_exporting() and little.shape[-2] == 2 * height and little.shape[-1] == 2 * width:
        if torch.jit.is_scripting():
            return _broadcast_add_2x(little, big)
        return _upsample_add_2x(little, big)
    return little + F.interpolate(big, size=(little.shape[-2], little.shape[-1]), mode="nearest")


class BigLittleStem(nn.Module):
    """The bL stem module that replaces ResNet's max-pool (stride 2, `chs` in and out).

    big = BN(conv3x3/2); little = conv3x3 -> BN -> ReLU -> conv3x3/2 -> BN -> ReLU -> conv1x1 -> BN (at
    `chs // alpha` width); out = ReLU(BN(conv1x1(ReLU(big + little)))).
    """

    def __init__(
        self,
        chs: int,
        alpha: int = 2,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        little_chs = chs // alpha
        self.big = _conv_bn(chs, chs, 3, 2, norm_layer)
        self.little1 = _conv_bn(chs, little_chs, 3, 1, norm_layer)
        self.little2 = _conv_bn(little_chs, little_chs, 3, 2, norm_layer)
        self.little3 = _conv_bn(little_chs, chs, 1, 1, norm_layer)
        self.fuse = _conv_bn(chs, chs, 1, 1, norm_layer)
        self.act = act_layer(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        little = self.act(self.little1(x))
        little = self.act(self.little2(little))
        x = self.act(self.big(x) + self.little3(little))
        return self.act(self.fuse(x))


class BigLittleStage(nn.Module):
    """One big-little stage: `merge(ReLU(little_e(little(x)) + upsample(big(x))))`.

    `big` must downsample by 2 relative to `little`; its output is brought back to the little branch's own
    size with nearest upsampling (the official code's fixed 2x at inputs that are multiples of 32, and
    defined for any other size too). `little_e` widens the little branch to the big branch's channels.
    """

    def __init__(
        self,
        big: nn.Module,
        little: nn.Module,
        merge: nn.Module,
        little_chs: int,
        out_chs: int,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.big = big
        self.little = little
        self.little_e = _conv_bn(little_chs, out_chs, 1, 1, norm_layer)
        self.act = act_layer(inplace=True)
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = self.big(x)
        little = self.little_e(self.little(x))
        return self.merge(self.act(upsample_add(little, big)))
