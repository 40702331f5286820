"""`timm-assemble robustness`: on-the-fly and ImageNet-C-folder modes, CE/mCE arithmetic, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from launch_testing import TWO_PROCESSES, finish
from PIL import Image
from training_helpers import tiny_model_folder

from timm_assemble.cli import main
from timm_assemble.data import make_synthetic_image_folder
from timm_assemble.errors import TimmAssembleError
from timm_assemble.evaluation.corruption_sets import CORRUPTION_SETS
from timm_assemble.evaluation.corruptions import ALL_CORRUPTIONS, COMMON_CORRUPTIONS
from timm_assemble.evaluation.data import (
    ImageListDataset,
    NpyCorruptionFolder,
    imagenet_synsets,
    images_shorter_side,
    index_image_folder,
)
from timm_assemble.evaluation.reference_errors import (
    ALEXNET,
    CIFAR10_CLASSES,
    ROBUSTBENCH_STANDARD,
    ReferenceErrors,
    benchmark_dataset,
)
from timm_assemble.evaluation.robustness import (
    _CorruptedView,
    _FitToInput,
    corruption_errors,
    format_table,
    relative_corruption_errors,
    robustness,
    set_crop,
)

FAST = dict(workers=0, batch_size=8, img_size=32, crop_pct=1.0)
CPU_FIX = "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_image_folder(
        tmp_path_factory.mktemp("rob") / "data", num_classes=2, images_per_class=2, image_size=32, splits=()
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[str, str]:
    first, second = (tiny_model_folder(tmp_path_factory.mktemp(f"m{seed}") / "model", 2, seed) for seed in (0, 1))
    return f"local-dir:{first}", f"local-dir:{second}"


@pytest.mark.slow
def test_on_the_fly_with_baseline_is_deterministic(data: Path, models, tmp_path: Path) -> None:
    model, base = models
    runs = [
        robustness(
            model,
            str(data),
            corruptions="gaussian_noise,fog",
            severities="1,5",
            baseline=base,
            geometry="model-input",
            **FAST,
        )  # fmt: skip
        for _ in range(2)
    ]
    assert runs[0]["geometry"] == "model-input"
    assert runs[0]["error"] == runs[1]["error"] and runs[0]["ce"] == runs[1]["ce"]
    r = runs[0]
    assert r["ce_reference"] == "baseline" and r["source"] == "on-the-fly"
    for name in ("gaussian_noise", "fog"):
        errs, base_errs = r["error"][name], r["baseline_error"][name]
        assert r["num_images"][name] == {1: 4, 5: 4}
        if sum(base_errs.values()) > 0:
            assert r["ce"][name] == pytest.approx(100 * sum(errs.values()) / sum(base_errs.values()), abs=1e-3)
    ces = [r["ce"][n] for n in r["mce_over"]]
    if all(c is not None for c in ces):
        assert r["mce"] == pytest.approx(sum(ces) / len(ces), abs=1e-3)
    assert not r["mce_is_standard_15"]


def test_cli_writes_json_and_plot(data: Path, models, tmp_path: Path, capsys) -> None:
    model, _ = models
    out, png = tmp_path / "r.json", tmp_path / "ce.png"
    code = main(
        [
            "robustness",
            "--model",
            model,
            "--data-dir",
            str(data),
            "--corruptions",
            "contrast",
            "--severities",
            "3",
            "--img-size",
            "32",
            "--workers",
            "0",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["corruptions"] == ["contrast"] and result["ce"]["contrast"] is None  # no ImageNet, no baseline
    assert "pass --baseline" in result["ce_note"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a folder of 32 px images is corrupted as CIFAR-10-C was, said out loud and recorded
    assert result["corruption_set"] == result["geometry"] == "cifar-c" and "32 px" in result["corruption_set_chosen"]
    captured = capsys.readouterr()
    assert "contrast" in captured.out and "corruption set cifar-c" in captured.out
    assert "corruption set cifar-c (CIFAR-10-C, CIFAR-100-C; make_cifar_c.py), chosen by the data" in captured.err


def test_imagenet_c_folders_use_alexnet_normalisation(tmp_path: Path) -> None:
    """Pre-corrupted folders identical to the clean images: every error equals the clean error."""
    synsets = imagenet_synsets()
    clean = tmp_path / "clean"
    for i, idx in enumerate((3, 500)):
        (clean / synsets[idx]).mkdir(parents=True)
        for j in range(2):
            Image.new("RGB", (32, 32), (40 + 100 * i, 60 * j, 90)).save(clean / synsets[idx] / f"{j}.png")
    root = tmp_path / "imagenet-c"
    for name in ("gaussian_noise", "saturate"):
        for sev in range(1, 6):
            shutil.copytree(clean, root / name / str(sev))
    torch.manual_seed(0)
    r = robustness(
        "test_resnet", str(clean), imagenet_c=str(root), corruptions="gaussian_noise,saturate", pretrained=False,
        corruption_set="imagenet-c", **FAST,
    )  # fmt: skip
    assert r["label_map"] == "imagenet-synsets" and r["ce_reference"] == "alexnet"
    for name in ("gaussian_noise", "saturate"):
        assert all(e == pytest.approx(r["clean_error"]) for e in r["error"][name].values())
        assert r["ce"][name] == pytest.approx(r["clean_error"] / ALEXNET.errors[name][1], abs=1e-3)
        assert r["relative_ce"][name] == pytest.approx(0.0, abs=1e-9)  # corrupted = clean: nothing added
    assert r["mce_over"] == ["gaussian_noise"]  # the extra corruption is reported but not in the 15-mCE
    with pytest.raises(TimmAssembleError, match="ImageNet-C folder for fog severity 1"):
        robustness("test_resnet", None, imagenet_c=str(root), corruptions="fog", pretrained=False, **FAST)


def test_alexnet_normalises_imagenet_c_only(tmp_path: Path) -> None:
    """ImageNet classes corrupted with another set's constants: no AlexNet CE, the note says why."""
    synsets = imagenet_synsets()
    for idx in (3, 500):
        (tmp_path / synsets[idx]).mkdir()
        Image.new("RGB", (64, 64), (idx % 256, 60, 90)).save(tmp_path / synsets[idx] / "0.png")
    torch.manual_seed(0)
    r = robustness("test_resnet", str(tmp_path), corruptions="contrast", pretrained=False, **FAST)
    assert r["corruption_set"] == "tiny-imagenet-c" and r["label_map"] == "imagenet-synsets"
    assert r["ce_reference"] is None and "not tiny-imagenet-c's" in r["ce_note"]


