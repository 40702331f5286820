"""Pretrained weights: records, where `pretrained=True` finds them, the converted-weights cache, the official
source, model cards, Hub folders and publishing."""
