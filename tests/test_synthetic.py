"""The synthetic ImageFolder: deterministic, timm-readable, and with a signal a classifier can use."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from timm_assemble.data.synthetic import class_names, make_synthetic_image_folder
from timm_assemble.errors import TimmAssembleError


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_determinism_and_reuse(tmp_path):
    a = make_synthetic_image_folder(
        tmp_path / "a", num_classes=4, images_per_class={"train": 3, "val": 2}, image_size=32, seed=1
    )
    b = make_synthetic_image_folder(
        tmp_path / "b", num_classes=4, images_per_class={"train": 3, "val": 2}, image_size=32, seed=1
    )
    c = make_synthetic_image_folder(
        tmp_path / "c", num_classes=4, images_per_class={"train": 3, "val": 2}, image_size=32, seed=2
    )
    names = class_names(4)
    assert sorted(p.name for p in (a / "train").iterdir()) == names
    assert len(list((a / "val").rglob("*.png"))) == 4 * 2
    assert len(list((a / "train").rglob("*.png"))) == 4 * 3
    assert Image.open(next((a / "val").rglob("*.png"))).size == (32, 32)
    assert _digest(a) == _digest(b) != _digest(c)
    # same arguments: reused untouched; other arguments on a used folder: refused
    mtime = (a / "train" / names[0] / "00000.png").stat().st_mtime_ns
    make_synthetic_image_folder(
        a, num_classes=4, images_per_class={"train": 3, "val": 2}, image_size=32, seed=1
    )
    assert (a / "train" / names[0] / "00000.png").stat().st_mtime_ns == mtime
    with pytest.raises(TimmAssembleError, match="not an identical synthetic dataset"):
        make_synthetic_image_folder(a, num_classes=5, images_per_class=3, image_size=32, seed=1)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_single_folder_and_bad_args(tmp_path):
    root = make_synthetic_image_folder(
        tmp_path / "flat", num_classes=3, images_per_class=2, image_size=24, splits=()
    )
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == class_names(3)
    with pytest.raises(TimmAssembleError, match="num_classes"):
        make_synthetic_image_folder(tmp_path / "x", num_classes=1000)
    with pytest.raises(TimmAssembleError, match="image_size"):
        make_synthetic_image_folder(tmp_path / "x", image_size=8)


def test_timm_reads_it_and_classes_are_separable(tmp_path):
    """timm's create_dataset reads the folder; a nearest-centroid rule on colour histograms beats chance
    clearly, while position/scale vary (so the signal is real but not a constant image)."""
    from timm.data import create_dataset

    root = make_synthetic_image_folder(
        tmp_path / "d", num_classes=6, images_per_class={"train": 12, "val": 6}, image_size=32, seed=0
    )
    ds = create_dataset("", root=str(root), split="train")
    assert len(ds) == 72 and ds.reader.class_to_idx == {n: i for i, n in enumerate(class_names(6))}

    def feats(split):
        d = create_dataset("", root=str(root), split=split)
        xs, ys = [], []
        for img, y in d:
            hsv = np.asarray(img.convert("HSV"), dtype=np.float32).reshape(-1, 3)
            hist = np.histogram(hsv[:, 0], bins=24, range=(0, 256), weights=hsv[:, 1])[0]
            xs.append(hist / hist.sum())
            ys.append(y)
        return np.stack(xs), np.array(ys)

    xt, yt = feats("train")
    xv, yv = feats("validation")
    cent = np.stack([xt[yt == k].mean(0) for k in range(6)])
    pred = np.argmin(((xv[:, None] - cent[None]) ** 2).sum(-1), axis=1)
    assert (pred == yv).mean() > 0.6  # chance is 1/6
    # not constant: images of one class differ
    imgs = [np.asarray(Image.open(p)) for p in sorted((root / "train" / class_names(6)[0]).glob("*.png"))[:2]]
    assert np.abs(imgs[0].astype(int) - imgs[1]).mean() > 10
