"""Tests for gentleclip.cache: fingerprints, compute-once, keys, views, kill-and-resume, corruption."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from gentleclip.cache import (
    CacheCorruptionWarning,
    FeatureCache,
    FeatureEncoder,
    fingerprint,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# The toy encoder is shared verbatim with the subprocess of the kill-and-resume test, so both
# processes compute bit-identical features and the same cache key.
ENCODER_SRC = textwrap.dedent(
    '''
    import os, time
    import numpy as np

    def toy_features(items, view, dim, scale=1.0):
        idx = np.array([int(s.split("-")[1]) for s in items], dtype=np.float64)
        j = np.arange(dim, dtype=np.float64)
        return (scale * np.sin(np.outer(idx + 1.0, j + 1.0) * 0.37 + 1.3 * view)).astype(np.float32)

    class ToyEncoder:
        """Deterministic encoder over items "item-<i>"; logs (view, start, stop) per call."""

        def __init__(self, dim=6, identity="toy-v1", scale=1.0, sleep=0.0, marker_dir=None):
            self.name = "toy encoder/v1"
            self.identity = identity
            self.dim = dim
            self.scale = scale
            self.sleep = sleep
            self.marker_dir = marker_dir
            self.calls = []

        def encode(self, items, view=0):
            idx = [int(s.split("-")[1]) for s in items]
            self.calls.append((view, idx[0], idx[-1] + 1))
            if self.marker_dir is not None:
                with open(os.path.join(self.marker_dir, f"{view}_{idx[0]}"), "w") as f:
                    f.write("started")
            if self.sleep:
                time.sleep(self.sleep)
            return toy_features(items, view, self.dim, self.scale)
    '''
)
_ns: dict = {}
exec(ENCODER_SRC, _ns)
ToyEncoder = _ns["ToyEncoder"]
toy_features = _ns["toy_features"]


def items_of(n: int) -> list[str]:
    return [f"item-{i}" for i in range(n)]


def expected_features(n: int, n_views: int, dim: int = 6, scale: float = 1.0) -> np.ndarray:
    it = items_of(n)
    return np.stack([toy_features(it, v, dim, scale) for v in range(n_views)], axis=1)


def entry_dir(cache: FeatureCache, enc, items, n_views: int) -> Path:
    return cache.root / "toy_encoder_v1" / cache.key(enc, items, n_views)


# ------------------------------------------------------------------------------ fingerprint
def test_fingerprint_stable_order_sensitive_and_typed():
    a = ["x", "y", b"z", 3, 2.5, None, ("t", 1), {"k": [1, 2]}]
    assert fingerprint(a) == fingerprint(list(a)) == fingerprint(tuple(a))
    assert len(fingerprint(a)) == 64
    assert fingerprint(a) != fingerprint(a[::-1])
    assert fingerprint(["ab", "c"]) != fingerprint(["a", "bc"])  # length-prefixed, no concatenation collisions
    assert fingerprint(["a"]) != fingerprint([b"a"])
    assert fingerprint([1]) != fingerprint(["1"])
    assert fingerprint([{"a": 1, "b": 2}]) == fingerprint([{"b": 2, "a": 1}])
    assert fingerprint([{"a": 1}]) != fingerprint([{"a": 2}])
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert fingerprint(arr) == fingerprint(arr.copy())
    assert fingerprint(arr) != fingerprint(arr.astype(np.float64))
    assert fingerprint(arr) != fingerprint(arr.reshape(4, 3))
    assert fingerprint([arr, arr]) != fingerprint([arr, arr + 1])
    with pytest.raises(TypeError, match=r"item #1 .*object"):
        fingerprint(["ok", object()])
    with pytest.raises(TypeError, match="sequence"):
        fingerprint("not a list")


def test_fingerprint_paths_use_size_and_mtime(tmp_path: Path):
    p = tmp_path / "img.tif"
    p.write_bytes(b"12345")
    f1 = fingerprint([p])
    assert f1 == fingerprint([Path(str(p))])
    assert f1 != fingerprint([str(p)])  # a plain string is text, not a path
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    f2 = fingerprint([p])
    assert f2 != f1
    p.write_bytes(b"123456")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert fingerprint([p]) != f2  # size changed, same mtime
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        fingerprint([tmp_path / "missing.tif"])


# ------------------------------------------------------------------------------ compute once
def test_protocol_is_runtime_checkable():
    assert isinstance(ToyEncoder(), FeatureEncoder)
    assert not isinstance(object(), FeatureEncoder)
    with pytest.raises(TypeError, match="not a FeatureEncoder"):
        FeatureCache("unused").get(object(), ["a"])


def test_computes_once_then_serves_memmap(tmp_path: Path):
    cache = FeatureCache(tmp_path)
    enc = ToyEncoder()
    items = items_of(23)
    out = cache.get(enc, items, chunk_size=10)
    assert enc.calls == [(0, 0, 10), (0, 10, 20), (0, 20, 23)]
    assert out.shape == (23, 1, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected_features(23, 1))

    enc2 = ToyEncoder()
    again = FeatureCache(tmp_path).get(enc2, items, chunk_size=10)  # fresh cache object, same root
    assert enc2.calls == []
    assert isinstance(again, np.memmap) and not again.flags.writeable
    np.testing.assert_array_equal(again, out)

    entry = entry_dir(cache, enc, items, 1)
    assert sorted(p.name for p in entry.iterdir()) == ["features.npy", "meta.json"]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["encoder"] == "toy encoder/v1" and meta["identity"] == "toy-v1"
    assert (meta["n_items"], meta["n_views"], meta["dim"]) == (23, 1, 6)
    assert meta["fingerprint"] == fingerprint(items)
    assert {"created", "elapsed"} <= set(meta)
    assert not list(entry.parent.glob("*.lock"))


def test_different_identity_items_or_views_recompute(tmp_path: Path):
    cache = FeatureCache(tmp_path)
    items = items_of(8)
    cache.get(ToyEncoder(), items)

    new_weights = ToyEncoder(identity="toy-v2", scale=2.0)
    out = cache.get(new_weights, items)
    assert len(new_weights.calls) == 1  # stale entry not served...
    np.testing.assert_array_equal(out, expected_features(8, 1, scale=2.0))  # ...and values are the new ones

    for other_items, n_views in ((items_of(9), 1), (items[::-1], 1), (items, 2)):
        enc = ToyEncoder()
        cache.get(enc, other_items, n_views=n_views)
        assert len(enc.calls) == n_views, (other_items, n_views)

    enc = ToyEncoder()
    cache.get(enc, items, fingerprint="my-dataset-v1")  # a user-given fingerprint is another key
    assert len(enc.calls) == 1
    enc = ToyEncoder()
    cache.get(enc, items, fingerprint="my-dataset-v1")
    assert enc.calls == []


def test_views_shape_and_view_passed_through(tmp_path: Path):
    enc = ToyEncoder(dim=5)
    out = FeatureCache(tmp_path).get(enc, items_of(7), n_views=3, chunk_size=4)
    assert out.shape == (7, 3, 5)
    assert sorted(enc.calls) == [(v, a, b) for v in range(3) for a, b in ((0, 4), (4, 7))]
    for k in range(3):
        np.testing.assert_array_equal(out[:, k], toy_features(items_of(7), k, 5))
    assert not np.array_equal(out[:, 0], out[:, 1])


def test_empty_items_and_bad_arguments(tmp_path: Path):
    cache = FeatureCache(tmp_path)
    enc = ToyEncoder()
    empty = cache.get(enc, [], n_views=2)
    assert empty.shape == (0, 2, 6) and enc.calls == []
    with pytest.raises(ValueError, match="n_views"):
        cache.get(enc, items_of(3), n_views=0)
    with pytest.raises(ValueError, match="chunk_size"):
        cache.get(enc, items_of(3), chunk_size=0)
    bad = ToyEncoder()
    bad.dim = 0
    with pytest.raises(ValueError, match="dim"):
        cache.get(bad, items_of(3))


# ------------------------------------------------------------------------------ bad outputs
class _BadEncoder:
    name = "bad"
    identity = "bad-v1"
    dim = 4

    def __init__(self, mode: str):
        self.mode = mode

    def encode(self, items, view=0):
        out = np.ones((len(items), self.dim), dtype=np.float32)
        start = int(items[0].split("-")[1])
        if view == 1 and start == 4:
            if self.mode == "shape":
                return out[:, :3]
            out[2, 1] = np.nan
        return out


def test_bad_encoder_output_raises_clear_error_and_is_not_served(tmp_path: Path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match=r"'bad'.*view 1, items \[4, 8\).*shape \(4, 3\), expected \(4, 4\)"):
        cache.get(_BadEncoder("shape"), items_of(10), n_views=2, chunk_size=4)
    with pytest.raises(ValueError, match=r"'bad'.*view 1, items \[4, 8\).*non-finite.*first bad item index 6"):
        cache.get(_BadEncoder("nan"), items_of(10), n_views=2, chunk_size=4)
    (entry,) = cache.entries()
    assert not entry.complete and entry.items_done == 10 + 4  # view 0 and view 1's first chunk kept
    with pytest.raises(KeyError, match="incomplete"):
        cache.load(entry.key)


# ------------------------------------------------------------------------------ resume
class _FailingEncoder:
    """ToyEncoder that raises on the call number ``fail_at`` (simulates a crash mid-run)."""

    def __init__(self, fail_at: int):
        self.inner = ToyEncoder()
        self.name, self.identity, self.dim = self.inner.name, self.inner.identity, self.inner.dim
        self.fail_at = fail_at

    def encode(self, items, view=0):
        if len(self.inner.calls) == self.fail_at:
            raise RuntimeError("simulated crash")
        return self.inner.encode(items, view)


def test_interrupted_run_is_not_served_and_resumes_with_other_chunk_size(tmp_path: Path):
    cache = FeatureCache(tmp_path)
    items = items_of(20)
    crashing = _FailingEncoder(fail_at=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cache.get(crashing, items, n_views=2, chunk_size=4)
    entry = entry_dir(cache, crashing, items, 2)
    assert not (entry / "meta.json").exists() and not (entry / "features.npy").exists()
    assert (entry / "features.npy.partial").exists()
    progress = json.loads((entry / "progress.json").read_text())
    assert progress["done"] == {"0": [[0, 12]], "1": []}

    enc = ToyEncoder()
    out = cache.get(enc, items, n_views=2, chunk_size=5)  # resumes even with another chunk size
    assert enc.calls == [(0, 12, 17), (0, 17, 20), (1, 0, 5), (1, 5, 10), (1, 10, 15), (1, 15, 20)]
    np.testing.assert_array_equal(out, expected_features(20, 2))
    assert json.loads((entry / "meta.json").read_text())["resumed"] == 1
    assert not (entry / "progress.json").exists()


_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
exec(sys.argv[2])
from gentleclip.cache import FeatureCache
enc = ToyEncoder(sleep=float(sys.argv[5]), marker_dir=sys.argv[4])
FeatureCache(sys.argv[3]).get(enc, [f"item-{i}" for i in range(40)], n_views=2, chunk_size=5)
print("finished")
"""


