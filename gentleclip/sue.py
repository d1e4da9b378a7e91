r"""SUE: spectral embedding of each modality from its unpaired data, CCA on the few pairs, MMD fine-tuning.

Yacobi, Ben-Ari, Talmon and Shaham, "Learning Shared Representations from Unpaired Data", NeurIPS 2025,
arXiv 2505.21524 (the spectral universal embedding; reference code: github.com/shaham-lab/SUE). SUE
is a pipeline of three stages, not a weighted loss:

1. **Spectral embedding, per modality, from all of its training items** (pairs and unpaired rows
   alike; no partner is read). On the L2-normalised frozen features, a ``n_neighbors``-nearest-neighbour
   graph with Gaussian weights :math:`w_{ij} = \exp(-\lVert x_i - x_j\rVert^2 / \sigma^2)`, where
   :math:`\sigma` is the median distance of an item to its ``scale_k``-th neighbour (SpectralNet's
   global scale; items with that many identical copies, such as repeated texts, are left out of the
   median, which they would set to 0), symmetrised :math:`W = (W + W^\top)/2`. The embedding is the leading non-trivial
   eigenvectors :math:`\psi_1..\psi_k` of the random-walk matrix :math:`P = D^{-1}W`
   (:math:`P\psi = \mu\psi`; from the symmetric :math:`D^{-1/2}WD^{-1/2}` by ``scipy.sparse.linalg.eigsh``).
   **What we use instead of SpectralNet, and why:** the reference trains SpectralNet, a network
   that approximates these eigenvectors, so that new items can be embedded. Our pools (at most tens
   of thousands of items) fit the exact sparse eigenproblem, solved in seconds; new items are then
   embedded exactly the way an eigenvector is defined, by one random-walk step into the training
   graph (the Nyström extension) :math:`\psi(x) = \frac{1}{\mu}\sum_{j \in N_k(x)} p_j(x)\,\psi_j` with
   :math:`p_j(x) \propto w(x, x_j)` over the ``n_neighbors`` nearest training items. This has no
   training noise and no architecture to tune; the price is that the head keeps the training
   features (stored as float16) for the neighbour search. Every item, training ones included, is
   embedded by this one map.
2. **CCA on the pairs** (``sklearn.cross_decomposition.CCA``, ``n_components``, no scaling): fitted on
   the spectral embeddings of the paired items; both modalities are centred by the pairs' means and
   rotated into the shared ``n_components``-dimensional space.
3. **MMD fine-tuning.** A small residual network on the A side,
   :math:`z \mapsto z + \mathrm{MLP}(z)` (two hidden layers of ``mmd_hidden``, ReLU, as the
   reference), is trained to make the distribution of A embeddings match that of the B embeddings
   under a multi-scale Gaussian MMD (the ``mmd`` term with ``mmd_kernel_num=3``), on batches of all
   the A and all the B rows the split allows. This stage is an ordinary run of the
   :class:`~gentleclip.train.Trainer`: same batches, step budget, validation-based checkpoint
   selection, checkpoints and resume as every other method.

Similarity in the joint space is the cosine of the embeddings (the reference normalises before
retrieval too). With no pairs there is no CCA: SUE does not apply at a pairing ratio of 0
(:class:`NotApplicable`).
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gentleclip.run import NotApplicable

__all__ = ["SpectralMap", "SUEHead", "SUE", "knn", "spectral_eigenvectors"]


def knn(queries: torch.Tensor, reference: torch.Tensor, k: int, exclude_self: bool = False,
        chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared Euclidean distances ``[n, k]`` and indices ``[n, k]`` of the ``k`` nearest ``reference`` rows
    of each query (``exclude_self``: queries are the reference rows themselves, each skips its own)."""
    if k < 1 or k + int(exclude_self) > len(reference):
        raise ValueError(f"knn: need 1 <= k <= {len(reference) - int(exclude_self)} reference rows, got k={k}")
    dists, idx = [], []
    ref_sq = (reference * reference).sum(1)
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        d2 = ((q * q).sum(1, keepdim=True) + ref_sq[None, :] - 2.0 * q @ reference.T).clamp_min(0.0)
        if exclude_self:
            rows = torch.arange(len(q), device=q.device)
            d2[rows, rows + start] = float("inf")
        values, indices = d2.topk(k, dim=1, largest=False)
        dists.append(values)
        idx.append(indices)
    return torch.cat(dists), torch.cat(idx)


