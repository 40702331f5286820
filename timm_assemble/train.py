"""Train from scratch with the paper's recipe: `accelerate launch -m timm_assemble.train`.

The same job as `timm-assemble train` and `python -m timm_assemble.train`; `--help` lists every flag.
"""

import sys

from .training.cli import main

if __name__ == "__main__":
    sys.exit(main("train", program="-m timm_assemble.train"))
