"""gentleclip embed under torchrun: two gloo processes fill one cache entry, each its share of the chunks;
the entry equals the one a single process writes, and a job stopped half-way resumes without redoing chunks."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import torch.multiprocessing as mp

from gentleclip.cache import FeatureCache

N_ITEMS, CHUNK = 100, 7


class LoggingEncoder:
    """A deterministic encoder that logs the (view, first item) of every chunk it encodes, and can fail."""

    name, identity, dim = "logging", "logging-v1", 5

    def __init__(self, log: Path | None = None, fail_after: int | None = None) -> None:
        self.log, self.fail_after, self.calls = log, fail_after, 0

    def encode(self, items, view=0):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("killed")
        self.calls += 1
        if self.log is not None:
            with self.log.open("a") as fh:
                fh.write(json.dumps([view, int(items[0])]) + "\n")
        x = np.asarray(items, dtype=np.float32)[:, None]
        return np.sin(x * np.arange(1, 6, dtype=np.float32) + view)


def _worker(rank: int, world: int, port: int, root: str, logs: str, fail_after: int | None) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "GENTLECLIP_QUIET": "1"})
    import torch.distributed as dist

    from gentleclip.distributed import init_from_env

    init_from_env("cpu")
    try:
        enc = LoggingEncoder(Path(logs) / f"rank{rank}.jsonl", fail_after if rank == 1 else None)
        try:
            FeatureCache(root).get(enc, list(range(N_ITEMS)), n_views=2, chunk_size=CHUNK)
        except RuntimeError:
            os._exit(3)  # a killed rank: the others are stopped too
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chunks(logs: Path) -> dict[int, list]:
    return {r: [tuple(json.loads(line)) for line in (logs / f"rank{r}.jsonl").read_text().splitlines()]
            for r in range(2) if (logs / f"rank{r}.jsonl").exists()}


def test_two_ranks_fill_one_entry_equal_to_a_single_process(tmp_path) -> None:
    single = np.array(FeatureCache(tmp_path / "single").get(LoggingEncoder(), list(range(N_ITEMS)), n_views=2,
                                                            chunk_size=CHUNK))
    logs = tmp_path / "logs"
    logs.mkdir()
    mp.spawn(_worker, args=(2, _port(), str(tmp_path / "sharded"), str(logs), None), nprocs=2, join=True)
    chunks = _chunks(logs)
    assert chunks[0] and chunks[1] and not set(chunks[0]) & set(chunks[1])  # each rank its own chunks
    assert len(chunks[0]) + len(chunks[1]) == 2 * -(-N_ITEMS // CHUNK)  # every chunk exactly once
    sharded = FeatureCache(tmp_path / "sharded").get(LoggingEncoder(), list(range(N_ITEMS)), n_views=2,
                                                     chunk_size=CHUNK)
    assert np.array_equal(np.asarray(sharded), single)
    meta = [json.loads(p.read_text()) for p in (tmp_path / "sharded").rglob("meta.json")]
    assert len(meta) == 1 and not list((tmp_path / "sharded").rglob("progress*.json"))


def test_a_stopped_sharded_job_resumes_without_redoing_chunks(tmp_path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    root = str(tmp_path / "sharded")
    try:  # rank 1 dies after 2 chunks; rank 0 is left waiting at the barrier and is torn down
        mp.spawn(_worker, args=(2, _port(), root, str(logs), 2), nprocs=2, join=True)
    except Exception:  # noqa: BLE001 - the process group fails as a killed job does
        pass
    first = _chunks(logs)
    for p in logs.iterdir():
        p.unlink()
    mp.spawn(_worker, args=(2, _port(), root, str(logs), None), nprocs=2, join=True)
    second = _chunks(logs)
    redone = {c for r in second.values() for c in r} & set(first.get(1, [])[:2])
    assert not redone, f"chunks recorded before the stop were encoded again: {sorted(redone)}"
    single = np.array(FeatureCache(tmp_path / "single").get(LoggingEncoder(), list(range(N_ITEMS)), n_views=2,
                                                            chunk_size=CHUNK))
    got = FeatureCache(root).get(LoggingEncoder(), list(range(N_ITEMS)), n_views=2, chunk_size=CHUNK)
    assert np.array_equal(np.asarray(got), single)

