"""FASTA sequences with their descriptions from a TSV/CSV table keyed by accession.

Example::

    records = read_fasta("proteins.fasta", descriptions="functions.tsv", text_columns=["function"])

The FASTA is parsed with Biopython's ``SeqIO``; it may be gzip, bzip2 or xz compressed (recognised
by content) and is decoded leniently: a header with bytes that are not UTF-8 keeps its record
(the bytes become U+FFFD) and is reported in one :class:`ProteinDataWarning`. A record's accession is the middle field
of a
UniProt header (``>sp|P12345|NAME_HUMAN ...`` -> ``P12345``) or else the first word of the header.
The table's first column (or ``id_column``) holds accessions; its other columns (or
``text_columns``) are text fields stored in :attr:`ProteinRecord.extra` and joined by
:meth:`ProteinRecord.text` (``fields`` = the column names); columns named ``name``, ``function``
or ``location`` also fill the record attributes of the same name (so ``location`` feeds the
zero-shot localisation of :class:`~domains.protein.adapter.ProteinAdapter`). A table row is looked up by the
parsed accession, then by the full FASTA id.

Errors (``on_error="raise"``, the default) name the file, the record and what was expected:
an invalid or empty sequence, an accession with no row (or only empty cells) in the table, an
accession that appears twice in the FASTA or in the table, a table row whose accession has no
FASTA record. With ``on_error="skip"`` those records (and rows) are left out and reported in one
:class:`ProteinDataWarning`.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from Bio import SeqIO

from ._problems import MissingDescriptionError, MissingSequenceError, protein_problems
from .records import InvalidSequenceError, ProteinRecord, validate_sequence
from .textio import READ_ERRORS, REPLACEMENT, open_text

__all__ = ["read_fasta", "read_description_table", "accession_from_fasta_id", "FastaSequences"]

_ID_NAMES = ("accession", "entry", "id", "uniprot", "uniprot_id", "protein_id")


def accession_from_fasta_id(fasta_id: str) -> str:
    """``"sp|P12345|NAME_HUMAN"`` -> ``"P12345"``; any other id is returned unchanged."""
    parts = fasta_id.split("|")
    if len(parts) >= 3 and parts[0] in ("sp", "tr", "up"):
        return parts[1]
    return fasta_id


def _delimiter(path: Path, sample: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab", ".txt"):
        return "\t"
    if suffix == ".csv":
        return ","
    try:
        return csv.Sniffer().sniff(sample, delimiters="\t,;").delimiter
    except csv.Error:
        return "\t"


def read_description_table(
    path: str | os.PathLike,
    id_column: str | None = None,
    text_columns: Sequence[str] | None = None,
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Read a TSV/CSV of descriptions keyed by accession.

    Args:
        path: ``.tsv``/``.tab`` (tab-separated), ``.csv`` (comma), other suffixes are sniffed.
        id_column: the accession column; default: the first column.
        text_columns: columns to keep; default: all columns but the id column.

    Returns:
        ``({accession: {column: text}}, text_columns)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: no header, a named column missing, an empty accession, or an accession that
            occurs on two rows (the message gives both line numbers).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"description table {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        sample = f.read(8192)
        f.seek(0)
        reader = csv.DictReader(f, delimiter=_delimiter(path, sample))
        header = reader.fieldnames
        if not header:
            raise ValueError(f"description table {path}: no header row; expected an accession column and text columns")
        header = [h.strip() for h in header]
        reader.fieldnames = header
        if id_column is None:
            id_column = header[0]
        elif id_column not in header:
            raise ValueError(f"description table {path}: no column {id_column!r}; columns are {header}")
        if text_columns is None:
            text_columns = [h for h in header if h != id_column]
        else:
            text_columns = list(text_columns)
            missing = [c for c in text_columns if c not in header]
            if missing:
                raise ValueError(f"description table {path}: no column(s) {missing}; columns are {header}")
        if not text_columns:
            raise ValueError(f"description table {path}: only the accession column {id_column!r}; expected text "
                             "columns")
        table: dict[str, dict[str, str]] = {}
        first_line: dict[str, int] = {}
        for line_no, row in enumerate(reader, start=2):
            acc = (row.get(id_column) or "").strip()
            if not acc:
                raise ValueError(f"description table {path}, line {line_no}: empty accession in column {id_column!r}")
            if acc in table:
                raise ValueError(
                    f"description table {path}: duplicate accession {acc!r} on lines {first_line[acc]} and "
                    f"{line_no}; expected one row per accession"
                )
            table[acc] = {c: (row.get(c) or "").strip() for c in text_columns}
            first_line[acc] = line_no
    return table, list(text_columns)


def _parse_fasta(handle: Any, path: Path) -> Iterator[Any]:
    """``SeqIO.parse(handle, "fasta")`` with parser errors re-raised naming the file."""
    it = None
    n = 0
    while True:
        try:
            if it is None:
                it = SeqIO.parse(handle, "fasta")
            entry = next(it)
        except StopIteration:
            return
        except READ_ERRORS as e:
            raise ValueError(f"FASTA file {path}: unreadable after {n} record(s) ({type(e).__name__}: {e}); "
                             "the compressed file may be truncated") from e
        except ValueError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"FASTA file {path}: not valid FASTA after {n} record(s) ({first}); expected '>' header lines "
                "followed by sequence lines"
            ) from e
        n += 1
        yield entry


def read_fasta(
    path: str | os.PathLike,
    descriptions: str | os.PathLike | dict[str, dict[str, str]] | None = None,
    id_column: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    on_error: str = "raise",
) -> list[ProteinRecord]:
    """Read a FASTA file into :class:`ProteinRecord` s, with descriptions from a table.

    Args:
        path: FASTA file.
        descriptions: TSV/CSV path (see :func:`read_description_table`) or an already-read
            ``{accession: {column: text}}`` mapping; None = no descriptions (the FASTA header
            description goes to ``extra["header"]``).
        id_column, text_columns: see :func:`read_description_table`.
        label_column: a table column copied to :attr:`ProteinRecord.label` (and kept as text).
        on_error: ``"raise"`` (default) or ``"skip"`` (report bad records in one warning).

    Raises:
        FileNotFoundError: a file is missing.
        InvalidSequenceError: invalid residue or empty sequence (``on_error="raise"``).
        MissingDescriptionError: (a KeyError) an accession without a description row (``on_error="raise"``).
        ValueError: duplicate accessions, a FASTA with no records, table problems.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FASTA file {path} does not exist")
    table: dict[str, dict[str, str]] | None
    table_name = "the description mapping"
    if descriptions is None:
        table = None
    elif isinstance(descriptions, dict):
        table = descriptions
    else:
        table, text_columns = read_description_table(descriptions, id_column=id_column, text_columns=text_columns)
        table_name = str(descriptions)
    if table is not None and label_column is not None:
        some = next(iter(table.values()), {})
        if some and label_column not in some:
            raise ValueError(f"{table_name}: label_column {label_column!r} is not a column ({sorted(some)})")

    problems = protein_problems(f"read_fasta({path})", on_error)
    records: list[ProteinRecord] = []
    seen: dict[str, int] = {}
    n_read = 0
    undecodable = protein_problems(f"read_fasta({path}) (headers with bytes that are not UTF-8, records kept)", "skip")
    present: set[str] = set()  # accessions and ids of every FASTA record read
    try:
        handle = open_text(path)
    except OSError as e:
        raise ValueError(f"FASTA file {path}: cannot be read ({e})") from None
    with handle:
        for n_read, entry in enumerate(_parse_fasta(handle, path), start=1):
            acc = accession_from_fasta_id(entry.id)
            present.update((acc, entry.id))
            where = f"{path}, record #{n_read} ({entry.id!r})"
            if REPLACEMENT in entry.description:
                undecodable.skip("", "", f"{where}: header bytes that are not UTF-8 were replaced by U+FFFD")
            if acc in seen:
                problems.bad("", "",
                    f"{where}: duplicate accession {acc!r} (first seen as record #{seen[acc]}); expected each "
                    "accession once"
                )
                continue
            seen[acc] = n_read
            try:
                residues = bytes(entry.seq).decode("utf-8", errors="replace")  # str() fails on non-ASCII bytes
                seq = validate_sequence(residues, record=acc, source=f"{path} (record #{n_read})")
            except InvalidSequenceError as e:
                problems.bad("", "", str(e), InvalidSequenceError)
                continue
            extra: dict[str, str] = {}
            label = None
            if table is None:
                header = entry.description[len(entry.id):].strip()
                if header:
                    extra["header"] = header
            else:
                row = table.get(acc, table.get(entry.id))
                if row is None or not any(v for v in row.values()):
                    state = "no row" if row is None else "only empty cells"
                    problems.bad("", "",
                        f"{where}: accession {acc!r} has {state} in {table_name}; expected a description for "
                        "every FASTA record (use on_error='skip' to leave such records out)",
                        MissingDescriptionError,
                    )
                    continue
                extra = dict(row)
                if label_column is not None:
                    label = row.get(label_column) or None
            known = {f: extra.get(f, "") for f in ("name", "function", "location")}
            records.append(
                ProteinRecord(accession=acc, sequence=seq, label=label, source=str(path), extra=extra, **known)
            )
    if n_read == 0:
        raise ValueError(f"FASTA file {path}: no records found; expected '>' header lines followed by sequences")
    if table is not None:
        for acc in table:
            if acc not in present:
                problems.bad("", "", f"{table_name}: row {acc!r} has no FASTA record in {path}; expected every "
                                f"description to describe a sequence of the FASTA (on_error='skip' leaves it out)",
                                MissingSequenceError)
    undecodable.warn()
    problems.warn()
    return records


