"""Regenerate `tests/fixtures/timm_flags.json`: the flags of timm's train.py, validate.py, inference.py and
benchmark.py, read from a timm checkout, for `tests/test_timm_parity.py`.

    python tests/regen_timm_flags.py PATH > tests/fixtures/timm_flags.json

PATH is a timm checkout (a work tree) or a bare git directory (its HEAD is read with `git show`). The scripts are
parsed with `ast`, never run or copied: only each `add_argument` call's flags, dest, action, nargs, const and
default are kept (a default that is not a literal is kept as its source text).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPTS = ("train.py", "validate.py", "inference.py", "benchmark.py")


def _source(checkout: Path, script: str) -> tuple[str, str]:
    """(the script's text, the commit it was read at)."""
    git = ["git", "-C", str(checkout)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    if (checkout / script).is_file():
        return (checkout / script).read_text(encoding="utf-8"), commit
    text = subprocess.run([*git, "show", f"HEAD:{script}"], capture_output=True, text=True, check=True).stdout
    return text, commit


def _value(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except ValueError:
        return {"source": ast.unparse(node)}


def _dest(flags: list[str], given: Any) -> str:
    """argparse's dest: the given one, else the first long flag (else the first flag) without dashes."""
    if given is not None:
        return given
    long = [f for f in flags if f.startswith("--")]
    return (long or flags)[0].lstrip("-").replace("-", "_")


def flags_of(text: str) -> list[dict[str, Any]]:
    """One record per `add_argument` call, in source order."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "add_argument":
            continue
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        action = _value(keywords.get("action"))
        record = dict(
            flags=flags,
            dest=_dest(flags, _value(keywords.get("dest"))),
            action=action if isinstance(action, str) or action is None else action["source"],
            nargs=_value(keywords.get("nargs")),
            const=_value(keywords.get("const")),
            default=_value(keywords.get("default")),
        )
        found.append((node.lineno, record))
    return [record for _, record in sorted(found, key=lambda item: item[0])]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    checkout = Path(argv[0])
    scripts, commits = {}, set()
    for script in SCRIPTS:
        text, commit = _source(checkout, script)
        scripts[script] = flags_of(text)
        commits.add(commit)
    (commit,) = commits
    head = json.dumps(dict(source="huggingface/pytorch-image-models", commit=commit))[:-1]
    blocks = [
        f" {json.dumps(script)}: [\n" + ",\n".join(f"  {json.dumps(r)}" for r in records) + "\n ]"
        for script, records in scripts.items()
    ]
    print(head + ', "scripts": {\n' + ",\n".join(blocks) + "\n}}")  # one flag per line: diffs read well
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
