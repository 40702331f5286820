"""Faults and bad inputs, replayed as a user meets them: nothing lost, nothing silently wrong.

Every case is a row: what happened (damage to a run folder, an injected disk or kill fault), the command
line, its exit code, a fragment of its one-line message, and what must still be on disk: the sha256 of
every file of `checkpoints/best`, `checkpoints/last` and `model/` is compared before and after. A tiny run
(2 classes, width-8 model, 32 px, 2 epochs) is trained once; each case works on a copy of its folder.
Add a row for every bug found.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import accelerate.checkpointing
import numpy as np
import pytest
import timm
import torch
from accelerate import Accelerator
from PIL import Image
from safetensors.torch import load_file, save_file
from training_helpers import one_thread, reset_accelerate, tiny_data

import timm_assemble  # noqa: F401
import timm_assemble.weights.hub_folder
from timm_assemble import cli
from timm_assemble.cli.train import main as train_main
from timm_assemble.errors import TimmAssembleError
from timm_assemble.fileio import sha256_file
from timm_assemble.locks import folder_lock
from timm_assemble.training import checkpoint as ckpt

CLOVA_R50 = Path(__file__).resolve().parent / "fixtures" / "clova_tf" / "assemble_resnet50_w8" / "model.ckpt"
KEPT = ("checkpoints/best", "checkpoints/last", "model")


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--data-dir", str(data), "--output-dir", str(out), "--model", "assemble_resnet50"),
        *("--model-kwargs", "width=8", "--img-size", "32", "--crop-pct", "1.0", "--scale", "0.6", "1.0"),
        *("--batch-size", "8", "--workers", "0", "--epochs", "2", "--warmup-epochs", "0", "--lr", "0.05"),
        *("--seed", "3", *extra),
    ]


def train(argv: list[str], capsys) -> tuple[int, str, str]:
    """train.py in-process: exit code, stdout, stderr."""
    reset_accelerate()
    try:
        with one_thread():
            code = train_main("train", argv)
    except SystemExit as stop:  # argparse
        code = stop.code
    finally:
        reset_accelerate()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def timm_assemble_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(run: Path) -> dict[str, str]:
    """sha256 of every file of best/, last/ and model/ (a file where a folder belongs counts too)."""
    hashes = {}
    for name in KEPT:
        root = run / name
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            hashes[str(path.relative_to(run))] = sha256_file(path)
    return hashes


def leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".model."))


def one_line_error(err: str, code: int) -> None:
    """No traceback; a failure is one line (progress bars, drawn with '|', aside)."""
    assert "Traceback" not in err
    if code != 0:
        lines = [line for line in re.split(r"[\r\n]+", err) if line.strip() and "|" not in line]
        assert len(lines) == 1, err


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    """A finished 2-epoch run and the data sets the cases need."""
    root = tmp_path_factory.mktemp("reliability")
    data = tiny_data(root / "data", classes=2, train=8, val=4)  # 2 updates per epoch
    out = root / "run"
    reset_accelerate()
    with one_thread():
        assert train_main("train", train_argv(data, out)) == 0
    reset_accelerate()
    return dict(data=data, run=out, data3=tiny_data(root / "data3", classes=3, train=8, val=4))


@pytest.fixture
def run(base, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(base["run"], copy)
    return copy


# ---------------------------------------------------------------------------------------------- damage


def _nothing(run: Path) -> None:
    pass


def _remove(*names: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        for name in names:
            path = run / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    return damage


def _truncate(name: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)

    return damage


def _garble_state(run: Path) -> None:
    """Same size, not JSON: the marker's sizes still match, the content does not parse."""
    path = run / "checkpoints/last" / ckpt.STATE_NAME
    path.write_bytes(b"#" * path.stat().st_size)


def _last_is_a_file(run: Path) -> None:
    shutil.rmtree(run / "checkpoints/last")
    (run / "checkpoints/last").write_text("not a checkpoint")


def _killed_between_renames(run: Path) -> None:
    """A kill after `last` moved to its backup name and before the new folder took its place."""
    (run / "checkpoints/last").rename(run / "checkpoints/.last.123.0123abcd.old")
    (run / "checkpoints/.last.123.89abcdef.tmp").mkdir()
    (run / "checkpoints/.last.123.89abcdef.tmp/model.safetensors").write_bytes(b"half a file")


