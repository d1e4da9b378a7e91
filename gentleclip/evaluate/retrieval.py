r"""Cross-modal retrieval in both directions, with several true matches per query.

Setting: ``emb_a`` holds ``N_a`` items of modality A (e.g. images), ``emb_b`` holds ``N_b`` items of
modality B (e.g. captions), and ``b_to_a[j]`` is the A item that B row ``j`` belongs to (five
captions per image -> each A index appears five times). Similarity is the cosine (dot product of
L2-normalised rows).

* **A -> B** (one query per A item, gallery = all B rows): the *best-ranked true match* of query
  ``i`` is the B row of ``i`` with the highest score, ``s*_i = max_{j: b_to_a[j] = i} <a_i, b_j>``.
* **B -> A** (one query per B row, gallery = all A items): the single true match of row ``j`` is
  ``a_{b_to_a[j]}``, ``s*_j = <b_j, a_{b_to_a[j]}>``.

The **rank** of a query is the 1-based position of its best-ranked true match:
``rank = 1 + #{gallery items g that are not true matches : score(g) beats s*}``.
Only *non-matching* items are counted, so other true matches never push the best one down.

**Ties.** Whether a non-matching item whose score *equals* ``s*`` counts as ranked above it is
set by ``ties``:

* ``"pessimistic"`` (default): ties are ranked above the true match (``score >= s* - tie_tol``).
  This is the safe choice for alignment methods, whose failure mode is collapse: if every
  embedding is the same vector, every score ties and the optimistic rule would report a
  perfect R@1 = 100 %, while the pessimistic rule reports the worst rank.
* ``"optimistic"``: ties are ranked below the true match (``score > s* + tie_tol``).

Scores within ``tie_tol`` (absolute, default ``1e-5``) of ``s*`` are treated as ties, so that
float32 rounding between code paths (the true-pair score is a row-wise dot product, the gallery
scores come from a matrix product) never decides a rank.

**Memory.** Scores are computed block by block, ``chunk_size`` queries x ``chunk_size`` gallery
items at a time, and only the per-query counts are kept, so 100k x 100k retrieval needs
``O(chunk_size**2)`` memory, not ``O(N_a * N_b)``. The result does not depend on ``chunk_size``.
Torch tensors on a GPU are scored on that device.

**Metrics** (``retrieval_metrics``): ``{name}_R@{k}`` = percentage (0-100) of queries whose rank
is ``<= k``; ``{name}_median_rank`` = median of the ranks (1 is perfect); ``mean_recall`` = the
mean of all ``R@k`` of both directions (percent).
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import torch

from ._checks import as_embeddings, check_positive_ints, l2_normalize, to_numpy

Ties = Literal["pessimistic", "optimistic"]


def _check_b_to_a(b_to_a: Any, n_a: int, n_b: int) -> np.ndarray:
    arr = to_numpy(b_to_a)
    if arr.ndim != 1:
        raise ValueError(f"b_to_a: expected a 1-D index vector, got shape {tuple(arr.shape)}")
    if len(arr) != n_b:
        raise ValueError(
            f"b_to_a: has {len(arr)} entries but emb_b has {n_b} rows; b_to_a[j] must give the A item of B row j"
        )
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"b_to_a: expected integer indices, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= n_a)
    if bad.any():
        j = int(np.nonzero(bad)[0][0])
        raise ValueError(
            f"b_to_a: {int(bad.sum())} index(es) out of range [0, {n_a}) (first: b_to_a[{j}] = {arr[j]}); "
            f"emb_a has {n_a} rows"
        )
    counts = np.bincount(arr, minlength=n_a)
    if (counts == 0).any():
        missing = np.nonzero(counts == 0)[0]
        raise ValueError(
            f"b_to_a: {len(missing)} A item(s) have no B row (first: {missing[:5].tolist()}); every A query "
            "needs at least one true match — drop those A rows (and re-index b_to_a) before scoring"
        )
    return arr.astype(np.int64, copy=False)


def _prepare(emb: Any, name: str, normalize: bool, device: torch.device | None) -> torch.Tensor:
    if isinstance(emb, torch.Tensor):
        target = device if device is not None else emb.device
        t = emb.detach().to(device=target, dtype=torch.float32)
        if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"{name}: expected a non-empty 2-D array [N, d], got shape {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            as_embeddings(t, name)  # raises with the offending rows
        if normalize:
            norms = t.norm(dim=1, keepdim=True)
            if (norms == 0).any():
                l2_normalize(t.cpu().numpy(), name)  # raises with the offending rows
            t = t / norms
        return t
    arr = as_embeddings(emb, name)
    if normalize:
        arr = l2_normalize(arr, name).astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device or "cpu")


def retrieval_ranks(
    emb_a: Any,
    emb_b: Any,
    b_to_a: Any,
    chunk_size: int = 4096,
    ties: Ties = "pessimistic",
    tie_tol: float = 1e-5,
    normalize: bool = True,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank of the best-ranked true match of every query, both ways (see the module docstring).

    Args:
        emb_a: ``[N_a, d]`` embeddings of modality A (numpy or torch).
        emb_b: ``[N_b, d]`` embeddings of modality B.
        b_to_a: ``[N_b]`` ints, ``b_to_a[j]`` = index of the A item that B row ``j`` belongs to;
            every A item must own at least one B row.
        chunk_size: queries and gallery items per block of the score matrix.
        ties: ``"pessimistic"`` (tied non-matches rank above the true match) or ``"optimistic"``.
        tie_tol: absolute score difference under which two scores count as tied.
        normalize: L2-normalise the rows first (cosine similarity); set False for raw dot products.
        device: where to compute; default: the device of ``emb_a`` if it is a tensor, else CPU.

    Returns:
        ``(ranks_a2b [N_a], ranks_b2a [N_b])``, int64 arrays of 1-based ranks.
    """
    if ties not in ("pessimistic", "optimistic"):
        raise ValueError(f"ties: expected 'pessimistic' or 'optimistic', got {ties!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if not tie_tol >= 0:
        raise ValueError(f"tie_tol: expected a non-negative float, got {tie_tol!r}")
    dev = torch.device(device) if device is not None else None
    a = _prepare(emb_a, "emb_a", normalize, dev)
    b = _prepare(emb_b, "emb_b", normalize, dev if dev is not None else a.device)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"emb_a has dim {a.shape[1]} but emb_b has dim {b.shape[1]}; they must share one space")
    b2a_np = _check_b_to_a(b_to_a, a.shape[0], b.shape[0])
    b2a = torch.from_numpy(b2a_np).to(a.device)
    n_a = a.shape[0]

    with torch.no_grad():
        # Score of every true pair, then the best true score per query in each direction.
        pair_scores = (a[b2a] * b).sum(dim=1)  # [N_b]
        best_a = torch.full((n_a,), -torch.inf, dtype=pair_scores.dtype, device=a.device)
        best_a = best_a.scatter_reduce(0, b2a, pair_scores, reduce="amax", include_self=True)
        ranks_a2b = _count_above(a, b, best_a, chunk_size, ties, tie_tol,
                                 true_mask=lambda q0, q1, g0, g1: b2a[g0:g1][None, :]
                                 == torch.arange(q0, q1, device=a.device)[:, None])
        ranks_b2a = _count_above(b, a, pair_scores, chunk_size, ties, tie_tol,
                                 true_mask=lambda q0, q1, g0, g1: b2a[q0:q1][:, None]
                                 == torch.arange(g0, g1, device=a.device)[None, :])
    return ranks_a2b.cpu().numpy() + 1, ranks_b2a.cpu().numpy() + 1


