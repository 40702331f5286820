"""Fixtures shared by the test modules: the official reference outputs (tests/fixtures/clova_tf, in the repo),
the official-code checkpoint converted once per session, fresh accelerate state, and an offline Hub cache.

The helper functions stay importable from `hub_testing` and `training_helpers` for tests that need them
with other arguments.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import httpx2
import huggingface_hub
import huggingface_hub.constants as hf_constants
import pytest
from hub_testing import CLOVA_TF, TOKEN, FakeHub, convert_fixture, go_offline
from training_helpers import one_thread, reset_accelerate


def pytest_configure(config: pytest.Config) -> None:
    """One thread per pytest-xdist worker (and its subprocesses): two workers on two cores, not four threads
    spinning against each other. A test that needs a thread count sets it, as the reference comparisons do."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def clova_tf() -> Path:
    """Outputs of the official TensorFlow code (checkpoints, activations); see tests/fixtures/README.md."""
    return CLOVA_TF


@pytest.fixture(scope="session")
def converted_r50_w8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official-code Assemble-ResNet-50 (width 8) checkpoint through `convert`; shared, so read-only."""
    return convert_fixture(tmp_path_factory.mktemp("convert") / "assemble_resnet50_w8")


@pytest.fixture
def fresh_accelerate():
    """accelerate's process-wide singletons reset around each in-process run, with one torch thread."""
    reset_accelerate()
    with one_thread():
        yield
    reset_accelerate()


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HF_HUB_OFFLINE with an empty Hub cache of this test's own (returned), the default Hub org."""
    cache = tmp_path / "hub-cache"
    go_offline(monkeypatch, cache)
    return cache


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The Hub's upload endpoints faked at huggingface_hub's HTTP client (FakeHub records every request)."""
    fake = FakeHub()
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setattr(hf_constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("TIMM_ASSEMBLE_HUB_ORG", raising=False)
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake)))
    yield fake
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)