@pytest.fixture(scope="module")
def cifar10_model(tmp_path_factory) -> str:
    return f"local-dir:{tiny_model_folder(tmp_path_factory.mktemp('c10') / 'model', 10)}"


def cifar10_like_folder(root: Path, names: tuple[str, ...]) -> Path:
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), (25 * i, 200 - 15 * i, 90)).save(root / name / "0.png")
    return root


@pytest.mark.slow
def test_cifar10_is_normalised_by_robustbench_standard_per_severity(cifar10_model, tmp_path: Path) -> None:
    """CIFAR-10's ten class folders under the cifar-c set: CE over the severities asked, by the published errors
    of the same severities; a corruption RobustBench did not measure gets no CE and is named."""
    data = cifar10_like_folder(tmp_path / "cifar10", tuple(n.upper() for n in CIFAR10_CLASSES))  # any case
    r = robustness(cifar10_model, str(data), corruptions="contrast,speckle_noise", severities="2,4", **FAST)
    assert r["corruption_set"] == "cifar-c" and r["ce_reference"] == "robustbench-standard"
    assert r["ce_reference_model"] == ROBUSTBENCH_STANDARD.model and "arXiv:2010.09670" in r["ce_note"]
    published = ROBUSTBENCH_STANDARD.errors["contrast"]
    assert r["ce"]["contrast"] == pytest.approx(
        100 * sum(r["error"]["contrast"].values()) / (100 * (published[2] + published[4])), abs=1e-3
    )
    assert r["ce"]["speckle_noise"] is None and "no CE for speckle_noise" in r["ce_note"]
    assert r["mce_over"] == ["contrast"] and r["mce"] == r["ce"]["contrast"] and not r["mce_is_standard_15"]
    added = sum(e - r["clean_error"] for e in r["error"]["contrast"].values())
    added_by_reference = 100 * (published[2] + published[4] - 2 * ROBUSTBENCH_STANDARD.clean_error)
    assert r["relative_ce"]["contrast"] == pytest.approx(100 * added / added_by_reference, abs=1e-3)
    assert f"relative to {ROBUSTBENCH_STANDARD.model}" in format_table(r)
    for off_protocol in (dict(geometry="model-input"), dict(jpeg_quality=85)):  # not images as CIFAR-10-C's
        r = robustness(cifar10_model, str(data), corruptions="contrast", **off_protocol, **FAST)
        assert r["ce_reference"] is None and f"--{next(iter(off_protocol)).replace('_', '-')}" in r["ce_note"]
    imagenet_c = robustness(cifar10_model, str(data), corruptions="contrast", corruption_set="imagenet-c", **FAST)
    assert imagenet_c["ce_reference"] is None and "are cifar-c's, not imagenet-c's" in imagenet_c["ce_note"]
    other = cifar10_like_folder(tmp_path / "other", tuple(f"class{i}" for i in range(10)))
    r = robustness(cifar10_model, str(other), corruptions="contrast", severities="2", **FAST)
    assert r["ce_reference"] is None and "no published errors for this data" in r["ce_note"]
    assert format_table(r).splitlines()[-1].endswith(r["ce_note"])  # the table says why there is no mCE


