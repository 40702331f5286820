"""The plugin behaves like timm: importing it changes nothing in timm, and its models take timm's defaults."""

import json
import subprocess
import sys

import pytest
import timm
import torch.nn as nn

_IMPORT_CHANGES = """
import inspect, json, os, socket, sys
import timm.models._builder, timm.models._factory, timm.models._hub
def connect(*args, **kwargs):
    raise OSError("network used during import")
socket.socket.connect = connect
modules = [timm.models._factory, timm.models._hub, timm.models._builder]
before = {(m.__name__, k): v for m in modules for k, v in vars(m).items() if callable(v)}
env = dict(os.environ)
import timm_assemble
after = {(m.__name__, k): v for m in modules for k, v in vars(m).items() if callable(v)}
changed = sorted(f"{m}.{k}" for (m, k), v in before.items() if after.get((m, k)) is not v)
print(json.dumps(dict(functions=len(before), changed=changed, env=env == dict(os.environ))))
"""


def test_import_registers_models_and_changes_nothing_in_timm():
    """Every function of timm's factory, hub and builder modules is the same object after the import; no network
    (sockets refuse), no environment change."""
    result = subprocess.run([sys.executable, "-c", _IMPORT_CHANGES], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["functions"] > 20
    assert report["changed"] == []
    assert report["env"]


def test_plain_timm_local_dir_errors_are_timms(tmp_path):
    """A folder without config.json is timm's FileNotFoundError through timm.create_model (our clear error comes
    from timm_assemble's own loader, tested in test_hub.py)."""
    with pytest.raises(FileNotFoundError):
        timm.create_model(f"local-dir:{tmp_path}", pretrained=True)


def test_every_kwarg_of_timms_train_py_works():
    """The kwargs timm's train.py passes to create_model (None when unset, which timm drops) all reach the model
    (the defaults themselves: test_recipe.py)."""
    train_py = dict(
        in_chans=3, num_classes=None, drop_rate=0.2, drop_path_rate=0.1, drop_block_rate=0.1, global_pool=None,
        bn_momentum=0.01, bn_eps=1e-3, scriptable=None, checkpoint_path="",
    )  # fmt: skip
    model = timm.create_model("assemble_resnet50", width=8, **train_py)
    assert {(b.momentum, b.eps) for b in model.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)} == {
        (0.01, 1e-3)
    }
    assert model.drop_rate == 0.2
    assert any(type(m).__name__ == "DropBlock2d" for m in model.modules())
    assert any(type(m).__name__ == "DropPath" for m in model.modules())
