"""Deploy copies (BN folded) and `timm-assemble export`: same outputs as the eager model, dynamic sizes."""

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

import timm_assemble  # noqa: F401
from timm_assemble.cli import main
from timm_assemble.deploy import export as deploy_export
from timm_assemble.deploy.export import export_model
from timm_assemble.deploy.fold import TRAINING_ONLY, deploy_model, relative_error
from timm_assemble.errors import TimmAssembleError
from timm_assemble.weights.hub_folder import export_hub_folder

BN = nn.modules.batchnorm._BatchNorm
# issue 22: no export warns of a deprecation (the TorchScript writer filters torch's notice that TorchScript is)
pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning", "error::FutureWarning")


def _trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms (fresh BNs are identities, and zero-gamma hides bn3)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, BN):
            m.running_mean.normal_(0, 0.2, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
            m.weight.data.uniform_(0.5, 1.5, generator=gen)
            m.bias.data.normal_(0, 0.2, generator=gen)
    return model.eval()


@pytest.fixture(scope="module")
def small_model() -> nn.Module:
    model = timm.create_model("assemble_resnet50", width=8, num_classes=5, drop_block_rate=0.1, drop_path_rate=0.1)
    return _trained_looking(model)


@pytest.mark.slow
@pytest.mark.parametrize("name", timm.list_models("assemble*"))
def test_deploy_copy_equals_the_model(name: str) -> None:
    model = _trained_looking(timm.create_model(name, width=8, drop_block_rate=0.1, drop_path_rate=0.1))
    deployed = deploy_model(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert relative_error(deployed(x), model(x)) <= 1e-5
    assert not [m for m in deployed.modules() if isinstance(m, (BN, *TRAINING_ONLY))]
    assert all(not p.requires_grad for p in deployed.parameters())
    assert any(isinstance(m, BN) for m in model.modules()), "the original is left as it was"
    assert any(isinstance(m, TRAINING_ONLY) for m in model.modules())


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet"])
def test_deploy_copy_of_timm_models(name: str) -> None:
    """timm's own models fold too, BatchNormAct2d (BN + activation in one module) included."""
    model = _trained_looking(timm.create_model(name))
    deployed = deploy_model(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert relative_error(deployed(x), model(x)) <= 1e-5
    assert not [m for m in deployed.modules() if isinstance(m, BN)]


def test_conv_feeding_two_consumers_is_not_folded() -> None:
    class TwoUsers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    model = _trained_looking(TwoUsers())
    deployed = deploy_model(model)
    assert isinstance(deployed.bn, nn.BatchNorm2d) and deployed.conv.bias is None
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x))


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory, small_model: nn.Module) -> tuple[Path, list[dict]]:
    """One ONNX export shared by the ONNX tests (torch's exporter takes tens of seconds on 2 cores)."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return path, export_model(small_model, path, "onnx", img_size=64)


def _check_round_trip(path: Path, rows: list[dict]) -> None:
    assert [r["shape"] for r in rows] == [(2, 3, 64, 64), (1, 3, 96, 96)]
    assert all(r["export"] <= 1e-4 and r["deploy"] <= 1e-5 for r in rows)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "exported-program"])
def test_export_round_trip_at_two_sizes(tmp_path: Path, small_model: nn.Module, fmt: str) -> None:
    path = tmp_path / f"model.{fmt}"
    _check_round_trip(path, export_model(small_model, path, fmt, img_size=64))


@pytest.mark.slow
def test_onnx_file_runs_in_onnxruntime_at_other_sizes(onnx_export, small_model: nn.Module) -> None:
    """The export's own round trip, then ONNX Runtime directly at sizes the export never saw (80 px takes the
    upsample path)."""
    ort = pytest.importorskip("onnxruntime")
    path, rows = onnx_export
    _check_round_trip(path, rows)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    for shape in [(3, 3, 80, 80), (1, 3, 64, 96)]:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
        (out,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            assert relative_error(torch.from_numpy(np.asarray(out)), small_model(x)) <= 1e-4


@pytest.mark.slow
def test_onnx_file_states_the_sizes_of_both_inputs_of_every_add(onnx_export) -> None:
    """Symbolic sizes are written into the file (what lets ONNX Runtime fuse a residual add into its conv):
    at every 4-D add, both inputs have all four sizes stated, as expressions of batch, height and width."""
    onnx = pytest.importorskip("onnx")
    path, _ = onnx_export
    graph = onnx.load(str(path)).graph
    sizes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    adds = [n for n in graph.node if n.op_type == "Add" and len(sizes.get(n.input[0], [])) == 4]
    assert len(adds) > 20
    for node in adds:
        first, second = (sizes[name] for name in node.input)
        assert first == second and all(first), (node.name, first, second)
    assert any("height" in str(s[2]) for s in sizes.values() if len(s) == 4)
    assert not [n.name for n in graph.node if n.metadata_props], "the exporter's debug notes (local paths) are dropped"


def test_export_that_disagrees_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    model = timm.create_model("test_resnet").eval()
    load = deploy_export._LOADERS["torchscript"]
    monkeypatch.setitem(deploy_export._LOADERS, "torchscript", lambda p: (lambda x: load(p)(x) + 1.0))
    with pytest.raises(TimmAssembleError, match="disagrees with the eager model"):
        export_model(model, tmp_path / "m.pt", "torchscript", img_size=32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_exports_a_local_dir_model_and_keeps_existing_files(tmp_path: Path, capsys) -> None:
    folder = export_hub_folder(timm.create_model("assemble_resnet50", width=8, num_classes=3), tmp_path / "m")
    out = tmp_path / "m.pt"  # TorchScript: the quickest writer here; the ONNX file is checked above
    argv = ["export", f"local-dir:{folder}", "--format", "torchscript", "--out", str(out), "--img-size", "64"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "BN folded" in printed and "parity 2x3x64x64" in printed and "parity 1x3x96x96" in printed
    before = out.read_bytes()
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before


def test_cli_rejects_bad_input(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "test_resnet", "--format", "tflite", "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert main(["export", "test_resnet", "--no-pretrained"]) == 2
    assert "--out PATH is required" in capsys.readouterr().err
    assert main(["export", "resnet_nope", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "unknown model 'resnet_nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "test_resnet", "--out", str(tmp_path / "m.onnx"), "--opset", "17"])
    assert exit_info.value.code == 2 and "--opset" in capsys.readouterr().err


def test_onnx_opset_below_the_exporters_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(TimmAssembleError, match="--opset must be >= 18"):
        export_model(timm.create_model("test_resnet"), tmp_path / "m.onnx", "onnx", img_size=32, opset=17)
    assert list(tmp_path.iterdir()) == []


def test_export_that_fails_to_run_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    def frozen(path: Path):
        def run(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError(f"size {tuple(x.shape)} frozen in\nmore")

        return run

    monkeypatch.setitem(deploy_export._LOADERS, "torchscript", frozen)
    with pytest.raises(TimmAssembleError, match=r"fails at input 2x3x32x32: size \(2, 3, 32, 32\) frozen in; nothing"):
        export_model(timm.create_model("test_resnet"), tmp_path / "m.pt", "torchscript", img_size=32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_onnx_of_a_small_channels_last_model_runs_at_other_sizes(tmp_path: Path) -> None:
    """At 32 px a stride-32 network ends at 1x1; traced there, torch wrote later maps' sizes as 1 (issue 22)."""
    model = _trained_looking(timm.create_model("test_efficientnet")).to(memory_format=torch.channels_last)
    rows = export_model(model, tmp_path / "m.onnx", "onnx", img_size=32)
    assert [r["shape"] for r in rows] == [(2, 3, 32, 32), (1, 3, 64, 64)] and all(r["export"] <= 1e-4 for r in rows)


@pytest.mark.slow
def test_model_torch_export_cannot_capture_is_one_error(tmp_path: Path) -> None:
    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(TimmAssembleError, match="torch's ONNX exporter cannot export DataDependent: .*torchscript"):
        export_model(DataDependent(), tmp_path / "m.onnx", "onnx", img_size=32, fold=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_onnx_opset_the_exporter_cannot_write_is_one_error(tmp_path: Path) -> None:
    """torch keeps its own opset when onnx has no converter to the one asked for; the file would lie."""
    with pytest.raises(TimmAssembleError, match="cannot write opset 30"):
        export_model(timm.create_model("test_resnet"), tmp_path / "m.onnx", "onnx", img_size=32, opset=30)
    assert list(tmp_path.iterdir()) == []