@dataclass
class Case:
    damage: Callable[[Path], None]
    flags: list[str]  # train.py flags on top of the run's; {run} and {data3} are filled in
    code: int
    message: str  # in stderr (errors) or stdout (the run's log)
    unchanged: bool = True  # best/, last/, model/ byte-identical afterwards
    also: list[str] = field(default_factory=list)  # more fragments of the same line


LAST = "{run}/checkpoints/last"
CASES = {
    "a second run into a folder with a run": Case(
        _nothing, [], 2, "already holds a run (checkpoints/, model/, metrics.jsonl); pass --resume auto"
    ),
    # --resume auto always finishes: from scratch, saying why, when no checkpoint is complete
    "resume auto with the checkpoints gone but model/ there": Case(
        _remove("checkpoints"),
        ["--resume", "auto"],
        0,
        "--resume auto: no complete checkpoint in {run}/checkpoints (none was saved): starting from scratch",
        unchanged=False,
    ),
    "every checkpoint damaged": Case(
        lambda r: (_truncate("checkpoints/last/model.safetensors")(r), _remove("checkpoints/best")(r)),
        ["--resume", "auto"],
        0,
        "checkpoints/last model.safetensors is truncated",
        unchanged=False,
        also=["starting from scratch"],
    ),
    "last is a file": Case(_last_is_a_file, ["--resume", "auto"], 2, "last is a file, not a checkpoint folder"),
    "optimizer.bin missing": Case(
        _remove("checkpoints/last/optimizer.bin"), ["--resume", LAST], 2, "optimizer.bin is missing"
    ),
    "truncated model.safetensors": Case(
        _truncate("checkpoints/last/model.safetensors"), ["--resume", LAST], 2, "model.safetensors is truncated"
    ),
    "invalid train_state.json": Case(_garble_state, ["--resume", LAST], 2, "train_state.json is not valid"),
    "resume with another class count": Case(
        _nothing,
        ["--resume", "auto", "--data-dir", "{data3}"],
        2,
        "cannot resume from",
        also=["num_classes 2", "num_classes 3"],
    ),
    "resume with another model": Case(
        _nothing, ["--resume", "auto", "--model-kwargs", "width=16"], 2, "model_kwargs {{'width': 8}}", also=["16"]
    ),
    "negative lr": Case(_nothing, ["--resume", "auto", "--lr", "-1"], 2, "argument --lr: must be > 0, got -1"),
    "negative image size": Case(_nothing, ["--resume", "auto", "--img-size", "-5"], 2, "argument --img-size"),
    "an image size the model cannot take": Case(
        _nothing, ["--resume", "auto", "--img-size", "8"], 2, "--img-size 8: assemble_resnet50 cannot take 8x8"
    ),
    "width=0": Case(_nothing, ["--resume", "auto", "--model-kwargs", "width=0"], 2, "--model-kwargs width=0:"),
    "width=abc": Case(_nothing, ["--resume", "auto", "--model-kwargs", "width=abc"], 2, "--model-kwargs width='abc'"),
    # recoveries: the run goes on from the newest complete checkpoint and says which and why
    "last missing: resume from best": Case(
        _remove("checkpoints/last"),
        ["--resume", "auto"],
        0,
        "resumed from {run}/checkpoints/best (the newest complete checkpoint; skipped: {run}/checkpoints/last "
        "does not exist)",
        unchanged=False,
    ),
    "last damaged: resume from best": Case(
        _remove("checkpoints/last/optimizer.bin"),
        ["--resume", "auto"],
        0,
        "resumed from {run}/checkpoints/best (the newest complete checkpoint; skipped: {run}/checkpoints/last "
        "optimizer.bin is missing)",
        unchanged=False,
    ),
    "killed between the renames": Case(
        _killed_between_renames,
        ["--resume", "auto"],
        0,
        "resumed from {run}/checkpoints/.last.123.0123abcd.old",
        unchanged=False,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_checkpoint_and_argument_cases(name, base, run, capsys):
    case = CASES[name]
    fill = dict(run=run, data3=base["data3"])
    case.damage(run)
    before = snapshot(run)
    code, out, err = train(train_argv(base["data"], run, *(f.format(**fill) for f in case.flags)), capsys)
    assert code == case.code, err
    one_line_error(err, code)
    for fragment in [case.message, *case.also]:
        assert fragment.format(**fill) in (err if code else out), (err, out)
    if case.unchanged:
        assert snapshot(run) == before
    if code == 0:
        assert ckpt.select_resume(run, "auto").state.epoch == 2  # the run is complete again


def test_best_is_a_copy_not_a_link(run):
    for name in ("model.safetensors", "optimizer.bin"):
        assert (run / "checkpoints/best" / name).stat().st_nlink == 1
    best = snapshot(run)
    _truncate("checkpoints/last/model.safetensors")(run)
    assert {k: v for k, v in snapshot(run).items() if "best" in k} == {k: v for k, v in best.items() if "best" in k}


# ---------------------------------------------------------------------------------------------- faults mid-save


def _fail_second_write(monkeypatch, error: BaseException) -> list[str]:
    """accelerate writes the model first, then the optimizer: the second file fails."""
    real = accelerate.checkpointing.save
    written: list[str] = []

    def save(obj, path, *args, **kwargs):
        if written:
            raise error
        written.append(str(path))
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(accelerate.checkpointing, "save", save)
    return written


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 2, "the disk is full (about "),
        (OSError(errno.EROFS, "Read-only file system"), 2, "the file system is read-only"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
    ids=["disk-full", "read-only", "killed"],
)
@pytest.mark.slow
def test_fault_while_saving_loses_nothing_but_that_epoch(error, code, message, base, run, capsys, monkeypatch):
    before = snapshot(run)
    written = _fail_second_write(monkeypatch, error)
    got, _, err = train(train_argv(base["data"], run, "--resume", "auto", "--epochs", "3"), capsys)
    assert written and got == code, err
    one_line_error(err, got)
    assert message in err and "Traceback" not in err
    if code == 2:
        assert f"cannot write {run}/checkpoints/.last." in err
        assert "the checkpoint of epoch 2 is intact: free space, then rerun with --resume auto" in err
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        assert "MB needed" in err and "MB free there" in err
    assert snapshot(run) == before and leftovers(run) == []
    monkeypatch.undo()
    # nothing lost but the interrupted epoch: the run goes on from epoch 2 and ends like an unbroken one
    assert train(train_argv(base["data"], run, "--resume", "auto", "--epochs", "3"), capsys)[0] == 0
    state = ckpt.select_resume(run, "auto").state
    assert (state.epoch, state.step) == (3, 6)
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3


def test_disk_full_while_copying_best_keeps_both(tmp_path, monkeypatch):
    """`best` is copied before `last` moves: a failed copy leaves both checkpoints as they were."""
    reset_accelerate()
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    ckpt.save_checkpoint(accelerator, tmp_path / "checkpoints", ckpt.TrainState(epoch=1, step=1), best=True)
    before = snapshot(tmp_path)
    assert before and any(k.startswith("checkpoints/best/") for k in before)

    def full(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(shutil, "copy2", full)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(TimmAssembleError, match="the disk is full .*the checkpoint of epoch 1 is intact"):
        ckpt.save_checkpoint(accelerator, tmp_path / "checkpoints", ckpt.TrainState(epoch=2, step=2), best=True)
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []
    reset_accelerate()


@pytest.mark.slow
def test_overwrite_starts_over(base, run, capsys):
    code, out, _ = train(train_argv(base["data"], run, "--overwrite", "--epochs", "1"), capsys)
    assert code == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert ckpt.select_resume(run, "auto").state.epoch == 1


# ---------------------------------------------------------------------------------------------- data and arguments


@pytest.mark.slow
def test_default_warmup_is_shortened_with_a_note(base, tmp_path, capsys, caplog):
    argv = train_argv(base["data"], tmp_path / "w", "--epochs", "1")
    i = argv.index("--warmup-epochs")
    del argv[i : i + 2]  # the default warm-up (5 epochs) with a 1-epoch run
    code, _, err = train(argv, capsys)
    assert code == 0, err
    assert any("shortened to 0.5" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("one-class", "has 1 class (00_red_circle): a classifier needs at least 2"),
        ("empty-class", "train/01_orange_square is empty"),
    ],
)
def test_data_problems_before_any_file(layout, message, tmp_path, capsys):
    data = tiny_data(tmp_path / "d", classes=2, train=4, val=2)
    if layout == "one-class":
        for split in ("train", "val"):
            shutil.rmtree(data / split / "01_orange_square")
    else:
        for f in (data / "train" / "01_orange_square").iterdir():
            f.unlink()
    code, _, err = train(train_argv(data, tmp_path / "out"), capsys)
    assert code == 2 and message in err
    one_line_error(err, code)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------- convert, validate, predict


def test_convert_to_a_read_only_folder(tmp_path, capsys, monkeypatch):
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if "ro" in self.parts:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    out = tmp_path / "ro" / "converted"
    code, _, err = timm_assemble_cli(
        ["convert", "--model", "assemble_resnet50", "--checkpoint", str(CLOVA_R50), "--out", str(out)], capsys
    )
    assert code == 2 and f"cannot write {out}: the file system is read-only" in err
    one_line_error(err, code)
    assert not out.exists()


@pytest.mark.slow
def test_convert_disk_full_keeps_the_previous_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "converted"
    argv = ["convert", "--model", "assemble_resnet50", "--checkpoint", str(CLOVA_R50), "--out", str(out)]
    assert timm_assemble_cli(argv, capsys)[0] == 0
    before = {p.name: sha256_file(p) for p in out.iterdir()}

    def full(model, folder, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(timm_assemble.weights.hub_folder, "save_for_hf", full)
    code, _, err = timm_assemble_cli([*argv, "--overwrite"], capsys)
    assert code == 2 and "the disk is full (about" in err and "MB needed" in err and "MB free there" in err
    one_line_error(err, code)
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]  # no staging folder left


def test_validate_with_a_truncated_checkpoint(base, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=2).state_dict(), str(weights))
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    argv = ["validate", "--model", "test_resnet", "--no-pretrained", "--num-classes", "2"]
    code, _, err = timm_assemble_cli(
        [*argv, "--checkpoint", str(weights), "--data-dir", str(base["data"] / "val")], capsys
    )
    expected = f"cannot read weights file {weights} as a state dict or training checkpoint: SafetensorError"
    assert code == 2 and expected in err
    one_line_error(err, code)