def test_cifar_c_npy_folder_is_read_as_published(models, tmp_path: Path) -> None:
    """CIFAR-10-C's layout: <corruption>.npy of 5 x N images, severities stacked in order, and labels.npy."""
    model, _ = models
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5 * 3, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "contrast.npy", images)
    np.save(tmp_path / "labels.npy", np.tile(np.array([0, 1, 1], np.uint8), 5))
    folder = NpyCorruptionFolder(tmp_path, 2)
    severity_3 = folder.dataset("contrast", 3, None, lambda img, i: img)
    assert len(severity_3) == 3 and [severity_3[i][1] for i in range(3)] == [0, 1, 1]
    assert all(torch.equal(severity_3[i][0], torch.from_numpy(images[6 + i]).permute(2, 0, 1)) for i in range(3))
    r = robustness(model, None, imagenet_c=str(tmp_path), corruptions="contrast", **FAST)
    assert r["source"] == "cifar-c .npy files" and r["corruption_set"] == "cifar-c" and r["geometry"] is None
    assert r["ce_reference"] is None  # two classes: not CIFAR-10-C
    assert r["num_images"]["contrast"] == {s: 3 for s in range(1, 6)}
    with pytest.raises(TimmAssembleError, match="has no fog.npy"):
        robustness(model, None, imagenet_c=str(tmp_path), corruptions="fog", **FAST)
    np.save(tmp_path / "labels.npy", np.zeros(14, np.uint8))
    with pytest.raises(TimmAssembleError, match="expected 5 x N labels"):
        robustness(model, None, imagenet_c=str(tmp_path), corruptions="contrast", **FAST)


def test_corruption_errors_arithmetic() -> None:
    errors = {"gaussian_noise": {s: 0.5 for s in range(1, 6)}, "fog": {s: 0.1 * s for s in range(1, 6)}}
    ce, note = corruption_errors(errors, ALEXNET, "")
    assert ce["gaussian_noise"] == pytest.approx(0.5 / 0.886428) and note == ALEXNET.source
    assert ce["fog"] == pytest.approx(0.3 / 0.819324)
    ce, note = corruption_errors(errors, None, "no CE: why")
    assert ce["fog"] is None and note == "no CE: why"
    ce, note = corruption_errors({"fog": {1: 0.2}}, ALEXNET, "")
    assert ce["fog"] is None and "all severities" in note  # only AlexNet's means are published
    # RobustBench's errors are published per severity: a subset of severities is normalised by the same subset
    two = {"fog": {2: 0.2, 5: 0.4}, "saturate": {2: 0.1, 5: 0.2}}
    ce, note = corruption_errors(two, ROBUSTBENCH_STANDARD, "")
    assert ce["fog"] == pytest.approx(0.6 / (0.0644 + 0.2601)) and ce["saturate"] is None
    assert note.startswith(ROBUSTBENCH_STANDARD.source) and "no CE for saturate" in note
    ce, note = corruption_errors({"saturate": {2: 0.1}}, ROBUSTBENCH_STANDARD, "")
    assert ce == {"saturate": None} and note == f"no CE: no {ROBUSTBENCH_STANDARD.model} errors for saturate"
    base = ReferenceErrors("baseline", "b", {"gaussian_noise": {s: 0.25 for s in range(1, 6)}, "fog": {}}, None, "")
    ce, _ = corruption_errors(errors, base, "")
    assert ce["gaussian_noise"] == pytest.approx(2.0) and ce["fog"] is None


