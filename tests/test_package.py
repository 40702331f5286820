"""The package as a user gets it: every job from any folder, the recorded command, an import graph without cycles."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import timm_assemble
from timm_assemble.cli import main as cli_main
from timm_assemble.cli.train import launch_command

PACKAGE = Path(timm_assemble.__file__).parent
# the tiny version of the built-in demo: width 8, 4 classes x 8 generated images, one epoch
TINY_DEMO = [
    "--preset", "demo", "--pretrained", "none", "--model-kwargs", "width=8", "--synthetic-classes", "4",
    "--synthetic-images", "8", "--synthetic-image-size", "32", "--img-size", "32", "--epochs", "1",
    "--warmup-epochs", "0", "--batch-size", "16", "--workers", "0",
]  # fmt: skip


def _loads_with_local_dir(folder: Path) -> None:
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_accelerate")
def test_finetune_subcommand_and_module_from_an_empty_folder(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert cli_main(["finetune", *TINY_DEMO, "--output-dir", "sub"]) == 0
    assert (empty / "sub" / "command.txt").read_text().startswith("timm-assemble finetune --preset demo ")
    _loads_with_local_dir(empty / "sub" / "model")

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    subprocess.run([*launch, "-m", "timm_assemble", "finetune", *TINY_DEMO, "--output-dir", "mod"], env=env, check=True)
    assert (empty / "mod" / "command.txt").read_text().startswith("accelerate launch -m timm_assemble finetune ")
    _loads_with_local_dir(empty / "mod" / "model")


@pytest.mark.slow
def test_checkout_shims_run_the_same_jobs():
    root = PACKAGE.parent
    for mode in ("train", "finetune"):
        result = subprocess.run(
            [sys.executable, str(root / f"{mode}.py"), "--print-config"], capture_output=True, text=True, check=True
        )
        assert f'mode = "{mode}"' in result.stdout


def test_recorded_command_names_the_launcher(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert launch_command("finetune.py", ["--epochs", "1"]) == "python finetune.py --epochs 1"
    expected = "python -m timm_assemble.train --data-dir 'a b'"
    assert launch_command("-m timm_assemble.train", ["--data-dir", "a b"]) == expected
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # set by `accelerate launch` in the job's environment
    assert launch_command("-m timm_assemble finetune", []) == "accelerate launch -m timm_assemble finetune"
    assert launch_command("timm-assemble finetune", ["--epochs", "1"]) == "timm-assemble finetune --epochs 1"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules that `path` imports (at top level or inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_import_graph_has_no_cycles():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            pytest.fail("import cycle: " + " -> ".join(stack[stack.index(name) :] + [name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, stack + [name])
        done.add(name)

    assert len(graph) > 30
    for name in sorted(graph):
        visit(name, [])


def test_library_code_never_imports_the_cli():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    library = {name: path for name, path in paths.items() if not name.startswith("timm_assemble.cli")}
    offenders = {name: sorted(d for d in _imports(path, set(paths)) if d.startswith("timm_assemble.cli"))
                 for name, path in library.items()}  # fmt: skip
    assert {name: deps for name, deps in offenders.items() if deps} == {"timm_assemble.__main__": ["timm_assemble.cli"]}


@pytest.mark.slow
def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "timm_assemble", "--help"], capture_output=True, text=True, check=True)
    assert "usage: python -m timm_assemble" in out.stdout and "finetune" in out.stdout
