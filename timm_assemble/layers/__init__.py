"""Layers of the Assemble-ResNet family that timm does not have, usable in any model."""

from .big_little import BigLittleStage, BigLittleStem
from .drop_block import DropBlock2d, drop_block_keep_prob, set_drop_block_keep_prob
from .resnet_d import ResNetDShortcutPool, ResNetDStem
from .sk_conv import SKConv2d

__all__ = [
    "BigLittleStage",
    "BigLittleStem",
    "DropBlock2d",
    "ResNetDShortcutPool",
    "ResNetDStem",
    "SKConv2d",
    "drop_block_keep_prob",
    "set_drop_block_keep_prob",
]
