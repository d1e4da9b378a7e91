"""Two CPU processes (gloo) train exactly like one process on the same global batch.

The workers are started with ``torch.multiprocessing.spawn`` and given the environment
``torchrun`` would set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``), so the
:class:`~gentleclip.train.Trainer` initialises the process group itself, wraps the model in DDP,
takes its shard of each global batch, and lets the objective gather features across ranks.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from synthetic import make_synthetic_problem

from gentleclip.data import SemiPairedData, SemiPairedLoader
from gentleclip.losses import Objective, ObjectiveConfig
from gentleclip.model import AlignmentModel, ProjectionHead
from gentleclip.pairing import make_pairing_split
from gentleclip.train import TrainConfig, Trainer

STEPS = 4


def _setup(out_dir: Path) -> tuple[AlignmentModel, Objective, SemiPairedData, TrainConfig]:
    fa, fb, _ = make_synthetic_problem(240, n_clusters=4, dim_a=10, dim_b=14, seed=3)
    data = SemiPairedData.from_split(fa, fb, make_pairing_split(240, ratio=0.1, seed=3))
    torch.manual_seed(0)
    model = AlignmentModel(ProjectionHead(10, 8, 16, dropout=0.0), ProjectionHead(14, 8, 16, dropout=0.0))
    objective = Objective(ObjectiveConfig.gentle(learnable_temperature=True))
    # 8 pairs (4 per rank), 28 unpaired A and 27 unpaired B rows: the B rows split 14 + 13
    config = TrainConfig(max_steps=STEPS, batch_size=63, paired_per_batch=8, warmup_steps=1, log_every=1,
                         seed=11, save_model=False, lr=1e-2)
    return model, objective, data, config


def _run(out_dir: Path) -> dict:
    """Train and record the loss terms, gradients (after DDP averaging) and final parameters."""
    model, objective, data, config = _setup(out_dir)
    grads: list[dict[str, torch.Tensor]] = []

    def record(trainer: Trainer, step: int, terms: dict[str, float]) -> None:
        named = [(f"model.{n}", p) for n, p in model.named_parameters()]
        named += [(f"objective.{n}", p) for n, p in objective.named_parameters()]
        grads.append({n: p.grad.detach().clone() for n, p in named if p.grad is not None})

    trainer = Trainer(model, objective, data, config, out_dir, callbacks=[record])
    result = trainer.fit()
    params = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    params.update({f"objective.{k}": v.detach().clone() for k, v in objective.state_dict().items()})
    batch = trainer.loader.batch_at(0)
    return {
        "rank": trainer.rank,
        "world_size": trainer.world_size,
        "ddp": trainer.ddp_model is not model,
        "history": result.history,
        "grads": grads,
        "params": params,
        "n_paired_step0": batch.n_paired,
        "rows_step0": (len(batch.a), len(batch.b)),
    }


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank), "GENTLECLIP_QUIET": "1"})
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        record = _run(Path(out_dir))
        torch.save(record, Path(out_dir) / f"rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path) -> None:
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _run(tmp_path / "single")
    finally:
        torch.set_num_threads(prev)
    assert single["world_size"] == 1 and not single["ddp"]

    dist_dir = tmp_path / "ddp"
    dist_dir.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(dist_dir)), nprocs=2, join=True)
    ranks = [torch.load(dist_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and all(r["ddp"] for r in ranks)
    assert [r["n_paired_step0"] for r in ranks] == [4, 4], "every rank holds the same number of pairs"
    assert sum(r["rows_step0"][0] for r in ranks) == single["rows_step0"][0]
    assert sum(r["rows_step0"][1] for r in ranks) == single["rows_step0"][1]
    assert ranks[0]["rows_step0"] != ranks[1]["rows_step0"], "the unpaired rows are split unevenly"

    # the loss of every term at every step equals the single-process loss on the global batch
    assert len(single["history"]) == STEPS
    for r in ranks:
        for h_dist, h_one in zip(r["history"], single["history"]):
            for term in ("total", "clip", "sdd", "mmd", "ssl_a", "ssl_b"):
                assert h_dist[term] == pytest.approx(h_one[term], rel=1e-5, abs=1e-6), (r["rank"], h_one["step"], term)
    # gradients after DDP averaging equal the single-process gradients, on both ranks, every step
    for r in ranks:
        assert len(r["grads"]) == STEPS
        for step, (g_dist, g_one) in enumerate(zip(r["grads"], single["grads"])):
            assert g_dist.keys() == g_one.keys()
            for name in g_one:
                torch.testing.assert_close(g_dist[name], g_one[name], rtol=1e-4, atol=1e-6,
                                           msg=f"rank {r['rank']} step {step + 1}: gradient of {name} differs")
    # and so do the weights after the run; both ranks hold the same weights
    for name, value in single["params"].items():
        torch.testing.assert_close(ranks[0]["params"][name], value, rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(ranks[1]["params"][name], ranks[0]["params"][name], rtol=0, atol=0, msg=name)
    # only rank 0 wrote the log, one row per step
    assert (dist_dir / "log.csv").read_text().count("\n") == STEPS + 1


def test_loader_shards_match_what_ddp_ranks_see() -> None:
    """The sharding used above: per rank equal pairs, union of shards = the global batch."""
    model, objective, data, config = _setup(Path("."))
    glob = SemiPairedLoader(data, batch_size=63, paired_per_batch=8, seed=11).batch_at(2)
    shards = [SemiPairedLoader(data, batch_size=63, paired_per_batch=8, seed=11, rank=r, world_size=2).batch_at(2)
              for r in range(2)]
    a = torch.cat([s.a[: s.n_paired] for s in shards] + [s.a[s.n_paired:] for s in shards])
    torch.testing.assert_close(a, glob.a, rtol=0, atol=0)


def _run_finetune(out_dir: Path) -> dict:
    """End-to-end: a toy tower trains on both sides from raw items (gentleclip.finetune)."""
    from test_finetune import WordTower, _task

    from gentleclip.finetune import EndToEnd, FinetuneConfig
    from gentleclip.methods import get_method
    from gentleclip.run import HeadConfig, prepare_run

    task = _task()
    split = make_pairing_split(len(task.train_a), ratio=0.5, seed=3)
    prepared = prepare_run(task, get_method("gentle"), split, HeadConfig(8, 16, dropout=0.0), 0,
                           EndToEnd((WordTower(seed=1), WordTower(seed=2)), FinetuneConfig(a="all", b="last2")))
    config = TrainConfig(max_steps=STEPS, batch_size=24, paired_per_batch=8, log_every=1, seed=5, save_model=False,
                         lr=1e-2, encoder_lr_ratio=0.5)
    trainer = Trainer(prepared.model, Objective(get_method("gentle").objective), prepared.data, config, out_dir)
    result = trainer.fit()
    return {"rank": trainer.rank, "ddp": trainer.ddp_model is not prepared.model, "history": result.history,
            "params": {k: v.detach().clone() for k, v in prepared.model.state_dict().items()}}


def _worker_finetune(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank), "GENTLECLIP_QUIET": "1"})
    torch.set_num_threads(1)
    import sys

    import torch.distributed as dist

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        torch.save(_run_finetune(Path(out_dir)), Path(out_dir) / f"rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_fine_tune_like_one(tmp_path) -> None:
    """DDP over the encoder towers: the same losses and the same encoder and head weights as one process."""
    single = _run_finetune(tmp_path / "single")
    dist_dir = tmp_path / "ddp"
    dist_dir.mkdir()
    mp.spawn(_worker_finetune, args=(2, _free_port(), str(dist_dir)), nprocs=2, join=True)
    ranks = [torch.load(dist_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert all(r["ddp"] for r in ranks)
    for r in ranks:
        for h_dist, h_one in zip(r["history"], single["history"]):
            assert h_dist["total"] == pytest.approx(h_one["total"], rel=1e-5, abs=1e-6)
    assert any(k.startswith("encoder_a.") for k in single["params"])
    for name, value in single["params"].items():
        torch.testing.assert_close(ranks[0]["params"][name], value, rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(ranks[1]["params"][name], ranks[0]["params"][name], rtol=0, atol=0, msg=name)
