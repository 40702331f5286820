"""Fine-tune on your images (a built-in demo without data arguments): `accelerate launch -m timm_assemble.finetune`.

The same job as `timm-assemble finetune` and `python -m timm_assemble.finetune`; `--help` lists every flag.
"""

import sys

from .training.cli import main

if __name__ == "__main__":
    sys.exit(main("finetune", program="-m timm_assemble.finetune"))
