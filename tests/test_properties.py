"""Property-based tests (hypothesis): classes of inputs, not lists, for the writers, the checkpoint reader, the
config loader and data discovery. Each property says what must hold for every input of its class."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tf_bundle_writer import write_bundle

from timm_assemble.convert.tensor_bundle import TensorBundleReader
from timm_assemble.data.images import IMAGE_EXTENSIONS, scan_image_folder
from timm_assemble.errors import TimmAssembleError
from timm_assemble.fileio import atomic_dir, atomic_write
from timm_assemble.training.config import load_config_file

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------------- writers

KINDS = ("absent", "file", "folder", "link-to-file", "link-to-folder", "broken-link", "fifo", "char-device")


def _make(kind: str, path: Path, elsewhere: Path) -> None:
    if kind == "file":
        path.write_text("old")
    elif kind == "folder":
        path.mkdir()
        (path / "inside").write_text("old")
    elif kind == "link-to-file":
        path.symlink_to(elsewhere / "f")
    elif kind == "link-to-folder":
        path.symlink_to(elsewhere, target_is_directory=True)
    elif kind == "broken-link":
        path.symlink_to(elsewhere / "missing")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "char-device":
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers


def _tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry's type and (for regular files) content, links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            out[str(path.relative_to(root))] = (stat.S_IFMT(mode), path.read_bytes() if stat.S_ISREG(mode) else None)
    return out


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    writer=st.sampled_from(("file", "folder", "folder-overwrite")),
    siblings=st.lists(st.sampled_from(("out.old", ".out.old", "out.tmp", "out~")), unique=True),
    payload=st.binary(max_size=64),
)
def test_a_writer_replaces_only_what_it_may(kind, writer, siblings, payload):
    """Outcome is the new output or one TimmAssembleError; a non-regular target, a link, and every sibling
    (whatever its name) are left exactly as they were; no temporary name stays behind."""
    with tempfile.TemporaryDirectory() as tmp:
        root, elsewhere = Path(tmp) / "root", Path(tmp) / "elsewhere"
        root.mkdir()
        elsewhere.mkdir()
        (elsewhere / "f").write_text("theirs")
        target = root / "out"
        _make(kind, target, elsewhere)
        for name in siblings:
            (root / name).write_text(name)
        before, outside = _tree(root), _tree(elsewhere)
        try:
            if writer == "file":
                atomic_write(target, payload)
            else:
                with atomic_dir(target, overwrite=writer == "folder-overwrite") as folder:
                    (folder / "new").write_bytes(payload)
        except TimmAssembleError as err:
            assert "\n" not in str(err)
            assert _tree(root) == before
        else:
            may_replace = {"file": ("absent", "file"), "folder": ("absent",), "folder-overwrite": ("absent", "folder")}
            assert kind in may_replace[writer]
            after = _tree(root)
            assert {k: v for k, v in after.items() if k.split("/")[0] != "out"} == {
                k: v for k, v in before.items() if k.split("/")[0] != "out"
            }  # every sibling as it was
            if writer == "file":
                assert target.is_file() and not target.is_symlink() and target.read_bytes() == payload
            else:
                assert [p.name for p in target.iterdir()] == ["new"] and (target / "new").read_bytes() == payload
        assert _tree(elsewhere) == outside


# ---------------------------------------------------------------------------------------------- checkpoint reader


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> bytes:
    prefix = tmp_path_factory.mktemp("bundle") / "model.ckpt"
    rng = np.random.default_rng(0)
    tensors = {
        f"resnet_model/layer{i}/kernel": rng.standard_normal((3, 2, i + 1)).astype(np.float32) for i in range(12)
    }
    write_bundle(prefix, tensors, block_size=128)
    return Path(f"{prefix}.index").read_bytes(), Path(f"{prefix}.data-00000-of-00001").read_bytes()


@FAST
@given(
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.integers(0, 8),
)
def test_a_damaged_index_is_one_clear_error_or_reads_back_checked(bundle, edits, cut):
    """Any bytes changed (and any tail cut): the reader opens it, or raises TimmAssembleError, fast; every
    tensor it then reads is checked (CRC) or refused in one line, never a raw exception."""
    index, data = bundle
    damaged = bytearray(index)
    for position, value in edits:
        damaged[position % len(damaged)] = value
    damaged = damaged[: len(damaged) - cut]
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "model.ckpt"
        Path(f"{prefix}.index").write_bytes(bytes(damaged))
        Path(f"{prefix}.data-00000-of-00001").write_bytes(data)
        start = time.perf_counter()
        try:
            reader = TensorBundleReader(prefix)
            for name in reader:
                reader.read(name)
        except TimmAssembleError as err:
            assert str(err)
        assert time.perf_counter() - start < 5


# ---------------------------------------------------------------------------------------------- config loader

toml_values = st.recursive(
    st.none().map(lambda _: "x")
    | st.booleans()
    | st.integers(-(1 << 70), 1 << 70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=4,
)
KEYS = ("lr", "epochs", "batch_size", "scale", "model", "model_kwargs", "hflip", "mixup", "sched", "nonsense", "mode")


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(value), repr(value))
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


@FAST
@given(settings_=st.dictionaries(st.sampled_from(KEYS), toml_values, max_size=4), raw=st.binary(max_size=40))
@example(settings_={"scale": ["a", 1]}, raw=b"\xff\xfe")
@example(settings_={"epochs": 1 << 70, "lr": float("nan")}, raw=b"lr = inf")
def test_a_config_file_loads_or_is_one_clear_error(settings_, raw):
    """Typed TOML of any shape, and arbitrary bytes: settings come back, or one TimmAssembleError."""
    with tempfile.TemporaryDirectory() as tmp:
        for text in ("\n".join(f"{k} = {_toml(v)}" for k, v in settings_.items()).encode(), raw):
            path = Path(tmp) / "config.toml"
            path.write_bytes(text)
            try:
                loaded = load_config_file(path)
            except TimmAssembleError as err:
                assert str(err).startswith(str(path)) or "config file" in str(err)
            else:
                assert set(loaded) <= set(KEYS)


def test_a_config_path_that_is_not_a_file_is_one_clear_error(tmp_path):
    os.mkfifo(tmp_path / "fifo.toml")
    for path in (tmp_path, tmp_path / "fifo.toml", tmp_path / "missing.toml"):
        with pytest.raises(TimmAssembleError, match="config file"):
            load_config_file(path)


# ---------------------------------------------------------------------------------------------- data discovery

NAMES = st.sampled_from(("a", "b", "c", ".hidden", "d e"))
EXTS = st.sampled_from((".png", ".webp", ".TIFF", ".txt", "", ".jpeg"))


@st.composite
def trees(draw):
    """Ops building a small tree: folders, files, FIFOs and symlinks to any earlier node (loops included)."""
    ops = []
    nodes = [""]
    for _ in range(draw(st.integers(1, 14))):
        parent = draw(st.sampled_from([n for n in nodes if not Path(n).suffix]))
        kind = draw(st.sampled_from(("dir", "file", "file", "fifo", "link")))
        name = draw(NAMES) + (draw(EXTS) if kind in ("file", "fifo") else "")
        path = str(Path(parent) / name) if parent else name
        if path in nodes:
            continue
        target = draw(st.sampled_from(nodes)) if kind == "link" else None
        ops.append((kind, path, target))
        nodes.append(path)
    return ops


@settings(max_examples=60, deadline=None)
@given(ops=trees())
@example(ops=[("dir", "a", None), ("dir", ".hidden", None), ("link", "b", ".hidden"), ("file", ".hidden/a.png", None)])
def test_discovery_is_one_rule(ops):
    """Every regular image file is found once, whatever links point at it; everything else is named as skipped;
    the walk ends (loops), and every sample is a regular file with an image extension."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        for kind, path, target in ops:
            where = root / path
            if not where.parent.is_dir() or where.parent.is_symlink() or os.path.lexists(where):
                continue
            if kind == "dir":
                where.mkdir()
            elif kind == "file":
                where.write_bytes(b"x")
            elif kind == "fifo":
                os.mkfifo(where)
            else:
                where.symlink_to(os.path.relpath(root / target, where.parent))
        scan = scan_image_folder(root)
        visible, every = set(), set()  # real image files: reachable by visible names / anywhere in the tree
        for dirpath, _, filenames in os.walk(root):  # links not followed: each real file once
            hidden_dir = any(part.startswith(".") for part in Path(dirpath).relative_to(root).parts)
            for name in filenames:
                path = Path(dirpath) / name
                if not path.is_symlink() and path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                    every.add(os.path.realpath(path))
                    if not (hidden_dir or name.startswith(".")):
                        visible.add(os.path.realpath(path))
        found = [os.path.realpath(p) for p, _ in scan.samples]
        assert len(found) == len(set(found))  # nothing twice
        assert visible <= set(found) <= every  # nothing lost, nothing invented (a visible link may reach a hidden one)
        assert all(Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTENSIONS for p, _ in scan.samples)
        shutil.rmtree(root)


