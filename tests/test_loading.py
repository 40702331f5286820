"""The one weight loader: safetensors or weights-only .pth, EMA first, wrapper prefixes, strict fit, one-line errors."""

import json
import os

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
    ],
    ids=["width", "classes", "in-chans"],
)
def test_weights_of_another_setting_name_it_and_the_flag(tmp_path, saved, loaded, message):
    """The diagnosis comes from the shapes, the cause first: another width also changes the classifier's shape,
    and was reported as 'classifier does not match' before."""
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


def _small():
    return timm.create_model("test_resnet", num_classes=3)


def _safetensors_with_header(path, edit) -> None:
    """A valid file of _small()'s weights whose JSON header is edited (the data left as it is)."""
    save_file(_small().state_dict(), str(path))
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = edit(raw[8 : 8 + size].decode())
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + size :])


def _write_state(path, edit) -> None:
    state = _small().state_dict()
    edit(state)
    (save_file(state, str(path)) if path.suffix == ".safetensors" else torch.save(state, path))


class _Shell:
    def __reduce__(self):
        return (os.system, (f"touch {_PWNED}",))


_PWNED = "/tmp/timm_assemble_test_pwned"
FC = "fc.weight"
HOSTILE_FILES = {  # file name: (how it is made, what the one line says)
    "huge-claimed-shape.safetensors": (
        lambda p: _safetensors_with_header(p, lambda h: h.replace('"shape":[3,', f'"shape":[{1 << 40},', 1).encode()),
        "cannot read weights file .*: SafetensorError: .*overflow|invalid",
    ),
    "header-length-2^62.safetensors": (
        lambda p: (save_file(_small().state_dict(), str(p)), p.write_bytes((1 << 62).to_bytes(8, "little") +
                                                                           p.read_bytes()[8:])),
        "SafetensorError: .*header too large",
    ),  # fmt: skip
    "truncated.safetensors": (
        lambda p: (save_file(_small().state_dict(), str(p)), p.write_bytes(p.read_bytes()[:5000])),
        "cannot read weights file .*SafetensorError",
    ),
    "metadata-a-list.safetensors": (
        lambda p: _safetensors_with_header(p, lambda h: ('{"__metadata__":{"a":["b"]},' + h[1:]).encode()),
        "cannot read weights file .*SafetensorError",
    ),
    "int-weight.safetensors": (lambda p: _write_state(p, lambda s: s.update({FC: s[FC].long()})),
                               "fc.weight is int64, the model's is float32; a damaged or foreign file"),
    "complex-weight.pth": (lambda p: _write_state(p, lambda s: s.update({FC: torch.complex(s[FC], s[FC])})),
                           "fc.weight is complex64, the model's is float32"),
    "non-tensor-value.pth": (lambda p: _write_state(p, lambda s: s.update({"fc.bias": 7})),
                             r"fc.bias is not a tensor \(int\); not a weights file"),
    "zero-size-classifier.safetensors": (
        lambda p: _write_state(p, lambda s: s.update({FC: s[FC][:0], "fc.bias": s["fc.bias"][:0]})),
        r"classifier does not match the model: wrong shape: fc.weight \[0, 96\] vs \[3, 96\]",  # no "--num-classes 0"
    ),
    "empty-ema.pth": (lambda p: torch.save({"state_dict": _small().state_dict(), "state_dict_ema": {}}, p),
                      "holds an empty state dict"),
    "a-list.pth": (lambda p: torch.save([1, 2], p), "cannot read weights file .* as a state dict or training checkpo"),
    "pickled-shell.pth": (lambda p: torch.save({"state_dict": _small().state_dict(), "x": _Shell()}, p),
                          "cannot read weights file .*weights_only"),
    "a-fifo.safetensors": (lambda p: os.mkfifo(p), "is not a regular file"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_a_hostile_weights_file_is_one_line(tmp_path, name):
    make, message = HOSTILE_FILES[name]
    make(tmp_path / name)
    with pytest.raises(TimmAssembleError, match=message) as info:
        load_weights(_small(), tmp_path / name)
    assert "\n" not in str(info.value) and not os.path.exists(_PWNED)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16, torch.float8_e4m3fn])
def test_weights_of_another_float_dtype_load(tmp_path, dtype):
    state = _randomised(_small())
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_file(cast, str(tmp_path / "w.safetensors"))
    model = _small()
    load_weights(model, tmp_path / "w.safetensors")
    assert model.fc.weight.dtype == torch.float32
    torch.testing.assert_close(model.fc.weight, state[FC].to(dtype).float())


def test_a_local_dir_whose_config_lies_about_the_width_names_it(tmp_path):
    from timm_assemble.weights.hub_folder import export_hub_folder

    folder = export_hub_folder(_model(), tmp_path / "m", model_args=dict(width=8))
    config = json.loads((folder / "config.json").read_text())
    config["model_args"]["width"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    message = "its model.safetensors does not fit the model its config.json builds: .* imply width 8"
    with pytest.raises(TimmAssembleError, match=message + ".*: pass --model-kwargs width=8$"):
        create_model(f"local-dir:{folder}")
