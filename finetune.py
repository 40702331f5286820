"""Fine-tune a pretrained Assemble-ResNet: `accelerate launch finetune.py --data-dir my_images/`.

With no data arguments it runs the built-in demo. All logic lives in `timm_assemble.training`.
"""

import sys

import timm_assemble  # noqa: F401  (registers the Assemble-ResNet models with timm)
from timm_assemble.training.cli import main

if __name__ == "__main__":
    sys.exit(main("finetune"))
