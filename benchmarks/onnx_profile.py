"""What ONNX Runtime makes of a model's graph: node counts before and after its optimiser, and op-type shares.

    python benchmarks/onnx_profile.py --models assemble_resnet50 resnet50 [--batch-size 8] [--img-size 224]
        [--no-fold] [--runs 3]

Each model is exported like `timm-assemble export` (BN-folded deploy copy, random weights), optimised by
ONNX Runtime (all levels; the optimised graph is read back from `optimized_model_filepath`) and run with
its per-node profiler. Shares are meaningful on a busy machine, absolute times are not: compare two models'
Conv times only from one run, models profiled one after the other.
"""

import argparse
import collections
import json
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
import timm
import torch

import timm_assemble  # noqa: F401
from timm_assemble.deploy.export import export_model


def op_counts(path: Path) -> collections.Counter:
    return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def profile(name: str, workdir: Path, batch_size: int, img_size: int, fold: bool, runs: int) -> None:
    path = workdir / f"{name}.onnx"
    export_model(timm.create_model(name).eval(), path, "onnx", img_size=img_size, fold=fold)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(workdir / f"{name}.opt.onnx")
    options.enable_profiling, options.profile_file_prefix = True, str(workdir / name)
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: torch.randn(batch_size, 3, img_size, img_size).numpy()}
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    spent: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"]
    total = sum(spent.values())
    exported, optimised = op_counts(path), op_counts(Path(options.optimized_model_filepath))
    print(f"\n## `{name}`: {sum(exported.values())} exported nodes, {sum(optimised.values())} after optimisation; "
          f"kernel time {total / runs / 1e3:.0f} ms a run, of which Conv {spent['Conv'] / runs / 1e3:.0f} ms")
    print("| op | nodes after optimisation | share of kernel time |\n|---|---:|---:|")
    for op, count in optimised.most_common():
        print(f"| {op} | {count} | {100 * spent[op] / total:.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["assemble_resnet50", "resnet50"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--no-fold", dest="fold", action="store_false", help="export without folding BN first")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="timm-assemble-onnx-") as workdir:
        for name in args.models:
            profile(name, Path(workdir), args.batch_size, args.img_size, args.fold, args.runs)


if __name__ == "__main__":
    main()