@pytest.mark.slow
def test_predict_a_folder_of_images(base, tmp_path, capsys):
    model = f"local-dir:{base['run'] / 'model'}"
    folder = base["data"] / "val" / "00_red_circle"
    code, out, err = timm_assemble_cli(["predict", "--model", model, str(folder)], capsys)
    assert code == 0, err
    assert all(str(p) in out for p in folder.glob("*.png"))
    (tmp_path / "empty").mkdir()
    code, _, err = timm_assemble_cli(["predict", "--model", model, str(tmp_path / "empty")], capsys)
    assert code == 2 and "holds no image files" in err


@pytest.mark.slow
def test_sixteen_bit_image_predicts_as_eight_bit(base, tmp_path, capsys):
    source = next((base["data"] / "val" / "00_red_circle").glob("*.png"))
    gray = Image.open(source).convert("L")
    gray.save(tmp_path / "g8.png")
    wide = Image.new("I;16", gray.size)
    wide.frombytes((np.asarray(gray).astype("<u2") * 257).tobytes())
    wide.save(tmp_path / "g16.png")
    model = f"local-dir:{base['run'] / 'model'}"
    _, out, _ = timm_assemble_cli(["predict", "--json", "--model", model, str(tmp_path / "g8.png")], capsys)
    _, out16, _ = timm_assemble_cli(["predict", "--json", "--model", model, str(tmp_path / "g16.png")], capsys)
    assert out.replace("g8.png", "X") == out16.replace("g16.png", "X")