def test_kill_and_resume_computes_only_remaining_chunks(tmp_path: Path):
    root, markers = tmp_path / "cache", tmp_path / "markers"
    markers.mkdir()
    items = items_of(40)  # 8 chunks of 5 per view, 2 views: 16 chunks
    cache = FeatureCache(root)
    entry = entry_dir(cache, ToyEncoder(), items, 2)
    env = {**os.environ, "GENTLECLIP_QUIET": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(REPO_ROOT), ENCODER_SRC, str(root), str(markers), "0.15"],
        env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until view 0 and two chunks of view 1 are recorded as done
            assert proc.poll() is None, f"child exited early: {proc.communicate()}"
            assert time.monotonic() < deadline, "child made no progress in 60 s"
            try:
                done = json.loads((entry / "progress.json").read_text())["done"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                done = {}
            if sum(b - a for ranges in done.values() for a, b in ranges) >= 50:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()

    # A half-written entry is never served.
    assert not (entry / "meta.json").exists() and not (entry / "features.npy").exists()
    with pytest.raises(KeyError, match="incomplete"):
        cache.load(entry.name)
    (listed,) = cache.entries()
    assert not listed.complete and 50 <= listed.items_done < 80

    done = json.loads((entry / "progress.json").read_text())["done"]
    done_chunks = {(int(v), a) for v, ranges in done.items() for r0, r1 in ranges for a in range(r0, r1, 5)}
    all_chunks = {(v, a) for v in range(2) for a in range(0, 40, 5)}
    started_in_child = {tuple(map(int, p.name.split("_"))) for p in markers.iterdir()}
    assert done_chunks <= started_in_child
    assert len(started_in_child) < 16  # the child really was stopped before the end

    enc = ToyEncoder()
    resumed = cache.get(enc, items, n_views=2, chunk_size=5)
    assert sorted((v, a) for v, a, _ in enc.calls) == sorted(all_chunks - done_chunks)
    assert all(b - a == 5 for _, a, b in enc.calls)
    assert 0 < len(enc.calls) <= 16 - 10

    reference = FeatureCache(tmp_path / "uninterrupted").get(ToyEncoder(), items, n_views=2, chunk_size=5)
    np.testing.assert_array_equal(resumed, reference)
    assert (entry / "meta.json").exists() and not (entry / "features.npy.partial").exists()


# ------------------------------------------------------------------------------ corruption
@pytest.mark.parametrize("damage", ["meta_shape", "meta_garbage", "truncated", "extended", "features_missing"])
def test_corrupt_entry_is_recomputed_with_warning(tmp_path: Path, damage: str):
    cache = FeatureCache(tmp_path)
    items = items_of(12)
    cache.get(ToyEncoder(), items, n_views=2, chunk_size=5)
    entry = entry_dir(cache, ToyEncoder(), items, 2)
    if damage == "meta_shape":
        meta = json.loads((entry / "meta.json").read_text())
        meta["dim"] = 7
        (entry / "meta.json").write_text(json.dumps(meta))
    elif damage == "meta_garbage":
        (entry / "meta.json").write_text("{not json")
    elif damage == "truncated":
        data = (entry / "features.npy").read_bytes()
        (entry / "features.npy").write_bytes(data[:-40])
    elif damage == "extended":
        with open(entry / "features.npy", "ab") as f:
            f.write(b"\0" * 16)
    else:
        (entry / "features.npy").unlink()

    with pytest.raises(ValueError, match="corrupt"):
        cache.load(entry.name)
    enc = ToyEncoder()
    with pytest.warns(CacheCorruptionWarning, match="corrupt entry"):
        out = cache.get(enc, items, n_views=2, chunk_size=5)
    assert len(enc.calls) == 6
    np.testing.assert_array_equal(out, expected_features(12, 2))
    enc = ToyEncoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.get(enc, items, n_views=2, chunk_size=5)
    assert enc.calls == []


def test_missing_meta_is_incomplete_not_served(tmp_path: Path):
    cache = FeatureCache(tmp_path)
    items = items_of(6)
    cache.get(ToyEncoder(), items)
    entry = entry_dir(cache, ToyEncoder(), items, 1)
    (entry / "meta.json").unlink()  # as if the run died between the rename and meta.json
    enc = ToyEncoder()
    np.testing.assert_array_equal(cache.get(enc, items), expected_features(6, 1))
    assert len(enc.calls) == 1  # no progress record to trust: recomputed, not served


def test_crash_between_rename_and_meta_finishes_without_encoding(tmp_path: Path, monkeypatch):
    import gentleclip.cache as cache_mod

    real_write = cache_mod.atomic_write_json

    def write_but_die_on_meta(path, obj, **kwargs):
        if Path(path).name == "meta.json":
            raise KeyboardInterrupt("died before meta.json")
        real_write(path, obj, **kwargs)

    cache = FeatureCache(tmp_path)
    items = items_of(9)
    monkeypatch.setattr(cache_mod, "atomic_write_json", write_but_die_on_meta)
    with pytest.raises(KeyboardInterrupt):
        cache.get(ToyEncoder(), items, n_views=2, chunk_size=4)
    monkeypatch.setattr(cache_mod, "atomic_write_json", real_write)
    entry = entry_dir(cache, ToyEncoder(), items, 2)
    assert (entry / "features.npy").exists() and not (entry / "meta.json").exists()
    with pytest.raises(KeyError, match="incomplete"):
        cache.load(entry.name)
    enc = ToyEncoder()
    out = cache.get(enc, items, n_views=2, chunk_size=4)
    assert enc.calls == []  # the progress record says every chunk is on disk
    np.testing.assert_array_equal(out, expected_features(9, 2))


# ------------------------------------------------------------------------------ concurrency
def test_two_concurrent_callers_compute_once(tmp_path: Path):
    items = items_of(12)
    encoders = [ToyEncoder(sleep=0.05), ToyEncoder(sleep=0.05)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = FeatureCache(tmp_path).get(encoders[i], items, n_views=1, chunk_size=4)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(len(e.calls) for e in encoders) == [0, 3]
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], expected_features(12, 1))


