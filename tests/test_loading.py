"""The one weight loader: safetensors or weights-only .pth, EMA first, wrapper prefixes, strict fit, one-line errors."""

import pytest
import timm
import torch
from safetensors.torch import save_file

import timm_assemble  # noqa: F401
from timm_assemble.errors import TimmAssembleError
from timm_assemble.loading import create_model, load_weights


def _model(**kwargs):
    return timm.create_model("assemble_r50", width=8, num_classes=3, **kwargs).eval()


def _randomised(model):
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}


def test_training_checkpoint_prefers_ema_and_strips_wrapper_prefixes(tmp_path):
    ema, raw = _randomised(_model()), _randomised(_model())
    checkpoint = {"state_dict": {f"module.{k}": v for k, v in raw.items()}, "state_dict_ema": ema, "epoch": 3}
    torch.save(checkpoint, tmp_path / "ckpt.pth")
    model = _model()
    assert load_weights(model, tmp_path / "ckpt.pth") is False
    torch.testing.assert_close(model.state_dict(), ema)


def test_safetensors_load_and_a_new_head_keeps_the_backbone(tmp_path):
    state = _randomised(_model())
    save_file({f"_orig_mod.{k}": v for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    model = create_model("assemble_r50", weights=str(tmp_path / "w.safetensors"), width=8, num_classes=3)
    torch.testing.assert_close(model.state_dict(), state)
    five = timm.create_model("assemble_r50", width=8, num_classes=5)
    assert load_weights(five, tmp_path / "w.safetensors", drop_mismatched_head=True) is True
    torch.testing.assert_close(five.conv1.weight, state["conv1.weight"])
    assert five.fc.weight.shape == (5, state["fc.weight"].shape[1])


def test_weights_that_do_not_fit_are_one_clear_error(tmp_path):
    save_file(_model().state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(TimmAssembleError, match="classifier does not match"):
        load_weights(timm.create_model("assemble_r50", width=8, num_classes=5), tmp_path / "w.safetensors")
    with pytest.raises(TimmAssembleError, match="does not fit AssembleResNet: missing"):
        load_weights(timm.create_model("assemble_r50d_se", width=8, num_classes=3), tmp_path / "w.safetensors")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TimmAssembleError, match="cannot read weights file .*bad.pth"):
        load_weights(_model(), tmp_path / "bad.pth")
    with pytest.raises(TimmAssembleError, match="does not exist"):
        load_weights(_model(), tmp_path / "missing.safetensors")
    with pytest.raises(TimmAssembleError, match=r"unknown model 'assemble_r5O' \(did you mean"):
        create_model("assemble_r5O")
    # a tag the architecture does not have: one line listing its tags, with or without pretrained weights
    # (timm raises a bare RuntimeError while it resolves the cfg, even for a model built from scratch)
    for pretrained in (False, True):
        with pytest.raises(TimmAssembleError, match="unknown pretrained tag in 'assemble_resnet50.nope'; .*clova"):
            create_model("assemble_resnet50.nope", pretrained=pretrained)
    with pytest.raises(TimmAssembleError, match="unknown pretrained tag in 'assemble_r50.clova_in1k'; .* has none"):
        create_model("assemble_r50.clova_in1k")


@pytest.mark.parametrize(
    ("saved", "loaded", "message"),
    [
        (dict(width=8), dict(width=16), "does not fit AssembleResNet: the checkpoint's shapes imply width 8 "
                                        r"\(bn1.weight has 8 channels\), the model has width 16: pass --model-kwargs "
                                        "width=8$"),
        (dict(num_classes=3), dict(num_classes=5), r"classifier does not match the model: the checkpoint's "
                                                   r"classifier has 3 classes \(fc.weight \[3, 256\]\), the model 5: "
                                                   "pass --num-classes 3$"),
        (dict(in_chans=1), dict(), r"the checkpoint's conv1.weight \[8, 1, 7, 7\] takes 1 input channels, the model 3:"
                                   " pass --model-kwargs in_chans=1$"),
        (dict(width=8, num_classes=3), dict(width=16, num_classes=5), "imply width 8"),  # the cause, not the head
    ],
    ids=["width", "classes", "in-chans", "width-and-classes"],
)
def test_weights_of_another_setting_name_it_and_the_flag(tmp_path, saved, loaded, message):
    """The diagnosis comes from the shapes: a width mismatch was 'classifier does not match' before."""
    base = dict(width=8, num_classes=3)
    save_file(timm.create_model("assemble_r50", **{**base, **saved}).state_dict(), str(tmp_path / "w.safetensors"))
    model = timm.create_model("assemble_r50", **{**base, **loaded})
    for drop_head in (False, True):  # fine-tuning drops a classifier of other classes, never another width
        if drop_head and "classes" in message and "width" not in message:
            assert load_weights(model, tmp_path / "w.safetensors", drop_mismatched_head=True)
            continue
        with pytest.raises(TimmAssembleError, match=message) as info:
            load_weights(model, tmp_path / "w.safetensors", drop_mismatched_head=drop_head)
        assert "\n" not in str(info.value)
