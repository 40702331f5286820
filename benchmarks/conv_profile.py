"""Where a model's inference time goes, eager, bf16 or compiled: convolution kernels versus everything else.

    python benchmarks/conv_profile.py --models assemble_resnet50 resnet50 [--mode eager|bf16|compile]
        [--batch-size 8] [--img-size 224] [--repeats 5]

torch.profiler's self CPU time per operator over whole forward passes (channels_last, random weights). The
convolution kernels are `aten::mkldnn_convolution` in eager (in bf16 autocast too, or PyTorch's reference
`aten::_slow_conv2d_forward` on CPUs without native bf16) and inductor's `mkldnn::_convolution_pointwise*`
when compiled (with freezing: BN folded, ReLU and residual adds fused into them); everything else (BN,
activations, pooling, the SK attention, inductor's generated kernels) is "other". The models run in
alternation, repeat by repeat. `conv / last` is the last model's convolution time over this model's: the
ratio a mode's throughput ratio would reach with no time outside the convolutions. The profiler adds some
overhead per op: use it for shares and ratios, `timm-assemble benchmark --modes` for throughput.
"""

import argparse
import contextlib
import statistics
from collections.abc import Callable

import timm
import torch
import torch._inductor.config as inductor_config
from torch.profiler import ProfilerActivity, profile

import timm_assemble  # noqa: F401
from timm_assemble.evaluation.benchmark import count_flops

CONV_KERNELS = (
    "aten::mkldnn_convolution", "aten::_slow_conv2d_forward",
    "mkldnn::_convolution_pointwise", "mkldnn::_convolution_pointwise_",
)  # fmt: skip


def forward_of(name: str, mode: str, x: torch.Tensor) -> tuple[Callable[[], None], float]:
    """The model's forward in `mode`, warmed up, and its multiply-adds per batch (G)."""
    model = timm.create_model(name).eval().to(memory_format=torch.channels_last)
    gmacs = count_flops(model, tuple(x.shape[1:]), x.device) / 2e9 * x.shape[0]
    runnable = torch.compile(model) if mode == "compile" else model

    def forward() -> None:
        freezing = inductor_config.patch(freezing=True) if mode == "compile" else contextlib.nullcontext()
        autocast = torch.autocast(x.device.type, torch.bfloat16, enabled=mode == "bf16")
        with freezing, autocast, torch.inference_mode():
            runnable(x)

    forward()  # compiles, warms up
    return forward, gmacs


def split_time(forward: Callable[[], None]) -> tuple[float, float]:
    """(convolution ms, other ms) of one profiled forward."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        forward()
    events = prof.key_averages()
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_KERNELS) / 1e3
    return conv, sum(e.self_cpu_time_total for e in events) / 1e3 - conv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["assemble_resnet50", "resnet50"])
    parser.add_argument("--mode", choices=("eager", "bf16", "compile"), default="eager")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size).contiguous(memory_format=torch.channels_last)
    built = {name: forward_of(name, args.mode, x) for name in args.models}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in args.models}
    for r in range(args.repeats):
        for name in args.models if r % 2 == 0 else args.models[::-1]:
            times[name].append(split_time(built[name][0]))
    last_conv = [conv for conv, _ in times[args.models[-1]]]
    print(f"{args.mode}, batch {args.batch_size}, {args.img_size} px, channels_last, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} alternating repeats")  # fmt: skip
    print("| model | forward ms | conv ms | conv share | conv GMAC/s | other ms | conv / last |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        conv = statistics.median(c for c, _ in times[name])
        other = statistics.median(o for _, o in times[name])
        ratio = statistics.median(ref / c for (c, _), ref in zip(times[name], last_conv, strict=True))
        print(f"| `{name}` | {conv + other:.0f} | {conv:.0f} | {conv / (conv + other):.0%} | "
              f"{built[name][1] / conv * 1e3:.1f} | {other:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
