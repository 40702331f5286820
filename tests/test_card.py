"""Model cards link the package's declared URLs (issue 22), read from the installed metadata."""

import email.message
import importlib.metadata
from pathlib import Path

import tomllib

from timm_assemble.weights import card
from timm_assemble.weights.card import CardSpec, render_model_card

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SPEC = CardSpec(repo_id="org/demo", config={"architecture": "assemble_resnet50", "num_classes": 5}, summary="s",
                provenance="p")  # fmt: skip


def _installed_with(urls: dict[str, str]):
    metadata = email.message.Message()
    metadata["Name"] = "timm-assemble"
    for label, url in urls.items():
        metadata["Project-URL"] = f"{label}, {url}"  # how setuptools writes [project.urls] into METADATA
    return lambda name: metadata if name == "timm-assemble" else importlib.metadata.metadata(name)


def test_declared_urls_are_the_paper_and_the_official_code() -> None:
    """Only addresses that exist: no invented homepage for this package."""
    urls = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["urls"]
    assert urls == {"Paper": card.PAPER_URL, "Official code": card.OFFICIAL_CODE_URL}


def test_card_links_the_installed_packages_urls_after_the_install_note(monkeypatch) -> None:
    urls = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["urls"]
    monkeypatch.setattr(importlib.metadata, "metadata", _installed_with(urls))
    lines = render_model_card(SPEC).splitlines()
    note = next(i for i, line in enumerate(lines) if line.startswith("Needs the `timm-assemble` package"))
    assert lines[note + 3] == (
        "`timm-assemble` links: [Paper](https://arxiv.org/abs/2001.06268) · "
        "[Official code](https://github.com/clovaai/assembled-cnn)"
    )
    assert "# pip install timm-assemble" in lines and "import timm_assemble" in "\n".join(lines)


def test_card_of_an_uninstalled_checkout_has_no_links_line(monkeypatch) -> None:
    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "metadata", not_installed)
    text = render_model_card(SPEC)
    assert "links:" not in text and "Needs the `timm-assemble` package" in text
