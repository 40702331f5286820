"""Train from scratch with the paper's recipe: `accelerate launch train.py --preset e11 --data-dir IMAGENET`.

All logic lives in `timm_assemble.training`; `python train.py --help` lists every flag.
"""

import sys

import timm_assemble  # noqa: F401  (registers the Assemble-ResNet models with timm)
from timm_assemble.training.cli import main

if __name__ == "__main__":
    sys.exit(main("train"))
