"""`python -m timm_assemble COMMAND ...`, `accelerate launch -m timm_assemble train ...`: the `timm-assemble` CLI."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(program="-m timm_assemble"))