# ---------------------------------------------------------------------------------------------- outputs vs inputs

RELATIONS = ("same", "hard-link", "inside", "inside-via-symlink", "holds", "sibling", "sibling-of-folder")


@FAST
@given(relation=st.sampled_from(RELATIONS), input_is_folder=st.booleans(), as_folder=st.booleans())
def test_no_write_replaces_a_declared_input(relation, input_is_folder, as_folder):
    """Every path that reaches a declared input (itself, a hard link, a path inside it, through a symlinked folder,
    a folder output holding it) is refused and the input is left as it was; unrelated paths are written."""
    from timm_assemble.fileio import reading

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "in"
        if input_is_folder:
            (source / "sub").mkdir(parents=True)
            (source / "sub" / "f").write_text("input")
        else:
            source.write_text("input")
        (root / "via").symlink_to(source if input_is_folder else root)
        hard = root / "hard"
        if not input_is_folder:
            os.link(source, hard)
        target = {
            "same": source,
            "hard-link": hard if not input_is_folder else source,
            "inside": source / "sub" / "new" if input_is_folder else source,
            "inside-via-symlink": root / "via" / "sub" / "f" if input_is_folder else root / "via" / "in",
            "holds": root,
            "sibling": root / "out",
            "sibling-of-folder": root / "out" / "deeper",
        }[relation]
        refused = relation not in ("sibling", "sibling-of-folder") and (relation != "holds" or as_folder)
        before = sorted((p.relative_to(root), p.read_bytes()) for p in source.rglob("*") if p.is_file())
        if source.is_file():
            before = [("in", source.read_bytes())]
        with reading((source, "--input")):
            try:
                if as_folder:
                    with atomic_dir(target, overwrite=True) as staging:
                        (staging / "x").write_text("output")
                else:
                    atomic_write(target, "output")
                written = True
            except TimmAssembleError as err:
                written = False
                assert "an output never replaces what the command reads" in str(err) or "cannot write" in str(err)
        after = sorted((p.relative_to(root), p.read_bytes()) for p in source.rglob("*") if p.is_file())
        if source.is_file():
            after = [("in", source.read_bytes())]
        assert after == before
        if refused:
            assert not written
        elif relation.startswith("sibling"):
            assert written


