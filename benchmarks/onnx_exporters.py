"""torch's two ONNX exporters side by side on our models: graph, file, export time, ONNX Runtime parity and speed.

    python benchmarks/onnx_exporters.py [--models assemble_resnet50 assemble_r50_bl_sk assemble_r50d_sk]
        [--model-kwargs width=8] [--img-size 64] [--batch-size 8] [--opset 18] [--no-fold] [--runs 20]

`dynamo` is what `timm-assemble export --format onnx` runs (torch.export-based, `dynamo=True`); `legacy` is
the TorchScript-based exporter (`dynamo=False`) it replaced, with ONNX Runtime's symbolic shape inference
written into the file afterwards, as the export did until then. Both get the BN-folded deploy copy (random
weights, trained-looking BN statistics and affine terms) unless `--no-fold`, which shows what each exporter
does with BN by itself. Columns: export seconds and file MB; nodes in the file (of them Constant/Identity, and
BatchNormalization); `sized adds`: 4-D adds whose two inputs both have all four sizes in `value_info`; nodes
after ONNX Runtime's full optimisation and, of them, tensor adds left unfused (an add with a constant input
is shape arithmetic); the largest |difference| from the eager model at the export's size and two other
batch and image sizes (dynamic sizes work when it is small); median ONNX Runtime latency. Export times and latencies
are only comparable within one run on an otherwise idle machine.
"""

import argparse
import collections
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import onnx
import onnxruntime as ort
import timm
import torch
import torch.nn as nn
from timm.utils import ParseKwargs

import timm_assemble  # noqa: F401
from timm_assemble.deploy.export import _export_onnx
from timm_assemble.deploy.fold import deploy_model


def legacy_export(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice and tracer warnings
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch"}},
        )  # fmt: skip
    onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(path)), auto_merge=True), str(path))


EXPORTERS = {"legacy": legacy_export, "dynamo": _export_onnx}


def trained_looking(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.2, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
            m.weight.data.uniform_(0.5, 1.5, generator=gen)  # fresh zero gammas fold into all-zero convs,
            m.bias.data.normal_(0, 0.2, generator=gen)  # which the legacy exporter stores once (smaller file)
    return model.eval()


def graph_row(path: Path) -> dict:
    graph = onnx.load(str(path)).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    sizes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    adds = [n for n in graph.node if n.op_type == "Add" and len(sizes.get(n.input[0], [])) == 4]
    sized = sum(all(all(sizes.get(i, [None])) and len(sizes.get(i, [])) == 4 for i in n.input) for n in adds)
    return dict(nodes=len(graph.node), const=ops["Constant"] + ops["Identity"], bn=ops["BatchNormalization"],
                sized_adds=f"{sized}/{len(adds)}", ops=ops)  # fmt: skip


def optimised_row(path: Path, workdir: Path) -> dict:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(workdir / f"{path.stem}.opt.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    constants = {i.name for i in graph.initializer}
    left = [n for n in graph.node if n.op_type == "Add" and not constants.intersection(n.input)]
    return dict(opt_nodes=len(graph.node), opt_adds=len(left))


def runtime_row(path: Path, model: nn.Module, batch_size: int, img_size: int, runs: int) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    gen, worst = torch.Generator().manual_seed(1), 0.0
    for shape in [(2, 3, img_size, img_size), (3, 3, img_size + 16, img_size + 16), (1, 3, img_size, img_size + 32)]:
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            out = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
            worst = max(worst, (out - model(x)).abs().max().item())
    feed = {"input": torch.randn(batch_size, 3, img_size, img_size, generator=gen).numpy()}
    session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return dict(max_abs_diff=worst, latency_ms=1e3 * statistics.median(times))


def compare(name: str, kwargs: dict, args: argparse.Namespace, workdir: Path) -> None:
    model = trained_looking(timm.create_model(name, **kwargs))
    runnable = deploy_model(model) if args.fold else model
    example = torch.randn(2, 3, args.img_size, args.img_size)
    rows = {}
    for exporter, write in EXPORTERS.items():
        path = workdir / f"{name}.{exporter}.onnx"
        start = time.perf_counter()
        with torch.no_grad():
            write(runnable, example, path, args.opset)
        rows[exporter] = dict(export_s=time.perf_counter() - start, mb=path.stat().st_size / 2**20, **graph_row(path),
                              **optimised_row(path, workdir),
                              **runtime_row(path, model, args.batch_size, args.img_size, args.runs))  # fmt: skip
    print(f"\n## `{name}` {kwargs or ''} (opset {args.opset}, {'BN folded first' if args.fold else 'not folded'})\n")
    print("| exporter | export s | MB | nodes | Constant+Identity | BatchNorm | sized adds | nodes optimised "
          "| tensor adds optimised | max abs diff | ms/batch |\n|---|" + "---:|" * 10)
    for exporter, r in rows.items():
        print(f"| {exporter} | {r['export_s']:.1f} | {r['mb']:.2f} | {r['nodes']} | {r['const']} | {r['bn']} | "
              f"{r['sized_adds']} | {r['opt_nodes']} | {r['opt_adds']} | {r['max_abs_diff']:.1e} | "
              f"{r['latency_ms']:.1f} |")  # fmt: skip
    ops = sorted(set(rows["legacy"]["ops"]) | set(rows["dynamo"]["ops"]))
    differ = [op for op in ops if rows["legacy"]["ops"][op] != rows["dynamo"]["ops"][op]]
    print("\nop counts that differ (legacy -> dynamo): "
          + ", ".join(f"{op} {rows['legacy']['ops'][op]} -> {rows['dynamo']['ops'][op]}" for op in differ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["assemble_resnet50", "assemble_r50_bl_sk", "assemble_r50d_sk"])
    parser.add_argument("--model-kwargs", nargs="*", default={}, action=ParseKwargs, help="e.g. width=8 (quick)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--no-fold", dest="fold", action="store_false", help="export without folding BN first")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="timm-assemble-onnx-") as workdir:
        for name in args.models:
            compare(name, args.model_kwargs, args, Path(workdir))


if __name__ == "__main__":
    main()
