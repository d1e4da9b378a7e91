"""Tests of gentleclip.data: pools, batch composition, views, epochs, sharding, errors, memory."""
from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gentleclip.data import Batch, SemiPairedData, SemiPairedLoader


def _tagged(n: int, n_views: int = 3, dim: int = 4, offset: float = 0.0) -> np.ndarray:
    """Features whose column 0 is the item id (+offset) and column 1 the view: rows can be decoded."""
    x = np.zeros((n, n_views, dim), dtype=np.float32)
    x[:, :, 0] = np.arange(n)[:, None] + offset
    x[:, :, 1] = np.arange(n_views)[None, :]
    return x


def _split(n: int, n_pairs: int, seed: int = 0) -> SimpleNamespace:
    """A disjoint split (the real one lives in gentleclip.pairing; duck-typed here)."""
    perm = np.random.default_rng(seed).permutation(n)
    rest = perm[n_pairs:]
    half = len(rest) // 2
    return SimpleNamespace(paired=np.sort(perm[:n_pairs]), unpaired_a=np.sort(rest[:half]),
                           unpaired_b=np.sort(rest[half:]), n_items=n)


def _data(n: int = 200, n_pairs: int = 10, n_views: int = 3, **kw) -> SemiPairedData:
    return SemiPairedData.from_split(_tagged(n, n_views), _tagged(n, n_views, 5, 1000.0), _split(n, n_pairs), **kw)


def _ids(x: torch.Tensor, offset: float = 0.0) -> np.ndarray:
    return (x[:, 0].numpy() - offset).round().astype(int)


def test_batch_layout_pairs_first_and_true_partners() -> None:
    data = _data()
    loader = SemiPairedLoader(data, batch_size=64, seed=1)
    batch = loader.batch_at(0)
    c = loader.composition
    assert batch.n_paired == c.paired == 10, "scarce pairs: all pairs go in every batch"
    assert batch.a.shape == (c.paired + c.unpaired_a, 4) and batch.b.shape == (c.paired + c.unpaired_b, 5)
    assert batch.a.dtype == torch.float32
    ia, ib = _ids(batch.a), _ids(batch.b, 1000.0)
    np.testing.assert_array_equal(ia[:10], ib[:10])  # rows 0..n_paired-1 are true pairs
    assert set(ia[:10]) <= set(data.paired_a.tolist())
    assert set(ia[10:]) <= set(data.unpaired_a.tolist()) and set(ib[10:]) <= set(data.unpaired_b.tolist())
    assert len(set(ia)) == len(ia) and len(set(ib)) == len(ib), "no row twice in a batch"
    np.testing.assert_array_equal(batch.idx_a, ia)


def test_composition_rules() -> None:
    # the pairs per step do not depend on the unpaired pools: min(pairs, batch_size) ...
    plenty = _data(n=1000, n_pairs=600)
    c = SemiPairedLoader(plenty, batch_size=100).composition
    assert (c.paired, c.unpaired_a, c.unpaired_b) == (100, 50, 50), "... and batch_size unpaired rows on top"
    scarce = _data(n=1000, n_pairs=30)
    c = SemiPairedLoader(scarce, batch_size=100).composition
    assert (c.paired, c.unpaired_a + c.unpaired_b, c.total) == (30, 100, 130)
    pairs_only = SemiPairedData.from_split(_tagged(1000, 3), _tagged(1000, 3, 5, 1000.0), _split(1000, 30),
                                           use_unpaired=False)
    assert SemiPairedLoader(pairs_only, batch_size=100).composition.paired == c.paired, "same pairs, no unpaired"
    # explicit, capped at the pairs available
    assert SemiPairedLoader(scarce, batch_size=100, paired_per_batch=7).composition.paired == 7
    assert SemiPairedLoader(_data(n_pairs=10), batch_size=100, paired_per_batch=40).composition.paired == 10
    c = SemiPairedLoader(scarce, batch_size=100, unpaired_per_batch=30).composition
    assert (c.paired, c.unpaired_a, c.unpaired_b) == (30, 15, 15)
    assert SemiPairedLoader(scarce, batch_size=100, unpaired_per_batch=0).composition.total == 30
    # paired count divisible by world size
    assert SemiPairedLoader(_data(n_pairs=11), batch_size=64, world_size=2, rank=1).composition.paired == 10
    with pytest.raises(ValueError, match="paired_per_batch"):
        SemiPairedLoader(scarce, paired_per_batch=-1)
    with pytest.raises(ValueError, match="unpaired_per_batch"):
        SemiPairedLoader(scarce, unpaired_per_batch=-1)


def test_zero_pairs_and_all_pairs() -> None:
    none = _data(n=100, n_pairs=0)
    b = SemiPairedLoader(none, batch_size=32).batch_at(3)
    assert b.n_paired == 0 and len(b.a) == 16 and len(b.b) == 16
    every = SemiPairedData(_tagged(50), _tagged(50, 3, 5, 1000.0), np.arange(50), np.arange(50))
    loader = SemiPairedLoader(every, batch_size=16)
    b = loader.batch_at(0)
    assert b.n_paired == 16 and len(b.a) == len(b.b) == 16
    np.testing.assert_array_equal(_ids(b.a), _ids(b.b, 1000.0))
    assert len(loader) == 4  # ceil(50 / 16)
    # tiny data: a batch larger than everything holds everything once
    small = SemiPairedLoader(_data(n=20, n_pairs=4), batch_size=256).batch_at(0)
    assert small.n_paired == 4 and len(small.a) == 12 and len(small.b) == 12