def _count_above(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    best: torch.Tensor,
    chunk_size: int,
    ties: Ties,
    tie_tol: float,
    true_mask: Any,
) -> torch.Tensor:
    """Per query, the number of non-matching gallery items whose score beats ``best``."""
    counts = torch.zeros(queries.shape[0], dtype=torch.int64, device=queries.device)
    for q0 in range(0, queries.shape[0], chunk_size):
        q1 = min(q0 + chunk_size, queries.shape[0])
        threshold = best[q0:q1, None]
        for g0 in range(0, gallery.shape[0], chunk_size):
            g1 = min(g0 + chunk_size, gallery.shape[0])
            scores = queries[q0:q1] @ gallery[g0:g1].T
            if ties == "pessimistic":
                above = scores >= threshold - tie_tol
            else:
                above = scores > threshold + tie_tol
            above &= ~true_mask(q0, q1, g0, g1)
            counts[q0:q1] += above.sum(dim=1)
    return counts


def recall_at_k(ranks: Any, k: int) -> float:
    """Percentage (0-100) of queries whose best true match is within the top ``k``."""
    r = np.asarray(ranks)
    if r.size == 0:
        raise ValueError("recall_at_k: empty rank vector")
    return float(100.0 * np.mean(r <= k))


def retrieval_metrics(
    emb_a: Any,
    emb_b: Any,
    b_to_a: Any,
    names: tuple[str, str] = ("a2b", "b2a"),
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 4096,
    ties: Ties = "pessimistic",
    tie_tol: float = 1e-5,
    normalize: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Recall@k (percent), median rank and mean recall for retrieval A -> B and B -> A.

    Args:
        emb_a, emb_b, b_to_a, chunk_size, ties, tie_tol, normalize, device: as in
            :func:`retrieval_ranks`.
        names: metric prefixes of the two directions, e.g. ``("i2t", "t2i")`` for images = A.
        ks: cut-offs of Recall@k.

    Returns:
        ``{f"{names[0]}_R@{k}", f"{names[1]}_R@{k}"}`` for each ``k`` (percent, 0-100),
        ``f"{names[0]}_median_rank"``, ``f"{names[1]}_median_rank"`` (1-based), and
        ``"mean_recall"`` (mean of all the R@k values, percent).
    """
    ks = check_positive_ints(ks, "ks")
    if len(names) != 2 or len(set(names)) != 2 or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"names: expected two distinct non-empty strings, got {names!r}")
    ranks_a2b, ranks_b2a = retrieval_ranks(emb_a, emb_b, b_to_a, chunk_size=chunk_size, ties=ties,
                                           tie_tol=tie_tol, normalize=normalize, device=device)
    out: dict[str, float] = {}
    recalls: list[float] = []
    for name, ranks in zip(names, (ranks_a2b, ranks_b2a)):
        for k in ks:
            out[f"{name}_R@{k}"] = recall_at_k(ranks, k)
            recalls.append(out[f"{name}_R@{k}"])
    for name, ranks in zip(names, (ranks_a2b, ranks_b2a)):
        out[f"{name}_median_rank"] = float(np.median(ranks))
    out["mean_recall"] = float(np.mean(recalls))
    return out
