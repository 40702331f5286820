"""Issue 21's examples replayed as mechanism tests: writers, locks, data discovery, non-finite scores, crafted
checkpoints. The training-run examples (--lr 1e4, a kill during the first save) are in test_reliability.py."""

from __future__ import annotations

import multiprocessing
import os
import resource
import socket
import stat
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_testing import errors_in_threads
from PIL import Image
from tf_bundle_writer import write_bundle

from timm_assemble.convert import convert_checkpoint
from timm_assemble.convert.tensor_bundle import TensorBundleReader
from timm_assemble.data.datasets import build_data_splits
from timm_assemble.data.images import IMAGE_EXTENSIONS, READ_ERRORS, image_files, open_image, scan_image_folder
from timm_assemble.errors import TimmAssembleError
from timm_assemble.evaluation.scoring import topk_correct
from timm_assemble.fileio import (
    atomic_dir,
    atomic_path,
    atomic_write,
    replace_dir,
    sha256_file,
)
from timm_assemble.locks import FolderLock, folder_lock
from timm_assemble.training.metrics import confusion_counts

CLOVA_R50 = Path(__file__).resolve().parent / "fixtures" / "clova_tf" / "assemble_resnet50_w8" / "model.ckpt"
STEM = "resnet_model/stage0/conv2d/kernel"


# ---------------------------------------------------------------------------------------------- one writer


def _char_device(path: Path) -> Path:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # the same device as /dev/full
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return path


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (_char_device, "a character device"),
        (_fifo, "a FIFO"),
        (_socket, "a socket"),
        (lambda p: (p.mkdir(), p)[1], "a folder"),
    ],
    ids=["mknod-char-device", "fifo", "socket", "folder"],
)
def test_a_special_target_is_refused_and_left_as_it_was(tmp_path, make, kind):
    target = make(tmp_path / "report.json")
    before = os.lstat(target)
    for write in (
        lambda: atomic_write(target, "{}"),
        lambda: atomic_path(target).__enter__(),
    ):
        with pytest.raises(TimmAssembleError, match=f"cannot write {target}: it is {kind}"):
            write()
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_a_symlink_is_never_silently_replaced(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("mine")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with pytest.raises(TimmAssembleError, match="is a symlink .*pass the path it points to"):
        atomic_write(link, "{}")
    folder_link = tmp_path / "model"
    folder_link.symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(TimmAssembleError, match="is a symlink"), atomic_dir(folder_link, overwrite=True):
        pass
    assert link.is_symlink() and folder_link.is_symlink() and real.read_text() == "mine"


@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_stdout_names_print(name, capsys):
    atomic_write(name, '{"top1": 1.0}\n')
    assert capsys.readouterr().out == '{"top1": 1.0}\n'


def test_an_existing_dot_old_is_not_deleted(tmp_path):
    """The backup of a replaced folder has a name unique to the call: the user's own `OUT.old` survives."""
    out, old = tmp_path / "OUT", tmp_path / "OUT.old"
    old.mkdir()
    (old / "precious.txt").write_text("keep")
    for _ in range(2):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "model.safetensors").write_text("new")
    assert (old / "precious.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT", "OUT.old"]


def test_replace_dir_keeps_a_complete_folder_at_every_instant(tmp_path, monkeypatch):
    """A kill between the two renames leaves the old folder under a backup name, the new one complete."""
    dst, src = tmp_path / "last", tmp_path / "new"
    dst.mkdir()
    (dst / "a").write_text("old")
    src.mkdir()
    (src / "a").write_text("new")
    real_replace = os.replace

    def killed_second(a, b):
        if Path(a) == src:
            raise KeyboardInterrupt
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", killed_second)
    with pytest.raises(KeyboardInterrupt):
        replace_dir(src, dst)
    backups = [p for p in tmp_path.iterdir() if p.name.startswith(".last.") and p.name.endswith(".old")]
    assert len(backups) == 1 and (backups[0] / "a").read_text() == "old" and (src / "a").read_text() == "new"


