"""Assemble-ResNet for timm. Importing this package registers the models with timm, and does nothing else."""

from . import models  # noqa: F401  (registers the model entrypoints)
from .errors import TimmAssembleError
from .loading import create_model
from .models.assemble_resnet import AssembleResNet
from .version import __version__

__all__ = ["AssembleResNet", "TimmAssembleError", "__version__", "create_model"]