def test_published_errors_are_the_sources_aggregates() -> None:
    """The per-severity table reproduces the numbers its source publishes beside it: RobustBench's leaderboard has
    the Standard WRN-28-10 at 73.46% mean CIFAR-10-C accuracy over the 15 x 5 cells and 94.78% clean."""
    cells = [e for per in ROBUSTBENCH_STANDARD.errors.values() for e in per.values()]
    assert len(cells) == 75 and set(ROBUSTBENCH_STANDARD.errors) == set(COMMON_CORRUPTIONS)
    assert round(100 * (1 - sum(cells) / 75), 2) == 73.46
    assert ROBUSTBENCH_STANDARD.clean_error == pytest.approx(1 - 0.9478)
    assert set(ALEXNET.errors) == set(ALL_CORRUPTIONS) and ALEXNET.means_only


def test_the_clean_data_names_its_benchmark() -> None:
    assert benchmark_dataset("imagenet-synsets", ["n01440764"], 1000) == "imagenet-1k"
    assert benchmark_dataset("folder-order", list(reversed(CIFAR10_CLASSES)), 10) == "cifar-10"
    assert benchmark_dataset("folder-order", [*CIFAR10_CLASSES[:9], "lorry"], 10) is None
    assert benchmark_dataset("labels.npy", None, 10) == "cifar-10"  # CIFAR-10-C's files
    assert benchmark_dataset("labels.npy", None, 100) is None  # CIFAR-100-C's: nothing published


