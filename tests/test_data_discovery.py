"""Data discovery at ImageNet scale: one rule at `os.walk`'s cost (hard links resolved after the walk, in sample
order), and one scan per launch (the main process scans, the other ranks receive the scan or its error)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from timm_assemble.data import datasets
from timm_assemble.data.images import scan_image_folder
from timm_assemble.errors import TimmAssembleError


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_one_file_under_several_real_names_is_kept_once_under_the_first_in_sample_order(tmp_path):
    first = _touch(tmp_path / "a" / "img2.png")
    os.link(first, tmp_path / "a" / "img10.png")  # natural order: img2 < img10, whatever the directory order
    (tmp_path / "0").mkdir()
    os.link(first, tmp_path / "0" / "x.png")  # in a class walked before
    _touch(tmp_path / "a" / "img3.png")
    scan = scan_image_folder(tmp_path)
    assert [Path(p).relative_to(tmp_path).as_posix() for p, _ in scan.samples] == ["0/x.png", "a/img3.png"]
    note = scan.skipped_note(limit=5)
    assert "a/img2.png (same file as 0/x.png)" in note and "a/img10.png (same file as 0/x.png)" in note
    assert scan.counts() == {"0": 1, "a": 1}


def test_a_link_to_a_file_is_the_duplicate_even_when_the_walk_meets_it_first(tmp_path):
    target = _touch(tmp_path / "b" / "real.png")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "link.png").symlink_to(target)  # class a is walked before class b
    _touch(tmp_path / "a" / "own.png")
    scan = scan_image_folder(tmp_path)
    assert sorted(Path(p).name for p, _ in scan.samples) == ["own.png", "real.png"]
    assert "a/link.png (same file as b/real.png)" in scan.skipped_note()


def _rank(rank: int, store: str, folders: list[str], results: str) -> None:
    """One rank of a 2-process gloo group scanning each folder: rank 1 must never scan."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        if rank == 1:
            datasets.scan_class_folders = lambda folder: (_ for _ in ()).throw(AssertionError("rank 1 scanned"))
        for i, folder in enumerate(folders):
            try:
                scan = datasets.scan_once(Path(folder))
                outcome = repr((sorted(scan.samples), scan.class_to_idx, scan.skipped))
            except TimmAssembleError as err:
                outcome = f"error: {err}"
            Path(results, f"{rank}-{i}").write_text(outcome)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_one_scan_per_launch_the_other_rank_gets_the_scan_or_its_error(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    for data in (good, bad):
        for cls in ("cat", "dog"):
            for i in range(3):
                _touch(data / cls / f"{i}.png")
        (data / "dog" / "notes.txt").write_text("x")
    (bad / "eel").mkdir()  # an empty class: an error every rank raises
    results = tmp_path / "results"
    results.mkdir()
    store = tmp_path / "store"
    mp.start_processes(_rank, args=(str(store), [str(good), str(bad)], str(results)), nprocs=2, start_method="spawn")
    scan = datasets.scan_class_folders(good)
    assert (results / "0-0").read_text() == (results / "1-0").read_text()
    assert (results / "1-0").read_text() == repr((sorted(scan.samples), scan.class_to_idx, scan.skipped))
    assert (results / "0-1").read_text() == (results / "1-1").read_text()
    error = (results / "1-1").read_text()
    assert error.startswith("error: class folder") and "eel is empty" in error
