"""User-facing errors: the CLI prints these as one line instead of a traceback."""


class TimmAssembleError(Exception):
    """Bad input or an unmet precondition that the user can fix; the message says how."""
