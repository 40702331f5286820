"""The one place that writes result files: atomic writes, folder swaps, sha256, and clear disk errors.

Everything this package leaves on disk (weights, configs, cards, metrics, plots, checkpoints, cache
entries) is first written to a temporary name in the target's own folder and then renamed over the
target, so a crash, a kill or a full disk leaves either the old file or the new one, never half of one.
OS errors that a user can fix (disk full, read-only or unwritable folder) become one `TimmAssembleError`
that names the path; the temporary file is removed.

What may be replaced is checked first: only a regular file (or, for folders, a real folder) is ever
replaced; a device, FIFO, socket, symlink or a folder where a file goes is refused in one line. `-` and
`/dev/stdout` are the user asking for standard output, and `atomic_write` prints there. Temporary and
backup names are unique to the call, so nothing this module deletes is anything it did not create.

What a command reads is declared once (`reading`: data folders, model folders, checkpoints, config files), and
every write until the work ends is checked against it (`check_not_input`): an input is never replaced, nor
anything inside an input folder, nor a folder holding an input (same path, symlink or hard link alike). A
folder that timm's train.py owns (its `args.yaml` beside `summary.csv` or `*.pth.tar`) is never written into.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import stat
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import TimmAssembleError

_logger = logging.getLogger(__name__)
# what the running command reads, as (path, how the user gave it) pairs; set by `reading` only
_INPUTS: list[tuple[Path, str]] = []
# stores whose own code is writing into them now (`owning`), resolved: a cache fills itself while its entries are
# declared read
_OWNED: list[Path] = []

# errno values a user fixes by freeing space or choosing another folder, not by changing code
_USER_FIXABLE = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
    errno.ENOENT: "its folder does not exist or does not accept new files",
    errno.ELOOP: "its path goes round a loop of symlinks",
}


STDOUT_NAMES = ("-", "/dev/stdout")
_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISREG, "a file"),
)


def temp_name(target: Path, suffix: str = "tmp") -> Path:
    """A sibling name no other call uses (pid + random), hidden, so a folder listing shows finished outputs only."""
    return target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.{suffix}"


def is_stdout(target: str | os.PathLike) -> bool:
    """`-` or /dev/stdout: the user asks for the output on standard output, not for a file."""
    return os.fspath(target) in STDOUT_NAMES


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_file_target(target: str | os.PathLike) -> Path:
    """`target` as a Path, if it is absent or a regular file (what may be replaced); otherwise one clear error."""
    target = Path(target)
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as err:  # a file or a symlink loop in the path
        raise write_error(target, err) from err
    if stat.S_ISREG(mode):
        return target
    if stat.S_ISLNK(mode):
        raise TimmAssembleError(
            f"cannot write {target}: it is a symlink (to {os.readlink(target)}), which would be replaced by a file; "
            "pass the path it points to, or remove the link"
        )
    raise TimmAssembleError(f"cannot write {target}: it is {_kind(mode)}, not a regular file; choose a file path")


def check_dir_target(target: str | os.PathLike) -> Path:
    """`target` as a Path, if it is absent or a real folder (what a folder output may replace)."""
    target = Path(target)
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as err:  # a file or a symlink loop in the path
        raise write_error(target, err) from err
    if stat.S_ISDIR(mode):
        return target
    if stat.S_ISLNK(mode):
        raise TimmAssembleError(
            f"cannot write folder {target}: it is a symlink (to {os.readlink(target)}), which would be replaced; "
            "pass the path it points to, or remove the link"
        )
    raise TimmAssembleError(f"cannot write folder {target}: it is {_kind(mode)}, not a folder; choose another path")


@contextlib.contextmanager
def reading(*inputs: tuple[str | os.PathLike | None, str]) -> Iterator[None]:
    """Declare what the work inside the block reads, as (path, how it was given: `--data-dir`, ...) pairs; every
    write until the block ends is refused where it would replace one of them (`check_not_input`). None is skipped."""
    declared = [(Path(path), how) for path, how in inputs if path]
    _INPUTS.extend(declared)
    try:
        yield
    finally:
        del _INPUTS[len(_INPUTS) - len(declared) :]


@contextlib.contextmanager
def owning(store: str | os.PathLike) -> Iterator[None]:
    """The code that keeps `store` (a weights cache) writes into it inside the block: the inputs declared in it
    stay guarded against every other write."""
    _OWNED.append(_resolved(Path(store)))
    try:
        yield
    finally:
        _OWNED.pop()


def _resolved(path: Path) -> Path:
    """`path` with its symlinks followed; as given (absolute) when a loop makes that impossible (writing or reading
    it then fails with its own one line)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(target: str | os.PathLike, flag: str = "", folder: bool = False) -> None:
    """Refuse a write to `target` that would replace a declared input (`reading`): the input itself (by path, symlink
    or hard link), anything inside an input folder, or, for a `folder` output, a folder holding an input; and any
    write into a timm train.py run folder. `flag` names the option the user gave `target` with."""
    where = _resolved(Path(target))
    given = f"{flag} {target}" if flag else str(target)
    for path, how in _INPUTS:
        source = _resolved(path)
        if any(source == store or store in source.parents for store in _OWNED):
            continue
        if where == source or _same_file(where, source):
            problem = f"it is the input {how} {path}"
        elif source in where.parents:
            problem = f"it is inside the input folder {how} {path}"
        elif folder and where in source.parents:
            problem = f"it holds the input {how} {path}"
        else:
            continue
        raise TimmAssembleError(
            f"cannot write {given}: {problem}; an output never replaces what the command reads: choose another path"
        )
    owner = timm_run_folder(where)
    if owner is not None:
        raise TimmAssembleError(
            f"cannot write {given}: it is inside {owner}, a timm train.py run folder (args.yaml beside summary.csv "
            "or checkpoints), which timm owns; choose another output path"
        )


