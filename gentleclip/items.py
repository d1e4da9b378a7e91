"""Raw items where features would be: how a domain's task carries protein sequences, image files or
captions instead of cached features, for end-to-end training (``gentleclip train --finetune``).

An *item array* is a numpy object array shaped like a feature array with a feature width of one:
``[N, V, 1]`` for training items (every view holds the item itself: views are made online by the
encoder's ``collate``), ``[n, 1]`` for evaluation items. A domain adapter in raw-item mode hands
out item arrays wherever it would hand out features, so the task, its validation set and its
evaluation code stay the same; :func:`gentleclip.run.embed_fn` then sends items through the
(fine-tuned) encoder and the head, features through the head alone.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["item_array", "is_item_array", "items_of"]


def item_array(items: Sequence[Any], n_views: int | None = 1) -> np.ndarray:
    """``[N, n_views, 1]`` object array of ``items`` (``n_views=None``: ``[N, 1]``)."""
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out if n_views is None else np.repeat(out[:, None, :], int(n_views), axis=1)


def is_item_array(x: Any) -> bool:
    """True for an object array of raw items (not features)."""
    return isinstance(x, np.ndarray) and x.dtype == object


def items_of(x: np.ndarray) -> list:
    """The items of an ``[n, 1]`` item array (or ``[n, V, 1]``: view 0) as a list."""
    x = np.asarray(x, dtype=object)
    if x.ndim == 3:
        x = x[:, 0]
    if x.ndim != 2 or x.shape[1] != 1:
        raise ValueError(f"items_of: expected an item array [n, 1] or [n, V, 1], got shape {x.shape}")
    return list(x[:, 0])
