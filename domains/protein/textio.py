"""Text files as they are downloaded: plain, gzip, bzip2 or xz, told apart by their first bytes
(not only by the suffix), and UTF-8 decoded leniently: an undecodable byte becomes U+FFFD, so the
reader can report the one record that holds it and keep the rest."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
from pathlib import Path
from typing import IO

__all__ = ["open_text", "base_suffix", "strip_compression", "is_compressed", "COMPRESSION_SUFFIXES", "REPLACEMENT",
           "READ_ERRORS"]

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")
REPLACEMENT = "\ufffd"
_MAGIC = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))
#: What a broken compressed stream raises while it is read (truncated download, corrupt block).
READ_ERRORS = (EOFError, OSError, lzma.LZMAError)


def is_compressed(path: str | Path) -> bool:
    """True when the file starts like a gzip, bzip2 or xz stream."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    return any(head.startswith(magic) for magic, _ in _MAGIC)


def open_text(path: str | Path) -> IO[str]:
    """Open ``path`` for reading text, decompressing gzip / bzip2 / xz by content."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(6)
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            return io.TextIOWrapper(opener(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def strip_compression(path: str | Path) -> Path:
    """``path`` without a compression suffix (``x.fasta.gz`` -> ``x.fasta``)."""
    path = Path(path)
    if path.suffix.lower() in COMPRESSION_SUFFIXES:
        return path.with_suffix("")
    return path


def base_suffix(path: str | Path) -> str:
    """The lower-case suffix of ``path`` once a compression suffix is removed (``x.fasta.gz`` -> ``.fasta``)."""
    return strip_compression(path).suffix.lower()
