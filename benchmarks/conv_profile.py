"""Where a model's inference time goes: convolution time and achieved GMAC/s versus everything else.

    python benchmarks/conv_profile.py --models assemble_resnet50 resnet50 [--batch-size 8] [--channels-last]

Forward hooks time every Conv2d (and count its multiply-adds) inside whole forward passes; the rest of
the forward (BN, activations, pooling, SK attention, ...) is the difference to the total. Hooks add a
little overhead, so use it for shares and rates, and `timm-assemble benchmark` for throughput.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch

import timm_assemble  # noqa: F401


def profile(name: str, batch_size: int, img_size: int, channels_last: bool, repeats: int) -> dict[str, float]:
    model = timm.create_model(name).eval()
    x = torch.randn(batch_size, 3, img_size, img_size)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    conv_seconds, conv_macs = [0.0], [0]

    def start(module, inputs):
        module.started = time.perf_counter()

    def stop(module, inputs, output):
        conv_seconds[0] += time.perf_counter() - module.started
        kh, kw = module.kernel_size
        conv_macs[0] += output.numel() * module.in_channels // module.groups * kh * kw

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_pre_hook(start)
            module.register_forward_hook(stop)
    with torch.inference_mode():
        model(x)
        conv_seconds[0], conv_macs[0] = 0.0, 0
        begin = time.perf_counter()
        for _ in range(repeats):
            model(x)
        total = (time.perf_counter() - begin) / repeats
    conv = conv_seconds[0] / repeats
    return dict(total_ms=total * 1e3, conv_ms=conv * 1e3, conv_share=conv / total,
                gmac_per_s=conv_macs[0] / repeats / conv / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["assemble_resnet50", "resnet50"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| model | forward ms | conv ms | conv share | conv GMAC/s | other ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        row = profile(name, args.batch_size, args.img_size, args.channels_last, args.repeats)
        print(f"| `{name}` | {row['total_ms']:.0f} | {row['conv_ms']:.0f} | {row['conv_share']:.0%} | "
              f"{row['gmac_per_s']:.1f} | {row['total_ms'] - row['conv_ms']:.0f} |")


if __name__ == "__main__":
    main()
