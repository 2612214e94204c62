"""User-facing errors.

A ``UserError`` is bad input from the user (a wrong path, a malformed file, a bad
flag). The CLI prints its message on one line and exits with status 2, no traceback.
"""


class UserError(Exception):
    """Bad input: printed as one line by the CLI, exit status 2."""


def where(path: object, row: int | None = None) -> str:
    """Format a location for messages: ``file.json`` or ``file.json:row 12``."""
    return f"{path}" if row is None else f"{path}: row {row}"


class TrainingError(Exception):
    """Training cannot go on (NaN/inf loss, ...): one line from the CLI, exit status 1.

    The last good checkpoint is kept; the message says where it is.
    """
