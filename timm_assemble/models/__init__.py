"""Model families; importing a module registers its entrypoints with timm."""

from .assemble_resnet import *  # noqa: F401,F403
