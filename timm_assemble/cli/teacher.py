"""`timm-assemble teacher-logits OUT --teacher T --data-dir D`: the KD teacher's logits of the training images, once."""

from ..training.teacher import TeacherLogitsConfig
from ..training.teacher import run as write_teacher_logits
from .args import Command


def run(cfg: TeacherLogitsConfig) -> int:
    print(f"wrote teacher logits to {write_teacher_logits(cfg)}")
    return 0


COMMAND = Command(
    "teacher-logits",
    "precompute KD teacher logits of the training images (read back with train.py --teacher-logits)",
    run,
    TeacherLogitsConfig,
    inputs=("teacher", "teacher_weights", "data_dir"),
    description="Run the KD teacher once over the training images (clean centre crops at the teacher's own "
    "size and normalisation, as the official recipe) and save the logits for train.py --teacher-logits.",
)
