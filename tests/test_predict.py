"""`timm-assemble predict`: top-k labels from an exported folder, with the folder's own preprocessing."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

import timm_assemble  # noqa: F401
from timm_assemble.cli import main as cli_main
from timm_assemble.data.synthetic import class_names, make_synthetic_image_folder
from timm_assemble.errors import TimmAssembleError
from timm_assemble.predict import load_model, predict
from timm_assemble.weights.hub_folder import export_hub_folder

LABELS = ["cat", "dog", "fish"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = timm.create_model("assemble_resnet50", width=8, num_classes=3).eval()
    folder = tmp_path_factory.mktemp("export") / "model"
    # an unusual data config (trained at 32, evaluated at 40 px, crop 0.8): predict must use the eval one
    cfg = dict(
        input_size=(3, 32, 32),
        test_input_size=(3, 40, 40),
        crop_pct=0.8,
        test_crop_pct=0.8,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )
    export_hub_folder(model, folder, model_args=dict(width=8), label_names=LABELS, pretrained_cfg=cfg)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = make_synthetic_image_folder(
        tmp_path_factory.mktemp("img") / "d", num_classes=2, images_per_class=2, image_size=48, splits=()
    )
    return sorted(root.rglob("*.png"))


@pytest.mark.slow
def test_predictions_match_the_model_with_its_own_data_config(exported, images):
    model = load_model(f"local-dir:{exported}")
    eval_cfg = resolve_data_config(model=model, use_test_size=True)
    assert tuple(eval_cfg["input_size"]) == (3, 40, 40) and eval_cfg["crop_pct"] == 0.8  # a list before timm 1.0.31
    assert tuple(eval_cfg["std"]) == (0.25,) * 3
    results = predict(model, images, top_k=5)
    assert [r["image"] for r in results] == [str(p) for p in images]
    transform = create_transform(**eval_cfg, is_training=False)
    with torch.inference_mode():
        probs = model(torch.stack([transform(Image.open(p).convert("RGB")) for p in images])).softmax(-1)
    for res, p in zip(results, probs, strict=True):
        preds = res["predictions"]
        assert len(preds) == 3  # top-5 of a 3-class model
        assert [x["label"] for x in preds] == [LABELS[x["index"]] for x in preds]
        assert [x["probability"] for x in preds] == sorted((x["probability"] for x in preds), reverse=True)
        for x in preds:
            assert x["probability"] == pytest.approx(float(p[x["index"]]), abs=1e-5)


@pytest.mark.slow
def test_cli_text_and_json(exported, images, capsys):
    assert cli_main(["predict", "--model", f"local-dir:{exported}", str(images[0]), "--top-k", "2"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == str(images[0]) and len(text) == 3 and text[1].strip().endswith(tuple(LABELS))
    assert cli_main(["predict", "--model", f"local-dir:{exported}", *map(str, images), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == len(images) and {p["label"] for p in data[0]["predictions"]} == set(LABELS)


def test_bad_inputs_give_one_clear_error(exported, images, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert cli_main(["predict", "--model", f"local-dir:{exported}", str(images[0]), str(broken)]) == 2
    err = capsys.readouterr().err
    assert "cannot decode image" in err and "broken.jpg" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(TimmAssembleError, match="does not exist"):
        predict(load_model(f"local-dir:{exported}"), [tmp_path / "missing.png"])
    with pytest.raises(TimmAssembleError, match="no config.json"):
        load_model(f"local-dir:{tmp_path}")
    with pytest.raises(TimmAssembleError, match="unknown model 'no_such_model_xyz'"):
        load_model("no_such_model_xyz")


def test_label_names_of_synthetic_classes_survive_export(tmp_path):
    names = class_names(4)
    model = timm.create_model("assemble_resnet50", width=8, num_classes=4)
    export_hub_folder(model, tmp_path / "m", model_args=dict(width=8), label_names=names)
    assert load_model(f"local-dir:{tmp_path / 'm'}").pretrained_cfg["label_names"] == names
