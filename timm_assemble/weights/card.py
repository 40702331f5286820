"""Model cards for our Hub repos, with the Hub's metadata conventions (YAML front matter + model-index).

The renderer is generic: converted official weights and our own fine-tuned exports describe themselves
with a `CardSpec` (metrics with their provenance, how the weights were made) and get the same card layout.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

PAPER_TITLE = "Compounding the Performance Improvements of Assembled Techniques in a Convolutional Neural Network"
PAPER_URL = "https://arxiv.org/abs/2001.06268"
OFFICIAL_CODE_URL = "https://github.com/clovaai/assembled-cnn"
BASE_TAGS = ("image-classification", "timm", "timm-assemble", "assemble-resnet")
# Every card we render ends with its own CardSpec as JSON in an HTML comment (invisible on the Hub), so
# `publish --repo-id X` can render the same card for X instead of uploading one written for another name.
_SPEC_COMMENT = re.compile(r"<!-- timm-assemble card spec: (\{.*\}) -->\s*\Z", re.DOTALL)

PAPER_BIBTEX = """@misc{lee2020compounding,
  title={Compounding the Performance Improvements of Assembled Techniques in a Convolutional Neural Network},
  author={Jungkyu Lee and Taeryun Won and Tae Kwan Lee and Hyemin Lee and Geonmo Gu and Kiho Hong},
  year={2020},
  eprint={2001.06268},
  archivePrefix={arXiv},
  primaryClass={cs.CV}
}"""

TIMM_BIBTEX = """@misc{rw2019timm,
  author = {Ross Wightman},
  title = {PyTorch Image Models},
  year = {2019},
  publisher = {GitHub},
  journal = {GitHub repository},
  doi = {10.5281/zenodo.4414861},
  howpublished = {\\url{https://github.com/huggingface/pytorch-image-models}}
}"""


@dataclass(frozen=True)
class Metric:
    """One reported number and where it comes from: the paper (`reference`) or our own run (`command`)."""

    name: str
    type: str
    value: float
    dataset: str
    dataset_type: str
    split: str
    provenance: str
    reference: str | None = None
    command: str | None = None
    notes: str | None = None

    def source_text(self) -> str:
        if self.provenance == "paper":
            return f"paper: {self.reference}"
        return f"measured: `{self.command}`"


@dataclass(frozen=True)
class CardSpec:
    """Everything a card says about one Hub repo.

    `config` is the folder's timm `config.json` (architecture, classes, preprocessing); `provenance` is
    markdown saying how the weights were made; `training_command` reproduces them when we trained them.
    `repo_id` None: a local folder that is on no Hub repo (yet); `title` names it.
    """

    repo_id: str | None
    config: Mapping[str, Any]
    summary: str
    provenance: str
    metrics: Sequence[Metric] = ()
    datasets: Sequence[str] = ()
    license: str = "apache-2.0"
    tags: Sequence[str] = ()
    timm_name: str | None = None
    base_model: str | None = None
    num_params: int | None = None
    stats: Mapping[str, Any] | None = None  # `model_stats.model_stats`: params, GMACs, activations, image size
    training_command: str | None = None
    extra_sections: Mapping[str, str] = field(default_factory=dict)
    title: str | None = None

    @property
    def name(self) -> str:
        return self.title or (self.repo_id or "model").split("/")[-1]


def _source(metric: Metric, repo_id: str | None) -> tuple[str | None, str | None]:
    """(source name, URL) of a metric: the paper, or this card's own repo for our measurements."""
    if metric.provenance == "paper":
        return metric.reference, PAPER_URL
    if repo_id is None:
        return None, None
    return "measured with timm-assemble", f"https://huggingface.co/{repo_id}"


def _front_matter(spec: CardSpec) -> str:
    eval_results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=m.dataset_type,
            dataset_name=m.dataset,
            dataset_split=m.split,
            metric_type=m.type,
            metric_name=m.name,
            metric_value=m.value,
            verified=False,
            # the Hub wants a URL with every source; our own numbers are documented in this very card
            source_name=_source(m, spec.repo_id)[0],
            source_url=_source(m, spec.repo_id)[1],
        )
        for m in spec.metrics
    ]
    data = ModelCardData(
        library_name="timm",
        license=spec.license,
        tags=list(dict.fromkeys([*BASE_TAGS, *spec.tags])),
        datasets=list(spec.datasets) or None,
        pipeline_tag="image-classification",
        base_model=spec.base_model,
        model_name=spec.name if eval_results else None,
        eval_results=eval_results or None,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def _details(spec: CardSpec) -> list[str]:
    cfg = spec.config.get("pretrained_cfg", {})
    rows = [
        "- **Model Type:** Image classification / feature backbone",
        f"- **Architecture:** `{spec.config['architecture']}` (Assemble-ResNet, [paper]({PAPER_URL}))",
    ]
    if spec.config.get("model_args"):
        rows.append(f"- **Model arguments:** `{json.dumps(spec.config['model_args'], sort_keys=True)}`")
    if spec.stats:
        rows += _stats_block(spec.stats)
    elif spec.num_params is not None:
        rows.append(f"- **Parameters:** {spec.num_params / 1e6:.2f} M")
    rows.append(f"- **Classes:** {spec.config.get('num_classes')}")
    if cfg.get("input_size"):
        size = "x".join(str(s) for s in cfg["input_size"][1:])
        test = cfg.get("test_input_size")
        test_text = f", evaluated at {'x'.join(str(s) for s in test[1:])}" if test else ""
        rows.append(f"- **Image size:** {size}{test_text}")
    if cfg.get("mean") and cfg.get("std"):
        rows.append(
            f"- **Preprocessing:** {cfg.get('interpolation', 'bilinear')} resize, crop_pct "
            f"{cfg.get('test_crop_pct', cfg.get('crop_pct'))}, mean {_fmt(cfg['mean'])}, std {_fmt(cfg['std'])} "
            "(timm's data config reproduces it: see Usage)"
        )
    if spec.base_model:
        rows.append(f"- **Fine-tuned from:** [{spec.base_model}](https://huggingface.co/{spec.base_model})")
    if spec.datasets:
        rows.append(f"- **Dataset:** {', '.join(spec.datasets)}")
    rows.append(f"- **License:** {spec.license}")
    return rows


def _stats_block(stats: Mapping[str, Any]) -> list[str]:
    """timm's "Model Stats" block, with our measured values."""
    rows = ["- **Model Stats:**", f"  - Params (M): {stats['params_m']:g}"]
    if stats.get("gmacs") is not None:
        rows.append(f"  - GMACs: {stats['gmacs']:g}")
    rows.append(f"  - Activations (M): {stats['activations_m']:g}")
    rows.append(f"  - Image size: {stats['image_size'][0]} x {stats['image_size'][1]}")
    return rows


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _usage(spec: CardSpec) -> list[str]:
    lines = [
        "```python",
        "# pip install timm-assemble",
        "import timm",
        "import timm_assemble  # registers the Assemble-ResNet architectures with timm",
        "import torch",
        "",
        f'model = timm.create_model("{f"hf-hub:{spec.repo_id}" if spec.repo_id else "local-dir:/path/to/this/folder"}"'
        ", pretrained=True).eval()",
    ]
    if spec.timm_name:
        lines.append(f'# same weights by registry name: timm.create_model("{spec.timm_name}", pretrained=True)')
    lines += [
        "data_config = timm.data.resolve_model_data_config(model)",
        "transform = timm.data.create_transform(**data_config, is_training=False)",
        "",
        "with torch.inference_mode():",
        "    logits = model(transform(image).unsqueeze(0))  # image: a PIL RGB image",
        "```",
        "",
        "Needs the `timm-assemble` package; `import timm_assemble` must run before `timm.create_model`",
        "(timm has no plugin discovery, and this repo's `config.json` names an Assemble-ResNet architecture).",
    ]
    links = package_links()
    if links:
        lines += ["", "`timm-assemble` links: " + " · ".join(f"[{label}]({url})" for label, url in links)]
    return lines


def package_links() -> list[tuple[str, str]]:
    """(label, URL) of the installed package's `[project.urls]`: a card links what the package declares.

    Empty when the package runs from a checkout without being installed.
    """
    try:
        entries = importlib.metadata.metadata("timm-assemble").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [tuple(part.strip() for part in entry.split(",", 1)) for entry in entries if "," in entry]


def _results(spec: CardSpec) -> list[str]:
    if not spec.metrics:
        return ["No evaluation results recorded yet."]
    lines = ["| metric | value | dataset | source | notes |", "|---|---|---|---|---|"]
    for m in spec.metrics:
        lines.append(f"| {m.name} | {m.value:g} | {m.dataset} ({m.split}) | {m.source_text()} | {m.notes or ''} |")
    return lines


def render_model_card(spec: CardSpec) -> str:
    """The README.md of one Hub repo: front matter, details, usage, results, provenance, citation."""
    parts = [
        _front_matter(spec),
        f"# Model card for {spec.name}",
        "",
        spec.summary,
        "",
        "## Model Details",
        "",
        *_details(spec),
        "",
        "## Usage",
        "",
        *_usage(spec),
        "",
        "## Results",
        "",
        *_results(spec),
        "",
        "## Provenance",
        "",
        spec.provenance,
    ]
    if spec.training_command:
        parts += ["", "Reproduce with:", "", "```bash", spec.training_command, "```"]
    for heading, text in spec.extra_sections.items():
        parts += ["", f"## {heading}", "", text]
    parts += [
        "",
        "## Citation",
        "",
        "```bibtex",
        PAPER_BIBTEX,
        "```",
        "",
        "```bibtex",
        TIMM_BIBTEX,
        "```",
        "",
        _spec_comment(spec),
        "",
    ]
    return "\n".join(parts)


def _spec_comment(spec: CardSpec) -> str:
    text = json.dumps(dataclasses.asdict(spec), sort_keys=True).replace(">", "\\u003e")  # no "-->" inside
    return f"<!-- timm-assemble card spec: {text} -->"


def card_spec_from_text(card: str) -> CardSpec | None:
    """The CardSpec a card of ours was rendered from (None: a card written by hand or by another tool)."""
    found = _SPEC_COMMENT.search(card)
    if found is None:
        return None
    data = json.loads(found.group(1))
    data["metrics"] = [Metric(**m) for m in data.get("metrics", ())]
    return CardSpec(**data)
