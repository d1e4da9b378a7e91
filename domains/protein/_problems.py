"""Bad protein records (private): the domain's warning and errors, over :mod:`domains.problems`."""
from __future__ import annotations

from domains.problems import OnError, Problems, check_on_error

__all__ = ["OnError", "Problems", "check_on_error", "protein_problems", "ProteinDataWarning", "MissingDescriptionError",
           "MissingSequenceError"]


class ProteinDataWarning(UserWarning):
    """Records or files were skipped while reading protein data (the message says which and why)."""


def protein_problems(what: str, on_error: str = "raise") -> Problems:
    """The :class:`~domains.problems.Problems` of one protein reader call (warns with :class:`ProteinDataWarning`)."""
    return Problems(on_error, what=what, warning=ProteinDataWarning)


class MissingDescriptionError(KeyError, ValueError):
    """A record has no description (no table row, or only empty cells); a ValueError too, so that
    every handler of bad input catches it."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class MissingSequenceError(ValueError):
    """A description-table row names an accession that has no FASTA record."""
