"""The errors pointsup reports to its users, and their common base.

Every error that a user's input or machine can cause (a malformed file, a bad option, a missing
weights package, a full disk...) derives from :class:`PointsupError`. The command line catches
that one class and prints the error as one line, ``pointsup COMMAND: error: ...``, with exit
status 2 and no traceback; anything else is a bug and keeps its traceback. Each error class also
keeps the built-in base it always had (``ValueError``, ``RuntimeError``, ``OSError``...), so
library code that catches those still works.

This module imports nothing, so that any module can use it.
"""

from __future__ import annotations


class PointsupError(Exception):
    """Base of every user-facing error: its message names the file, option or setting at fault."""

    def one_line(self) -> str:
        """The message as the command line shows it: its first line."""
        text = str(self).strip()
        return text.splitlines()[0] if text else type(self).__name__


class CommandError(PointsupError):
    """A problem with how a command was called (options that do not go together, a missing folder)."""