# ---------------------------------------------------------------------------------------------- the size budget


@pytest.mark.slow  # 7 s: ten meta builds, some of huge models
@settings(max_examples=10, deadline=None)
@given(
    width=st.integers(1, 2**20), num_classes=st.integers(0, 2**30), img_size=st.integers(16, 2**17),
    batch=st.integers(1, 2**10),
)  # fmt: skip
def test_every_shape_claim_is_accepted_within_memory_or_refused_naming_a_value(width, num_classes, img_size, batch):
    """A shape claim either passes with an estimate this machine can hold, or is one TimmAssembleError that names
    a claimed value; nothing is allocated for real and no other error escapes."""
    from timm_assemble.sizing import Claim, check_model_size, machine_memory

    claims = [Claim("width", width, "--model-kwargs"), Claim("num_classes", num_classes, "config.json")]
    claims += [Claim("img_size", img_size, "--img-size"), Claim("batch_size", batch, "--batch-size")]
    kwargs = dict(width=width, num_classes=num_classes)
    try:
        found = check_model_size("assemble_resnet50", kwargs, claims, img_size, batch, training=True)
    except TimmAssembleError as err:
        assert len(str(err).splitlines()) == 1
        assert any(str(c.value) in str(err) for c in claims) or "the model's" in str(err)
        return
    assert found is None or found.bytes(batch, True) <= machine_memory()[0]
