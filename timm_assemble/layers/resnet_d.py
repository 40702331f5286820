"""ResNet-D (He et al., "Bag of Tricks", 2019) as the official Assemble-ResNet code builds it (`use_resnet_d`).

Two pieces: the deep stem (three 3x3 convs instead of one 7x7) and the 2x2 average pool in front of every
projection shortcut's 1x1 conv. Both follow clovaai/assembled-cnn, not timm's `resnet50d`: the shortcut pool
uses TensorFlow's padding and is there in stage 1 too (at stride 1), where timm has none.
"""

import torch.nn as nn


class ResNetDStem(nn.Sequential):
    """conv3x3/2 -> BN -> act -> conv3x3 -> BN -> act -> conv3x3 (`nets/resnet_model.py:328-341`).

    Widths `width // 2, width // 2, width`; the last BN and activation belong to the network (`bn1`, `act1`),
    as after a plain 7x7 stem conv. A Sequential, so the parameters are `conv1.0`, `conv1.1`, ... as in timm.
    """

    def __init__(
        self,
        in_chans: int,
        width: int,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        half = width // 2
        super().__init__(
            nn.Conv2d(in_chans, half, 3, stride=2, padding=1, bias=False),
            norm_layer(half),
            act_layer(inplace=True),
            nn.Conv2d(half, half, 3, padding=1, bias=False),
            norm_layer(half),
            act_layer(inplace=True),
            nn.Conv2d(half, width, 3, padding=1, bias=False),
        )


class ResNetDShortcutPool(nn.Sequential):
    """The 2x2 average pool of a ResNet-D projection shortcut, with TF's padding (`nets/resnet_model.py:123-128`).

    Stride 1 is TF 'SAME' (one row/column after, excluded from the mean): replicating the last row/column
    gives exactly that mean. Stride > 1 zero-pads one row/column after, then pools 'VALID' (zeros counted).
    """

    def __init__(self, stride: int) -> None:
        if stride == 1:
            super().__init__(nn.ReplicationPad2d((0, 1, 0, 1)), nn.AvgPool2d(2, 1))
        else:
            super().__init__(nn.ZeroPad2d((0, 1, 0, 1)), nn.AvgPool2d(2, stride))