def spectral_eigenvectors(features: np.ndarray, n_eigenvectors: int, n_neighbors: int, scale_k: int,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """The leading non-trivial random-walk eigenvectors ``psi [N, n_eigenvectors]`` of the kNN graph of the
    L2-normalised ``features [N, D]``, their eigenvalues ``mu`` (descending) and the Gaussian scale
    ``sigma`` (see the module docstring). Each eigenvector is scaled to mean square 1 over the items
    and signed so that its largest entry is positive (deterministic)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import eigsh

    x = F.normalize(torch.as_tensor(np.asarray(features, dtype=np.float32)), dim=1)
    n = len(x)
    if n_eigenvectors + 1 >= n:
        raise ValueError(f"spectral embedding: {n} items cannot give {n_eigenvectors} non-trivial eigenvectors")
    d2, idx = knn(x, x, max(n_neighbors, scale_k), exclude_self=True)
    kth = d2[:, scale_k - 1].sqrt().numpy()
    kth = kth[kth > 1e-3]  # items with scale_k identical copies (repeated texts) would set a zero scale
    sigma = float(np.median(kth)) if len(kth) else 1.0
    d2, idx = d2[:, :n_neighbors].double().numpy(), idx[:, :n_neighbors].numpy()
    w = sp.csr_matrix((np.exp(-d2 / sigma**2).ravel(), (np.repeat(np.arange(n), n_neighbors), idx.ravel())),
                      shape=(n, n))
    w = (w + w.T) / 2.0
    n_parts = connected_components(w, directed=False)[0]
    if n_parts > 1:  # an eigenvalue 1 per component: ARPACK may then miss some, as sklearn warns too
        warnings.warn(f"spectral embedding: the {n_neighbors}-neighbour graph of {n} items has {n_parts} separate "
                      "parts (identical items, such as repeated texts, or too few neighbours); its leading "
                      "eigenvectors tell the parts apart", stacklevel=2)
    deg = np.asarray(w.sum(axis=1)).ravel()
    inv_sqrt = sp.diags(1.0 / np.sqrt(deg))
    v0 = np.random.default_rng(seed).standard_normal(n)
    mu, u = eigsh(inv_sqrt @ w @ inv_sqrt, k=n_eigenvectors + 1, which="LA", v0=v0, tol=1e-8)
    order = np.argsort(-mu)[1:]  # drop the top one: the constant random-walk eigenvector (mu = 1)
    psi = (inv_sqrt @ u[:, order])
    psi /= np.sqrt((psi**2).mean(axis=0, keepdims=True))
    signs = np.sign(psi[np.abs(psi).argmax(axis=0), np.arange(psi.shape[1])])
    return (psi * signs).astype(np.float32), mu[order].astype(np.float32), sigma


class SpectralMap(nn.Module):
    r"""Features ``[n, D]`` -> spectral coordinates ``[n, k]`` by the Nyström extension of stage 1:
    :math:`\psi(x) = \frac{1}{\mu} \sum_{j \in N(x)} p_j(x) \psi_j` over the ``n_neighbors`` nearest training
    items (no trainable parameters; the training features are kept as float16 buffers)."""

    def __init__(self, n_reference: int, in_dim: int, n_eigenvectors: int, n_neighbors: int) -> None:
        super().__init__()
        self.n_neighbors = int(n_neighbors)
        self.register_buffer("reference", torch.zeros(n_reference, in_dim, dtype=torch.float16))
        self.register_buffer("psi", torch.zeros(n_reference, n_eigenvectors))
        self.register_buffer("mu", torch.ones(n_eigenvectors))
        self.register_buffer("sigma", torch.ones(()))
        self._reference_cache: tuple[Any, torch.Tensor] | None = None  # the reference in the queries' dtype
        self._memo: tuple[Any, dict[bytes, torch.Tensor]] | None = None  # row digest -> coordinates

    def _reference_as(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype, self.reference._version, self.reference.data_ptr())
        if self._reference_cache is None or self._reference_cache[0] != key:
            self._reference_cache = (key, self.reference.to(like.dtype))
        return self._reference_cache[1]

    @classmethod
    def fit(cls, features: np.ndarray, n_eigenvectors: int, n_neighbors: int, scale_k: int,
            seed: int = 0) -> "SpectralMap":
        """Stage 1 on the training ``features [N, D]`` of one modality."""
        psi, mu, sigma = spectral_eigenvectors(features, n_eigenvectors, n_neighbors, scale_k, seed)
        out = cls(len(features), features.shape[1], n_eigenvectors, n_neighbors)
        out.reference.copy_(F.normalize(torch.as_tensor(np.asarray(features, np.float32)), dim=1).half())
        out.psi.copy_(torch.from_numpy(psi))
        out.mu.copy_(torch.from_numpy(mu))
        out.sigma.fill_(sigma)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spectral coordinates of ``x [n, D]``.

        The map has no trainable parameter, and a run meets the same rows again and again (the training
        rows every epoch, the validation rows at every validation), so each row's coordinates are kept,
        keyed by a 128-bit digest of the row, and only rows not seen before are computed.
        """
        if x.requires_grad:  # a gradient into the features (never in a SUE run): no memo
            return self._coordinates(x)
        identity = (x.device, x.dtype, self.reference.data_ptr(),
                    *(b._version for b in (self.reference, self.psi, self.mu, self.sigma)))
        if self._memo is None or self._memo[0] != identity:
            self._memo = (identity, {})
        memo = self._memo[1]
        rows = x.detach().to("cpu", torch.float32).contiguous().numpy()
        keys = [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]
        todo = [i for i, k in enumerate(keys) if k not in memo]
        if todo:
            for i, z in zip(todo, self._coordinates(x[todo])):
                memo[keys[i]] = z
        return torch.stack([memo[k] for k in keys])

    def _coordinates(self, x: torch.Tensor) -> torch.Tensor:
        d2, idx = knn(F.normalize(x, dim=1), self._reference_as(x), self.n_neighbors)
        p = torch.softmax(-d2 / self.sigma**2, dim=1)  # = w_j / sum w over the neighbours
        return torch.einsum("nk,nkc->nc", p, self.psi[idx]) / self.mu


class SUEHead(nn.Module):
    """One modality's SUE map: :class:`SpectralMap`, the CCA rotation of the pairs (stage 2) and, on the A
    side, the residual MMD network (stage 3; the only trainable part). ``config()`` rebuilds it empty
    for :meth:`~gentleclip.model.AlignmentModel.from_pretrained`, which then loads the buffers."""

    def __init__(self, n_reference: int, in_dim: int, n_eigenvectors: int, n_neighbors: int, out_dim: int,
                 mmd_hidden: int = 0) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.mmd_hidden = int(in_dim), int(out_dim), int(mmd_hidden)
        self.spectral = SpectralMap(n_reference, in_dim, n_eigenvectors, n_neighbors)
        self.register_buffer("cca_mean", torch.zeros(n_eigenvectors))
        self.register_buffer("cca_rotation", torch.zeros(n_eigenvectors, out_dim))
        self.mmd_net = nn.Sequential(nn.Linear(out_dim, mmd_hidden), nn.ReLU(), nn.Linear(mmd_hidden, mmd_hidden),
                                     nn.ReLU(), nn.Linear(mmd_hidden, out_dim)) if mmd_hidden else None

    def config(self) -> dict[str, Any]:
        """Constructor arguments (``SUEHead(**head.config())``)."""
        return {"n_reference": len(self.spectral.reference), "in_dim": self.in_dim,
                "n_eigenvectors": len(self.spectral.mu), "n_neighbors": self.spectral.n_neighbors,
                "out_dim": self.out_dim, "mmd_hidden": self.mmd_hidden}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Joint-space embeddings ``[n, out_dim]`` of features ``x [n, in_dim]`` (not normalised: the MMD of
        stage 3 sees the CCA coordinates; scores use cosine similarity)."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"SUEHead expects inputs with last dim {self.in_dim}, got shape {tuple(x.shape)}")
        z = (self.spectral(x) - self.cca_mean) @ self.cca_rotation
        return z if self.mmd_net is None else z + self.mmd_net(z)


@dataclass(frozen=True)
class SUE:
    """The stages 1 and 2 of SUE, which build the heads a method's run then trains (stage 3).

    ``n_eigenvectors`` spectral dimensions per modality, ``n_components`` CCA dimensions (the joint
    space), ``n_neighbors`` graph neighbours, ``scale_k`` the neighbour whose median distance sets the
    Gaussian scale, ``mmd_hidden`` the width of the stage-3 network. Defaults follow the reference's
    Flickr30k configuration (30 clusters/eigenvectors, 8 components, 30 neighbours, scale 15, width 32).
    """

    n_eigenvectors: int = 30
    n_components: int = 8
    n_neighbors: int = 30
    scale_k: int = 15
    mmd_hidden: int = 32

    def __post_init__(self) -> None:
        for name in ("n_eigenvectors", "n_components", "n_neighbors", "scale_k", "mmd_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SUE: {name} must be a positive integer, got {value!r}")
        if self.n_components > self.n_eigenvectors:
            raise ValueError(f"SUE: n_components ({self.n_components}) cannot exceed n_eigenvectors "
                             f"({self.n_eigenvectors})")

    def options(self) -> dict[str, int]:
        """The settings, for the run key and ``run.json``."""
        return {"n_eigenvectors": self.n_eigenvectors, "n_components": self.n_components,
                "n_neighbors": self.n_neighbors, "scale_k": self.scale_k, "mmd_hidden": self.mmd_hidden}

    def search_space(self) -> dict[str, list[int]]:
        """What validation selects among (with the learning rate of stage 3), the defaults included."""
        return {"n_eigenvectors": [30, 60], "n_components": [8, 16, 30], "n_neighbors": [15, 30]}

    def build_heads(self, rows_a: np.ndarray, rows_b: np.ndarray, pairs: np.ndarray, seed: int
                    ) -> tuple[SUEHead, SUEHead, dict[str, Any]]:
        """Stages 1 and 2 from the training features of each modality (``rows_a [Na, Da]``, ``rows_b
        [Nb, Db]``: every row the split lets the method see) and ``pairs [P, 2]`` (row of A, row of B).
        Returns the two heads and what was fitted (for ``run.json``)."""
        from sklearn.cross_decomposition import CCA

        if len(pairs) <= self.n_components:
            raise NotApplicable(f"SUE fits its CCA on the pairs: {len(pairs)} pairs cannot give "
                                f"{self.n_components} components (it needs at least {self.n_components + 1})")
        heads = []
        for side, rows in (("a", rows_a), ("b", rows_b)):
            head = SUEHead(len(rows), rows.shape[1], self.n_eigenvectors, self.n_neighbors, self.n_components,
                           self.mmd_hidden if side == "a" else 0)
            head.spectral = SpectralMap.fit(rows, self.n_eigenvectors, self.n_neighbors, self.scale_k, seed)
            heads.append(head)
        with torch.inference_mode():
            sa = heads[0].spectral(torch.from_numpy(np.ascontiguousarray(rows_a[pairs[:, 0]], np.float32))).numpy()
            sb = heads[1].spectral(torch.from_numpy(np.ascontiguousarray(rows_b[pairs[:, 1]], np.float32))).numpy()
        cca = CCA(n_components=self.n_components, scale=False, max_iter=1000).fit(sa, sb)
        for head, s, rotation in ((heads[0], sa, cca.x_rotations_), (heads[1], sb, cca.y_rotations_)):
            head.cca_mean.copy_(torch.from_numpy(s.mean(axis=0)))
            head.cca_rotation.copy_(torch.from_numpy(np.asarray(rotation, np.float32)))
        if heads[0].mmd_net is not None:
            torch.manual_seed(seed)
            for layer in heads[0].mmd_net:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
        za, zb = cca.transform(sa, sb)
        corr = [float(np.corrcoef(za[:, c], zb[:, c])[0, 1]) for c in range(self.n_components)]
        info = {"sue": {**self.options(), "n_rows_a": int(len(rows_a)), "n_rows_b": int(len(rows_b)),
                        "n_pairs": int(len(pairs)), "sigma_a": float(heads[0].spectral.sigma),
                        "sigma_b": float(heads[1].spectral.sigma),
                        "eigenvalues_a": [round(float(v), 5) for v in heads[0].spectral.mu],
                        "eigenvalues_b": [round(float(v), 5) for v in heads[1].spectral.mu],
                        "cca_train_correlations": [round(c, 4) for c in corr]}}
        return heads[0], heads[1], info
