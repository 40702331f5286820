"""Print the README's model table: parameters and compute of every registered Assemble-ResNet at 224.

    python benchmarks/model_table.py [--img-size 224] [--models NAME ...]

FLOPs are counted by torch's FlopCounterMode (convolutions and matmuls; 1 MAC = 2 FLOPs), for one image
and 1000 classes; compare timm's resnet50 with `--models resnet50`.
"""

from __future__ import annotations

import argparse

import timm
import torch

import timm_assemble  # noqa: F401
from timm_assemble.evaluation.benchmark import count_flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--models", nargs="+", default=timm.list_models("assemble*"))
    args = parser.parse_args()
    print("| model | params (M) | GMACs | GFLOPs |")
    print("|---|---:|---:|---:|")
    for name in args.models:
        model = timm.create_model(name).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        flops = count_flops(model, (3, args.img_size, args.img_size), torch.device("cpu")) / 1e9
        print(f"| `{name}` | {params:.2f} | {flops / 2:.2f} | {flops:.2f} |")


if __name__ == "__main__":
    main()
