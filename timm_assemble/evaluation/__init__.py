"""Evaluation: accuracy (`validate`), ImageNet-C corruption robustness (`robustness`) and speed (`benchmark`)."""
