"""The Hub organisation our weights are published under; one place to change it for mirrors or forks."""

from __future__ import annotations

import os

HUB_ORG_ENV = "TIMM_ASSEMBLE_HUB_ORG"
DEFAULT_HUB_ORG = "timm-assemble"


def hub_org() -> str:
    """The Hub organisation, `$TIMM_ASSEMBLE_HUB_ORG` if set (read when the model cfgs are built)."""
    return os.environ.get(HUB_ORG_ENV, DEFAULT_HUB_ORG)


def hub_repo_id(name: str) -> str:
    """Full `org/name` repo id for one published weight, e.g. `timm-assemble/assemble_resnet50.clova_in1k`."""
    return f"{hub_org()}/{name}"
