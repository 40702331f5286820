"""Whether a forward is being traced into a static graph (ONNX export, torch.export), where some eager
fast paths are the wrong choice: a shape test would be frozen, or a fused op would be decomposed."""

import torch


def is_exporting() -> bool:
    """True under `torch.onnx.export` / `torch.jit.trace` and `torch.export`; False in eager and TorchScript."""
    if torch.jit.is_scripting():
        return False
    return torch.jit.is_tracing() or torch.compiler.is_exporting()