@pytest.mark.parametrize("command", ["robustness", "validate"])
def test_a_broken_image_stops_an_evaluation_with_one_line_naming_it(data: Path, models, tmp_path, capsys, command):
    """Read in a DataLoader worker (--workers 2): torch re-raises the worker's error with its traceback as the
    message; the line is the error's own."""
    model, _ = models
    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    bad = sorted(broken.glob("*/*"))[-1]
    bad.write_bytes(b"not an image")
    args = [command, "--model", model, "--data-dir", str(broken), "--img-size", "32", "--workers", "2"]
    assert main([*args, *(["--corruptions", "contrast", "--severities", "1"] if command == "robustness" else [])]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    said = f"cannot read image {bad}: UnidentifiedImageError: cannot identify image file '{bad}'"
    assert line == f"timm-assemble {command}: error: {said}"


def test_bad_inputs_give_one_clear_error(data: Path, models, tmp_path: Path, capsys) -> None:
    model, _ = models
    assert main(["robustness", "--model", model, "--data-dir", str(data), "--corruptions", "rain"]) == 2
    assert "unknown corruption 'rain'" in capsys.readouterr().err
    assert main(["robustness", "--model", "no_such_net", "--data-dir", str(data)]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["robustness", "--model", model, "--data-dir", str(empty), "--corruptions", "fog"]) == 2
    assert "contains no images" in capsys.readouterr().err
    assert main(["robustness", "--model", model]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert main(["robustness", "--model", model, "--data-dir", str(data), "--severities", "0-7"]) == 2
    assert "severities" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse choices
        main(["robustness", "--model", model, "--data-dir", str(data), "--geometry", "paper"])
    assert exit_info.value.code == 2 and "--geometry" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["robustness", "--model", model, "--data-dir", str(data), "--corruption-set", "cifar10-c"])
    assert exit_info.value.code == 2 and "choose from 'imagenet-c', 'cifar-c'" in capsys.readouterr().err
    with pytest.raises(TimmAssembleError, match="--geometry must be one of corruption-set, model-input"):
        robustness(model, str(data), geometry="paper", **FAST)


SEED, NAMES = 3, ("gaussian_noise", "glass_blur")


def write_imagenet_c(data: Path, root: Path, severities: tuple[int, ...]) -> list[tuple[str, int]]:
    """An ImageNet-C-style folder made from the clean images as ImageNet-C was made (resize 256, crop 224,
    corrupt, JPEG quality-85 files), with the on-the-fly path's random numbers; returns the clean samples."""
    samples = index_image_folder(str(data), 2).samples
    keys = list(range(len(samples)))
    for name in NAMES:
        for sev in severities:
            view = _CorruptedView(set_crop(), name, sev, SEED, keys, 0, None)
            for i, (path, _) in enumerate(samples):
                out = root / name / str(sev) / Path(path).parent.name / (Path(path).stem + ".jpg")
                out.parent.mkdir(parents=True, exist_ok=True)
                view(Image.open(path).convert("RGB"), i).save(out, "JPEG", quality=85)
    return samples


def test_imagenet_c_folder_and_on_the_fly_see_the_same_images(data: Path, tmp_path: Path) -> None:
    samples = write_imagenet_c(data, tmp_path, (5,))
    keys = list(range(len(samples)))
    fit = _FitToInput((32, 32), "bilinear")  # a 32 px model sees a 224 px ImageNet-C file resized
    for name in NAMES:
        files = ImageListDataset(index_image_folder(str(tmp_path / name / "5"), 2).samples, fit)
        fly = ImageListDataset(samples, _CorruptedView(set_crop(), name, 5, SEED, keys, 85, fit))
        assert len(files) == len(fly) == 4
        for i in range(len(files)):
            assert files[i][0].shape == (3, 32, 32)
            assert torch.equal(files[i][0], fly[i][0]) and files[i][1] == fly[i][1], (name, i)


@pytest.mark.slow
def test_imagenet_c_folder_and_on_the_fly_give_the_same_errors(data: Path, models, tmp_path: Path) -> None:
    model, _ = models
    write_imagenet_c(data, tmp_path / "imagenet-c", (1, 5))
    common = dict(corruptions=",".join(NAMES), severities="1,5", seed=SEED, corruption_set="imagenet-c", **FAST)
    from_files = robustness(model, str(data), imagenet_c=str(tmp_path / "imagenet-c"), **common)
    on_the_fly = robustness(model, str(data), **common)
    assert on_the_fly["geometry"] == from_files["geometry"] == "imagenet-c"
    assert from_files["error"] == on_the_fly["error"] and from_files["clean_error"] == on_the_fly["clean_error"]


def test_cifar_c_npy_files_and_on_the_fly_see_the_same_images(data: Path, models, tmp_path: Path) -> None:
    """make_cifar_c.py stores the corrupted uint8 arrays in .npy files, with no JPEG round trip: on the fly, the
    cifar-c set makes none either (ImageNet-C's files were JPEGs of quality 85; CIFAR-10-C's are not)."""
    samples = index_image_folder(str(data), 2).samples
    keys, cifar_c = list(range(len(samples))), CORRUPTION_SETS["cifar-c"]
    for name in NAMES:
        views = [_CorruptedView(set_crop(cifar_c), name, s, SEED, keys, 0, None, "cifar-c") for s in range(1, 6)]
        images = [Image.open(path).convert("RGB") for path, _ in samples]
        arrays = [np.asarray(view(img, i)) for view in views for i, img in enumerate(images)]
        np.save(tmp_path / f"{name}.npy", np.stack(arrays))
    np.save(tmp_path / "labels.npy", np.tile(np.array([t for _, t in samples], np.uint8), 5))
    files = NpyCorruptionFolder(tmp_path, 2)
    for name in NAMES:
        for sev in (1, 5):
            fly = _CorruptedView(set_crop(cifar_c), name, sev, SEED, keys, cifar_c.jpeg_quality, None, "cifar-c")
            on_the_fly = ImageListDataset(samples, fly)
            from_file = files.dataset(name, sev, None, lambda img, i: img)
            assert all(torch.equal(on_the_fly[i][0], from_file[i][0]) for i in range(len(samples))), (name, sev)
    model, _ = models
    common = dict(corruptions="contrast", severities="1", **FAST)
    assert robustness(model, str(data), **common)["jpeg_quality"] == cifar_c.jpeg_quality == 0  # the set's default
    assert robustness(model, str(data), corruption_set="imagenet-c", **common)["jpeg_quality"] == 85


@pytest.mark.slow
def test_on_two_processes_each_scores_its_share_and_the_result_is_one_process_s(data: Path, models, tmp_path) -> None:
    """`accelerate launch` with two ranks (gloo on CPU): three images split 2 + 1, each corrupted as in one process
    (its key is its index in the whole), counts summed, one report; the single-process launcher is refused."""
    model, _ = models
    flags = dict(corruptions="gaussian_noise,fog", severities="1,5", limit=3, img_size=32, workers=0, batch_size=2)
    one = json.loads(json.dumps(robustness(model, str(data), **flags)))
    out = tmp_path / "two.json"
    args = ["-m", "timm_assemble", "robustness", "--model", model, "--data-dir", str(data), "--json", str(out)]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
    text = finish(args, tmp_path / "two.log", TWO_PROCESSES, ACCELERATE_USE_CPU="1")
    two = json.loads(out.read_text())
    assert two["num_images"] == one["num_images"] == {n: {"1": 3, "5": 3} for n in ("gaussian_noise", "fog")}
    assert two["error"] == one["error"] and two["clean_error"] == one["clean_error"]
    assert text.count(f"wrote {out}") == 1 and text.count("corruption set cifar-c (CIFAR-10-C") == 1, text[-3000:]
    out.unlink()
    text = finish(args, tmp_path / "cpu.log", ["--cpu", "--num_processes", "2"], rc=2)
    assert "the launch asked for 2 processes" in text and f"run: {CPU_FIX}" in text, text[-3000:]
    assert not out.exists()


def test_relative_corruption_errors() -> None:
    errors = {"fog": {s: 0.5 for s in range(1, 6)}}
    rel = relative_corruption_errors(errors, 0.2, ALEXNET)
    assert rel["fog"] == pytest.approx((0.5 - 0.2) / (ALEXNET.errors["fog"][1] - ALEXNET.clean_error))
    assert relative_corruption_errors(errors, None, ALEXNET) == {"fog": None}
    assert relative_corruption_errors(errors, 0.2, None) == {"fog": None}
    assert relative_corruption_errors({"fog": {3: 0.5}}, 0.2, ALEXNET) == {"fog": None}  # means only: all five
    rel = relative_corruption_errors({"fog": {3: 0.5}}, 0.2, ROBUSTBENCH_STANDARD)
    assert rel["fog"] == pytest.approx(0.3 / (0.0771 - (1 - 0.9478)))
    base = ReferenceErrors("baseline", "b", {"fog": {s: 0.4 for s in range(1, 6)}}, 0.1, "")
    assert relative_corruption_errors(errors, 0.2, base)["fog"] == pytest.approx(0.3 / 0.3)
    base = ReferenceErrors("baseline", "b", {"fog": {s: 0.4 for s in range(1, 6)}}, 0.4, "")
    assert relative_corruption_errors(errors, 0.2, base)["fog"] is None  # the baseline adds no error


def test_the_images_size_is_probed_from_headers_and_broken_files_are_skipped(tmp_path: Path) -> None:
    for i, size in enumerate(((40, 32), (64, 64), (32, 48))):
        Image.new("RGB", size).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"not an image")
    assert images_shorter_side([str(p) for p in sorted(tmp_path.iterdir())]) == 32  # median of 32, 64, 32
    with pytest.raises(TimmAssembleError, match="none of the images probed for their size could be opened"):
        images_shorter_side([str(tmp_path / "3.png")])