def test_unexpected_errors_are_one_line_unless_debugging(tmp_path, capsys, monkeypatch):
    import timm_assemble.cli.predict as predict

    def broken(*args, **kwargs):
        raise RuntimeError("something internal\nwith a second line")

    Image.new("RGB", (8, 8)).save(tmp_path / "y.png")  # images are checked before the model loads
    parser_argv = ["predict", "--model", "x", str(tmp_path / "y.png")]
    monkeypatch.setattr(predict, "load_model", broken)
    code, _, err = timm_assemble_cli(parser_argv, capsys)
    assert code == 1 and "unexpected error: RuntimeError: something internal (rerun with --debug" in err
    one_line_error(err, code)
    with pytest.raises(RuntimeError):
        cli.main([*parser_argv, "--debug"])
    monkeypatch.setenv("TIMM_ASSEMBLE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(parser_argv)


def test_safetensors_write_errors_keep_their_errno(tmp_path):
    """safetensors reports OS errors as text; the disk-full message needs the errno back."""
    from timm_assemble.fileio import os_error_of

    with pytest.raises(Exception) as caught:
        save_file({"w": torch.zeros(2)}, str(tmp_path / "missing-folder" / "w.safetensors"))
    assert not isinstance(caught.value, OSError)
    assert os_error_of(caught.value).errno == errno.ENOENT
    assert os_error_of(KeyboardInterrupt()) is None and os_error_of(ValueError("no errno here")) is None


# ---------------------------------------------------------------------------------------------- issue 21


@pytest.mark.slow
def test_divergence_stops_with_the_last_good_state_untouched(base, run, capsys):
    """--lr 1e4: one line naming the step and what to try, exit 2; what is saved is finite and agrees."""
    code, _, err = train(train_argv(base["data"], run, "--resume", "auto", "--epochs", "8", "--lr", "1e4"), capsys)
    assert code == 2, err
    one_line_error(err, code)
    assert re.search(r"training diverged: (the loss is not finite at step \d+|after epoch \d+ .* not finite)", err)
    assert "try a lower --lr (peak now 1e+04)" in err
    last = ckpt.select_resume(run, "auto").state
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, last.epoch + 1))
    for folder in (run / "checkpoints/last", run / "checkpoints/best", run / "model"):
        weights = load_file(folder / "model.safetensors")
        assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point()), folder


