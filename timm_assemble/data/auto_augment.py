"""The official Assemble-ResNet AutoAugment policies, built from timm's AutoAugment ops.

The official code (clovaai/assembled-cnn `preprocessing/autoaugment.py`, a copy of the TF TPU EfficientNet
AutoAugment) names two policies that its scripts use: `imagenet` for ImageNet training
(`scripts/train_assemble_from_scratch.sh:16`; the policy list, lines 70-106, is the AutoAugment paper's
ImageNet policy, the same sub-policies as timm's `original`) and `good` for transfer
(`scripts/finetuning_assemble_on_food101.sh:21`; the CIFAR-10 policies, lines 148-267). timm's `original`
differs where it matters: its `PosterizeOriginal` keeps 4 + level * 4 / 10 bits (6-7 at the policy's levels)
where the official keeps int(level * 4 / 10) bits (2-3, line 748), which is timm's `Posterize`. Here the
policies use timm's ops with the official level mappings and settings (lines 836, 899-901): fill 128 for
rotate/shear/translate, translate 250 px at level 10, nearest-neighbour resampling (`tf.contrib.image`'s
default), and the official Cutout (timm has none) for the three `good` sub-policies that use it.

Known remaining differences (TF ops vs PIL): the official `Contrast` blends towards a constant grey of
min(255, pixels / 256) (a TF quirk, not the image mean) and blends truncate instead of round.
"""

import random

from PIL import Image, ImageDraw
from timm.data import create_transform
from timm.data.auto_augment import AugmentOp, AutoAugment
from torchvision import transforms

# preprocessing/autoaugment.py:70-106, exactly; (op, probability, level) with levels 0..10
IMAGENET_POLICY = [
    [("Posterize", 0.4, 8), ("Rotate", 0.6, 9)],
    [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
    [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)],
    [("Posterize", 0.6, 7), ("Posterize", 0.6, 6)],
    [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)],
    [("Equalize", 0.4, 4), ("Rotate", 0.8, 8)],
    [("Solarize", 0.6, 3), ("Equalize", 0.6, 7)],
    [("Posterize", 0.8, 5), ("Equalize", 1.0, 2)],
    [("Rotate", 0.2, 3), ("Solarize", 0.6, 8)],
    [("Equalize", 0.6, 8), ("Posterize", 0.4, 6)],
    [("Rotate", 0.8, 8), ("Color", 0.4, 0)],
    [("Rotate", 0.4, 9), ("Equalize", 0.6, 2)],
    [("Equalize", 0.0, 7), ("Equalize", 0.8, 8)],
    [("Invert", 0.6, 4), ("Equalize", 1.0, 8)],
    [("Color", 0.6, 4), ("Contrast", 1.0, 8)],
    [("Rotate", 0.8, 8), ("Color", 1.0, 2)],
    [("Color", 0.8, 8), ("Solarize", 0.8, 7)],
    [("Sharpness", 0.4, 7), ("Invert", 0.6, 8)],
    [("ShearX", 0.6, 5), ("Equalize", 1.0, 9)],
    [("Color", 0.4, 0), ("Equalize", 0.6, 3)],
    [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)],
    [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
    [("Invert", 0.6, 4), ("Equalize", 1.0, 8)],
    [("Color", 0.6, 4), ("Contrast", 1.0, 8)],
    [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)],
]

