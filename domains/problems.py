"""Bad input records, for every reader of every domain: raise at once, or skip them and report.

A reader makes one :class:`Problems` per call. With ``on_error="raise"`` the first bad record raises
an error naming the file and the record; with ``"skip"`` the record is left out and remembered in a
:class:`ReadReport`, and :meth:`Problems.warn` emits one warning listing what was skipped.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["OnError", "SkippedRecord", "ReadReport", "Problems", "check_on_error", "SKIP_HINT"]

OnError = Literal["raise", "skip"]

#: Appended to the message of a bad record raised in ``"raise"`` mode, unless the message says it itself.
SKIP_HINT = " (pass on_error='skip' to skip such records and get a report)"


def check_on_error(on_error: str) -> None:
    """Raise ``ValueError`` unless ``on_error`` is ``"raise"`` or ``"skip"``."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")


@dataclass(frozen=True)
class SkippedRecord:
    """A record that a reader left out: where it was (file, record; may be empty), and why."""

    source: str
    record: str
    reason: str

    def __str__(self) -> str:
        return ": ".join(p for p in (self.source, self.record, self.reason) if p)


@dataclass
class ReadReport:
    """What a reader skipped (``on_error="skip"``) and which captions have no image.

    Attributes:
        skipped: records left out because they were malformed or their image is missing.
        missing_images: ``(source, image_id, expected_path)`` of records kept as caption-only
            because their image file is absent (e.g. the 5 UC Merced classes not shipped with
            the images); these are not errors.
    """

    skipped: list[SkippedRecord] = field(default_factory=list)
    missing_images: list[tuple[str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.skipped or self.missing_images)

    def extend(self, other: "ReadReport") -> None:
        """Append the entries of another report."""
        self.skipped.extend(other.skipped)
        self.missing_images.extend(other.missing_images)

    def summary(self, max_listed: int = 10) -> str:
        """Multi-line text listing the skipped records and counting the missing images."""
        lines: list[str] = []
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} record(s):")
            lines += [f"  {s}" for s in self.skipped[:max_listed]]
            if len(self.skipped) > max_listed:
                lines.append(f"  ... and {len(self.skipped) - max_listed} more")
        if self.missing_images:
            by_source = Counter(src for src, _, _ in self.missing_images)
            lines.append(
                f"{len(self.missing_images)} image(s) absent, their captions kept as caption-only records: "
                + ", ".join(f"{src}: {n}" for src, n in sorted(by_source.items()))
            )
            lines += [f"  {img} (expected {path})" for _, img, path in self.missing_images[: min(3, max_listed)]]
        return "\n".join(lines) if lines else "nothing skipped"

    def __str__(self) -> str:
        return self.summary()


class Problems:
    """The bad records of one reader call: raise at once (``"raise"``) or skip and remember (``"skip"``).

    Args:
        on_error: ``"raise"`` or ``"skip"``.
        report: where skipped records go (a new :class:`ReadReport` by default).
        what: the reader and its input, heading the warning (``"read_fasta(p.fasta)"``).
        warning: the warning class of :meth:`warn` (each domain has its own).
    """

    def __init__(self, on_error: str = "raise", report: ReadReport | None = None, what: str = "",
                 warning: type[Warning] = UserWarning) -> None:
        check_on_error(on_error)
        self.on_error = on_error
        self.report = report if report is not None else ReadReport()
        self.what = what
        self.warning = warning

    def bad(self, source: object, record: str, reason: str, exc_type: type[Exception] = ValueError) -> None:
        """One bad record: raise ``exc_type("source: record: reason")`` (with :data:`SKIP_HINT` unless
        the reason names ``on_error`` itself) in ``"raise"`` mode, else leave it out and remember it.
        ``source`` and ``record`` may be empty when ``reason`` already names them."""
        entry = SkippedRecord(str(source), record, reason)
        if self.on_error == "raise":
            raise exc_type(str(entry) + ("" if "on_error" in reason else SKIP_HINT))
        self.report.skipped.append(entry)

    def skip(self, source: object, record: str, reason: str) -> None:
        """Remember a skipped record whatever the mode (for input that is always left out)."""
        self.report.skipped.append(SkippedRecord(str(source), record, reason))

    @property
    def skipped(self) -> list[SkippedRecord]:
        """The records skipped so far."""
        return self.report.skipped

    def warn(self, stacklevel: int = 3) -> None:
        """Emit one warning summarising the skipped records, if any."""
        if self.report.skipped:
            head = f"{self.what}: " if self.what else ""
            warnings.warn(head + self.report.summary(), self.warning, stacklevel=stacklevel)
