"""Assemble-ResNet for timm. Importing this package registers the models with timm."""

from . import models  # noqa: F401  (registers the model entrypoints)
from .errors import TimmAssembleError
from .models.assemble_resnet import AssembleResNet

__version__ = "0.1.0"

__all__ = ["AssembleResNet", "TimmAssembleError", "__version__"]
