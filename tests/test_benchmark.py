"""`timm-assemble benchmark`: measurements are present and consistent, the reference table is sourced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from timm_assemble.cli import main
from timm_assemble.errors import TimmAssembleError
from timm_assemble.evaluation.benchmark import (
    DEFAULT_PEERS,
    OURS,
    as_published_models,
    benchmark,
    count_flops,
    eval_size,
    format_table,
    paired_ratio,
    reference_results,
    time_interleaved,
)

TINY = dict(img_size=32, batch_size=2, warmup=1, repeats=2, iters=1)


def test_benchmark_measures_every_model(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    result = benchmark(["test_resnet", "test_efficientnet"], train=True, threads=1, **TINY)
    assert torch.get_num_threads() == threads  # restored
    assert result["config"]["batch_size"] == 2 and result["config"]["device"] == "cpu"
    assert result["config"]["torch_threads"] == 1
    rows = {r["model"]: r for r in result["models"]}
    assert rows["test_efficientnet"]["params_m"] == pytest.approx(
        sum(p.numel() for p in timm.create_model("test_efficientnet").parameters()) / 1e6, abs=1e-3
    )
    for r in rows.values():
        assert r["gflops"] > 0 and r["gmacs"] == pytest.approx(r["gflops"] / 2, abs=1e-3)
    for r in rows.values():
        for phase in ("infer", "train"):
            assert r[f"{phase}_img_per_s_min"] <= r[f"{phase}_img_per_s"] <= r[f"{phase}_img_per_s_max"]
            assert r[f"{phase}_latency_ms"] > 0 and r[f"{phase}_peak_mem_mb"] >= 0
            assert r[f"{phase}_x_first_q1"] <= r[f"{phase}_x_first"] <= r[f"{phase}_x_first_q3"]
    assert rows["test_resnet"]["infer_x_first"] == 1.0 and rows["test_resnet"]["train_x_first"] == 1.0
    assert "RSS" in result["memory_kind"]


def test_grouped_steps_run_back_to_back_in_alternating_order() -> None:
    calls: list[str] = []
    steps = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    time_interleaved(steps, warmup=0, repeats=3, iters=1, device=torch.device("cpu"), desc="t",
                     groups=[["a", "b"], ["c", "d"]])  # fmt: skip
    assert calls == ["a", "b", "c", "d", "d", "c", "b", "a", "a", "b", "c", "d"]


def test_paired_ratio_cancels_drift_that_the_ratio_of_medians_keeps() -> None:
    load = [1.0, 1.0, 2.0, 2.0, 2.0]  # the machine slows down halfway; the model is always twice as fast
    fast, slow = [1.0 * x for x in load], [2.0 * x for x in load]
    result = paired_ratio(fast, slow)
    assert result == {"ratio": 2.0, "ratio_q1": 2.0, "ratio_q3": 2.0}
    fast_skewed = [1.0, 1.0, 1.0, 2.0, 2.0]  # the fast model happened to run more in the quiet part
    assert paired_ratio(fast_skewed, slow)["ratio"] == 2.0


def test_flop_count_of_a_single_conv() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, (3, 16, 16), torch.device("cpu")) == 2 * 8 * 3 * 9 * 16 * 16


@pytest.mark.slow
def test_cli_table_json_and_plot(tmp_path: Path, capsys) -> None:
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    code = main(
        [
            "benchmark",
            "--models",
            "test_resnet",
            "efficientnet_b0",
            "--img-size",
            "32",
            "--batch-size",
            "1",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--iters",
            "1",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    rows = {r["model"]: r for r in result["models"]}
    assert rows["efficientnet_b0"]["imagenet_top1"] == 77.698 and rows["test_resnet"]["imagenet_top1"] is None
    assert png.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "efficientnet_b0" in printed and "img/s" in printed


def test_reference_table_is_sourced_and_matches_timm_defaults() -> None:
    table = reference_results()
    for name in OURS + DEFAULT_PEERS:
        entry = table["models"][name]
        assert entry["source"] in table["sources"] and 70 < entry["top1"] < 90
    assert table["models"]["assemble_resnet50"]["top1"] == 82.78  # paper Table 7, E11
    assert table["models"]["assemble_resnet152"]["top1"] == 84.19  # paper Table 7, E12
    for name, entry in table["models"].items():
        if entry["source"] == "timm":  # the row is the one for timm's default weights at their input size
            cfg = timm.models.get_pretrained_cfg(name)
            assert entry["weights"] == f"{name}.{cfg.tag}" and entry["img_size"] == cfg.input_size[-1], name


def test_bad_inputs_give_one_clear_error(capsys) -> None:
    assert main(["benchmark", "--models", "resnet_nope", "--img-size", "32"]) == 2
    assert "unknown model 'resnet_nope'" in capsys.readouterr().err
    with pytest.raises(TimmAssembleError, match="only once"):
        benchmark(["test_resnet", "test_resnet"], **TINY)
    if not torch.cuda.is_available():
        with pytest.raises(TimmAssembleError, match="CUDA is not available"):
            benchmark(["test_resnet"], device="cuda", **TINY)


@pytest.mark.slow
def test_as_published_runs_each_model_at_its_eval_size() -> None:
    names = ["test_resnet.r160_in1k", "test_efficientnet.r160_in1k"]
    result = benchmark(names, as_published=True, batch_size=1, warmup=0, repeats=1, iters=1)
    assert result["config"]["as_published"] and result["config"]["img_size"] == "each model's eval size"
    for r in result["models"]:
        assert (r["img_size"], r["crop_pct"]) == (160, 0.95) and r["imagenet_top1"] is None
        assert r["gflops"] > 0 and r["infer_img_per_s"] > 0
    assert "x first" in format_table(result) and "own eval size" in format_table(result)
    ours = timm.create_model("assemble_resnet50.clova_in1k", width=8)
    assert eval_size(ours) == (256, 0.8767)  # test_input_size / test_crop_pct win over input_size / crop_pct
    with pytest.raises(TimmAssembleError, match="drop --train"):
        benchmark(names, as_published=True, train=True, batch_size=1)


def test_as_published_table_matches_timm_eval_sizes() -> None:
    """Every entry is one weight at the size and crop timm evaluates it at, so its top-1 is the one for that run."""
    table = reference_results()
    assert set(as_published_models()) == set(table["as_published"])
    assert as_published_models()[:2] == ("assemble_resnet50.clova_in1k", "assemble_resnet152.clova_in1k")
    for name, entry in table["as_published"].items():
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg is not None, name
        size = (cfg.test_input_size or cfg.input_size)[-1]
        assert (entry["img_size"], entry["crop_pct"]) == (size, cfg.test_crop_pct or cfg.crop_pct), name
        assert entry["source"] in table["sources"] and 80 < entry["top1"] < 85, name
    assert table["as_published"]["tf_efficientnet_b4.aa_in1k"]["top1"] == 83.04  # the paper's peer, at 380 px


def test_as_published_cli_rejects_a_fixed_size(capsys) -> None:
    assert main(["benchmark", "--as-published", "--img-size", "224", "--models", "test_resnet.r160_in1k"]) == 2
    assert "drop --img-size" in capsys.readouterr().err
