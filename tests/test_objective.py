"""The weighted objective: term registry, configs, and a 2-process gloo run against one process."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from gentleclip.distributed import all_gather_with_grad, gather_paired_first, is_distributed, world_info
from gentleclip.losses import (
    CentroidUniformityLoss,
    CLIPLoss,
    MKMMDLoss,
    NTXentLoss,
    Objective,
    ObjectiveConfig,
    PairAlignmentLoss,
    PseudoNNLoss,
    SClipCaptionLoss,
    SClipKeywordLoss,
    SDDLoss,
    TermAdapter,
    TermInputs,
    register_term,
)
from gentleclip.losses import objective as objective_module


def unit(n: int, d: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def batch(seed: int = 0, na: int = 9, nb: int = 7, d: int = 6):
    za, zb = unit(na, d, seed), unit(nb, d, seed + 1)
    za2 = F.normalize(za + 0.2 * unit(na, d, seed + 2), dim=1)
    zb2 = F.normalize(zb + 0.2 * unit(nb, d, seed + 3), dim=1)
    return za, zb, za2, zb2


ALL_ON = dict(clip=1.0, sdd=0.6, mmd=0.2, ssl_a=0.1, ssl_b=0.15, align=0.3, uniformity=0.4)


def test_total_is_the_weighted_sum_of_the_terms_and_each_term_is_its_loss():
    cfg = ObjectiveConfig(**ALL_ON, temperature=0.07, ssl_temperature=0.2, sdd_normalize=False,
                          mmd_kernel_num=3, mmd_unbiased=True, uniformity_t=1.5)
    za, zb, za2, zb2 = batch()
    total, terms = Objective(cfg)(za, zb, 4, za2, zb2)
    expected = {
        "clip": CLIPLoss(0.07)(za, zb, 4),
        "sdd": SDDLoss(normalize=False)(za, zb),
        "mmd": MKMMDLoss(kernel_num=3, unbiased=True)(za, zb),
        "ssl_a": NTXentLoss(0.2)(za, za2),
        "ssl_b": NTXentLoss(0.2)(zb, zb2),
        "align": PairAlignmentLoss()(za[:4], zb[:4]),
        "uniformity": CentroidUniformityLoss(1.5)(za[:4], zb[:4]),
    }
    assert set(terms) == set(expected) | {"total"}
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value.detach())
        assert not terms[name].requires_grad
    weighted = sum(ALL_ON[name] * terms[name].item() for name in expected)
    assert total.item() == pytest.approx(weighted, rel=1e-12)
    assert terms["total"].item() == pytest.approx(total.item(), rel=1e-15)
    assert total.requires_grad is False  # inputs do not require grad here
    za.requires_grad_()
    total, _ = Objective(cfg)(za, zb, 4, za2, zb2)
    total.backward()
    assert torch.isfinite(za.grad).all() and za.grad.abs().sum() > 0


def test_clip_only_and_gentle_configs():
    clip_only, gentle = ObjectiveConfig.clip_only(), ObjectiveConfig.gentle()
    assert clip_only.enabled_terms() == ["clip"]
    assert {n: gentle.weight(n) for n in gentle.enabled_terms()} == {
        "clip": 1.0, "sdd": 0.6, "mmd": 0.2, "ssl_a": 0.1, "ssl_b": 0.1}
    assert gentle.temperature == 0.05 and clip_only.temperature == 0.05
    za, zb, za2, zb2 = batch(seed=3)
    total_c, terms_c = Objective(clip_only)(za, zb, 5)
    assert set(terms_c) == {"clip", "total"}
    torch.testing.assert_close(total_c, CLIPLoss(0.05)(za, zb, 5))
    total_g, terms_g = Objective(gentle)(za, zb, 5, za2, zb2)
    assert set(terms_g) == {"clip", "sdd", "mmd", "ssl_a", "ssl_b", "total"}
    torch.testing.assert_close(terms_g["clip"], terms_c["clip"])  # same CLIP term in both
    assert total_g.item() > total_c.item()
    # the gentle objective still works with zero pairs (only the unpaired terms act)
    za.requires_grad_()
    total0, terms0 = Objective(gentle)(za, zb, 0, za2, zb2)
    assert terms0["clip"].item() == 0.0
    total0.backward()
    assert torch.isfinite(za.grad).all() and za.grad.abs().sum() > 0


def test_zero_weight_terms_are_not_built_or_computed():
    obj = Objective(ObjectiveConfig(clip=1.0, sdd=0.5))
    assert set(obj.losses) == {"clip", "sdd"}
    za, zb, _, _ = batch()
    _, terms = obj(za, zb, 2)  # no views needed: ssl is off
    assert set(terms) == {"clip", "sdd", "total"}


def test_ssl_without_second_view_is_a_clear_error():
    za, zb, za2, _ = batch()
    with pytest.raises(ValueError, match="zb2"):
        Objective(ObjectiveConfig.gentle())(za, zb, 2, za2=za2)
    with pytest.raises(ValueError, match="za2"):
        Objective(ObjectiveConfig(ssl_a=0.1))(za, zb, 2)
    with pytest.raises(ValueError, match="shape"):
        Objective(ObjectiveConfig(ssl_a=0.1))(za, zb, 2, za2=za2[:3])


def test_config_round_trip_and_validation():
    cfg = ObjectiveConfig.gentle(align=0.5, learnable_temperature=True, sdd_bandwidth=0.4)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert ObjectiveConfig.from_dict(data) == cfg
    assert cfg.replace(sdd=0.0).sdd == 0.0 and cfg.sdd == 0.6
    with pytest.raises(ValueError, match="unknown key"):
        ObjectiveConfig.from_dict({**data, "sdd_weight": 1.0})
    for bad in ({"sdd": -0.1}, {"clip": float("nan")}, {"temperature": 0.0}, {"temperature": 5.0},
                {"mmd_kernel_num": 0}, {"sdd_bandwidth": "median"}, {"sdd_spread": "iqr"},
                {"pseudo_threshold": 1.5}, {"sclip_support": "c"}):
        with pytest.raises(ValueError):
            ObjectiveConfig(**bad)
    with pytest.raises(ValueError, match="every term weight is 0"):
        Objective(ObjectiveConfig(clip=0.0))
    with pytest.raises(ValueError, match="unknown key.*'not_a_term'"):
        ObjectiveConfig(not_a_term=1.0)


def test_clip_unpaired_negatives_option():
    za, zb, _, _ = batch(seed=5)
    default = ObjectiveConfig.clip_only()
    assert default.clip_unpaired_negatives is True  # the design: unpaired rows are extra negatives
    _, terms = Objective(default)(za, zb, 4)
    torch.testing.assert_close(terms["clip"], CLIPLoss(0.05)(za, zb, 4))
    off = ObjectiveConfig.clip_only(clip_unpaired_negatives=False)
    _, terms_off = Objective(off)(za, zb, 4)
    torch.testing.assert_close(terms_off["clip"], CLIPLoss(0.05)(za[:4], zb[:4], 4))
    assert terms_off["clip"].item() < terms["clip"].item()
    assert ObjectiveConfig.from_dict(json.loads(json.dumps(off.to_dict()))) == off


def _keywords(n_paired: int, k: int = 5, d: int = 6, seed: int = 11):
    g = torch.Generator().manual_seed(seed)
    hot = torch.rand(n_paired, k, generator=g) < 0.4
    hot[0] = False  # a paired row without keywords: unpaired rows matched to it are skipped
    return hot, unit(k, d, seed + 1)


def test_pseudo_label_terms_join_the_sum_each_on_its_rows():
    cfg = ObjectiveConfig(clip=1.0, sclip_caption=0.5, sclip_keyword=0.4, pseudo_nn=0.3, temperature=0.07,
                          sclip_ot_iter=20, pseudo_mutual=True)
    za, zb, _, _ = batch(seed=2, na=11, nb=9)
    hot, zk = _keywords(4)
    obj = Objective(cfg)
    assert obj.needs_keywords
    total, terms = obj(za, zb, 4, paired_keywords=hot, z_keywords=zk)
    expected = {
        "clip": CLIPLoss(0.07)(za, zb, 4),
        # S-CLIP "ot-image": soft targets from the OT plan of unpaired A against the paired A rows
        "sclip_caption": SClipCaptionLoss(0.07, None, 20)(za[4:], zb[:4], za_paired=za[:4]),
        "sclip_keyword": SClipKeywordLoss(0.07)(za[4:], za[:4], hot, zk),
        "pseudo_nn": PseudoNNLoss(0.07, None, True)(za[4:], zb[4:]),
    }
    assert set(terms) == set(expected) | {"total"}
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value)
        assert value.item() > 0, name
    weights = {"clip": 1.0, "sclip_caption": 0.5, "sclip_keyword": 0.4, "pseudo_nn": 0.3}
    assert total.item() == pytest.approx(sum(weights[n] * terms[n].item() for n in weights), rel=1e-12)
    # sclip_support="b": the OT cost is taken against the paired B rows instead
    _, terms_b = Objective(cfg.replace(sclip_support="b", sclip_keyword=0.0))(za, zb, 4)
    torch.testing.assert_close(terms_b["sclip_caption"], SClipCaptionLoss(0.07, None, 20)(za[4:], zb[:4]))
    # gradients reach the paired and unpaired rows and the keyword embeddings
    za_g, zk_g = za.clone().requires_grad_(), zk.clone().requires_grad_()
    obj(za_g, zb, 4, paired_keywords=hot, z_keywords=zk_g)[0].backward()
    assert za_g.grad[4:].abs().sum() > 0 and zk_g.grad.abs().sum() > 0


def test_keyword_term_without_keywords_is_a_clear_error():
    za, zb, _, _ = batch()
    obj = Objective(ObjectiveConfig(clip=1.0, sclip_keyword=0.5))
    hot, zk = _keywords(3)
    with pytest.raises(ValueError, match="sclip_keyword.*paired_keywords"):
        obj(za, zb, 3)
    with pytest.raises(ValueError, match="paired_keywords must be"):
        obj(za, zb, 2, paired_keywords=hot, z_keywords=zk)  # 3 keyword rows for 2 pairs
    with pytest.raises(ValueError, match="z_keywords must be"):
        obj(za, zb, 3, paired_keywords=hot, z_keywords=zk[:2])
    assert not Objective(ObjectiveConfig(clip=1.0, sclip_caption=0.5)).needs_keywords
    _, terms = Objective(ObjectiveConfig(clip=1.0, sclip_caption=0.5, pseudo_nn=0.5))(za, zb, 0)
    assert terms["sclip_caption"].item() == 0.0  # no pairs: no captions to pseudo-label with
    za7, zb7, _, _ = batch(na=7, nb=7)
    _, terms = Objective(ObjectiveConfig(clip=1.0, sclip_caption=0.5, pseudo_nn=0.5))(za7, zb7, 7)
    assert terms["sclip_caption"].item() == 0.0 and terms["pseudo_nn"].item() == 0.0  # no unpaired rows


@pytest.mark.parametrize("bad", [
    {"clip_unpaired_negatives": "yes"}, {"sclip_support": "c"}, {"sclip_ot_iter": 0}, {"sclip_ot_iter": 2.5},
    {"sclip_ot_epsilon": 0.0}, {"pseudo_threshold": 1.5}, {"pseudo_mutual": 1}, {"sclip_caption": -0.5},
    {"pseudo_nn": float("inf")},
])
def test_pseudo_label_config_validation(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ObjectiveConfig(**bad)


def test_learnable_temperature_is_a_parameter_of_the_objective():
    obj = Objective(ObjectiveConfig.clip_only(learnable_temperature=True))
    params = list(obj.parameters())
    assert len(params) == 1 and obj.temperature.item() == pytest.approx(0.05)
    za, zb, _, _ = batch()
    total, _ = obj(za, zb, 4)
    total.backward()
    assert params[0].grad is not None and torch.isfinite(params[0].grad)
    assert list(Objective(ObjectiveConfig.clip_only()).parameters()) == []


def _mean_offdiag_sim(loss: torch.nn.Module, b: TermInputs) -> torch.Tensor:
    return loss(b.za, b.zb)


class _MeanSim(torch.nn.Module):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, za, zb):
        return self.scale * (za @ zb.t()).mean()


def test_a_registered_term_joins_the_sum_with_its_option_and_what_it_reads():
    """A new loss is one registration: its weight and its option are configuration keys, and the
    rows it reads decide the pools of a method that uses it."""
    from gentleclip.losses import Option, Term
    from gentleclip.losses.objective import unregister_term
    from gentleclip.methods import Method

    name = "test_mean_sim"
    term = Term(name, lambda cfg: TermAdapter(_MeanSim(cfg.test_sim_scale), _mean_offdiag_sim),
                reads=("paired", "unpaired_b"), options={"test_sim_scale": Option(1.0, lambda v: None)})
    register_term(term)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_term(term)
        cfg = ObjectiveConfig(clip=1.0, test_mean_sim=2.0, test_sim_scale=3.0)
        za, zb, _, _ = batch()
        total, terms = Objective(cfg)(za, zb, 3)
        torch.testing.assert_close(terms[name], 3.0 * (za @ zb.t()).mean())
        assert total.item() == pytest.approx(terms["clip"].item() + 2.0 * terms[name].item(), rel=1e-12)
        assert ObjectiveConfig.from_dict(cfg.to_dict()) == cfg
        method = Method("m", "d", "r", cfg)
        assert method.uses_unpaired_b and not method.uses_unpaired_a
    finally:
        unregister_term(name)
    assert name not in ObjectiveConfig.keys() and "test_sim_scale" not in ObjectiveConfig.keys()


def test_single_process_distributed_helpers_are_identity():
    assert not is_distributed() and world_info() == (0, 1)
    x = unit(3)
    assert all_gather_with_grad(x) is x
    assert gather_paired_first([x], 1)[0] is x


# ----------------------------------------------------------------------------- 2 processes, gloo

WORLD = 2
N_PAIRED = 3
UNPAIRED_A = (2, 4)  # different numbers of unpaired rows per rank exercise the variable-size gather
UNPAIRED_B = (3, 1)
D_IN, D_OUT = 5, 4
N_KEYWORDS = 4
DIST_CONFIG = ObjectiveConfig.gentle(align=0.3, uniformity=0.2, learnable_temperature=True,
                                     sclip_caption=0.5, sclip_keyword=0.4, pseudo_nn=0.3)


def _keyword_inputs(rank: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keyword features (the same on every rank) and the multi-hot keywords of ``rank``'s pairs
    (``None``: all ranks' pairs in rank order, i.e. the global batch)."""
    feats = torch.randn(N_KEYWORDS, D_IN, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    if rank is None:
        return feats, torch.cat([_keyword_inputs(r)[1] for r in range(WORLD)])
    hot = torch.rand(N_PAIRED, N_KEYWORDS, generator=torch.Generator().manual_seed(200 + rank)) < 0.5
    return feats, hot


def _rank_inputs(rank: int) -> dict[str, torch.Tensor]:
    """Raw features held by ``rank`` (the same on every process: drawn from fixed seeds)."""
    g = torch.Generator().manual_seed(100 + rank)
    na, nb = N_PAIRED + UNPAIRED_A[rank], N_PAIRED + UNPAIRED_B[rank]
    return {k: torch.randn(n, D_IN, generator=g, dtype=torch.float64)
            for k, n in (("xa", na), ("xb", nb), ("xa2", na), ("xb2", nb))}


def _heads() -> tuple[torch.nn.Linear, torch.nn.Linear]:
    torch.manual_seed(7)
    return (torch.nn.Linear(D_IN, D_OUT).double(), torch.nn.Linear(D_IN, D_OUT).double())


def _step(inputs: dict[str, torch.Tensor], n_paired: int, keywords: tuple[torch.Tensor, torch.Tensor]):
    """One forward/backward: heads -> normalised embeddings -> objective."""
    head_a, head_b = _heads()
    objective = Objective(DIST_CONFIG).double()
    x = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    za, za2 = F.normalize(head_a(x["xa"]), dim=1), F.normalize(head_a(x["xa2"]), dim=1)
    zb, zb2 = F.normalize(head_b(x["xb"]), dim=1), F.normalize(head_b(x["xb2"]), dim=1)
    z_keywords = F.normalize(head_b(keywords[0]), dim=1)  # every rank embeds the same keywords
    total, terms = objective(za, zb, n_paired, za2, zb2, paired_keywords=keywords[1], z_keywords=z_keywords)
    total.backward()
    params = {f"a.{n}": p for n, p in head_a.named_parameters()}
    params.update({f"b.{n}": p for n, p in head_b.named_parameters()})
    params.update({f"obj.{n}": p for n, p in objective.named_parameters()})
    return total.detach(), terms, {k: v.grad for k, v in x.items()}, {k: p.grad for k, p in params.items()}


def _dist_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        total, terms, input_grads, param_grads = _step(_rank_inputs(rank), N_PAIRED, _keyword_inputs(rank))
        for g in param_grads.values():  # what DDP does: average parameter gradients over ranks
            dist.all_reduce(g)
            g /= WORLD
        torch.save({"total": total, "terms": terms, "input_grads": input_grads, "param_grads": param_grads},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _global_paired_first(key: str, ranks: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    return torch.cat([r[key][:N_PAIRED] for r in ranks] + [r[key][N_PAIRED:] for r in ranks])


def test_two_process_gloo_matches_single_process_on_the_global_batch(tmp_path):
    mp.spawn(_dist_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    ranks = [_rank_inputs(r) for r in range(WORLD)]
    global_inputs = {k: _global_paired_first(k, ranks) for k in ranks[0]}
    total, terms, input_grads, param_grads = _step(global_inputs, WORLD * N_PAIRED, _keyword_inputs(None))
    assert {"sclip_caption", "sclip_keyword", "pseudo_nn"} <= set(terms)
    assert all(terms[n].item() > 0 for n in ("sclip_caption", "sclip_keyword", "pseudo_nn"))

    for r, res in enumerate(results):
        # every rank reports the loss of the global batch, term by term
        torch.testing.assert_close(res["total"], total)
        for name in terms:
            torch.testing.assert_close(res["terms"][name], terms[name])
        # DDP-averaged parameter gradients equal the single-process gradients (heads and temperature)
        assert set(res["param_grads"]) == set(param_grads)
        for name, g in param_grads.items():
            torch.testing.assert_close(res["param_grads"][name], g, msg=f"rank {r}, parameter {name}")
        # input gradients: rank r holds world_size x the single-process gradient of its rows
        # (the open_clip / torch.distributed.nn convention that DDP's 1/world averaging undoes)
        for key, g in input_grads.items():
            n_local = ranks[r][key].shape[0]
            sizes = [rk[key].shape[0] - N_PAIRED for rk in ranks]
            rows = list(range(r * N_PAIRED, (r + 1) * N_PAIRED))
            start = WORLD * N_PAIRED + sum(sizes[:r])
            rows += list(range(start, start + n_local - N_PAIRED))
            torch.testing.assert_close(res["input_grads"][key] / WORLD, g[rows], msg=f"rank {r}, {key}")
    assert math.isfinite(total.item())


def test_sdd_and_mmd_share_one_distance_matrix_per_batch(monkeypatch):
    from gentleclip.losses import sdd

    calls = []
    real = sdd.joint_squared_distances

    def counting(a, b, **kw):
        calls.append(tuple(torch.cat([a, b]).shape))
        return real(a, b, **kw)

    monkeypatch.setattr(objective_module, "joint_squared_distances", counting)
    monkeypatch.setattr(sdd, "joint_squared_distances", counting)
    za, zb, za2, zb2 = batch()
    obj = Objective(ObjectiveConfig(clip=1.0, sdd=0.6, mmd=0.2))
    za.requires_grad_(), zb.requires_grad_()
    total, terms = obj(za, zb, 4)
    assert calls == [(16, 6)]  # once, on the joint batch
    total.backward()
    ga, gb = za.grad.clone(), zb.grad.clone()
    monkeypatch.undo()
    a, b = za.detach().clone().requires_grad_(), zb.detach().clone().requires_grad_()
    separate = CLIPLoss(0.05)(a, b, 4) + 0.6 * SDDLoss()(a, b) + 0.2 * MKMMDLoss()(a, b)
    separate.backward()
    assert abs(total.item() - separate.item()) <= 1e-10
    assert (ga - a.grad).abs().max() <= 1e-10 and (gb - b.grad).abs().max() <= 1e-10
