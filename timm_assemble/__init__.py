"""Assemble-ResNet for timm. Importing this package registers the models with timm."""

from . import models  # noqa: F401  (registers the model entrypoints)
from .errors import TimmAssembleError
from .hub import model_names
from .models.assemble_resnet import AssembleResNet

__version__ = "0.1.0"

model_names.install()  # clear errors for timm's `hf-hub:` / `local-dir:` config reading (see hub/model_names.py)

__all__ = ["AssembleResNet", "TimmAssembleError", "__version__"]