# preprocessing/autoaugment.py:148-267 (`good_policies`, found on CIFAR-10), exactly
GOOD_POLICY = [
    [("Invert", 0.1, 7), ("Contrast", 0.2, 6)],
    [("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)],
    [("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)],
    [("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)],
    [("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)],
    [("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)],
    [("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)],
    [("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)],
    [("Equalize", 0.8, 8), ("Invert", 0.1, 3)],
    [("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)],
    [("Solarize", 0.4, 5), ("AutoContrast", 0.0, 2)],
    [("TranslateY", 0.7, 9), ("TranslateY", 0.7, 9)],
    [("AutoContrast", 0.9, 0), ("Solarize", 0.4, 3)],
    [("Equalize", 0.7, 5), ("Invert", 0.1, 3)],
    [("TranslateY", 0.7, 9), ("TranslateY", 0.7, 9)],
    [("Solarize", 0.4, 5), ("AutoContrast", 0.9, 1)],
    [("TranslateY", 0.8, 9), ("TranslateY", 0.9, 9)],
    [("AutoContrast", 0.8, 0), ("TranslateY", 0.7, 9)],
    [("TranslateY", 0.2, 7), ("Color", 0.9, 6)],
    [("Equalize", 0.7, 6), ("Color", 0.4, 9)],
    [("ShearY", 0.2, 7), ("Posterize", 0.3, 7)],
    [("Color", 0.4, 3), ("Brightness", 0.6, 7)],
    [("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)],
    [("Equalize", 0.6, 5), ("Equalize", 0.5, 1)],
    [("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)],
    [("Brightness", 0.3, 7), ("AutoContrast", 0.5, 8)],
    [("AutoContrast", 0.9, 4), ("AutoContrast", 0.5, 6)],
    [("Solarize", 0.3, 5), ("Equalize", 0.6, 5)],
    [("TranslateY", 0.2, 4), ("Sharpness", 0.3, 3)],
    [("Brightness", 0.0, 8), ("Color", 0.8, 8)],
    [("Solarize", 0.2, 6), ("Color", 0.8, 6)],
    [("Solarize", 0.2, 6), ("AutoContrast", 0.8, 1)],
    [("Solarize", 0.4, 1), ("Equalize", 0.6, 5)],
    [("Brightness", 0.0, 0), ("Solarize", 0.5, 2)],
    [("AutoContrast", 0.9, 5), ("Brightness", 0.5, 3)],
    [("Contrast", 0.7, 5), ("Brightness", 0.0, 2)],
    [("Solarize", 0.2, 8), ("Solarize", 0.1, 5)],
    [("Contrast", 0.5, 1), ("TranslateY", 0.2, 9)],
    [("AutoContrast", 0.6, 5), ("TranslateY", 0.0, 9)],
    [("AutoContrast", 0.9, 4), ("Equalize", 0.8, 4)],
    [("Brightness", 0.0, 7), ("Equalize", 0.4, 7)],
    [("Solarize", 0.2, 5), ("Equalize", 0.7, 5)],
    [("Equalize", 0.6, 8), ("Color", 0.6, 2)],
    [("Color", 0.3, 7), ("Color", 0.2, 4)],
    [("AutoContrast", 0.5, 2), ("Solarize", 0.7, 2)],
    [("AutoContrast", 0.2, 0), ("Equalize", 0.1, 0)],
    [("ShearY", 0.6, 5), ("Equalize", 0.6, 5)],
    [("Brightness", 0.9, 3), ("AutoContrast", 0.4, 1)],
    [("Equalize", 0.8, 8), ("Equalize", 0.7, 7)],
    [("Equalize", 0.7, 7), ("Solarize", 0.5, 0)],
    [("Equalize", 0.8, 4), ("TranslateY", 0.8, 9)],
    [("TranslateY", 0.8, 9), ("TranslateY", 0.6, 9)],
    [("TranslateY", 0.9, 0), ("TranslateY", 0.5, 9)],
    [("AutoContrast", 0.5, 3), ("Solarize", 0.3, 4)],
    [("Solarize", 0.5, 3), ("Equalize", 0.4, 4)],
    [("Color", 0.7, 7), ("TranslateX", 0.5, 8)],
    [("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)],
    [("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)],
    [("Brightness", 0.9, 6), ("Color", 0.2, 8)],
    [("Solarize", 0.5, 2), ("Invert", 0.0, 3)],
    [("AutoContrast", 0.1, 5), ("Brightness", 0.0, 0)],
    [("Cutout", 0.2, 4), ("Equalize", 0.1, 1)],
    [("Equalize", 0.7, 7), ("AutoContrast", 0.6, 4)],
    [("Color", 0.1, 8), ("ShearY", 0.2, 3)],
    [("ShearY", 0.4, 2), ("Rotate", 0.7, 0)],
    [("ShearY", 0.1, 3), ("AutoContrast", 0.9, 5)],
    [("TranslateY", 0.3, 6), ("Cutout", 0.3, 3)],
    [("Equalize", 0.5, 0), ("Solarize", 0.6, 6)],
    [("AutoContrast", 0.3, 5), ("Rotate", 0.2, 7)],
    [("Equalize", 0.8, 2), ("Invert", 0.4, 0)],
    [("Equalize", 0.9, 5), ("Color", 0.7, 0)],
    [("Equalize", 0.1, 1), ("ShearY", 0.1, 3)],
    [("AutoContrast", 0.7, 3), ("Equalize", 0.7, 0)],
    [("Brightness", 0.5, 1), ("Contrast", 0.1, 7)],
    [("Contrast", 0.1, 4), ("Solarize", 0.6, 5)],
    [("Solarize", 0.2, 3), ("ShearX", 0.0, 0)],
    [("TranslateX", 0.3, 0), ("TranslateX", 0.6, 0)],
    [("Equalize", 0.5, 9), ("TranslateY", 0.6, 7)],
    [("ShearX", 0.1, 0), ("Sharpness", 0.5, 1)],
    [("Equalize", 0.8, 6), ("Invert", 0.3, 6)],
    [("AutoContrast", 0.3, 9), ("Cutout", 0.5, 3)],
    [("ShearX", 0.4, 4), ("AutoContrast", 0.9, 2)],
    [("ShearX", 0.0, 3), ("Posterize", 0.0, 3)],
    [("Solarize", 0.4, 3), ("Color", 0.2, 4)],
    [("Equalize", 0.1, 4), ("Equalize", 0.7, 6)],
    [("Equalize", 0.3, 8), ("AutoContrast", 0.4, 3)],
    [("Solarize", 0.6, 4), ("AutoContrast", 0.7, 6)],
    [("AutoContrast", 0.2, 9), ("Brightness", 0.4, 8)],
    [("Equalize", 0.1, 0), ("Equalize", 0.0, 6)],
    [("Equalize", 0.8, 4), ("Equalize", 0.0, 4)],
    [("Equalize", 0.5, 5), ("AutoContrast", 0.1, 2)],
    [("Solarize", 0.5, 5), ("AutoContrast", 0.9, 5)],
    [("AutoContrast", 0.6, 1), ("AutoContrast", 0.7, 8)],
    [("Equalize", 0.2, 0), ("AutoContrast", 0.1, 2)],
    [("Equalize", 0.6, 9), ("Equalize", 0.4, 4)],
]

POLICIES = {"clova-imagenet": IMAGENET_POLICY, "clova-good": GOOD_POLICY}

# preprocessing/autoaugment.py:836 (replace 128) and 899-901 (cutout_const 100, translate_const 250);
# tf.contrib.image.rotate/translate/transform resample with nearest neighbours by default.
OFFICIAL_HPARAMS = dict(translate_const=250, cutout_const=100, img_mean=(128, 128, 128), interpolation=Image.NEAREST)


def _cutout(img: Image.Image, pad_size: int, fillcolor=(128, 128, 128), **__) -> Image.Image:
    """Official cutout (autoaugment.py:359-407): a (2 * pad_size)^2 square clipped at the borders, centred on a
    uniformly drawn pixel, filled with the replace value."""
    width, height = img.size
    cy, cx = random.randrange(height), random.randrange(width)
    img = img.copy()
    box = (max(0, cx - pad_size), max(0, cy - pad_size), min(width, cx + pad_size), min(height, cy + pad_size))
    if box[2] > box[0] and box[3] > box[1]:
        ImageDraw.Draw(img).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=tuple(fillcolor))
    return img


class CutoutOp(AugmentOp):
    """timm's AugmentOp with the official Cutout op: pad size int(level / 10 * cutout_const)."""

    def __init__(self, prob: float, magnitude: float, hparams: dict) -> None:
        super().__init__("Invert", prob, magnitude, hparams)  # any op: both functions are replaced below
        self.name = "Cutout"
        self.aug_fn = _cutout
        self.level_fn = lambda level, hp: (int(level / 10 * hp["cutout_const"]),)


def is_official_policy(name: str | None) -> bool:
    return name in POLICIES


def official_auto_augment(name: str, hparams: dict | None = None) -> AutoAugment:
    """timm `AutoAugment` running the official policy `name` ('clova-imagenet' or 'clova-good')."""
    if name not in POLICIES:
        raise ValueError(f"unknown official AutoAugment policy {name!r}; available: {', '.join(POLICIES)}")
    hparams = {**OFFICIAL_HPARAMS, **(hparams or {})}
    return AutoAugment([
        [CutoutOp(p, m, hparams) if op == "Cutout" else AugmentOp(op, p, m, hparams) for op, p, m in sub_policy]
        for sub_policy in POLICIES[name]
    ])


def create_train_transform(auto_augment: str | None = None, **kwargs):
    """timm's training transform; an official policy name puts that policy where timm puts its AutoAugment
    (after crop and flip, before tensor conversion; colour jitter off, as timm does with AutoAugment)."""
    if not is_official_policy(auto_augment):
        return create_transform(is_training=True, auto_augment=auto_augment, **kwargs)
    primary, _, final = create_transform(is_training=True, auto_augment=None, separate=True, **kwargs)
    return transforms.Compose([primary, official_auto_augment(auto_augment), final])
