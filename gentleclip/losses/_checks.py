"""Input checks and small helpers shared by the losses (private): one shape check for every loss."""
from __future__ import annotations

import operator

import torch
from torch import Tensor

__all__ = ["check_embeddings", "check_rows", "check_same_dim", "check_n_paired", "upcast", "zero_with_graph"]


def check_rows(name: str, x: Tensor, label: str = "input", allow_empty: bool = True, floating: bool = True) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``x`` is a 2-D tensor ``[rows, dim]``, of floating
    point unless ``floating=False`` (e.g. a multi-hot matrix), and non-empty unless ``allow_empty``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected torch tensors, got {type(x).__name__} as the {label}")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected 2-D tensors [rows, dim], got shape {tuple(x.shape)} as the {label}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name}: expected floating-point tensors, got {x.dtype} as the {label}")
    if not allow_empty and x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got an empty {label} {tuple(x.shape)}")


def check_same_dim(name: str, x: Tensor, y: Tensor, label_x: str, label_y: str) -> None:
    """Raise a ``ValueError`` naming ``name`` unless the rows of ``x`` and ``y`` have the same width."""
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{name}: {label_x} and {label_y} must have the same dim, got {x.shape[1]} and {y.shape[1]}")


def check_embeddings(za: Tensor, zb: Tensor, name: str, *, same_rows: bool = False, allow_empty: bool = False) -> None:
    """Raise a ``ValueError`` unless ``za`` and ``zb`` are 2-D float tensors of equal width (non-empty
    unless ``allow_empty``). ``name`` is the loss named in the message; ``same_rows=True`` also
    requires equal row counts."""
    for label, z in (("first input", za), ("second input", zb)):
        check_rows(name, z, label, allow_empty)
    if za.shape[1] != zb.shape[1]:
        raise ValueError(f"{name}: both inputs must have the same dim, got {za.shape[1]} and {zb.shape[1]}")
    if same_rows and za.shape[0] != zb.shape[0]:
        raise ValueError(f"{name}: both inputs must have the same number of rows, got {za.shape[0]} and {zb.shape[0]}")


def check_n_paired(n_paired: int, za: Tensor, zb: Tensor, name: str) -> int:
    """Return ``n_paired`` as an int after checking ``0 <= n_paired <= min(len(za), len(zb))``."""
    try:
        n = operator.index(n_paired)
    except TypeError:
        raise ValueError(f"{name}: n_paired must be an integer, got {n_paired!r}") from None
    limit = min(za.shape[0], zb.shape[0])
    if n < 0 or n > limit:
        raise ValueError(
            f"{name}: n_paired must be in [0, {limit}] (rows of za: {za.shape[0]}, rows of zb: {zb.shape[0]}), got {n}"
        )
    return n


def upcast(x: Tensor) -> Tensor:
    """``x`` in float32 when it is half or bfloat16 (numerically sensitive losses), else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def zero_with_graph(*tensors: Tensor) -> Tensor:
    """An exact 0-dim zero that depends on ``tensors`` (so ``backward`` works and gives zero gradients)."""
    total = tensors[0].sum() * 0.0
    for t in tensors[1:]:
        total = total + t.sum() * 0.0
    return total
