"""Output files: atomic writes (a reader never sees a half-written file, a killed writer leaves the
old one), the user's umask on every file, and output folders that never swallow a user's files.

An output folder that gentleclip writes into holds a marker file (:data:`OUTPUT_MARKER`). A folder
that already holds files but no marker (and none of the files earlier versions left, see
:data:`KNOWN_OUTPUTS`) belongs to someone else: :func:`check_output_dir` refuses it unless
``overwrite=True``, so that ``--out`` naming the wrong folder never replaces a user's
``config.json`` or ``results.csv``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_text", "atomic_write_json", "apply_umask", "check_output_dir", "claim_output_dir",
           "OutputDirError", "OUTPUT_MARKER"]

OUTPUT_MARKER = ".gentleclip-output"
#: Files that only gentleclip writes: folders of earlier versions (without the marker) are recognised by them.
KNOWN_OUTPUTS = ("run_config.yaml", "runs", "rows.json", "split.json")


class OutputDirError(ValueError):
    """An output path is a file, or a folder that holds files gentleclip did not write."""


def apply_umask(path: str | os.PathLike) -> None:
    """Give ``path`` the mode a plain ``open(path, "w")`` would (``0o666`` less the umask): writers that
    go through ``mkstemp`` (0600) would otherwise leave files other users of the folder cannot read."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def check_output_dir(path: str | os.PathLike, overwrite: bool = False, flag: str = "--out") -> Path:
    """Raise :class:`OutputDirError` unless gentleclip may write into ``path`` (nothing is created)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{flag} {path}: exists and is not a folder")
    if not path.is_dir() or overwrite or (path / OUTPUT_MARKER).exists():
        return path
    entries = sorted(p.name for p in path.iterdir())
    if entries and not any(name in KNOWN_OUTPUTS for name in entries):
        listed = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise OutputDirError(f"{flag} {path}: holds files gentleclip did not write ({listed}); choose another "
                             f"folder, or pass --overwrite to write there anyway")
    return path


def claim_output_dir(path: str | os.PathLike, overwrite: bool = False, flag: str = "--out") -> Path:
    """:func:`check_output_dir`, then create the folder and its marker."""
    path = check_output_dir(path, overwrite, flag)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text("written by gentleclip; this folder may be resumed and overwritten by it\n")
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(path: str | os.PathLike, payload: Any, indent: int | None = 1) -> Path:
    """``payload`` as JSON (numpy scalars and paths as plain values), written atomically."""
    return atomic_write_text(path, json.dumps(payload, indent=indent, default=_plain))


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