def test_convert_out_holding_the_checkpoint_is_refused(tmp_path):
    for path in CLOVA_R50.parent.glob("model.ckpt.*"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    before = {p.name: sha256_file(p) for p in tmp_path.iterdir()}
    with pytest.raises(TimmAssembleError, match="it holds the input checkpoint file"):
        convert_checkpoint("assemble_resnet50", tmp_path / "model.ckpt", tmp_path, overwrite=True)
    assert {p.name: sha256_file(p) for p in tmp_path.iterdir()} == before


def test_hashing_a_fifo_does_not_hang(tmp_path):
    with pytest.raises(TimmAssembleError, match="is a FIFO"):
        sha256_file(_fifo(tmp_path / "model.safetensors"))


# ---------------------------------------------------------------------------------------------- locks


def _hold(folder: str, ready, release) -> None:
    with folder_lock(folder, "output dir"):
        ready.set()
        release.wait(30)


def test_a_second_owner_gets_one_line_naming_the_first(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    owner = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    owner.start()
    try:
        assert ready.wait(30)
        with pytest.raises(TimmAssembleError) as info:
            FolderLock(tmp_path, "output dir").acquire()
        message = str(info.value)
        assert f"output dir {tmp_path} is in use by another run (PID {owner.pid} on" in message and "started" in message
    finally:
        release.set()
        owner.join(30)
    with folder_lock(tmp_path) as lock:  # released on exit: free again
        assert lock.held


def test_a_lock_whose_owner_was_killed_is_free(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    owner = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    owner.start()
    assert ready.wait(30)
    with pytest.raises(TimmAssembleError, match=f"PID {owner.pid}"):
        FolderLock(tmp_path).acquire()
    owner.kill()  # SIGKILL: no clean-up ran, the lock file still names the dead owner
    owner.join(30)
    assert (tmp_path / ".timm-assemble.lock").exists()
    with folder_lock(tmp_path) as lock:
        assert lock.held


def test_a_waiting_lock_gets_it_when_the_owner_finishes(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    owner = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    owner.start()
    assert ready.wait(30)
    release.set()
    with folder_lock(tmp_path, timeout=30) as lock:
        assert lock.held
    owner.join(30)


@pytest.mark.parametrize("in_the_way", ["file", "dangling_symlink"])
def test_a_lock_folder_that_is_not_a_folder_is_one_line(tmp_path, in_the_way):
    target = tmp_path / "entry"
    if in_the_way == "file":
        target.write_text("x")
    else:
        target.symlink_to(tmp_path / "nowhere")
    with pytest.raises(TimmAssembleError, match="cannot write folder .*entry: it is a"):
        with folder_lock(target, timeout=0.2, scratch_root=tmp_path):
            pass


def test_locks_taken_in_turn_leave_no_folder_behind(tmp_path):
    """Lock folders under a scratch root (the weights cache's `.locks/NAME`) go again with their last owner,
    however acquire and release interleave (a waiter may create its lock file in a folder its predecessor
    is about to remove: that removal then fails, and the waiter removes the folder when it releases)."""

    def take_in_turn() -> None:
        for _ in range(40):
            with folder_lock(tmp_path / ".locks" / "entry", timeout=30, scratch_root=tmp_path):
                pass

    assert errors_in_threads(take_in_turn, 4, timeout=60) == []
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- data discovery


def _png(path: Path, color: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (color, color, color)).save(path)
    return path


def test_every_pillow_format_is_found(tmp_path):
    for ext in (".webp", ".tiff", ".tif", ".bmp", ".gif", ".png", ".jpg"):
        assert ext in IMAGE_EXTENSIONS
        _png(tmp_path / "c" / "a.png").rename(tmp_path / "c" / f"img{ext}")
    scan = scan_image_folder(tmp_path)
    assert len(scan.samples) == 7 and not scan.skipped


def test_a_webp_class_trains(tmp_path):
    for split in ("train", "val"):
        for cls in ("cats", "dogs"):
            for i in range(2):
                _png(tmp_path / split / cls / f"{i}.png").rename(tmp_path / split / cls / f"{i}.webp")
    splits = build_data_splits(tmp_path)
    assert splits.label_names == ["cats", "dogs"] and len(splits.train) == 4 and len(splits.val) == 4


def test_a_symlinked_class_and_a_loop_are_reported_once(tmp_path):
    for cls in ("cat", "dog"):
        _png(tmp_path / cls / "a.png")
    (tmp_path / "dog2").symlink_to("dog")  # another name for a class: not a third class
    (tmp_path / "cat" / "loop").symlink_to("..")  # 41 copies of the class before
    (tmp_path / "cat" / "into_dog").symlink_to("../dog")  # a link from one class into another
    (tmp_path / "cat" / "notes.txt").write_text("x")
    _fifo(tmp_path / "cat" / "pipe.png")
    scan = scan_image_folder(tmp_path)
    assert scan.class_to_idx == {"cat": 0, "dog": 1}
    assert scan.counts() == {"cat": 1, "dog": 1}
    note = scan.skipped_note(limit=10)
    for fragment in (
        "dog2 (same folder as dog)",
        "cat/loop (symlink loop)",
        "cat/into_dog (same folder as dog)",
        "cat/notes.txt (not an image extension)",
        "cat/pipe.png (a FIFO, not a regular file)",
    ):
        assert fragment in note


def test_predict_files_use_the_same_rule(tmp_path):
    _png(tmp_path / "a" / "x.png").rename(tmp_path / "a" / "x.webp")
    (tmp_path / "a" / "same.webp").symlink_to("x.webp")
    assert image_files([tmp_path]) == [tmp_path / "a" / "x.webp"]


def _declared_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims `width` x `height` (what a 12000x12000 one-row image looks like)."""
    raw = bytearray(_png(path).read_bytes())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    raw[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr : ihdr + 17])))
    path.write_bytes(bytes(raw))
    return path


def test_declared_size_is_refused_before_decoding(tmp_path):
    big = _declared_png(tmp_path / "bomb.png", 12000, 12000)  # 144 MP: over Pillow's limit, under twice it
    start = time.perf_counter()
    with pytest.raises(READ_ERRORS, match="declared size 12000x12000 .*--max-image-pixels"):
        open_image(big)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------------------- scores


def test_non_finite_logits_are_never_hits():
    logits = torch.tensor([[float("nan")] * 3, [0.0, float("inf"), 1.0], [0.0, 5.0, 1.0]])
    target = torch.tensor([0, 1, 1])
    assert topk_correct(logits, target, (1, 2)).tolist() == [1, 1]
    assert int(confusion_counts(logits, target, 3).sum()) == 1


# ---------------------------------------------------------------------------------------------- crafted checkpoints


def _crafted(tmp_path: Path, stem_shape: tuple[int, ...]) -> Path:
    reader = TensorBundleReader(CLOVA_R50)
    tensors = {name: reader.read(name) for name in reader}
    write_bundle(tmp_path / "model.ckpt", tensors, claim={STEM: stem_shape})
    return tmp_path / "model.ckpt"


@pytest.mark.parametrize(
    ("width", "message"),
    [
        (256, "stored size 4704 bytes does not match float32"),  # the claim is not its data
        (1 << 20, "claims width 1048576, outside 1..1024"),
        (0, "claims width 0, outside 1..1024"),
        (-8, "negative dimension (-8)"),
    ],
)
def test_a_crafted_stem_width_costs_nothing(tmp_path, width, message):
    prefix = _crafted(tmp_path, (7, 7, 3, width))  # the rest of the file is a width-8 model
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(TimmAssembleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert_checkpoint("assemble_resnet50", prefix, tmp_path / "out")
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 300_000  # KiB: far below a real model
    assert not (tmp_path / "out").exists()


DENSE, DENSE_BIAS = "resnet_model/dense/kernel", "resnet_model/dense/bias"


def _classes(count: int):
    """A real classifier of `count` outputs (data and shape agree)."""
    return lambda t: t.update({DENSE: t[DENSE][:, :count], DENSE_BIAS: t[DENSE_BIAS][:count]})


@pytest.mark.parametrize(
    ("edit", "claim", "message"),
    [  # the advice follows from the shape: --keep-background only where it makes the checkpoint convertible
        (_classes(1000), {}, "has 1000 classes, not the official 1001 .*: it has no background class to drop; pass "
                             "--keep-background"),
        (_classes(10), {}, "has 10 classes, .* index 0 is not known to be a background class; pass --keep-background "
                           "to convert all 10"),
        (None, {DENSE: (256, 10)}, r"dense/kernel.*: stored size 1025024 bytes does not match float32\[256, 10\]"),
        (None, {DENSE: (256, 0)}, r"dense/kernel \[256, 0\] claims 0 classes, outside 1..1000000$"),
        (None, {DENSE: (256, 1 << 40)}, r"claims 1099511627776 classes, outside 1..1000000$"),
        (None, {DENSE: (256, 1001, 1)}, r"dense/kernel has shape \[256, 1001, 1\]; an official checkpoint stores it "
                                        r"as \[in, classes\]$"),
        (None, {STEM: (7, 7, 3, 8, 1)}, r"conv2d/kernel has shape \[7, 7, 3, 8, 1\]; .* as \[kh, kw, in, width\]$"),
    ],
    ids=["1000-classes", "10-classes", "10-claimed", "0-claimed", "huge-claimed", "dense-3d", "stem-5d"],
)
def test_a_classifier_or_stem_shape_gets_the_advice_its_shape_implies(tmp_path, edit, claim, message):
    reader = TensorBundleReader(CLOVA_R50)
    tensors = {name: reader.read(name) for name in reader}
    if edit:
        edit(tensors)
    write_bundle(tmp_path / "model.ckpt", tensors, claim=claim)
    with pytest.raises(TimmAssembleError, match=message) as info:
        convert_checkpoint("assemble_resnet50", tmp_path / "model.ckpt", tmp_path / "out")
    assert "\n" not in str(info.value) and ("keep-background" in str(info.value)) == ("keep-" in message)
    if STEM not in claim:  # the correct stem is never listed as an unexpected shape
        assert STEM not in str(info.value)


def test_a_claimed_shape_larger_than_its_bytes_is_refused_before_reading(tmp_path):
    reader = TensorBundleReader(CLOVA_R50)
    tensors = {name: reader.read(name) for name in reader}
    name = "resnet_model/dense/kernel"
    shape = tensors[name].shape
    write_bundle(tmp_path / "model.ckpt", {**tensors, name: np.zeros((shape[0], 2), np.float32)}, claim={name: shape})
    with pytest.raises(TimmAssembleError, match=r"stored size 2048 bytes does not match float32\[256, 1001\]"):
        convert_checkpoint("assemble_resnet50", tmp_path / "model.ckpt", tmp_path / "out")


# ---------------------------------------------------------------------------------------------- more new cases


def _block_device(path: Path) -> Path:
    os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 0))
    return path


@pytest.mark.parametrize(
    ("make", "write", "message"),
    [
        (_block_device, lambda p: atomic_write(p, "{}"), "it is a block device, not a regular file"),
        (lambda p: (p.write_text("x"), p)[1], lambda p: atomic_dir(p, overwrite=True).__enter__(), "it is a file"),
        (
            lambda p: (p.write_text("x"), p / "x.json")[1],
            lambda p: atomic_write(p, "{}"),
            "a part of its path is a file",
        ),
        (lambda p: p.with_name("n" * 250), lambda p: atomic_write(p, "{}"), "the file name is too long"),
        (lambda p: Path("-"), lambda p: atomic_path(p).__enter__(), "cannot write this output to standard output"),
        (lambda p: p.parent, lambda p: sha256_file(p), "it is a folder, not a regular file"),
    ],
    ids=["block-device", "folder-onto-file", "parent-is-file", "name-too-long", "binary-to-stdout", "hash-a-folder"],
)
def test_more_targets_are_one_clear_line(tmp_path, make, write, message):
    target = make(tmp_path / "out")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(TimmAssembleError, match=message):
        write(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_damaged_metrics_file_is_named_by_line(tmp_path):
    from timm_assemble.training.metrics import read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{not json\n')
    with pytest.raises(TimmAssembleError, match="metrics.jsonl line 2 is not a metrics row"):
        read_metrics(tmp_path / "metrics.jsonl")


def test_a_fifo_index_does_not_block(tmp_path):
    _fifo(tmp_path / "model.ckpt.index")
    with pytest.raises(TimmAssembleError, match="is not a regular file"):
        TensorBundleReader(tmp_path / "model.ckpt")


@pytest.mark.parametrize(
    ("marker", "state", "why"),
    [
        (
            {"files": {"../../etc/passwd": 1}},
            {"epoch": 1, "step": 1},
            "has key '../../etc/passwd', which is not a path",
        ),
        ({"files": {}}, {"epoch": "3", "step": 1}, "epoch must be a whole number, got '3'"),
        ({"files": {}}, {"epoch": 1, "step": 1, "rows": [{"top1": 1}]}, "rows[0] must be a metrics row with an epoch"),
        ({"files": []}, {"epoch": 1, "step": 1}, "files must be an object"),
    ],
    ids=["marker-escapes-the-folder", "epoch-a-string", "row-without-epoch", "files-a-list"],
)
def test_a_tampered_checkpoint_record_is_named_not_read(tmp_path, marker, state, why):
    import json

    from timm_assemble.training.checkpoint import MARKER_NAME, STATE_NAME, inspect_checkpoint

    (tmp_path / MARKER_NAME).write_text(json.dumps(marker))
    (tmp_path / STATE_NAME).write_text(json.dumps(state))
    found, problem = inspect_checkpoint(tmp_path)
    assert found is None and why in problem and "\n" not in problem


# ---------------------------------------------------------------------------------------------- streaming


class _Tiny(torch.nn.Sequential):
    """A 2-class model with a data config, small enough that 2,000 images take seconds."""

    def __init__(self) -> None:
        super().__init__(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
        self.num_classes = 2
        self.pretrained_cfg = dict(input_size=(3, 16, 16), crop_pct=1.0, interpolation="bilinear",
                                   mean=(0.5,) * 3, std=(0.5,) * 3, label_names=["a", "b"])  # fmt: skip


@pytest.mark.slow
def test_predict_holds_a_batch_not_the_folder(tmp_path, monkeypatch):
    """2,000 images: when the model first runs, at most one batch has been decoded (the count, not the clock)."""
    import timm_assemble.predict as predict

    data = _png(tmp_path / "0000.png").read_bytes()
    for i in range(1, 2000):
        (tmp_path / f"{i:04d}.png").write_bytes(data)  # copies, not links: discovery counts a linked file once
    decoded, at_forward = [0], []
    real = predict.load_image

    def counting(path):
        decoded[0] += 1
        return real(path)

    model = _Tiny()
    model.register_forward_pre_hook(  # real batches only: the size budget's meta-device pass decodes nothing
        lambda module, args: args[0].is_meta or at_forward.append((decoded[0], len(args[0])))
    )
    monkeypatch.setattr(predict, "load_image", counting)
    results = predict.predict(model, [tmp_path], top_k=1)
    assert len(results) == 2000 and decoded[0] == 2000
    seen = 0
    for decoded_so_far, batch in at_forward:  # held at each forward: this batch, nothing ahead of it
        seen += batch
        assert decoded_so_far == seen and batch <= predict.BATCH


def test_predict_refuses_nan_scores(tmp_path):
    """NaN logits are an error (test_finite.py: exit 2 in predict, validate and robustness), never a guess."""
    import timm_assemble.predict as predict

    _png(tmp_path / "x.png")
    model = _Tiny()
    torch.nn.init.constant_(model[2].bias, float("nan"))
    with pytest.raises(TimmAssembleError, match="output is not finite .* for 1 of 1 images"):
        predict.predict(model, [tmp_path / "x.png"], top_k=2)


def test_the_declared_size_limit_is_a_flag(tmp_path, capsys):
    from timm_assemble import cli
    from timm_assemble.data.images import set_max_image_pixels

    small = _png(tmp_path / "small.png")  # 8x8 = 64 pixels
    try:
        set_max_image_pixels(63)
        with pytest.raises(READ_ERRORS, match="declared size 8x8"):
            open_image(small)
        set_max_image_pixels(64)
        assert open_image(small).size == (8, 8)
    finally:
        set_max_image_pixels(None)
    bomb = _declared_png(tmp_path / "bomb.png", 12000, 12000)
    code = cli.main(["predict", "--model", "resnet18", "--device", "cpu", str(bomb)])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot decode image {bomb}: declared size 12000x12000" in err and "--max-image-pixels" in err
