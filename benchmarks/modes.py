"""The four-mode inference table: eager / bf16 autocast / torch.compile / ONNX Runtime, with ratios.

    python benchmarks/modes.py [--models assemble_resnet50 assemble_resnet152 resnet50] [--modes ...]
        [--batch-size 8] [--img-size 224] [--warmup 2] [--repeats 9] [--reference resnet50] [--json OUT]

Every (model, mode) pair runs in one interleaved timing loop (`timm_assemble.evaluation.modes`), the models
of a mode back to back; a ratio is the median over repeats of the ratio to the reference (default: the last
model) within the repeat. Random weights: throughput does not depend on them.
"""

import argparse

import timm_assemble  # noqa: F401
from timm_assemble.evaluation.common import write_json
from timm_assemble.evaluation.modes import MODES, compare_modes, format_modes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["assemble_resnet50", "assemble_resnet152", "resnet50"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--reference", default=None, help="the model the ratios are to (default: the last)")
    parser.add_argument("--json", default=None, metavar="OUT")
    args = parser.parse_args()
    result = compare_modes(args.models, args.modes, batch_size=args.batch_size, img_size=args.img_size,
                           warmup=args.warmup, repeats=args.repeats, reference=args.reference)  # fmt: skip
    print(format_modes(result))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
