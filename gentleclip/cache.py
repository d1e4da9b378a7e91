"""Frozen-encoder features computed once, stored on disk, resumable.

A frozen encoder (ESM, a text model, an image backbone) is by far the slowest part of a run, and
its output never changes while its weights and preprocessing do not. :class:`FeatureCache` runs
it once per (encoder, data, views) and keeps the result as a float32 ``.npy`` array ``[N, V, D]``
that later runs memory-map.

Layout of one entry (``root/<encoder-name>/<key>/``)::

    features.npy.partial   the array while it is being written (np.lib.format.open_memmap)
    progress.json          which item ranges of which views are done (replaced atomically
                           after the rows of a chunk are flushed to disk)
    features.npy           the finished array (renamed from .partial when every chunk is done)
    meta.json              written last, atomically: encoder name, identity, fingerprint,
                           n_items, n_views, dim, created, elapsed

An entry is served only when ``meta.json`` exists and agrees with the array on disk; an entry
without it is incomplete and is resumed (done chunks are skipped), never served. A ``meta.json``
that disagrees with the array (shape, dtype, truncated file, unreadable JSON) marks a corrupt
entry: it is discarded with a :class:`CacheCorruptionWarning` and computed again. The key is the
SHA-256 of the encoder identity, the data fingerprint, the number of views and the feature
dimension, so a changed encoder or changed data is a different entry and a stale one is never
served. Two processes asking for the same entry serialise on a lock file (``fcntl.flock``): the
second waits and then reads what the first wrote.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import time
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from gentleclip.io import atomic_write_json, remove_stale_temporaries
from gentleclip.progress import progress

try:  # POSIX only; without it the cache still works but does not guard against concurrent writers.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FeatureEncoder",
    "FeatureCache",
    "CacheEntry",
    "CacheCorruptionWarning",
    "fingerprint",
    "DEFAULT_CHUNK_SIZE",
]

logger = logging.getLogger(__name__)

#: Items handed to ``encoder.encode`` per call when ``chunk_size`` is not given.
DEFAULT_CHUNK_SIZE = 1024
#: Bumped when the on-disk layout or the key recipe changes (old entries then become other keys).
CACHE_FORMAT_VERSION = 1
_FINGERPRINT_VERSION = b"gentleclip-fingerprint-v1"

_FEATURES = "features.npy"
_PARTIAL = "features.npy.partial"
_RANK_PROGRESS = "progress.rank{rank}.json"  # one per rank under torch.distributed (FeatureCache._get_sharded)
_PROGRESS = "progress.json"
_META = "meta.json"
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
# Fields of meta.json / progress.json that must equal what get() asked for.
_MATCHED = ("key", "identity", "fingerprint", "n_items", "n_views", "dim")


# --------------------------------------------------------------------------------------------
# Encoder protocol
# --------------------------------------------------------------------------------------------
@runtime_checkable
class FeatureEncoder(Protocol):
    """A frozen encoder whose outputs can be cached.

    Attributes:
        name: short human-readable name; the cache folder is named after it.
        identity: a string that changes whenever the architecture, the weights or the
            preprocessing change (e.g. ``"esm2_t6_8M_UR50D|layer6|mean|maxlen1022"``); it is part
            of the cache key.
        dim: feature dimension D.

    ``encode(items, view=0)`` returns a float32 array ``[len(items), dim]``. View 0 is the clean
    item; view ``k > 0`` is the deterministic augmentation number ``k`` (same input, same ``k``
    -> same output). Encoders batch internally; the cache hands them chunks of items.
    """

    name: str
    identity: str
    dim: int

    def encode(self, items: Sequence, view: int = 0) -> np.ndarray:
        """Encode ``items`` under augmentation ``view`` into a ``[len(items), dim]`` array."""
        ...


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------
def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def _update_item(h: "hashlib._Hash", item: Any, where: str) -> None:
    """Feed one item into ``h`` with a type tag and length prefixes (so no two values collide)."""
    if isinstance(item, str):
        data = item.encode("utf-8", "surrogatepass")
        h.update(b"s" + _u64(len(data)) + data)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        h.update(b"b" + _u64(len(data)) + data)
    elif isinstance(item, os.PathLike):
        path = os.path.abspath(os.fspath(item))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"fingerprint: item {where} is the path {path!r}, which does not exist "
                "(a path item is fingerprinted by its name, size and modification time)"
            ) from None
        data = os.fsencode(path)
        h.update(b"p" + _u64(len(data)) + data + _u64(st.st_size) + struct.pack("<q", st.st_mtime_ns))
    elif item is None:
        h.update(b"n")
    elif isinstance(item, (bool, np.bool_)):
        h.update(b"?" + (b"1" if item else b"0"))
    elif isinstance(item, (int, np.integer)):
        data = str(int(item)).encode()
        h.update(b"i" + _u64(len(data)) + data)
    elif isinstance(item, (float, np.floating)):
        data = repr(float(item)).encode()
        h.update(b"f" + _u64(len(data)) + data)
    elif isinstance(item, (np.ndarray, np.generic)):
        _update_array(h, np.asarray(item), where)
    elif isinstance(item, (list, tuple)):
        h.update((b"l" if isinstance(item, list) else b"t") + _u64(len(item)))
        for j, sub in enumerate(item):
            _update_item(h, sub, f"{where}[{j}]")
    elif isinstance(item, Mapping):
        h.update(b"d" + _u64(len(item)))
        entries = []
        for k, v in item.items():
            kh = hashlib.sha256()
            _update_item(kh, k, f"{where} key {k!r}")
            entries.append((kh.digest(), v, k))
        for kd, v, k in sorted(entries, key=lambda e: e[0]):
            h.update(kd)
            _update_item(h, v, f"{where}[{k!r}]")
    else:
        raise TypeError(
            f"fingerprint: item {where} has type {type(item).__name__}; expected str, bytes, a path "
            "(os.PathLike), a number, None, a numpy array, or a list/tuple/dict of these. Pass "
            "FeatureCache.get(..., fingerprint='...') to name the data yourself"
        )


def _update_array(h: "hashlib._Hash", arr: np.ndarray, where: str) -> None:
    if arr.dtype == object:
        h.update(b"o" + _u64(arr.ndim) + b"".join(_u64(s) for s in arr.shape))
        for j, sub in enumerate(arr.reshape(-1)):
            _update_item(h, sub, f"{where}.flat[{j}]")
        return
    dt = arr.dtype.str.encode()
    h.update(b"a" + _u64(len(dt)) + dt + _u64(arr.ndim) + b"".join(_u64(s) for s in arr.shape))
    h.update(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data if arr.size else b"")


def fingerprint(items: Any) -> str:
    """Stable, order-sensitive SHA-256 hex digest of a collection of items.

    Supported items: ``str``, ``bytes``, paths (``os.PathLike``: hashed by absolute path, size and
    ``mtime_ns``, so an edited file changes the fingerprint; plain strings are never treated as
    paths), numbers, ``None``, numpy arrays (dtype, shape and bytes), and lists, tuples and dicts
    of these. The collection itself may be any sequence (list, tuple, ``range``...: the container
    type does not matter, only the items and their order) or a numpy array (hashed as a whole).
    The digest is identical across processes and Python sessions.

    Raises:
        TypeError: an item of an unsupported type (the message names its index).
        FileNotFoundError: a path item that does not exist.
    """
    h = hashlib.sha256(_FINGERPRINT_VERSION)
    if isinstance(items, (np.ndarray, np.generic)):
        _update_array(h, np.asarray(items), "items")
        return h.hexdigest()
    if isinstance(items, (str, bytes, os.PathLike)) or not hasattr(items, "__len__"):
        raise TypeError(
            f"fingerprint: expected a sequence of items (list, tuple, numpy array...), got "
            f"{type(items).__name__}"
        )
    h.update(b"S" + _u64(len(items)))
    for i, item in enumerate(items):
        _update_item(h, item, f"#{i}")
    return h.hexdigest()


_fingerprint_items = fingerprint  # FeatureCache.get has a parameter of the same name


# --------------------------------------------------------------------------------------------
# Small file helpers
# --------------------------------------------------------------------------------------------
def _sanitise(name: str) -> str:
    """Folder-safe version of an encoder name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return safe[:100] or "encoder"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file is absent. Raises ValueError when unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _merge(ranges: list[list[int]]) -> list[list[int]]:
    """Sorted, merged half-open intervals."""
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _missing_chunks(done: list[list[int]], n_items: int, chunk_size: int) -> list[tuple[int, int]]:
    """Item ranges (of at most ``chunk_size`` items) not covered by the ``done`` intervals."""
    chunks: list[tuple[int, int]] = []
    pos = 0
    for a, b in _merge(done) + [[n_items, n_items]]:
        a, b = max(a, 0), min(b, n_items)
        for start in range(pos, max(a, pos), chunk_size):
            chunks.append((start, min(start + chunk_size, a)))
        pos = max(pos, b)
    return chunks


