"""The paper's recipe as the official code runs it: mixup/KD step, AutoAugment policy, DropBlock schedule, BatchNorm,
ResNet-D shortcut, initialisation, transfer (fgvc) and precomputed teacher logits."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from training_helpers import TINY, one_thread, reset_accelerate, tiny_config, tiny_data

import timm_assemble  # noqa: F401
from timm_assemble.cli import main as cli_main
from timm_assemble.data.auto_augment import create_train_transform, official_auto_augment
from timm_assemble.errors import TimmAssembleError
from timm_assemble.layers import ResNetDShortcutPool, drop_block_keep_prob
from timm_assemble.training import engine
from timm_assemble.training.config import resolve_config
from timm_assemble.training.losses import BatchRecipe, RecipeLoss
from timm_assemble.training.teacher import teacher_transform


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data") / "shapes")


@pytest.fixture(autouse=True)
def fresh_accelerate():
    reset_accelerate()
    with one_thread():
        yield
    reset_accelerate()


# ---------------------------------------------------------------------------------------------- mixup + KD


@pytest.mark.parametrize("live_teacher", [False, True])
def test_mixup_kd_step_is_the_official_formula(live_teacher, monkeypatch):
    """2N -> N with lambda per sample, image i paired with image N + i, labels smoothed after mixing, teacher
    probabilities softmax(t / T) mixed with the same lambda, loss CE + w T^2 CE(logits / T, teacher)."""
    torch.manual_seed(0)
    num_classes, smoothing, temperature, weight = 3, 0.1, 2.0, 0.5
    images = torch.randn(4, 3, 2, 2)
    labels = torch.tensor([0, 2, 1, 0])
    lam = torch.tensor([0.3, 0.8])
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(12, num_classes))
    teacher_logits = teacher(images).detach()
    student_logits = torch.randn(2, num_classes)

    # the official step (utils/data_util.py:97-129, losses/cls_losses.py, run_loop_classification.py:90-160), by hand
    lam_x = lam.view(2, 1, 1, 1)
    want_images = lam_x * images[:2] + (1 - lam_x) * images[2:]
    onehot = torch.eye(num_classes)[labels]
    mixed = lam[:, None] * onehot[:2] + (1 - lam[:, None]) * onehot[2:]
    smoothed = mixed * (1 - smoothing) + smoothing / num_classes
    probs = torch.softmax(teacher_logits / temperature, 1)
    mixed_probs = lam[:, None] * probs[:2] + (1 - lam[:, None]) * probs[2:]
    ce = -(smoothed * torch.log_softmax(student_logits, 1)).sum(1).mean()
    kd = -(mixed_probs * torch.log_softmax(student_logits / temperature, 1)).sum(1).mean()
    want_loss = ce + weight * temperature**2 * kd

    recipe = BatchRecipe(num_classes, smoothing, mixup_alpha=0.2, distilling=True, teacher=teacher,
                         kd_temperature=temperature)
    monkeypatch.setattr(recipe, "sample_lambda", lambda n, device: lam[:n])
    teacher_input = images if live_teacher else teacher_logits
    got_images, targets = recipe((images, teacher_input), labels)
    loss = RecipeLoss(num_classes, kd_weight=weight, kd_temperature=temperature)(student_logits, targets)
    torch.testing.assert_close(got_images, want_images)
    torch.testing.assert_close(targets, torch.cat([smoothed, mixed_probs], 1))
    torch.testing.assert_close(loss, want_loss)
    assert recipe.images_per_sample == 2


def test_lambda_is_drawn_per_sample_from_beta():
    torch.manual_seed(0)
    lam = BatchRecipe(10, mixup_alpha=0.2).sample_lambda(4000, torch.device("cpu"))
    assert lam.shape == (4000,) and len(set(lam.tolist())) > 3500 and 0 <= lam.min() and lam.max() <= 1
    assert float(lam.mean()) == pytest.approx(0.5, abs=0.03)  # Beta(0.2, 0.2): symmetric, U-shaped
    assert float(((lam > 0.1) & (lam < 0.9)).float().mean()) < 0.4


def test_without_mixup_targets_are_smoothed_labels():
    images, labels = torch.randn(3, 3, 4, 4), torch.tensor([2, 0, 1])
    out, targets = BatchRecipe(4, label_smoothing=0.2)(images, labels)
    assert out is images
    torch.testing.assert_close(targets, torch.eye(4)[labels] * 0.8 + 0.05)


# ---------------------------------------------------------------------------------------------- AutoAugment


def _gradient_image(size: int = 32) -> Image.Image:
    values = np.arange(size * size * 3) % 256
    return Image.fromarray(values.reshape(size, size, 3).astype(np.uint8))


def test_official_posterize_keeps_two_or_three_bits():
    """preprocessing/autoaugment.py:748: bits = int(level / 10 * 4); timm's 'original' keeps 4 more."""
    img = _gradient_image()
    ops = [op for sub in official_auto_augment("clova-imagenet").policy for op in sub if op.name == "Posterize"]
    assert sorted({op.magnitude for op in ops}) == [5, 6, 7, 8]
    for op in ops:
        op.prob = 1.0
        kept = int(np.log2(len(np.unique(np.asarray(op(img))))))
        assert kept == int(op.magnitude / 10 * 4) and kept in (2, 3)
    timm_ops = [op for sub in timm.data.auto_augment.auto_augment_policy("original") for op in sub]
    timm_bits = {op.magnitude: op.level_fn(op.magnitude, op.hparams)[0] for op in timm_ops if "Posterize" in op.name}
    assert min(timm_bits.values()) >= 6


