"""User-facing errors: the CLI prints these as one line instead of a traceback.

Each also is the built-in exception timm raises in the same situation, so the `except` clauses timm users
write around `timm.create_model` catch ours too: bad settings are a `ValueError`, an unknown model or tag a
`RuntimeError` (timm's `Unknown model`), weights that cannot be found or fetched an `OSError` (huggingface_hub's
`LocalEntryNotFoundError` is one).
"""

import os
import sys


class TimmAssembleError(ValueError):
    """Bad input or an unmet precondition that the user can fix; the message says how."""


class UnknownModelError(TimmAssembleError, RuntimeError):
    """A model name or pretrained tag that is not registered (timm raises RuntimeError there)."""


class WeightsUnavailableError(TimmAssembleError, OSError):
    """Weights (or a model folder's files) that cannot be found locally or fetched (an OSError, as timm's)."""
class SharedError(TimmAssembleError):
    """The same bad input seen by every process of a launch: only the main one (`main`) says it."""

    def __init__(self, message: str, main: bool = True) -> None:
        super().__init__(message)
        self.main = main


DEBUG_ENV = "TIMM_ASSEMBLE_DEBUG"


def user_message(err: TimmAssembleError) -> str:
    """The error's message. One raised in a DataLoader worker reaches the main process re-raised with the worker's
    traceback as its message (torch's ExceptionWrapper): its last line holds the message."""
    text = str(err)
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        last = text.strip().splitlines()[-1]  # "timm_assemble.errors.TimmAssembleError: <message>"
        return last.split(": ", 1)[-1]
    return text


def exit_code(prog: str, err: BaseException, debug: bool = False) -> int:
    """Report the error that ended command `prog` in one stderr line and return its exit code.

    2 for bad input (`TimmAssembleError`), 130 for Ctrl-C, 1 for anything else (a bug: the line says how
    to see the traceback). With `debug` (`--debug` or TIMM_ASSEMBLE_DEBUG=1) the error is re-raised instead.
    """
    if debug or os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
        raise err
    if isinstance(err, TimmAssembleError):
        if getattr(err, "main", True):
            print(f"{prog}: error: {user_message(err)}", file=sys.stderr)
        return 2
    if isinstance(err, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    detail = (str(err).strip().splitlines() or [""])[0][:300]
    print(
        f"{prog}: unexpected error: {type(err).__name__}: {detail} "
        f"(rerun with --debug or {DEBUG_ENV}=1 to see the traceback)",
        file=sys.stderr,
    )
    return 1
