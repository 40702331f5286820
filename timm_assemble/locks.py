"""One owner at a time for an output folder or a cache entry: a lock file holding the owner's PID, host and start.

The lock is an `flock` on `FOLDER/.timm-assemble.lock`: the kernel releases it when the owner exits in any
way (kill -9 included), so a lock is never stale while its file says so: a file whose lock nobody holds is
simply taken over. The file's JSON (pid, host, process start time, wall-clock start) exists only so that a
second run can say in one line who holds the folder. On a shared file system where `flock` is not
coordinated across hosts, the recorded host and PID are still checked: a live owner on this host with the
same process start time holds the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import TimmAssembleError
from .fileio import check_dir_target, write_error

LOCK_NAME = ".timm-assemble.lock"


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), None when it is gone or unknown (not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process a lock file names still runs (same host, same PID, same start time)."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    start = process_start(owner["pid"])
    return start is not None and start == owner.get("process_start")


class FolderLock:
    """`acquire()` or raise one line naming the owner; `release()` (idempotent) on any exit of the owner."""

    def __init__(
        self, folder: str | os.PathLike, what: str = "folder", hint: str = "", scratch_root: Path | None = None
    ) -> None:
        """`scratch_root`: the folders between it and `folder` exist only for locks; every owner removes the
        empty ones on release, so the last one leaves none (owners that raced for them included)."""
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what, self.hint = what, hint
        self.scratch_root = scratch_root
        self._fd: int | None = None
        self._created: list[Path] = []  # folders this lock made (innermost first), removed again if left empty

    def acquire(self, timeout: float = 0.0) -> FolderLock:
        """Take the lock; wait up to `timeout` seconds for another owner to finish first."""
        deadline = time.monotonic() + timeout
        while not self._try_acquire():
            if time.monotonic() >= deadline:
                raise TimmAssembleError(self._busy_message())
            time.sleep(0.05)
        return self

    def _try_acquire(self) -> bool:
        """True: taken. False: another live owner holds it. A previous owner that is just releasing (removing
        the file and the folders it made) is retried at once, not reported as an owner."""
        for _ in range(5):
            try:
                fd = self._open()
            except FileNotFoundError:  # the folder went away between mkdir and open: its owner left
                continue
            except FileExistsError:  # mkdir found the folder, then its owner removed it: retry; or a file is there
                check_dir_target(self.folder)  # one line when something other than a folder is in the way
                continue
            except OSError as err:  # read-only, full, not a folder: the user's to fix, said in one line
                raise write_error(self.path, err) from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    return False
                raise
            try:  # the file may have been unlinked by its previous owner between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            if owner_alive(self.owner() or {}):  # a file system where flock is not shared across processes
                os.close(fd)
                return False
            self._claim(fd)
            return True
        return False

    def _open(self) -> int:
        self._created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def _claim(self, fd: int) -> None:
        me = dict(
            pid=os.getpid(),
            host=socket.gethostname(),
            process_start=process_start(os.getpid()),
            started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        )
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        self._fd = fd

    def owner(self) -> dict[str, Any] | None:
        """What the lock file says about its owner (None when unreadable)."""
        with contextlib.suppress(OSError, ValueError):
            owner = json.loads(self.path.read_text() or "null")
            return owner if isinstance(owner, dict) else None
        return None

    def _busy_message(self) -> str:
        owner = self.owner() or {}
        who = f"PID {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}"
        return f"{self.what} {self.folder} is in use by another run ({who}); " + (
            self.hint or "wait for it to finish or choose another folder"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None
        scratch = self._created
        if self.scratch_root is not None:
            scratch = [p for p in (self.folder, *self.folder.parents) if self.scratch_root in p.parents]
        for folder in scratch:  # only when nothing was left in it
            try:
                folder.rmdir()
            except OSError:
                break

    @property
    def held(self) -> bool:
        return self._fd is not None


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike,
    what: str = "folder",
    hint: str = "",
    timeout: float = 0.0,
    scratch_root: Path | None = None,
) -> Iterator[FolderLock]:
    """Hold `folder`'s lock for the `with` block (`scratch_root`: see `FolderLock`)."""
    lock = FolderLock(folder, what, hint, scratch_root).acquire(timeout)
    try:
        yield lock
    finally:
        lock.release()
