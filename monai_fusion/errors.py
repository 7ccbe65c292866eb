"""Error types that separate the user's mistakes from ours.

Anything derived from :class:`MonaiFusionError` is a *user error*: bad input, an ambiguous
selection, an output we may not write. Its message is one line that says what is wrong and
what to do, and never contains patient identifiers. The command line prints that line and
exits with code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["MonaiFusionError", "InputError", "OutputError"]


class MonaiFusionError(Exception):
    """Base class of user-facing errors (exit code 2 in the CLI)."""

    exit_code = 2


class InputError(MonaiFusionError, ValueError):
    """The input cannot be used as given: missing, unreadable, ambiguous or inconsistent."""


class OutputError(MonaiFusionError, OSError):
    """An output cannot be written: unwritable place, existing output, or data a format cannot hold."""
