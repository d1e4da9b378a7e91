"""Reporting of bad records (private): raise at once, or collect, skip and warn once."""
from __future__ import annotations

import warnings
from typing import Literal

OnError = Literal["raise", "skip"]


class ProteinDataWarning(UserWarning):
    """Records or files were skipped while reading protein data (the message says which and why)."""


def check_on_error(on_error: str) -> None:
    """Raise ``ValueError`` unless ``on_error`` is ``"raise"`` or ``"skip"``."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")


class Problems:
    """Collects skipped records and emits one :class:`ProteinDataWarning` summarising them."""

    def __init__(self, what: str, on_error: str = "raise", max_listed: int = 10) -> None:
        check_on_error(on_error)
        self.what = what
        self.on_error = on_error
        self.max_listed = max_listed
        self.messages: list[str] = []

    def report(self, message: str, exc_type: type[Exception] = ValueError) -> None:
        """Raise ``exc_type(message)`` in ``"raise"`` mode, else remember the record as skipped."""
        if self.on_error == "raise":
            raise exc_type(message)
        self.messages.append(message)

    def skip(self, message: str) -> None:
        """Remember a skipped record whatever the mode (for files that must always be skipped)."""
        self.messages.append(message)

    def warn(self, stacklevel: int = 3) -> None:
        """Emit the summary warning when anything was skipped."""
        if not self.messages:
            return
        listed = "\n  ".join(self.messages[: self.max_listed])
        more = len(self.messages) - self.max_listed
        tail = f"\n  ... and {more} more" if more > 0 else ""
        warnings.warn(
            f"{self.what}: skipped {len(self.messages)} record(s)/file(s):\n  {listed}{tail}",
            ProteinDataWarning,
            stacklevel=stacklevel,
        )


class MissingDescriptionError(KeyError, ValueError):
    """A record has no description (no table row, or only empty cells); a ValueError too, so that
    every handler of bad input catches it."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class MissingSequenceError(ValueError):
    """A description-table row names an accession that has no FASTA record."""
