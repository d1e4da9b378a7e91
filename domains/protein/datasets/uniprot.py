"""UniProtKB flat files (Swiss-Prot text format) read with ``Bio.SwissProt``.

Example::

    records = read_uniprot("data/uniprot_flatfiles/")            # a folder, read recursively
    pairs = [(r.sequence, r.text(["name", "function"])) for r in records if r.function]

Each entry becomes a :class:`ProteinRecord` with: the primary accession (first ``AC``), the
sequence, the recommended name (``DE RecName: Full=``, else the first ``SubName``), the
``FUNCTION`` and ``SUBCELLULAR LOCATION`` comments (evidence tags ``{ECO:...}`` and
``(PubMed:...)`` citations removed), EC numbers (from ``DE``), GO terms (``DR GO`` lines, as
``"GO:0005737 C:cytoplasm"``) and keywords.

Files may be gzip, bzip2 or xz compressed (recognised by content) and are decoded as UTF-8
leniently. A folder is walked recursively (sorted, so the order is reproducible); files whose
suffix (after an optional ``.gz``/``.bz2``/``.xz``) is in ``suffixes`` are parsed -- by default ``.txt .dat .sw .swiss
.sp
.uniprot`` -- and every other file (GO tables, JSON, licences) is ignored. A file that holds no
UniProt entry (empty, or text that is not in the flat-file format) is always reported and
skipped with a :class:`ProteinDataWarning` naming it, whatever ``on_error`` says; bad entries
inside a real flat file (invalid residues, a truncated tail after good entries) follow
``on_error``: with ``"skip"`` the good entries are kept and the rest reported. An accession met twice (the same
entry saved in two files) keeps its first occurrence and is reported (``on_duplicate="first"``),
or is an error (``on_duplicate="raise"``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from Bio import SwissProt

from .._problems import Problems, protein_problems
from ..records import InvalidSequenceError, ProteinRecord, clean_uniprot_text, validate_sequence
from ..textio import READ_ERRORS, base_suffix, open_text

__all__ = ["read_uniprot", "uniprot_files", "record_from_swissprot", "DEFAULT_UNIPROT_SUFFIXES"]

DEFAULT_UNIPROT_SUFFIXES = (".txt", ".dat", ".sw", ".swiss", ".sp", ".uniprot")

_RECNAME = re.compile(r"RecName:\s*Full=([^;{]+)")
_SUBNAME = re.compile(r"SubName:\s*Full=([^;{]+)")
_EC = re.compile(r"EC=([0-9n]+\.[0-9n\-]+\.[0-9n\-]+\.[0-9n\-]+)")


def uniprot_files(
    path: str | os.PathLike, suffixes: Sequence[str] = DEFAULT_UNIPROT_SUFFIXES, recursive: bool = True
) -> list[Path]:
    """The flat files under ``path`` (or ``[path]`` for a file), sorted; hidden files skipped."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"UniProt flat files: {path} is neither a file nor a folder")
    wanted = {s.lower() if s.startswith(".") else "." + s.lower() for s in suffixes}
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in path.glob(pattern)
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and base_suffix(p) in wanted
    )  # fmt: skip


def _comments(record: SwissProt.Record, topic: str) -> str:
    prefix = f"{topic}:"
    parts = [clean_uniprot_text(c[len(prefix):]) for c in record.comments if c.startswith(prefix)]
    return " ".join(p for p in parts if p)


def record_from_swissprot(record: SwissProt.Record, source: str = "") -> ProteinRecord:
    """Convert one ``Bio.SwissProt.Record`` (validating its sequence) into a :class:`ProteinRecord`.

    Raises:
        InvalidSequenceError: empty sequence or invalid residue (names accession and file).
        ValueError: the entry has no accession.
    """
    if not record.accessions:
        raise ValueError(f"{source}: entry {record.entry_name!r} has no AC (accession) line")
    acc = record.accessions[0]
    seq = validate_sequence(record.sequence, record=acc, source=source or None)
    desc = record.description or ""
    m = _RECNAME.search(desc) or _SUBNAME.search(desc)
    name = clean_uniprot_text(m.group(1)) if m else ""
    ec = tuple(dict.fromkeys(_EC.findall(desc)))
    go = tuple(f"{x[1]} {x[2]}" for x in record.cross_references if x and x[0] == "GO" and len(x) >= 3)
    return ProteinRecord(
        accession=acc,
        sequence=seq,
        name=name,
        function=_comments(record, "FUNCTION"),
        location=_comments(record, "SUBCELLULAR LOCATION"),
        ec=ec,
        go=go,
        keywords=tuple(k.strip() for k in record.keywords if k.strip()),
        source=source,
        extra={"entry_name": record.entry_name, "organism": (record.organism or "").rstrip(".")},
    )


