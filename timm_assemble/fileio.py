"""The one place that writes result files: atomic writes, folder swaps, sha256, and clear disk errors.

Everything this package leaves on disk (weights, configs, cards, metrics, plots, checkpoints, cache
entries) is first written to a temporary name in the target's own folder and then renamed over the
target, so a crash, a kill or a full disk leaves either the old file or the new one, never half of one.
OS errors that a user can fix (disk full, read-only or unwritable folder) become one `TimmAssembleError`
that names the path; the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import TimmAssembleError

# errno values a user fixes by freeing space or choosing another folder, not by changing code
_USER_FIXABLE = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def _temp_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def write_error(path: str | os.PathLike, err: OSError, needed_bytes: int | None = None) -> TimmAssembleError:
    """A one-line error for a failed write to `path`, or re-raise `err` when it is not the user's to fix."""
    reason = _USER_FIXABLE.get(err.errno or -1)
    if reason is None:
        raise err
    message = f"cannot write {path}: {reason}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(Path(path).parent)
        need = f"about {needed_bytes / 1e6:.1f} MB needed, " if needed_bytes else ""
        message += f" ({need}{free / 1e6:.1f} MB free there)"
    return TimmAssembleError(message + "; nothing already written was changed")


def os_error_of(err: BaseException) -> OSError | None:
    """The OS error behind a failed write: `err` itself, or the one safetensors reports as text ('(os error 28)')."""
    if isinstance(err, OSError):
        return err
    found = re.search(r"\(os error (\d+)\)", str(err)) if isinstance(err, Exception) else None
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code))


def _raise_if_user_fixable(target: Path, err: BaseException, needed_bytes: int | None) -> None:
    """Turn a failed write that the user can fix (disk full, read-only, permissions) into one clear error."""
    os_error = os_error_of(err)
    if os_error is not None and os_error.errno in _USER_FIXABLE:
        raise write_error(target, os_error, needed_bytes) from err


def free_bytes(path: str | os.PathLike) -> int:
    """Free space of the file system holding `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`, on failure removed.

    Works for any writer that takes a path (`torch.save`, `safetensors.save_file`, `fig.savefig`). The
    file gets the umask's permissions, as a plain `open(..., "w")` would give it.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(target, err, needed_bytes) from err
    tmp = _temp_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _raise_if_user_fixable(target, err, needed_bytes)
        raise


def atomic_write(target: str | os.PathLike, data: str | bytes, fsync: bool = False) -> Path:
    """Write text (UTF-8) or bytes to `target` atomically; returns the target path."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(target, needed_bytes=len(payload)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return Path(target)


@contextlib.contextmanager
def atomic_dir(
    target: str | os.PathLike, overwrite: bool = False, needed_bytes: int | None = None
) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target`; on success it replaces `target` as a whole.

    An existing `target` is replaced only with `overwrite` (otherwise a TimmAssembleError before anything is
    written). The old folder stays as `TARGET.old` until the new one is in place, so a crash between the two
    renames leaves one complete folder.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise TimmAssembleError(f"{target} already exists; pass --overwrite to replace it")
    tmp = _temp_name(target)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        replace_dir(tmp, target)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_if_user_fixable(target, err, needed_bytes)
        raise


@contextlib.contextmanager
def atomic_new_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`, renamed onto `target` on success; never replaces a folder.

    For outputs that several processes may build at once (first one wins): when `target` appeared meanwhile,
    raises FileExistsError after removing the temporary folder, and the caller decides whether to use it.
    """
    target = Path(target)
    tmp = _temp_name(target)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        try:
            os.rename(tmp, target)  # fails when `target` is a non-empty folder
        except OSError as err:
            if target.exists():
                raise FileExistsError(f"{target} was created by another process") from err
            raise
    except FileExistsError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(target, err) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_new(target: str | os.PathLike, data: str | bytes) -> bool:
    """Create `target` with `data` unless it exists (complete or not at all); False when another writer was first.

    For claims several processes race for: the content is written under a temporary name and hard-linked onto
    `target`, which the file system refuses when `target` exists.
    """
    target = Path(target)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    staged = atomic_write(_temp_name(target), payload)
    try:
        os.link(staged, target)
    except FileExistsError:
        return False
    except OSError as err:
        raise write_error(target, err, len(payload)) from err
    finally:
        staged.unlink(missing_ok=True)
    return True


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder `src` onto `dst`; the old one is kept as `dst.old` until the new one is in place."""
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
