"""benchmarks/modes.py's engine: every (model, mode) pair timed in one interleaved loop, ratios per mode."""

import pytest

from timm_assemble.errors import TimmAssembleError
from timm_assemble.evaluation.modes import compare_modes, format_modes

TINY = dict(batch_size=1, img_size=32, warmup=0, repeats=1)


@pytest.mark.slow
def test_every_model_runs_in_every_mode() -> None:
    pytest.importorskip("onnxruntime")
    models, modes = ["test_resnet", "test_efficientnet"], ["eager", "bf16", "onnxruntime"]
    result = compare_modes(models, modes, **TINY)
    assert [(r["model"], r["mode"]) for r in result["rows"]] == [(m, mode) for m in models for mode in modes]
    assert all(r["img_per_s"] > 0 for r in result["rows"])
    assert result["config"]["reference"] == "test_efficientnet"
    assert all(r["ratio"] == 1.0 for r in result["rows"] if r["model"] == "test_efficientnet")
    table = format_modes(result)
    assert "| `test_resnet` |" in table and "onnxruntime / test_efficientnet" in table
    assert table.splitlines()[-1].endswith("| 1.00 | 1.00 | 1.00 |")  # the reference row against itself


def test_unknown_mode_or_reference_is_one_clear_error() -> None:
    with pytest.raises(TimmAssembleError, match="need models and modes"):
        compare_modes(["test_resnet"], ["tensorrt"], **TINY)
    with pytest.raises(TimmAssembleError, match="reference model 'resnet50' must be one of"):
        compare_modes(["test_resnet"], ["eager"], reference="resnet50", **TINY)