def _parse_file(path: Path, problems: Problems, skipped_files: Problems) -> Iterator[ProteinRecord]:
    n = 0
    try:
        with open_text(path) as handle:
            for n, entry in enumerate(SwissProt.parse(handle), start=1):
                try:
                    yield record_from_swissprot(entry, source=str(path))
                except InvalidSequenceError as e:
                    problems.bad("", "", f"{e} (entry #{n})", InvalidSequenceError)
    except (SwissProt.SwissProtParserError, ValueError, IndexError, KeyError, AssertionError, *READ_ERRORS) as e:
        if isinstance(e, InvalidSequenceError):
            raise
        if n == 0:
            skipped_files.skip("", "", f"{path}: not a UniProt flat-file entry ({type(e).__name__}: {str(e)[:120]})")
            return
        # a truncated or damaged tail: with on_error="skip" the good entries before it are kept
        problems.bad("", "", f"{path}: entry #{n + 1} and the rest of the file are not valid UniProt flat-file text "
                        f"after {n} good entries ({type(e).__name__}: {str(e)[:200]}); the file may be truncated")
    if n == 0:
        skipped_files.skip("", "", f"{path}: holds no UniProt entry (empty file or no 'ID' line)")


def read_uniprot(
    path: str | os.PathLike | Iterable[str | os.PathLike],
    suffixes: Sequence[str] = DEFAULT_UNIPROT_SUFFIXES,
    recursive: bool = True,
    on_error: str = "raise",
    on_duplicate: str = "first",
) -> list[ProteinRecord]:
    """Read UniProt flat files (a file, a folder walked recursively, or a list of either).

    Args:
        path: file, folder, or iterable of them.
        suffixes: file suffixes parsed in folders (see module docstring).
        recursive: walk sub-folders.
        on_error: ``"raise"`` or ``"skip"`` for bad entries (invalid sequences). Files that are not
            protein entries are always reported and skipped.
        on_duplicate: ``"first"`` (keep the first entry of an accession, report the rest) or
            ``"raise"``.

    Returns:
        Records in file order.

    Raises:
        FileNotFoundError: a path does not exist, or a folder holds no flat files.
        InvalidSequenceError: a bad sequence with ``on_error="raise"``.
        ValueError: a duplicate accession with ``on_duplicate="raise"``.
    """
    if on_duplicate not in ("first", "raise"):
        raise ValueError(f"on_duplicate: expected 'first' or 'raise', got {on_duplicate!r}")
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    files: list[Path] = []
    for p in paths:
        found = uniprot_files(p, suffixes=suffixes, recursive=recursive)
        if not found:
            raise FileNotFoundError(
                f"UniProt flat files: no file with suffix {'/'.join(suffixes)} under {p}"
            )
        files.extend(found)
    label = f"read_uniprot({paths[0] if len(paths) == 1 else f'{len(paths)} paths'})"
    problems = protein_problems(label, on_error)
    skipped_files = protein_problems(label + " (files that are not protein entries)", "skip")
    dups = protein_problems(label + " (duplicate accessions, first occurrence kept)", "skip")
    records: list[ProteinRecord] = []
    first: dict[str, ProteinRecord] = {}
    for f in files:
        for rec in _parse_file(f, problems, skipped_files):
            prev = first.get(rec.accession)
            if prev is not None:
                same = "identical sequence" if prev.sequence == rec.sequence else "DIFFERENT sequence"
                msg = f"{rec.source}: accession {rec.accession!r} already read from {prev.source} ({same})"
                if on_duplicate == "raise":
                    raise ValueError(msg + "; expected each accession once (on_duplicate='first' keeps the first)")
                dups.skip("", "", msg)
                continue
            first[rec.accession] = rec
            records.append(rec)
    skipped_files.warn()
    problems.warn()
    dups.warn()
    return records