# ------------------------------------------------------------------------------ listing
def test_entries_info_load_and_clear(tmp_path: Path):
    cache = FeatureCache(tmp_path)
    a = cache.get(ToyEncoder(), items_of(5), n_views=2)

    class Other(ToyEncoder):
        pass

    other = Other()
    other.name, other.identity = "other", "other-v1"
    cache.get(other, items_of(3))
    entries = {e.encoder: e for e in cache.entries()}
    assert set(entries) == {"toy encoder/v1", "other"}
    toy = entries["toy encoder/v1"]
    assert toy.complete and (toy.n_items, toy.n_views, toy.dim) == (5, 2, 6) and toy.nbytes > 5 * 2 * 6 * 4
    assert toy.key == cache.key(ToyEncoder(), items_of(5), n_views=2)
    cache.get(ToyEncoder(), items_of(5), n_views=2)
    assert cache.last_key == toy.key
    assert toy.key[:12] in cache.info() and "other-v1" in cache.info()
    np.testing.assert_array_equal(cache.load(toy.key), a)
    np.testing.assert_array_equal(cache.load(toy.key[:10]), a)
    assert cache.path(toy.key) == toy.path / "features.npy"
    with pytest.raises(KeyError):
        cache.load("0" * 64)

    assert cache.clear("other") == 1
    assert [e.encoder for e in cache.entries()] == ["toy encoder/v1"]
    assert cache.clear() == 1
    assert cache.entries() == [] and list(tmp_path.iterdir()) == []
