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
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "apply_umask", "check_output_dir",
           "claim_output_dir", "remove_stale_temporaries",
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
    """:func:`check_output_dir`, then create the folder and its marker (and remove the temporaries that a
    killed earlier run left there, :func:`remove_stale_temporaries`)."""
    path = check_output_dir(path, overwrite, flag)
    path.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    marker = path / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text("written by gentleclip; this folder may be resumed and overwritten by it\n")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """The one atomic writer: yields a temporary path beside ``path`` (``<name>.tmp<pid>``) to write
    into; when the block ends without an error the file is flushed to disk, given the user's umask
    and moved over ``path`` in one ``os.replace``; on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        apply_umask(tmp)  # writers such as safetensors and mkstemp create 0600
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (``<name>.tmp<pid>``) that :func:`atomic_path` writers left in ``folder``
    when they were killed (``kill -9`` runs no cleanup); a temporary of a process still running is kept.
    Returns the removed paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.iterdir():
        match = re.fullmatch(r".+\.tmp(\d+)", tmp.name)
        if match and tmp.is_file() and not _process_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, payload: Any, indent: int | None = 1, sort_keys: bool = False) -> Path:
    """``payload`` as JSON (numpy scalars and paths as plain values), written atomically."""
    return atomic_write_text(path, json.dumps(payload, indent=indent, sort_keys=sort_keys, default=_plain))


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
