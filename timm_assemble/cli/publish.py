"""`timm-assemble publish DIR --repo-id ORG/NAME`: check a model folder, render its card, upload it."""

from dataclasses import dataclass, field
from pathlib import Path

from ..weights import records
from ..weights.hub_folder import CARD_NAME
from ..weights.publish import describe_plan, plan_publish, publish
from .args import Command


@dataclass
class PublishOptions:
    """`timm-assemble publish` flags."""

    folder: Path = field(
        default=Path("."),
        metadata=dict(help="folder with config.json + model.safetensors", positional=True, metavar="DIR"),
    )
    repo_id: str | None = field(
        default=None, metadata=dict(help="Hub model repo to upload to", required=True, metavar="ORG/NAME")
    )
    private: bool = field(default=False, metadata=dict(help="create the repo as private"))
    dry_run: bool = field(default=False, metadata=dict(help="run the checks and print what would be uploaded"))
    update_record: bool = field(
        default=False,
        metadata=dict(
            help="DIR is a `timm-assemble weights fetch` cache entry: record its sha256, size and source files' "
            "sha256 in the weight record (card rendered from it) and mark it published once the upload succeeded"
        ),
    )


def run(args: PublishOptions) -> int:
    plan = plan_publish(args.folder, args.repo_id, private=args.private, update_record=args.update_record)
    print(describe_plan(plan))
    if args.dry_run:
        print(f"--- {CARD_NAME} ---")
        print(plan.card)
        print("dry run: nothing was uploaded")
        return 0
    url = publish(plan)
    print(f"published: {url}")
    if plan.record_update is not None:
        print(f"updated {plan.record.name} in {records.RECORD_TABLE_PATH} (sha256, size, source files, status): commit")
    elif plan.record is not None and plan.record.status != "published":
        print(f'now set status="published" in the record of {plan.record.name} in {records.RECORD_TABLE_PATH}')
    return 0


COMMAND = Command(
    "publish",
    "check a model folder and upload it to the Hugging Face Hub",
    run,
    PublishOptions,
    description="Check DIR (config.json architecture registered, model.safetensors loads strictly, sha256 "
    "equals the weight record's), render its model card, and upload config.json, model.safetensors and "
    "README.md with huggingface_hub. The token comes from HF_TOKEN or `hf auth login`.",
)