def is_timm_run_folder(folder: Path) -> bool:
    """A folder timm's train.py wrote: its `args.yaml` beside `summary.csv` or a `*.pth.tar` checkpoint."""
    return (folder / "args.yaml").is_file() and (
        (folder / "summary.csv").is_file() or any(p.is_file() for p in folder.glob("*.pth.tar"))
    )


def timm_run_folder(path: Path) -> Path | None:
    """The timm train.py run folder that `path` (resolved) is, or lies inside; None when there is none."""
    return next((folder for folder in (path, *path.parents) if is_timm_run_folder(folder)), None)


def outside_timm_run(folder: Path) -> Path:
    """`folder`, or when it is a timm train.py run folder, the first of `folder-1`, `folder-2`, ... that is not, as
    timm's `get_outdir(..., inc=True)` numbers a taken run folder (the same name again for a resumed run)."""
    if not is_timm_run_folder(folder.resolve()):
        return folder
    count = 1
    while is_timm_run_folder(Path(f"{folder}-{count}").resolve()):
        count += 1
    chosen = Path(f"{folder}-{count}")
    _logger.warning("%s is a timm train.py run folder (timm owns it): this run writes to %s", folder, chosen)
    return chosen


def remove_output(path: Path) -> None:
    """Delete an earlier output (file or folder) that a command starts over from (`--overwrite`), unless it is, or
    holds, a declared input: starting over never deletes what the new run reads."""
    check_not_input(path, folder=True)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def check_output_dir(target: str | os.PathLike, flag: str = "") -> Path:
    """Before the work: `target` may hold a command's output files (absent or a real folder, not an input nor
    inside one, not in a folder timm owns)."""
    checked = check_dir_target(target)
    check_not_input(checked, flag)
    return checked


def check_output(target: str | os.PathLike, flag: str = "") -> Path:
    """Before the work: `target` may take a file output (absent or a regular file, not an input, not in a folder
    timm owns), so a refusal comes before hours of work rather than after them."""
    checked = check_file_target(target)
    check_not_input(checked, flag)
    return checked


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
    file gets the umask's permissions, as a plain `open(..., "w")` would give it. A `target` that is not a
    regular file (device, FIFO, socket, folder, symlink) is refused before anything is written.
    """
    if is_stdout(target):
        raise TimmAssembleError(f"cannot write this output to standard output ({target}); give a file path")
    target = check_output(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(target, err, needed_bytes) from err
    tmp = temp_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _raise_if_user_fixable(target, err, needed_bytes)
        raise


def atomic_write(target: str | os.PathLike, data: str | bytes, fsync: bool = False) -> Path:
    """Write text (UTF-8) or bytes to `target` atomically (`-` or /dev/stdout: print it); returns the target path."""
    if is_stdout(target):
        if isinstance(data, str):
            sys.stdout.write(data)
        else:
            sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return Path(target)
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
def atomic_dir(target: str | os.PathLike, overwrite: bool = False, needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target`; on success it replaces `target` as a whole.

    An existing `target` is replaced only with `overwrite` (otherwise a TimmAssembleError before anything is
    written), and only when it is a real folder. The old folder stays under a backup name unique to the call
    until the new one is in place, so a crash between the two renames leaves one complete folder.
    """
    target = check_dir_target(target)
    check_not_input(target, folder=True)
    if target.exists() and not overwrite:
        raise TimmAssembleError(f"{target} already exists; pass --overwrite to replace it")
    tmp = temp_name(target)
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
    target = check_dir_target(target)
    check_not_input(target, folder=True)
    tmp = temp_name(target)
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


def leftover_names(dst: Path, suffix: str = "old") -> list[Path]:
    """Temporary (`tmp`) or backup (`old`) names of `dst` that a killed call of this module left, oldest first."""
    pattern = re.compile(rf"^\.{re.escape(dst.name)}\.\d+\.[0-9a-f]{{8}}\.{suffix}$")
    found = [p for p in dst.parent.iterdir() if pattern.match(p.name)] if dst.parent.is_dir() else []
    return sorted(found, key=lambda p: p.lstat().st_mtime)


def write_new(target: str | os.PathLike, data: str | bytes) -> bool:
    """Create `target` with `data` unless it exists (complete or not at all); False when another writer was first.

    For claims several processes race for: the content is written under a temporary name and hard-linked onto
    `target`, which the file system refuses when `target` exists.
    """
    target = check_output(target)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    staged = atomic_write(temp_name(target), payload)
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
    """Move the finished folder `src` onto `dst`; the old one is kept under a backup name unique to this call
    until the new one is in place, then removed (nothing else is touched)."""
    dst = check_dir_target(dst)
    check_not_input(dst, folder=True)
    old = temp_name(dst, "old")
    moved = False
    if dst.exists():
        os.replace(dst, old)
        moved = True
    os.replace(src, dst)
    if moved:
        shutil.rmtree(old, ignore_errors=True)


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open `path` for reading only if it is a regular file: a FIFO or device would block or never end."""
    mode = os.stat(path).st_mode  # a socket cannot even be opened: look first
    if not stat.S_ISREG(mode):
        raise TimmAssembleError(f"cannot read {path}: it is {_kind(mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode  # and again on what was opened: it may have been swapped meanwhile
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise TimmAssembleError(f"cannot read {path}: it is {_kind(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a regular file, read in chunks (weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with open_regular(path) as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
