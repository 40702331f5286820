"""The errors that corruption error (CE) divides by: a reference model's, published for the benchmark or measured.

Published, one reference per benchmark: ImageNet-C's is AlexNet (Hendrycks & Dietterich, ICLR 2019), whose errors
are published as means over severities 1-5. CIFAR-10-C's is RobustBench's standardly trained WideResNet-28-10
(Croce et al., "RobustBench: a standardized adversarial robustness benchmark", NeurIPS 2021 Datasets and
Benchmarks, arXiv:2010.09670), published per severity in the benchmark's repository: row "Standard" of
`model_info/cifar10/corruptions/unaggregated_results.csv` in RobustBench/robustbench (last changed in
c22119c4d53cc2c028c032eadaa72a730293c4cb, unchanged at 78fcc9e48a07a861268f295a777b975f25155964), as 1 - accuracy.
Its mean over the 75 cells, 73.46% accuracy, and its clean accuracy, 94.78%, are the model's row in the CIFAR-10
corruptions leaderboard of that repository's README. CIFAR-100-C, Tiny-ImageNet-C and ImageNet-C at 299 px have
no published per-corruption errors of a standardly trained model that we could find: a `--baseline` model (or,
in a study, rung e0) on the same corrupted images normalises them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "ALEXNET",
    "CIFAR10_CLASSES",
    "PUBLISHED",
    "ROBUSTBENCH_STANDARD",
    "ReferenceErrors",
    "benchmark_dataset",
    "published_reference",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_SEVERITIES = [1, 2, 3, 4, 5]


@dataclass(frozen=True)
class ReferenceErrors:
    """The top-1 errors (fractions) per corruption and severity that CE divides by: a model's published ones, or
    a `--baseline` model's on the same corrupted images."""

    name: str  # what results record as `ce_reference`: "alexnet", "robustbench-standard" or "baseline"
    model: str  # in words, for tables and plots
    errors: Mapping[str, Mapping[int, float]]  # corruption -> severity -> error
    clean_error: float | None  # the denominator's offset for relative CE (None: not known)
    source: str
    means_only: bool = False  # only the mean over severities 1-5 is published (stored as each severity's error)
    corruption_set: str | None = None  # published: the corruption set of the benchmark it was measured on
    dataset: str | None = None  # published: the clean data that benchmark corrupts

    @property
    def published(self) -> bool:
        return self.dataset is not None

    def summed(self, corruption: str, severities: list[int]) -> float | None:
        """The errors summed over `severities`, or None where they are not known: a corruption it was not
        measured on, or a subset of severities when only the mean over 1-5 is published."""
        per_severity = self.errors.get(corruption, {})
        if not all(s in per_severity for s in severities) or (self.means_only and severities != _SEVERITIES):
            return None
        return sum(per_severity[s] for s in severities)


def _per_severity(table: Mapping[str, tuple[float, ...]]) -> dict[str, dict[int, float]]:
    """`(e1, ..., e5)` per corruption, or `(mean,)` standing for every severity, as severity -> error."""
    return {name: {s: values[0 if len(values) == 1 else s - 1] for s in _SEVERITIES} for name, values in table.items()}


# The 15 standard corruptions as listed in google-research/augmix `imagenet.py` (ALEXNET_ERR); the 4 extra
# ("validation") corruptions as listed in clovaai/assembled-cnn `mce/eval_robustness.py`. The clean error is
# torchvision's AlexNet (the network behind these errors) on ImageNet val at resize 256 / crop 224: top-1 56.522%
# (AlexNet_Weights.IMAGENET1K_V1 metrics), the denominator of relative CE.
ALEXNET = ReferenceErrors(
    name="alexnet",
    model="AlexNet",
    errors=_per_severity(
        {
            "gaussian_noise": (0.886428,),
            "shot_noise": (0.894468,),
            "impulse_noise": (0.922640,),
            "defocus_blur": (0.819880,),
            "glass_blur": (0.826268,),
            "motion_blur": (0.785948,),
            "zoom_blur": (0.798360,),
            "snow": (0.866816,),
            "frost": (0.826572,),
            "fog": (0.819324,),
            "brightness": (0.564592,),
            "contrast": (0.853204,),
            "elastic_transform": (0.646056,),
            "pixelate": (0.717840,),
            "jpeg_compression": (0.606500,),
            "speckle_noise": (0.8454,),
            "gaussian_blur": (0.7871,),
            "spatter": (0.7175,),
            "saturate": (0.6583,),
        }
    ),
    clean_error=0.43478,
    source=(
        "AlexNet ImageNet-C errors (Hendrycks & Dietterich 2019): 15 standard corruptions from "
        "google-research/augmix imagenet.py; speckle_noise, gaussian_blur, spatter, saturate from "
        "clovaai/assembled-cnn mce/eval_robustness.py"
    ),
    means_only=True,
    corruption_set="imagenet-c",
    dataset="imagenet-1k",
)