@pytest.mark.slow
def test_a_kill_during_the_first_save_then_the_same_command_finishes(base, tmp_path, capsys, monkeypatch):
    """The requeued job: same command, --resume auto, after a kill while the first checkpoint was written."""
    out = tmp_path / "run"
    argv = train_argv(base["data"], out, "--resume", "auto", "--epochs", "1")
    real = accelerate.checkpointing.save

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(accelerate.checkpointing, "save", killed)
    monkeypatch.setattr(ckpt.shutil, "rmtree", lambda *a, **k: None)  # SIGKILL: no clean-up runs
    assert train(argv, capsys)[0] == 130
    assert not (out / "metrics.jsonl").exists() and not (out / "model").exists()  # nothing ran ahead of it
    assert list((out / "checkpoints").glob(".last.*.tmp"))  # the half-written first checkpoint
    monkeypatch.undo()
    assert accelerate.checkpointing.save is real
    code, stdout, err = train(argv, capsys)
    assert code == 0, err
    assert "--resume auto: no complete checkpoint in" in stdout and "starting from scratch" in stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1 and (out / "model").is_dir()
    assert not list((out / "checkpoints").glob(".*"))  # the killed save's temporary folder is gone


@pytest.mark.slow
def test_outputs_never_hold_an_epoch_the_checkpoint_does_not(base, run, capsys):
    """Rows ahead of the checkpoint are dropped; a best checkpoint whose export a kill prevented is exported."""
    shutil.rmtree(run / "model")  # killed between the checkpoint of the best epoch and its export
    before = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([*before, before[-1].replace('"epoch": 2', '"epoch": 3')]) + "\n")
    code, _, err = train(train_argv(base["data"], run, "--resume", f"{run}/checkpoints/best"), capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert (run / "model" / "model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("given", ["run folder", "file in the checkpoint"])
def test_resume_path_alone_continues_the_run_that_holds_it(base, run, capsys, given):
    """timm resumes from the file alone: so does --resume PATH without --output-dir."""
    last = run / "checkpoints" / "last"
    path = run if given == "run folder" else next(p for p in sorted(last.iterdir()) if p.is_file())
    argv = train_argv(base["data"], run, "--resume", str(path), "--epochs", "3")
    del argv[argv.index("--output-dir") : argv.index("--output-dir") + 2]
    code, stdout, err = train(argv, capsys)
    assert code == 0, err
    assert f"resumed from {last} (as --resume asked) at epoch 2" in stdout
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_second_run_into_a_locked_folder_names_the_owner(base, run, capsys):
    with folder_lock(run, "output dir"):
        code, _, err = train(train_argv(base["data"], run, "--resume", "auto", "--epochs", "3"), capsys)
    assert code == 2 and f"output dir {run} is in use by another run (PID {os.getpid()} on" in err
    one_line_error(err, code)
    assert not (run / ".timm-assemble.lock").exists()
