"""Every command the README shows parses with today's flags (a renamed or removed flag fails here first)."""

import re
import shlex
from pathlib import Path

import pytest

from timm_assemble.cli import build_parser
from timm_assemble.cli.train import build_parser as train_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[str]:
    """Each command line of the README's bash blocks: continuations joined, comments and env settings dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                words = shlex.split(part)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                    words.pop(0)
                if words:
                    commands.append(shlex.join(words))
    return commands


def _ours(command: str) -> bool:
    words = shlex.split(command)
    return words[0] == "timm-assemble" or (words[:2] == ["accelerate", "launch"] and words[-1] != "launch")


OURS = [c for c in _commands() if _ours(c)]


def test_the_readme_shows_our_commands():
    assert len(OURS) > 25, OURS


@pytest.mark.parametrize("command", OURS)
def test_readme_command_parses(command):
    words = shlex.split(command)
    module = [i for i, w in enumerate(words[:-1]) if w == "-m" and words[i + 1] == "timm_assemble"]
    if words[0] == "timm-assemble" or module:
        args = build_parser().parse_args(words[module[0] + 2 if module else 1 :])
        assert args.func is not None
        return
    scripts = [i for i, w in enumerate(words) if w in ("train.py", "finetune.py")]
    assert scripts, f"an accelerate launch of something else: {command}"
    mode = words[scripts[0]].removesuffix(".py")
    train_parser(mode).parse_args(words[scripts[0] + 1 :])
