"""Training and fine-tuning engine behind `train.py` and `finetune.py` (timm pieces + accelerate)."""

from .config import TrainConfig, list_presets, resolve_config

__all__ = ["TrainConfig", "list_presets", "resolve_config"]