class FastaSequences:
    """The sequences of a large FASTA file as a lazy sequence, for embedding in chunks.

    One pass over the file records where each record starts (8 bytes per record, an ``array('q')``)
    and a SHA-256 of its bytes (:attr:`fingerprint`, for :meth:`gentleclip.cache.FeatureCache.get`);
    ``seqs[i]`` and ``seqs[a:b]`` then read only those records from disk, validated as
    :func:`read_fasta` validates them (an invalid record raises :class:`InvalidSequenceError` naming
    it). Memory therefore does not grow with the file beyond the index, so a FASTA of millions of
    sequences embeds to the cache chunk by chunk. Plain (uncompressed) files only, since records are
    read by seeking: decompress a ``.gz`` first.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        import hashlib
        from array import array

        from .textio import is_compressed

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"FASTA file {self.path} does not exist")
        if is_compressed(self.path):
            raise ValueError(f"FASTA file {self.path}: compressed; FastaSequences reads records by seeking, so "
                             f"decompress it first (or use read_fasta, which reads compressed files whole)")
        digest = hashlib.sha256()
        starts = array("q")
        pos = 0
        with open(self.path, "rb") as fh:
            for line in fh:
                if line.startswith(b">"):
                    starts.append(pos)
                pos += len(line)
                digest.update(line)
        if not starts:
            raise ValueError(f"FASTA file {self.path}: no records found; expected '>' header lines")
        starts.append(pos)
        self._starts = starts
        self.fingerprint = f"fasta-sha256:{digest.hexdigest()}"

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return self._read(start, stop)
        i = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"FastaSequences({self.path}): record {index} out of range ({len(self)} records)")
        return self._read(i, i + 1)[0]

    def _read(self, start: int, stop: int) -> list[str]:
        if start >= stop:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self._starts[start])
            block = fh.read(self._starts[stop] - self._starts[start])
        out = []
        for n, record in enumerate(block.split(b"\n>"), start=start):
            lines = record.decode("utf-8", errors="replace").splitlines()
            header = lines[0].lstrip(">").split()
            name = header[0] if header else f"#{n + 1}"
            out.append(validate_sequence("".join(lines[1:]), record=name, source=f"{self.path} (record #{n + 1})"))
        return out
