"""`timm-assemble download ARCH.TAG`: `hf download` of a recorded weight, plus the sha256 check of its record."""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import constants as hf_constants

from ..weights.cache import file_sha256
from ..weights.hub_folder import WEIGHTS_NAME
from ..weights.resolve import download_weights
from .args import Command


@dataclass
class DownloadOptions:
    """`timm-assemble download` flags."""

    name: str = field(
        default="",
        metadata=dict(help="weight name, e.g. assemble_resnet50.clova_in1k", positional=True, metavar="ARCH.TAG"),
    )
    cache_dir: Path | None = field(
        default=None, metadata=dict(help="Hub cache folder (None: $HF_HUB_CACHE); point HF_HUB_CACHE here offline")
    )
    revision: str | None = field(default=None, metadata=dict(help="Hub revision (branch, tag or commit); None: main"))


def run(args: DownloadOptions) -> int:
    record, paths, sha256 = download_weights(args.name, cache_dir=args.cache_dir, revision=args.revision)
    print(f"{record.name}: {record.repo_id}")
    for filename, path in paths.items():
        print(f"  {filename:<18} {path}")
    if sha256 is not None:
        print(f"  sha256 ok          {sha256}")
    else:
        print(
            f"warning: the record of {record.name} has no sha256 ({record.status}); {WEIGHTS_NAME} was not "
            f"verified (its sha256 is {file_sha256(paths[WEIGHTS_NAME])})",
            file=sys.stderr,
        )
    cache = args.cache_dir or hf_constants.HF_HUB_CACHE
    print(
        f'offline use: HF_HUB_OFFLINE=1 HF_HUB_CACHE={os.fspath(cache)} python -c "import timm, timm_assemble; '
        f"timm.create_model('{record.name}', pretrained=True)\""
    )
    return 0


COMMAND = Command(
    "download",
    "pre-fetch published weights into the Hub cache and verify their sha256",
    run,
    DownloadOptions,
    description="Download a recorded weight (config.json + model.safetensors) into the Hugging Face Hub "
    "cache, for machines that will run offline, and check model.safetensors against the sha256 in its "
    "weight record (a mismatch is refused).",
)
