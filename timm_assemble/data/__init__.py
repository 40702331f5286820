"""Data helpers: a synthetic ImageFolder generator and the dataset plumbing the trainer needs."""

from .synthetic import class_names, make_synthetic_image_folder

__all__ = ["class_names", "make_synthetic_image_folder"]
