"""fileio.atomic_new_dir: the folder appears complete or not at all, and never replaces one that exists."""

import pytest

from timm_assemble.fileio import atomic_new_dir


def test_atomic_new_dir_appears_complete_or_not_at_all(tmp_path):
    target = tmp_path / "data"
    with pytest.raises(RuntimeError), atomic_new_dir(target) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("killed half-way")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_new_dir(target) as tmp:
        (tmp / "whole.txt").write_text("x")
    assert [p.name for p in target.iterdir()] == ["whole.txt"]


def test_atomic_new_dir_never_replaces_a_folder(tmp_path):
    target = tmp_path / "data"
    with pytest.raises(FileExistsError), atomic_new_dir(target) as tmp:
        (tmp / "mine.txt").write_text("x")
        target.mkdir()  # another process finished first
        (target / "theirs.txt").write_text("y")
    assert [p.name for p in target.iterdir()] == ["theirs.txt"] and len(list(tmp_path.iterdir())) == 1
