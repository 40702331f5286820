"""Assemble-ResNet for timm. Importing this package registers the models with timm."""

from . import models  # noqa: F401  (registers the model entrypoints)
from .errors import TimmAssembleError
from .hub import model_names
from .models.assemble_resnet import AssembleResNet
from .version import __version__

model_names.install()  # clear errors for timm's `hf-hub:` / `local-dir:` config reading (see hub/model_names.py)

__all__ = ["AssembleResNet", "TimmAssembleError", "__version__"]