def test_official_fill_interpolation_and_cutout():
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    rotate = next(op for sub in official_auto_augment("clova-imagenet").policy for op in sub if op.name == "Rotate")
    rotate.prob = 1.0
    out = np.asarray(rotate(white))
    assert tuple(out[0, 0]) == (128, 128, 128) and set(np.unique(out)) <= {128, 255}  # fill 128, nearest
    cutout = next(op for sub in official_auto_augment("clova-good").policy for op in sub if op.name == "Cutout")
    cutout.prob = 1.0
    out = np.asarray(cutout(white))  # level 3 or 4: a 60-80 px square on a 32 px image
    assert (out == 128).all(axis=-1).sum() > 0 and set(np.unique(out)) <= {128, 255}
    with pytest.raises(ValueError, match="unknown official AutoAugment"):
        official_auto_augment("imagenet")


def test_train_transform_puts_the_policy_where_timm_puts_autoaugment():
    tf = create_train_transform(auto_augment="clova-good", input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    names = [type(t).__name__ for t in tf.transforms]
    assert names == ["Compose", "AutoAugment", "Compose"]
    assert tf(_gradient_image(48)).shape == (3, 32, 32)


# ---------------------------------------------------------------------------------------------- DropBlock


def test_drop_block_schedule_from_any_start_to_any_end():
    assert [drop_block_keep_prob(s, 4, 0.9, 0.7) for s in range(6)] == pytest.approx([0.9, 0.85, 0.8, 0.75, 0.7, 0.7])
    cfg = resolve_config("train", dict(drop_block_rate=0.1))
    assert cfg.drop_block_keep_probs == (1.0, 0.9)  # the old setting still means 1.0 -> 1 - rate
    with pytest.raises(TimmAssembleError, match="set one of them"):
        resolve_config("train", dict(drop_block_rate=0.1, drop_block_end=0.8))


# ---------------------------------------------------------------------------------------------- model


def test_batch_norm_defaults_are_timms_and_configurable():
    """PyTorch's / timm's momentum 0.1 (the official 0.003 is a recipe value, in the presets); eps 1e-5 as official."""
    model = timm.create_model("assemble_resnet50", width=8)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert any(isinstance(m, nn.BatchNorm1d) for m in norms)  # the SK attention's BN follows too
    assert {(m.momentum, m.eps) for m in norms} == {(0.1, 1e-5)}
    model = timm.create_model("assemble_r50d", width=8, bn_momentum=0.034, bn_eps=1e-3)
    assert {(m.momentum, m.eps) for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {(0.034, 1e-3)}


def test_resnet_d_shortcut_pool_is_tf_padded():
    """nets/resnet_model.py:123-128: stride 1 'SAME' (padding after, not counted), stride 2 zero-pad after + VALID."""
    x = torch.randn(1, 2, 5, 5)
    padded = F.pad(x, (0, 1, 0, 1))
    counts = F.pad(torch.ones(1, 1, 5, 5), (0, 1, 0, 1))
    same = F.avg_pool2d(padded, 2, 1) * 4 / (F.avg_pool2d(counts, 2, 1) * 4)
    torch.testing.assert_close(ResNetDShortcutPool(1)(x), same)
    torch.testing.assert_close(ResNetDShortcutPool(2)(x), F.avg_pool2d(padded, 2, 2))
    assert float(ResNetDShortcutPool(2)(x)[0, 0, -1, -1]) == pytest.approx(float(x[0, 0, 4, 4]) / 4)
    model = timm.create_model("assemble_r50d", width=8)
    assert isinstance(model.layer1[0].downsample[0][0], nn.ReplicationPad2d)  # stage 1's stride-1 pool exists
    assert isinstance(model.layer2[0].downsample[0][0], nn.ZeroPad2d)


@pytest.mark.slow
def test_official_initialisation():
    model = timm.create_model("assemble_resnet50")
    weight = model.layer4[0].conv1.weight.detach()  # 512 x 1024 x 1 x 1: fan-in 1024
    std = (1 / 1024) ** 0.5
    assert float(weight.std()) == pytest.approx(std, rel=0.02)
    assert float(weight.abs().max()) <= 2 * std / 0.87962566103423978 + 1e-6
    assert not model.fc.bias.any() and float(model.fc.weight.detach().abs().max()) <= (6 / (2048 + 1000)) ** 0.5


# ---------------------------------------------------------------------------------------------- fine-tuning


@pytest.mark.slow
def test_fgvc_preset_starts_batch_norm_statistics_fresh(data, tmp_path, monkeypatch):
    source = timm.create_model("assemble_resnet50", width=8, num_classes=4)
    for module in source.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.fill_(5.0)
            module.running_var.fill_(7.0)
    save_file(source.state_dict(), str(tmp_path / "start.safetensors"))
    seen = {}
    real_build_task = engine.build_task

    def spy_task(student, cfg, num_classes, device):
        seen["state"] = {k: v.clone() for k, v in student.state_dict().items()}
        return real_build_task(student, cfg, num_classes, device)

    monkeypatch.setattr(engine, "build_task", spy_task)
    values = {k: v for k, v in TINY.items() if k not in ("bn_momentum", "lr", "weight_decay")}
    values.update(data_dir=str(data), output_dir=str(tmp_path / "ft"), pretrained=str(tmp_path / "start.safetensors"))
    values.update(epochs=1, warmup_epochs=0, aa=None)
    cfg = resolve_config("finetune", values, preset="fgvc")
    assert (cfg.reset_bn_stats, cfg.bn_momentum, cfg.drop_block_keep_probs, cfg.weight_decay) == (
        True,
        0.034,
        (0.9, 0.7),
        1e-3,
    )
    engine.run(cfg, command="pytest")
    state = seen["state"]
    torch.testing.assert_close(state["layer4.0.conv1.weight"], source.state_dict()["layer4.0.conv1.weight"])
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    variances = [v for k, v in state.items() if k.endswith("running_var")]
    assert means and all(not m.any() for m in means) and all((v == 1).all() for v in variances)


# ---------------------------------------------------------------------------------------------- teacher logits


@pytest.mark.slow
def test_teacher_logits_are_precomputed_and_read_back(data, tmp_path, monkeypatch):
    teacher = timm.create_model("test_resnet", num_classes=4).eval()
    save_file(teacher.state_dict(), str(tmp_path / "teacher.safetensors"))
    out = tmp_path / "logits.safetensors"
    args = ["teacher-logits", str(out), "--teacher", "test_resnet", "--teacher-weights"]
    args += [str(tmp_path / "teacher.safetensors"), "--data-dir", str(data), "--workers", "0", "--device", "cpu"]
    assert cli_main(args) == 0
    logits = load_file(str(out))["logits"]
    images = [img for img, _ in timm.data.ImageDataset(str(data / "train"))]
    with torch.no_grad():
        want = teacher(torch.stack([teacher_transform(teacher)(img) for img in images[:5]]))
    torch.testing.assert_close(logits[:5], want, rtol=1e-4, atol=1e-4)
    assert cli_main(args) == 2  # an existing file is kept unless --overwrite

    seen = []
    real_probs = BatchRecipe.teacher_probs

    def spy_probs(self, teacher_input):
        seen.append(teacher_input.clone())
        return real_probs(self, teacher_input)

    monkeypatch.setattr(BatchRecipe, "teacher_probs", spy_probs)
    result = engine.run(tiny_config(data, tmp_path / "kd", epochs=1, mixup=0.2, mixup_mode="pair",
                                    teacher_logits=str(out)), command="pytest")
    assert result.steps == 6 and len(seen) == 6
    rows = {tuple(r.tolist()) for r in logits.round(decimals=4)}
    assert all(tuple(r.tolist()) in rows for batch in seen for r in batch.round(decimals=4))
    reset_accelerate()
    with pytest.raises(TimmAssembleError, match="recompute"):
        other = tiny_data(tmp_path / "other_data", train=20)
        engine.run(tiny_config(other, tmp_path / "other", teacher_logits=str(out)), command="pytest")