def test_views_random_distinct_and_seeded() -> None:
    data = _data(n_views=3)
    loader = SemiPairedLoader(data, batch_size=64, seed=3)
    b = loader.batch_at(5)
    va1, va2 = b.a[:, 1].numpy(), b.a2[:, 1].numpy()
    assert (va1 != va2).all(), "the second view must differ from the first when V >= 2"
    np.testing.assert_array_equal(_ids(b.a), _ids(b.a2))  # same rows
    assert len(np.unique(va1)) == 3, "view 1 is drawn per row over all views"
    again = SemiPairedLoader(data, batch_size=64, seed=3).batch_at(5)
    for x, y in ((b.a, again.a), (b.b2, again.b2)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    other = SemiPairedLoader(data, batch_size=64, seed=4).batch_at(5)
    assert not torch.equal(b.a, other.a)
    assert not torch.equal(loader.batch_at(6).a, b.a)
    clean = SemiPairedLoader(data, batch_size=64, views="clean", n_views=1).batch_at(0)
    assert (clean.a[:, 1] == 0).all() and clean.a2 is None
    single = SemiPairedLoader(_data(n_views=1), batch_size=32).batch_at(0)
    torch.testing.assert_close(single.a, single.a2)


def test_epoch_covers_largest_pool_once() -> None:
    data = _data(n=230, n_pairs=10)  # unpaired pools 110 / 110
    loader = SemiPairedLoader(data, batch_size=40, seed=0)
    c = loader.composition
    assert c.paired == 10 and c.unpaired_a == 20 and c.unpaired_b == 20
    assert len(loader) == 6  # ceil(110 / 20)
    seen_a: list[int] = []
    batches = list(loader)
    assert len(batches) == 6 and loader.position == 6 and loader.epoch == 1
    for b in batches:
        seen_a += _ids(b.a)[b.n_paired:].tolist()
    assert set(seen_a) == set(data.unpaired_a.tolist()), "every unpaired A row is seen in one epoch"
    assert len(seen_a) - len(set(seen_a)) == 6 * 20 - 110, "only the wrap-around of the last batch repeats"
    assert len(list(loader)) == 6 and loader.epoch == 2
    loader.set_epoch(0)
    assert torch.equal(next(iter(loader)).a, batches[0].a)


def test_state_dict_resume_and_mismatch() -> None:
    data = _data()
    loader = SemiPairedLoader(data, batch_size=32, seed=2)
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    expected = next(it)
    fresh = SemiPairedLoader(data, batch_size=32, seed=2)
    fresh.load_state_dict(state)
    torch.testing.assert_close(next(iter(fresh)).a, expected.a, rtol=0, atol=0)
    with pytest.raises(ValueError, match="seed"):
        SemiPairedLoader(data, batch_size=32, seed=9).load_state_dict(state)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shards_union_is_global_batch(world_size: int) -> None:
    data = _data(n=300, n_pairs=30)
    glob = SemiPairedLoader(data, batch_size=61, paired_per_batch=12, seed=5).batch_at(4)
    shards = [SemiPairedLoader(data, batch_size=61, paired_per_batch=12, seed=5, rank=r, world_size=world_size)
              .batch_at(4) for r in range(world_size)]
    assert {s.n_paired for s in shards} == {12 // world_size}
    for key, n_paired in (("a", glob.n_paired), ("b", glob.n_paired)):
        parts = [getattr(s, key) for s in shards]
        union = torch.cat([p[: s.n_paired] for p, s in zip(parts, shards)]
                          + [p[s.n_paired:] for p, s in zip(parts, shards)])
        torch.testing.assert_close(union, getattr(glob, key), rtol=0, atol=0)
        union2 = torch.cat([getattr(s, key + "2")[: s.n_paired] for s in shards]
                           + [getattr(s, key + "2")[s.n_paired:] for s in shards])
        torch.testing.assert_close(union2, getattr(glob, key + "2"), rtol=0, atol=0)


def test_from_split_extra_unpaired_b_and_pairs_only() -> None:
    fa, fb = _tagged(100), _tagged(100, 3, 5, 1000.0)
    extra = _tagged(40, 3, 5, 5000.0)
    data = SemiPairedData.from_split(fa, fb, _split(100, 10), extra_unpaired_b=extra)
    assert data.n_unpaired_b == 45 + 40 and data.rows_b.n == 140
    loader = SemiPairedLoader(data, batch_size=200)  # everything fits: every row once
    ids = _ids(loader.batch_at(0).b)
    assert (ids >= 5000).sum() == 40, "the B-only items join the unpaired-B pool"
    only = SemiPairedData.from_split(fa, fb, _split(100, 10), extra_unpaired_b=extra, use_unpaired=False)
    assert (only.n_paired, only.n_unpaired_a, only.n_unpaired_b) == (10, 0, 0)
    with pytest.raises(ValueError, match="row i of each must be item i"):
        SemiPairedData.from_split(fa, fb[:50], _split(100, 10))
    with pytest.raises(ValueError, match="split covers 99 items"):
        SemiPairedData.from_split(fa, fb, SimpleNamespace(**{**vars(_split(100, 10)), "n_items": 99}))


def test_clear_errors() -> None:
    fa, fb = _tagged(10), _tagged(10)
    with pytest.raises(IndexError, match=r"unpaired_a\[1\] = 10 is out of range for features_a with 10 rows"):
        SemiPairedData(fa, fb, [0], [0], [1, 10], [2])
    with pytest.raises(IndexError, match="paired_b"):
        SemiPairedData(fa, fb, [0], [-1], [1], [2])
    with pytest.raises(ValueError, match="pair i is"):
        SemiPairedData(fa, fb, [0, 1], [0], [2], [3])
    with pytest.raises(ValueError, match="no B rows"):
        SemiPairedData(fa, fb, [], [], [1, 2], [])
    with pytest.raises(ValueError, match="nothing to train on"):
        SemiPairedData(fa, fb, None, None, None, None)
    with pytest.raises(ValueError, match=r"\[N, V, D\]"):
        SemiPairedData(np.zeros((2, 3, 4, 5), np.float32), fb, [0], [0])
    with pytest.raises(TypeError, match="integer"):
        SemiPairedData(fa, fb, [0.5], [0])
    with pytest.raises(ValueError, match="batch_size"):
        SemiPairedLoader(SemiPairedData(fa, fb, [0], [0]), batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        SemiPairedLoader(SemiPairedData(fa, fb, [0], [0]), rank=2, world_size=2)
    # [N, D] arrays are accepted as a single view
    flat = SemiPairedData(fa[:, 0], fb[:, 0], [0, 1], [0, 1], [2, 3], [4, 5])
    # 2 pairs + 2 unpaired A rows (the unpaired rows come on top of the pairs)
    assert flat.rows_a.n_views == 1 and SemiPairedLoader(flat, batch_size=4).batch_at(0).a.shape == (4, 4)


def _memmap_data(tmp_path, n: int, n_pairs: int = 64, dim: int = 64) -> SemiPairedData:
    arrays = []
    for side, d in (("a", dim), ("b", dim + 8)):
        path = tmp_path / f"{side}_{n}.f32"
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 2, d))
        rng = np.random.default_rng(0)
        for start in range(0, n, 4096):  # written in chunks: the test itself stays small
            stop = min(n, start + 4096)
            mm[start:stop] = rng.normal(size=(stop - start, 2, d)).astype(np.float32)
        mm.flush()
        del mm
        arrays.append(np.load(path, mmap_mode="r"))
    rest = np.arange(n_pairs, n)
    return SemiPairedData(arrays[0], arrays[1], np.arange(n_pairs), np.arange(n_pairs),
                          rest[::2], rest[1::2])


def _peak_per_step(loader: SemiPairedLoader, steps: range) -> tuple[int, int]:
    """(peak traced bytes while producing the batches of ``steps``, total batch tensor bytes)."""
    loader.batch_at(steps.start - 1)  # warm the permutation cache of the current pass
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        nbytes = 0
        for step in steps:
            batch = loader.batch_at(step)
            nbytes += batch.nbytes()
            del batch
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, nbytes


def test_batch_memory_does_not_grow_with_pool_size(tmp_path) -> None:
    """Memmapped pools of 1x and 16x the size: batches gather only their rows, same allocations."""
    small = _memmap_data(tmp_path, 2_048)
    large = _memmap_data(tmp_path, 32_768)
    feature_bytes_large = large.rows_a.n * 2 * 64 * 4
    peaks, sizes = [], []
    for data in (small, large):
        loader = SemiPairedLoader(data, batch_size=256, seed=0)
        assert loader.composition == SemiPairedLoader(small, batch_size=256).composition
        peak, nbytes = _peak_per_step(loader, range(2, 6))  # within the first pass of every pool
        peaks.append(peak)
        sizes.append(nbytes)
    assert sizes[0] == sizes[1], "a batch holds the same number of rows whatever the pool size"
    assert isinstance(small.rows_a.parts[0], np.memmap)
    # the peak is a few batches' worth, far below the 16x pool (8 MiB of A features alone)
    assert peaks[1] < 1.25 * peaks[0] + 64_000, f"per-step peak grew with the pool: {peaks}"
    assert peaks[1] < feature_bytes_large / 10


def test_batch_to_and_nbytes() -> None:
    b = SemiPairedLoader(_data(), batch_size=16).batch_at(0)
    assert isinstance(b, Batch)
    moved = b.to("cpu")
    assert moved.n_paired == b.n_paired and torch.equal(moved.a, b.a)
    assert b.nbytes() == 4 * (b.a.numel() + b.b.numel() + b.a2.numel() + b.b2.numel())
