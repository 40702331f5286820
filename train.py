"""`accelerate launch train.py` from a checkout: the same job as `accelerate launch -m timm_assemble train`."""
import sys

from timm_assemble.cli.train import main

if __name__ == "__main__":
    sys.exit(main("train"))
