"""`timm-assemble download ARCH.TAG`, deprecated: `hf download ORG/ARCH.TAG` fetches the same files, and
`pretrained=True` checks them against the record's sha256 when it loads them. Kept for existing scripts."""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import constants as hf_constants

from ..weights.cache import file_sha256
from ..weights.hub_folder import WEIGHTS_NAME
from ..weights.resolve import download_weights, hf_download_command
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
    print(
        f"timm-assemble download is deprecated: `{hf_download_command(record.repo_id)}` fetches the same files, "
        "and pretrained=True checks their sha256 when it loads them",
        file=sys.stderr,
    )
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
    "deprecated: use `hf download ORG/ARCH.TAG`; pre-fetches a recorded weight and verifies its sha256",
    run,
    DownloadOptions,
    description="Deprecated alias, kept for existing scripts: `hf download ORG/ARCH.TAG config.json "
    "model.safetensors --cache-dir CACHE` fetches the same files. Downloads a recorded weight into the Hugging "
    "Face Hub cache, for machines that will run offline, and checks model.safetensors against the sha256 in its "
    "weight record (a mismatch is refused).",
)