ROBUSTBENCH_STANDARD = ReferenceErrors(
    name="robustbench-standard",
    model="RobustBench Standard WRN-28-10",
    errors=_per_severity(
        {
            "gaussian_noise": (0.2222, 0.4212, 0.6081, 0.6739, 0.7233),
            "shot_noise": (0.1496, 0.2427, 0.4651, 0.5465, 0.6571),
            "impulse_noise": (0.1711, 0.3095, 0.4263, 0.5989, 0.7292),
            "defocus_blur": (0.0542, 0.0662, 0.1102, 0.2256, 0.4694),
            "glass_blur": (0.4657, 0.4425, 0.4305, 0.5681, 0.5432),
            "motion_blur": (0.0971, 0.1615, 0.256, 0.2517, 0.3475),
            "zoom_blur": (0.1229, 0.1545, 0.2252, 0.2971, 0.4202),
            "snow": (0.1009, 0.1957, 0.1635, 0.1949, 0.2507),
            "frost": (0.1045, 0.165, 0.2739, 0.2914, 0.413),
            "fog": (0.0549, 0.0644, 0.0771, 0.1041, 0.2601),
            "brightness": (0.0525, 0.0562, 0.0622, 0.0719, 0.093),
            "contrast": (0.0573, 0.0784, 0.1028, 0.1641, 0.4669),
            "elastic_transform": (0.0953, 0.0978, 0.1414, 0.2106, 0.2659),
            "pixelate": (0.0805, 0.1396, 0.1998, 0.3965, 0.5845),
            "jpeg_compression": (0.1364, 0.2035, 0.2204, 0.2585, 0.303),
        }
    ),
    clean_error=round(1 - 0.9478, 4),
    source=(
        "RobustBench Standard WRN-28-10 CIFAR-10-C errors per severity (Croce et al. 2021, arXiv:2010.09670): "
        "RobustBench/robustbench model_info/cifar10/corruptions/unaggregated_results.csv at c22119c"
    ),
    corruption_set="cifar-c",
    dataset="cifar-10",
)

PUBLISHED = {p.name: p for p in (ALEXNET, ROBUSTBENCH_STANDARD)}


def published_reference(
    dataset: str | None, corruption_set: str, off_protocol: str = ""
) -> tuple[ReferenceErrors | None, str]:
    """The published errors that normalise this clean data under this corruption set, or None and why not.
    `off_protocol` says how the images differ from the benchmark's files, if they do: then none apply."""
    published = next((p for p in PUBLISHED.values() if p.dataset == dataset), None)
    if published is None:
        return None, (
            "no CE: no published errors for this data (AlexNet's for ImageNet under imagenet-c, RobustBench "
            "Standard's for CIFAR-10 under cifar-c); pass --baseline MODEL to normalise"
        )
    if published.corruption_set != corruption_set:
        return None, (
            f"no CE: {published.model}'s published errors are {published.corruption_set}'s, not {corruption_set}'s; "
            "pass --baseline MODEL to normalise"
        )
    if off_protocol:
        return None, (
            f"no CE: {published.model}'s published errors are for images made as {corruption_set}'s files were; "
            f"{off_protocol}; pass --baseline MODEL to normalise"
        )
    return published, published.source


def benchmark_dataset(label_map: str | None, class_names: Sequence[str] | None, num_classes: int) -> str | None:
    """Which benchmark's clean data these images are: "imagenet-1k" (folders named by its synsets), "cifar-10" (its
    ten class folders, or a CIFAR-C .npy folder scored by a ten-class model), else None."""
    if label_map == "imagenet-synsets":
        return "imagenet-1k"
    if label_map == "labels.npy":
        return "cifar-10" if num_classes == len(CIFAR10_CLASSES) else None
    if class_names is not None and tuple(sorted(c.lower() for c in class_names)) == CIFAR10_CLASSES:
        return "cifar-10"
    return None
