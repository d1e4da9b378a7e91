"""End-to-end training from raw items (gentleclip.finetune, RawRows, fit_run with towers), on a toy tower."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from torch import nn

from gentleclip.finetune import EncoderTower, EndToEnd, FinetuneConfig, parse_trainable
from gentleclip.items import item_array
from gentleclip.methods import get_method
from gentleclip.run import HeadConfig, embed_fns, fit_run
from gentleclip.task import AlignmentTask
from gentleclip.train import TrainConfig
from gentleclip.validation import ValidationSet

BUCKETS = 64


class WordTower(EncoderTower):
    """Strings of words -> hashed bag of words -> embedding bag -> two linear blocks (a toy encoder)."""

    def __init__(self, dim: int = 12, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.blocks = nn.ModuleList([nn.EmbeddingBag(BUCKETS, dim, mode="mean"), nn.Linear(dim, dim),
                                     nn.Linear(dim, dim)])
        self.dim = dim

    def collate(self, items: list, views: np.ndarray) -> dict[str, torch.Tensor]:
        ids, offsets = [], []
        for text, view in zip(items, views):
            words = text.split()
            if view > 0 and len(words) > 1:  # a view drops one word, seeded by the view
                words.pop(int(np.random.default_rng(int(view)).integers(len(words))))
            offsets.append(len(ids))
            ids += [zlib.crc32(w.encode()) % BUCKETS for w in words]
        return {"ids": torch.tensor(ids), "offsets": torch.tensor(offsets)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.blocks[0](inputs["ids"], inputs["offsets"])
        return self.blocks[2](torch.relu(self.blocks[1](h)))


def _texts(n: int, side: str, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    topics = [f"topic{t}" for t in range(6)]
    return [f"{side} {topics[i % 6]} {topics[(i * 7) % 6]} w{rng.integers(40)}" for i in range(n)]


def _task(n: int = 120) -> AlignmentTask:
    a, b = _texts(n + 30, "img"), _texts(n + 30, "cap")
    test_a, test_b = item_array(a[n:], None), item_array(b[n:], None)

    def evaluate(embed_a, embed_b):
        za, zb = embed_a(test_a), embed_b(test_b)
        hits = float(np.mean(np.argmax(za @ zb.T, axis=1) == np.arange(len(za))))
        return [{"metric": "R@1", "value": 100 * hits}]

    val = ValidationSet("mean_recall", item_array(a[n - 20:n], None), item_array(b[n - 20:n], None))
    return AlignmentTask("toy", "toy", item_array(a[:n - 20], 2), item_array(b[:n - 20], 2), evaluate,
                         validation=val)


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=8, batch_size=16, lr=1e-2, log_every=1, save_model=False, tensorboard=False, device="cpu",
                eval_every=4, checkpoint_every=3)
    return TrainConfig(**{**base, **kw})


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_parse_trainable_and_config() -> None:
    assert (parse_trainable("frozen"), parse_trainable("all"), parse_trainable("last2"), parse_trainable(3)) == (
        False, None, 2, 3)
    with pytest.raises(ValueError, match="lastK"):
        FinetuneConfig(a="some")
    assert not FinetuneConfig().active and FinetuneConfig(b="last1").active


def test_a_run_fine_tunes_copies_of_the_towers_at_the_encoder_rate(tmp_path) -> None:
    task, towers = _task(), (WordTower(seed=1), WordTower(seed=2))
    before = [_weights(t) for t in towers]
    finetune = FinetuneConfig(a="all", b="last1")
    fitted = fit_run(task, get_method("gentle"), 0.5, 0, _cfg(eval_every=0, warmup_steps=0, schedule="constant"),
                     HeadConfig(8, 16), tmp_path, end_to_end=EndToEnd(towers, finetune))
    model = fitted.model
    for tower, saved in zip(towers, before):  # the given towers are untouched: each run trains its own copy
        assert all(torch.equal(v, tower.state_dict()[k]) for k, v in saved.items())
    trained_a = model.encoder_a.state_dict()
    assert not torch.equal(trained_a["blocks.0.weight"], before[0]["blocks.0.weight"])  # all of A trained
    trained_b = model.encoder_b.state_dict()
    assert torch.equal(trained_b["blocks.0.weight"], before[1]["blocks.0.weight"])  # B: only its last block
    assert not torch.equal(trained_b["blocks.2.weight"], before[1]["blocks.2.weight"])
    info = fitted.info["finetune"]
    assert info["a"] == "all" and info["trainable_parameters"] == {"a": 64 * 12 + 2 * (12 * 12 + 12),
                                                                   "b": 12 * 12 + 12}
    log = (tmp_path / "log.csv").read_text().splitlines()
    header, last = log[0].split(","), log[-1].split(",")
    assert float(last[header.index("lr_encoder")]) == pytest.approx(1e-2 * 0.01)  # lr x encoder_lr_ratio
    rows = task.evaluate(*embed_fns(model))  # the test items go through the fine-tuned towers
    assert 0.0 <= rows[0]["value"] <= 100.0


def test_resume_after_a_stop_and_dataloader_workers_give_the_same_weights(tmp_path) -> None:
    from gentleclip.losses import Objective
    from gentleclip.pairing import make_pairing_split
    from gentleclip.run import prepare_run
    from gentleclip.train import Trainer

    task, towers = _task(), (WordTower(seed=1), WordTower(seed=2))
    finetune = FinetuneConfig(a="all", b="all")
    method = get_method("gentle")
    e2e = EndToEnd(towers, finetune)
    ref = fit_run(task, method, 0.5, 0, _cfg(), HeadConfig(8, 16), tmp_path / "ref", end_to_end=e2e).model.state_dict()
    # interrupted after step 5 (checkpoint at 3 and at the stop), then resumed by fit_run
    split = make_pairing_split(len(task.train_a), ratio=0.5, seed=0)
    prepared = prepare_run(task, method, split, HeadConfig(8, 16), 0, e2e)
    cfg = _cfg(eval_every=0)
    Trainer(prepared.model, Objective(method.objective), prepared.data, cfg, tmp_path / "cut").fit(stop_after=5)
    cut = fit_run(task, method, 0.5, 0, cfg, HeadConfig(8, 16), tmp_path / "cut", end_to_end=e2e).model.state_dict()
    plain = fit_run(task, method, 0.5, 0, cfg, HeadConfig(8, 16), tmp_path / "plain",
                    end_to_end=e2e).model.state_dict()
    workers = fit_run(task, method, 0.5, 0, _cfg(eval_every=0, num_workers=2), HeadConfig(8, 16),
                      tmp_path / "workers", end_to_end=e2e).model.state_dict()
    for key in plain:
        assert torch.equal(cut[key], plain[key]), f"{key} differs after stop and resume"
        assert torch.equal(workers[key], plain[key]), f"{key} differs with DataLoader workers"
    assert any(not torch.equal(ref[k], plain[k]) for k in ref)  # validation picked another step: a real check


@pytest.mark.parametrize("name, needle", [("structure", "frozen features"), ("sue", "own pipeline"),
                                          ("s-clip", "s-clip-caption")])
def test_methods_without_an_end_to_end_mode_say_so(tmp_path, name, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        fit_run(_task(), get_method(name), 0.5, 0, _cfg(), HeadConfig(8, 16), tmp_path,
                end_to_end=EndToEnd((WordTower(), WordTower()), FinetuneConfig(a="all")))


def test_raw_items_need_towers_and_towers_need_raw_items(tmp_path) -> None:
    with pytest.raises(ValueError, match="two encoder towers"):
        EndToEnd((WordTower(), nn.Linear(2, 2)), FinetuneConfig(a="all"))
    with pytest.raises(ValueError, match="trains neither encoder"):
        EndToEnd((WordTower(), WordTower()), FinetuneConfig())
    feats = AlignmentTask("f", "f", np.zeros((40, 1, 4), np.float32), np.zeros((40, 1, 4), np.float32),
                          lambda a, b: [])
    with pytest.raises(ValueError, match="holds cached features"):
        fit_run(feats, get_method("clip"), 0.5, 0, _cfg(), HeadConfig(8, 16), tmp_path,
                end_to_end=EndToEnd((WordTower(), WordTower()), FinetuneConfig(a="all")))


def test_bf16_autocast_and_gradient_checkpointing_run(tmp_path) -> None:
    """The GPU options run on the CPU too: bf16 autocast over the towers, and gradient checkpointing where a
    tower's model supports it (the text tower; the toy tower says it does not)."""
    from domains.text import TextEncoder

    task = _task()
    text = TextEncoder(device="cpu").tower()
    assert text.enable_gradient_checkpointing() and not WordTower().enable_gradient_checkpointing()
    fitted = fit_run(task, get_method("clip"), 0.5, 0, _cfg(amp=True, max_steps=3, eval_every=0), HeadConfig(8, 16),
                     tmp_path, end_to_end=EndToEnd((WordTower(), text),
                                                   FinetuneConfig(a="all", b="last1", gradient_checkpointing=True)))
    assert np.isfinite(fitted.result.final_terms["total"])