def _n_done(done: list[list[int]]) -> int:
    return sum(b - a for a, b in _merge(done))


def _slice_items(items: Sequence, start: int, stop: int) -> Sequence:
    try:
        chunk = items[start:stop]
        if len(chunk) == stop - start:
            return chunk
    except (TypeError, KeyError, IndexError):
        pass
    return [items[i] for i in range(start, stop)]


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------
class CacheCorruptionWarning(UserWarning):
    """A cache entry was found damaged (or unusable) and is being discarded and recomputed."""


@dataclass
class CacheEntry:
    """One entry of a :class:`FeatureCache` as listed by :meth:`FeatureCache.entries`.

    ``complete`` entries have a valid ``meta.json``; incomplete ones are runs that stopped early
    (``items_done`` of ``n_items * n_views`` item-views written) and will be resumed by ``get``.
    """

    key: str
    encoder: str
    identity: str
    fingerprint: str
    n_items: int
    n_views: int
    dim: int
    path: Path
    complete: bool
    nbytes: int
    created: str | None = None
    elapsed: float | None = None
    items_done: int = 0

    def to_dict(self) -> dict:
        """JSON-friendly dict of the fields."""
        d = asdict(self)
        d["path"] = str(self.path)
        return d


class FeatureCache:
    """On-disk, resumable cache of frozen-encoder features ``[N, V, D]`` (float32).

    Args:
        root: folder holding the cache. ``None`` uses ``$GENTLECLIP_CACHE`` or
            ``~/.cache/gentleclip/features``.

    Example::

        cache = FeatureCache("cache/")
        feats = cache.get(esm_encoder, sequences, n_views=2)    # computed once, then mem-mapped
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        if root is None:
            root = os.environ.get("GENTLECLIP_CACHE") or Path.home() / ".cache" / "gentleclip" / "features"
        self.root = Path(root).expanduser()
        #: Key of the entry served by the latest :meth:`get` (for benchmark scripts to record and
        #: pass to :meth:`load` later); None before the first call or after an empty ``items``.
        self.last_key: str | None = None
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"FeatureCache: root {self.root} exists and is not a folder")

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    # ------------------------------------------------------------------ keys and paths
    @staticmethod
    def _check_encoder(encoder: Any) -> tuple[str, str, int]:
        if not isinstance(encoder, FeatureEncoder):
            raise TypeError(
                f"FeatureCache: {type(encoder).__name__} is not a FeatureEncoder (expected attributes "
                "name: str, identity: str, dim: int and a method encode(items, view=0))"
            )
        name, identity, dim = encoder.name, encoder.identity, encoder.dim
        if not isinstance(name, str) or not name:
            raise ValueError(f"FeatureCache: encoder {encoder!r} has name {name!r}; expected a non-empty string")
        if not isinstance(identity, str) or not identity:
            raise ValueError(
                f"FeatureCache: encoder {name!r} has identity {identity!r}; expected a non-empty string "
                "that changes when its architecture, weights or preprocessing change"
            )
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise ValueError(f"FeatureCache: encoder {name!r} has dim {dim!r}; expected a positive integer")
        return name, identity, int(dim)

    @staticmethod
    def _make_key(identity: str, fp: str, n_views: int, dim: int) -> str:
        payload = json.dumps(
            {"format": CACHE_FORMAT_VERSION, "identity": identity, "fingerprint": fp, "n_views": n_views, "dim": dim},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def key(self, encoder: FeatureEncoder, items: Sequence, n_views: int = 1, fingerprint: str | None = None) -> str:
        """The cache key ``get`` would use for these arguments (SHA-256 hex digest)."""
        _, identity, dim = self._check_encoder(encoder)
        fp = fingerprint if fingerprint is not None else _fingerprint_items(items)
        return self._make_key(identity, fp, int(n_views), dim)

    def _entry_dir(self, encoder_name: str, key: str) -> Path:
        return self.root / _sanitise(encoder_name) / key

    def _find(self, key: str) -> Path:
        """Entry folder of ``key`` (or of a unique prefix of at least 8 hex digits)."""
        if not re.fullmatch(r"[0-9a-f]{8,64}", key or ""):
            raise KeyError(f"FeatureCache {self.root}: {key!r} is not a cache key (expected 8-64 hex digits)")
        found = [p for p in self._entry_dirs() if p.name.startswith(key)]
        if not found:
            raise KeyError(f"FeatureCache {self.root}: no entry with key {key!r}")
        if len({p.name for p in found}) > 1:
            raise KeyError(f"FeatureCache {self.root}: key prefix {key!r} is ambiguous ({len(found)} entries)")
        complete = [p for p in found if (p / _META).exists()]
        return (complete or found)[0]

    def path(self, key: str) -> Path:
        """Path of the finished ``features.npy`` of entry ``key`` (``np.load(path, mmap_mode='r')``)."""
        entry = self._find(key)
        if not (entry / _META).exists():
            raise KeyError(f"FeatureCache: entry {entry} is incomplete (no {_META}); run get() to finish it")
        return entry / _FEATURES

    def load(self, key: str) -> np.ndarray:
        """Read-only memory map ``[N, V, D]`` of the complete entry ``key`` (as printed by :meth:`info`).

        For benchmark scripts that recorded the key of the features they used. Accepts a unique
        key prefix of at least 8 hex digits.

        Raises:
            KeyError: no such entry, or the entry is incomplete.
            ValueError: the entry is corrupt (meta.json disagrees with the array on disk).
        """
        entry = self._find(key)
        meta = _read_json(entry / _META)
        if meta is None:
            raise KeyError(f"FeatureCache: entry {entry} is incomplete (no {_META}); run get() to finish it")
        arr, problem = self._open_complete(entry, meta, expected=None)
        if arr is None:
            raise ValueError(f"FeatureCache: entry {entry} is corrupt: {problem}")
        return arr

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _open_complete(entry: Path, meta: dict, expected: dict | None) -> tuple[np.ndarray | None, str | None]:
        """Open ``entry/features.npy`` if it agrees with ``meta`` (and ``meta`` with ``expected``)."""
        for f in ("key", "encoder", *_MATCHED):
            if f not in meta:
                return None, f"{entry / _META} lacks the field {f!r}"
        if expected is not None:
            for f in _MATCHED:
                if meta[f] != expected[f]:
                    return None, f"{entry / _META} has {f}={meta[f]!r}, expected {expected[f]!r}"
        if meta.get("format") != CACHE_FORMAT_VERSION:
            return None, f"{entry / _META} has format {meta.get('format')!r}, expected {CACHE_FORMAT_VERSION}"
        try:
            shape = (int(meta["n_items"]), int(meta["n_views"]), int(meta["dim"]))
        except (TypeError, ValueError):
            return None, f"{entry / _META} has non-integer sizes"
        path = entry / _FEATURES
        if not path.exists():
            return None, f"{path} is missing although {_META} says the entry is complete"
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    header = np.lib.format.read_array_header_2_0(f)
                else:  # pragma: no cover - numpy only writes 3.0 for non-latin1 field names
                    header = np.lib.format._read_array_header(f, version)
                offset = f.tell()
        except Exception as e:  # noqa: BLE001 - any parse failure means a damaged file
            return None, f"{path} has no valid .npy header ({e})"
        arr_shape, fortran, dtype = header
        if tuple(arr_shape) != shape or fortran or dtype != np.dtype(np.float32):
            return None, (
                f"{path} holds {np.dtype(dtype).name}{list(arr_shape)} (fortran_order={fortran}), "
                f"but {_META} says float32{list(shape)}"
            )
        expected_size = offset + int(np.prod(shape)) * 4
        actual_size = path.stat().st_size
        if actual_size != expected_size:
            return None, f"{path} is {actual_size} bytes, expected {expected_size} (truncated or damaged)"
        try:
            arr = np.load(path, mmap_mode="r")
        except Exception as e:  # noqa: BLE001
            return None, f"{path} cannot be memory-mapped ({e})"
        return arr, None

    def _try_serve(self, entry: Path, expected: dict) -> tuple[np.ndarray | None, str | None]:
        """(array, None) when complete and valid; (None, None) when incomplete; (None, why) when corrupt."""
        try:
            meta = _read_json(entry / _META)
        except ValueError as e:
            return None, str(e)
        if meta is None:
            return None, None
        return self._open_complete(entry, meta, expected)

    # ------------------------------------------------------------------ locking
    @contextmanager
    def _lock(self, lock_path: Path, blocking: bool = True) -> Iterator[bool]:
        """Exclusive ``flock`` on ``lock_path``; yields False when ``blocking=False`` and it is held.

        The lock file is removed on release; a waiter that wakes up holding a lock on a removed
        file notices (inode check) and retries on the new one.
        """
        if fcntl is None:  # pragma: no cover - Windows
            yield True
            return
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        waited = False
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not blocking:
                    os.close(fd)
                    yield False
                    return
                if not waited:
                    logger.info("waiting for %s (another process is computing this cache entry)", lock_path)
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the file we locked was removed by its previous holder: try again
        try:
            yield True
        finally:
            try:
                os.unlink(lock_path)
            except FileNotFoundError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @staticmethod
    def _lock_path(entry: Path) -> Path:
        return entry.parent / f".{entry.name}.lock"

    # ------------------------------------------------------------------ main entry point
    def get(
        self,
        encoder: FeatureEncoder,
        items: Sequence,
        n_views: int = 1,
        fingerprint: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        desc: str | None = None,
    ) -> np.ndarray:
        """Features ``[N, V, D]`` of ``items`` under ``encoder``, computed once and then memory-mapped.

        Args:
            encoder: a :class:`FeatureEncoder`.
            items: the raw items (any sequence ``encoder.encode`` accepts; sliced into chunks).
            n_views: V; view 0 is clean, views ``1..V-1`` are the encoder's augmentations.
            fingerprint: a string naming the data, used instead of :func:`fingerprint` ``(items)``
                (e.g. a dataset name + version when hashing millions of items is too slow).
                It must change whenever the items change.
            chunk_size: items per ``encoder.encode`` call and per resumable unit of work.
            desc: label of the progress bar (default: the encoder name).

        Under an initialised ``torch.distributed`` process group with several ranks (``torchrun``), every
        rank must call ``get`` with the same arguments: each encodes its share of the chunks
        (:meth:`_get_sharded`) and all return the same entry.

        Returns:
            A read-only ``np.memmap`` of shape ``[len(items), n_views, encoder.dim]``, float32
            (a plain empty array when ``items`` is empty; the encoder is then not called).

        Raises:
            ValueError: the encoder returned the wrong shape or non-finite values (the message
                names the encoder, the view and the item range; the chunks done so far are kept
                and the entry is not served), or bad arguments.
            TypeError: ``encoder`` is not a FeatureEncoder, or items cannot be fingerprinted.
        """
        name, identity, dim = self._check_encoder(encoder)
        if isinstance(n_views, bool) or not isinstance(n_views, (int, np.integer)) or n_views < 1:
            raise ValueError(f"FeatureCache.get({name!r}): n_views must be a positive integer, got {n_views!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"FeatureCache.get({name!r}): chunk_size must be a positive integer, got {chunk_size!r}")
        n_views, chunk_size = int(n_views), int(chunk_size)
        try:
            n_items = len(items)
        except TypeError:
            raise TypeError(
                f"FeatureCache.get({name!r}): items must be a sequence with a length, got {type(items).__name__}"
            ) from None
        self.last_key = None
        if n_items == 0:
            return np.zeros((0, n_views, dim), dtype=np.float32)
        if fingerprint is None:
            fp = _fingerprint_items(items)
        elif isinstance(fingerprint, str) and fingerprint:
            fp = fingerprint
        else:
            raise ValueError(f"FeatureCache.get({name!r}): fingerprint must be a non-empty string, got {fingerprint!r}")

        key = self._make_key(identity, fp, n_views, dim)
        self.last_key = key
        entry = self._entry_dir(name, key)
        expected = {
            "key": key, "encoder": name, "identity": identity, "fingerprint": fp,
            "n_items": n_items, "n_views": n_views, "dim": dim,
        }  # fmt: skip
        from gentleclip.distributed import is_distributed

        if is_distributed():  # under torchrun: every rank embeds its share of the chunks (one entry results)
            return self._get_sharded(encoder, items, entry, expected, chunk_size, desc)
        arr, problem = self._try_serve(entry, expected)
        if arr is not None:
            return arr
        with self._lock(self._lock_path(entry)):
            arr, problem = self._try_serve(entry, expected)  # another process may have finished it
            if arr is not None:
                return arr
            if problem is not None:
                warnings.warn(
                    f"FeatureCache: discarding corrupt entry {entry} ({problem}); recomputing",
                    CacheCorruptionWarning,
                    stacklevel=2,
                )
                shutil.rmtree(entry)
            self._compute(encoder, items, entry, expected, chunk_size, desc)
            arr, problem = self._try_serve(entry, expected)
            if arr is None:  # pragma: no cover - would be a bug in _compute
                raise RuntimeError(f"FeatureCache: entry {entry} is not valid right after computing it: {problem}")
            return arr

    # ------------------------------------------------------------------ computation
    def _open_or_start(self, entry: Path, expected: dict, chunk_size: int) -> tuple[np.memmap, dict]:
        """Resume an incomplete entry (memmap + progress record) or start a fresh one."""
        shape = (expected["n_items"], expected["n_views"], expected["dim"])
        partial, final, prog_path = entry / _PARTIAL, entry / _FEATURES, entry / _PROGRESS
        remove_stale_temporaries(entry)  # of a progress write that a kill interrupted
        if final.exists() and not (entry / _META).exists():
            # Stopped between the rename and meta.json: put it back and let the record decide.
            os.replace(final, partial)
        record: dict | None = None
        problem: str | None = None
        try:
            record = _read_json(prog_path)
        except ValueError as e:
            problem = str(e)
        if record is not None:
            for f in _MATCHED:
                if record.get(f) != expected[f]:
                    problem = f"{prog_path} has {f}={record.get(f)!r}, expected {expected[f]!r}"
                    record = None
                    break
        if record is not None:
            try:
                mm = np.lib.format.open_memmap(partial, mode="r+")
                if mm.shape != shape or mm.dtype != np.float32 or np.isfortran(mm):
                    problem = f"{partial} holds {mm.dtype}{list(mm.shape)}, expected float32{list(shape)}"
                    del mm
                else:
                    done = record.get("done", {})
                    record["done"] = {str(v): _merge(done.get(str(v), [])) for v in range(shape[1])}
                    record["resumed"] = int(record.get("resumed", 0)) + 1
                    return mm, record
            except Exception as e:  # noqa: BLE001 - any failure means we cannot trust the partial file
                problem = f"{partial} cannot be reopened ({e})"
        if problem is not None:
            warnings.warn(
                f"FeatureCache: cannot resume {entry} ({problem}); starting it again", CacheCorruptionWarning,
                stacklevel=4,
            )
        # Fresh start.
        if entry.exists():
            shutil.rmtree(entry)
        entry.mkdir(parents=True)
        mm = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
        mm.flush()
        record = {
            **expected,
            "format": CACHE_FORMAT_VERSION,
            "chunk_size": chunk_size,
            "created": _now(),
            "elapsed": 0.0,
            "resumed": 0,
            "done": {str(v): [] for v in range(shape[1])},
        }
        atomic_write_json(prog_path, record, sort_keys=True)
        return mm, record

    def _encode_chunk(self, encoder: FeatureEncoder, items: Sequence, view: int, start: int, stop: int) -> np.ndarray:
        name, dim = encoder.name, int(encoder.dim)
        where = f"encoder {name!r} (identity {encoder.identity!r}), view {view}, items [{start}, {stop})"
        out = encoder.encode(_slice_items(items, start, stop), view=view)
        if hasattr(out, "detach") and hasattr(out, "cpu"):  # a torch tensor
            out = out.detach().cpu().numpy()
        try:
            out = np.asarray(out, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: output is not convertible to a float32 array ({e})") from None
        if out.shape != (stop - start, dim):
            raise ValueError(f"{where}: returned an array of shape {out.shape}, expected {(stop - start, dim)}")
        finite = np.isfinite(out)
        if not finite.all():
            bad_rows = np.flatnonzero(~finite.all(axis=1))
            raise ValueError(
                f"{where}: returned {int((~finite).sum())} non-finite values (NaN/inf) in {len(bad_rows)} "
                f"rows; first bad item index {start + int(bad_rows[0])}"
            )
        return out

    def _compute(
        self, encoder: FeatureEncoder, items: Sequence, entry: Path, expected: dict, chunk_size: int, desc: str | None
    ) -> None:
        """Fill the entry chunk by chunk (resuming), then finalise it. Caller holds the lock."""
        n_items, n_views = expected["n_items"], expected["n_views"]
        mm, record = self._open_or_start(entry, expected, chunk_size)
        prog_path = entry / _PROGRESS
        todo = [
            (v, start, stop)
            for v in range(n_views)
            for start, stop in _missing_chunks(record["done"][str(v)], n_items, chunk_size)
        ]
        n_done_chunks = sum(-(-_n_done(record["done"][str(v)]) // chunk_size) for v in range(n_views))
        t0 = time.perf_counter()
        elapsed0 = float(record.get("elapsed", 0.0))
        try:
            if todo:
                bar = progress(
                    total=n_done_chunks + len(todo),
                    initial=n_done_chunks,
                    desc=desc or f"{encoder.name} features",
                    unit="chunk",
                )
                try:
                    for v, start, stop in todo:
                        mm[start:stop, v, :] = self._encode_chunk(encoder, items, v, start, stop)
                        mm.flush()  # data on disk before the record says it is there
                        record["done"][str(v)] = _merge(record["done"][str(v)] + [[start, stop]])
                        record["elapsed"] = elapsed0 + time.perf_counter() - t0
                        atomic_write_json(prog_path, record, sort_keys=True)
                        bar.update(1)
                finally:
                    bar.close()
            mm.flush()
        finally:
            del mm
        self._finalise(entry, expected, record, chunk_size, elapsed0 + time.perf_counter() - t0)

    def _finalise(self, entry: Path, expected: dict, record: dict, chunk_size: int, elapsed: float) -> None:
        """Check every view is complete, move the partial array into place and write ``meta.json`` last."""
        for v in range(expected["n_views"]):
            if _n_done(record["done"][str(v)]) != expected["n_items"]:  # pragma: no cover - defensive
                raise RuntimeError(f"FeatureCache: entry {entry} view {v} is incomplete after computing")
        os.replace(entry / _PARTIAL, entry / _FEATURES)
        meta = {
            **expected,
            "format": CACHE_FORMAT_VERSION,
            "dtype": "float32",
            "chunk_size": chunk_size,
            "created": record.get("created", _now()),
            "completed": _now(),
            "elapsed": round(elapsed, 3),
            "resumed": int(record.get("resumed", 0)),
        }
        atomic_write_json(entry / _META, meta, sort_keys=True)
        _fsync_dir(entry)
        for path in (entry / _PROGRESS, *entry.glob(_RANK_PROGRESS.format(rank="*"))):
            path.unlink(missing_ok=True)

    def _get_sharded(self, encoder: FeatureEncoder, items: Sequence, entry: Path, expected: dict, chunk_size: int,
                     desc: str | None) -> np.ndarray:
        """:meth:`get` under ``torch.distributed``: rank 0 prepares the entry (under the lock, resuming what a
        killed run did), every rank encodes the chunks ``i`` with ``i % world_size == rank`` into the shared
        partial array and records them in its own progress file, and rank 0 merges and finalises. The
        entry is the one a single process writes; a killed job resumes from every rank's progress."""
        import torch
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
        prog_path = entry / _PROGRESS
        state = torch.zeros(1, dtype=torch.int64)  # 1: the entry is complete, nothing to compute
        if rank == 0:
            with self._lock(self._lock_path(entry)):
                arr, problem = self._try_serve(entry, expected)
                if arr is None:
                    if problem is not None:
                        warnings.warn(f"FeatureCache: discarding corrupt entry {entry} ({problem}); recomputing",
                                      CacheCorruptionWarning, stacklevel=3)
                        shutil.rmtree(entry)
                    mm, record = self._open_or_start(entry, expected, chunk_size)
                    del mm
                    for path in entry.glob(_RANK_PROGRESS.format(rank="*")):  # what the ranks did before a kill
                        done = _read_json(path).get("done", {})
                        for v in record["done"]:
                            record["done"][v] = _merge(record["done"][v] + done.get(v, []))
                        path.unlink()
                    atomic_write_json(prog_path, record, sort_keys=True)
                else:
                    state[0] = 1
        dist.broadcast(state, src=0)
        if int(state[0]) == 0:
            record = _read_json(prog_path)
            n_items, n_views = expected["n_items"], expected["n_views"]
            todo = [(v, start, stop) for v in range(n_views)
                    for start, stop in _missing_chunks(record["done"][str(v)], n_items, chunk_size)]
            mine = todo[rank::world]
            mm = np.lib.format.open_memmap(entry / _PARTIAL, mode="r+")
            done: dict[str, list] = {str(v): [] for v in range(n_views)}
            t0 = time.perf_counter()
            try:
                for v, start, stop in progress(mine, desc=desc or f"{encoder.name} features (rank {rank})",
                                               unit="chunk", disable=rank != 0 or None):
                    mm[start:stop, v, :] = self._encode_chunk(encoder, items, v, start, stop)
                    mm.flush()  # data on disk before the record says it is there
                    done[str(v)] = _merge(done[str(v)] + [[start, stop]])
                    atomic_write_json(entry / _RANK_PROGRESS.format(rank=rank), {"done": done}, sort_keys=True)
            finally:
                del mm
            dist.barrier()
            if rank == 0:
                for path in entry.glob(_RANK_PROGRESS.format(rank="*")):
                    theirs = _read_json(path).get("done", {})
                    for v in record["done"]:
                        record["done"][v] = _merge(record["done"][v] + theirs.get(v, []))
                self._finalise(entry, expected, record, chunk_size,
                               float(record.get("elapsed", 0.0)) + time.perf_counter() - t0)
        dist.barrier()
        arr, problem = self._try_serve(entry, expected)
        if arr is None:  # pragma: no cover - would be a bug above
            raise RuntimeError(f"FeatureCache: entry {entry} is not valid after the sharded computation: {problem}")
        return arr

    # ------------------------------------------------------------------ listing and clearing
    def _entry_dirs(self, encoder_name: str | None = None) -> list[Path]:
        if not self.root.is_dir():
            return []
        if encoder_name is not None:
            folders = [self.root / _sanitise(encoder_name)]
        else:
            folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        return [e for folder in folders if folder.is_dir() for e in sorted(folder.iterdir())
                if e.is_dir() and _KEY_RE.match(e.name)]  # fmt: skip

    def entries(self, encoder_name: str | None = None) -> list[CacheEntry]:
        """All entries (complete and incomplete), optionally only those of one encoder name."""
        out: list[CacheEntry] = []
        for entry in self._entry_dirs(encoder_name):
            nbytes = sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
            complete = True
            try:
                rec = _read_json(entry / _META)
            except ValueError:
                rec = None
            if rec is None:
                complete = False
                try:
                    rec = _read_json(entry / _PROGRESS) or {}
                except ValueError:
                    rec = {}
            n_views = int(rec.get("n_views", 0) or 0)
            n_items = int(rec.get("n_items", 0) or 0)
            if complete:
                items_done = n_items * n_views
            else:
                done = rec.get("done", {}) if isinstance(rec.get("done"), dict) else {}
                items_done = sum(_n_done(r) for r in done.values())
            out.append(
                CacheEntry(
                    key=entry.name,
                    encoder=str(rec.get("encoder", entry.parent.name)),
                    identity=str(rec.get("identity", "")),
                    fingerprint=str(rec.get("fingerprint", "")),
                    n_items=n_items,
                    n_views=n_views,
                    dim=int(rec.get("dim", 0) or 0),
                    path=entry,
                    complete=complete,
                    nbytes=nbytes,
                    created=rec.get("created"),
                    elapsed=rec.get("elapsed"),
                    items_done=items_done,
                )
            )
        return out

    def info(self) -> str:
        """Human-readable table of the entries (key prefix, encoder, shape, size, state)."""
        entries = self.entries()
        total = sum(e.nbytes for e in entries)
        lines = [f"FeatureCache at {self.root}: {len(entries)} entries, {total / 2**20:.1f} MiB"]
        for e in entries:
            if e.complete:
                state = f"complete ({e.elapsed:.1f}s)" if isinstance(e.elapsed, (int, float)) else "complete"
            else:
                denom = max(e.n_items * e.n_views, 1)
                state = f"incomplete ({100 * e.items_done / denom:.0f}%)"
            lines.append(
                f"  {e.key[:12]}  {e.encoder:<24} [{e.n_items}, {e.n_views}, {e.dim}]  "
                f"{e.nbytes / 2**20:8.1f} MiB  {state}  {e.identity}"
            )
        return "\n".join(lines)

    def clear(self, encoder_name: str | None = None) -> int:
        """Delete entries (all, or those of ``encoder_name``); returns how many were removed.

        Entries being computed by another process right now are skipped with a warning.
        """
        removed = 0
        for entry in self._entry_dirs(encoder_name):
            with self._lock(self._lock_path(entry), blocking=False) as got:
                if not got:
                    warnings.warn(f"FeatureCache.clear: {entry} is in use by another process; kept", stacklevel=2)
                    continue
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        folders = [self.root / _sanitise(encoder_name)] if encoder_name is not None else (
            [p for p in self.root.iterdir() if p.is_dir()] if self.root.is_dir() else []
        )  # fmt: skip
        for folder in folders:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass
        return removed
