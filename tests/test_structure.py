"""STRUCTURE (arXiv 2506.16895): the regulariser against a hand computation, its invariances, and the term."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gentleclip.losses import Objective, ObjectiveConfig
from gentleclip.losses.structure import StructureLoss


def _reference(x: np.ndarray, z: np.ndarray, tau: float, levels: int) -> float:
    """The formula with plain numpy loops: row-wise softmax without self, powers, JS per row."""
    def dist(v):
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        n = len(v)
        p = np.zeros((n, n))
        for i in range(n):
            w = [math.exp(float(v[i] @ v[j]) / tau) if j != i else 0.0 for j in range(n)]
            p[i] = np.array(w) / sum(w)
        return p

    def js(p, q):
        m = 0.5 * (p + q)
        kl = lambda a: sum(a[k] * math.log(a[k] / m[k]) for k in range(len(a)) if a[k] > 0)  # noqa: E731
        return 0.5 * kl(p) + 0.5 * kl(q)

    p, q = dist(x), dist(z)
    total = 0.0
    pl, ql = p.copy(), q.copy()
    for level in range(levels):
        if level:
            pl, ql = pl @ p, ql @ q
        total += np.mean([js(pl[i], ql[i]) for i in range(len(p))])
    return total / levels


@pytest.mark.parametrize("levels", [1, 3])
def test_structure_equals_the_formula_on_a_small_case(levels) -> None:
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(5, 7)), rng.normal(size=(5, 3))
    got = StructureLoss(temperature=0.3, levels=levels)(torch.tensor(x), torch.tensor(z)).item()
    assert got == pytest.approx(_reference(x, z, 0.3, levels), rel=1e-10)


def test_structure_is_zero_for_the_same_geometry_and_grows_when_it_is_broken() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 16, generator=g, dtype=torch.float64)
    loss = StructureLoss(temperature=0.1, levels=2)
    assert loss(x, 3.0 * x).item() == pytest.approx(0.0, abs=1e-12)  # cosines do not see the scale
    rotation = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))[0]
    assert loss(x, x @ rotation).item() == pytest.approx(0.0, abs=1e-12)  # nor a rotation
    shuffled = x[torch.randperm(12, generator=g)]
    assert loss(x, shuffled).item() > 0.05
    assert loss(x, shuffled).item() <= math.log(2) + 1e-12  # JS is at most log 2


def test_structure_gradient_reaches_the_embeddings_not_the_frozen_features() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 6, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(8, 4, generator=g, dtype=torch.float64, requires_grad=True)
    StructureLoss(0.2, 2)(x, z).backward()
    assert x.grad is None and z.grad is not None and float(z.grad.abs().max()) > 0
    assert torch.autograd.gradcheck(lambda t: StructureLoss(0.2, 2)(x.detach(), t), (z.detach().requires_grad_(),))
    one = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)
    assert StructureLoss()(torch.randn(1, 6, dtype=torch.float64), one).item() == 0.0  # one row: exact 0


def test_the_structure_term_reads_the_frozen_features_of_both_sides() -> None:
    g = torch.Generator().manual_seed(3)
    xa, xb = torch.randn(10, 12, generator=g), torch.randn(10, 9, generator=g)
    za = F.normalize(torch.randn(10, 4, generator=g), dim=1)
    zb = F.normalize(torch.randn(10, 4, generator=g), dim=1)
    obj = Objective(ObjectiveConfig(clip=1.0, structure=0.5, structure_temperature=0.2, structure_levels=2))
    assert obj.needs_features and not obj.needs_views
    with pytest.raises(ValueError, match="no frozen features"):
        obj(za, zb, 4)
    _, terms = obj(za, zb, 4, xa=xa, xb=xb)
    loss = StructureLoss(0.2, 2)
    torch.testing.assert_close(terms["structure"], 0.5 * (loss(xa, za) + loss(xb, zb)))
    with pytest.raises(ValueError, match="xa must hold"):
        obj(za, zb, 4, xa=xa[:5], xb=xb)


def test_structure_methods_see_the_pools_of_their_other_terms() -> None:
    from gentleclip.methods import get_method

    assert get_method("structure").uses == "pairs only"
    assert get_method("gentle+structure").uses == "pairs + unpaired A + B"
