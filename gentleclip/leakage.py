"""Keep extra unpaired data from leaking the task's own items into training.

Extra caption-only sets are not independent of the task's dataset: RSITMD, for one, re-uses RSICD
images and captions, so its "unpaired" captions include RSICD test captions and the true captions of
images in the unpaired-A pool. :func:`filter_unpaired_groups` drops, after normalising case,
punctuation and white space (:func:`normalize_text`):

* every extra text equal to any text of the task's dataset (all splits), and
* every extra group (the captions of one extra item) sharing ``min_shared`` or more texts with
  the texts of one item of the task, whole.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any, Sequence

import numpy as np

__all__ = ["normalize_text", "filter_unpaired_groups"]

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower case, Unicode NFKC, punctuation removed, runs of white space folded to one space."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def filter_unpaired_groups(
    groups: Sequence[Sequence[str]],
    reference_groups: Sequence[Sequence[str]],
    min_shared: int = 2,
) -> tuple[list[list[str]], np.ndarray, dict[str, Any]]:
    """The extra groups that may join the unpaired pool, and what was removed.

    Args:
        groups: the extra items, each a list of its texts (one caption, or the captions of an image).
        reference_groups: every item of the task's dataset (all splits), each a list of its texts.
        min_shared: an extra group sharing this many distinct normalised texts with one reference
            item is dropped whole.

    Returns:
        ``(kept, index, report)``: the kept groups (each without its texts equal to a task text),
        their indices in ``groups``, and the counts ``n_groups``, ``n_texts``,
        ``n_groups_removed_copy`` (groups dropped for sharing ``min_shared`` texts with one item),
        ``n_texts_removed_equal`` (texts of the other groups equal to a task text),
        ``n_groups_removed_empty`` (groups with no text left), ``n_groups_kept``, ``n_texts_kept``.
    """
    if min_shared < 1:
        raise ValueError(f"filter_unpaired_groups: min_shared must be >= 1, got {min_shared}")
    owner: dict[str, list[int]] = {}
    for j, ref in enumerate(reference_groups):
        for t in {normalize_text(x) for x in ref}:
            owner.setdefault(t, []).append(j)
    kept: list[list[str]] = []
    index: list[int] = []
    n_copy = n_equal = n_empty = n_texts = 0
    for i, group in enumerate(groups):
        norm = [normalize_text(t) for t in group]
        n_texts += len(norm)
        shared = Counter(j for t in set(norm) for j in owner.get(t, ()))
        if shared and max(shared.values()) >= min_shared:
            n_copy += 1
            continue
        left = [t for t, n in zip(group, norm) if n not in owner]
        n_equal += len(group) - len(left)
        if not left:
            n_empty += 1
            continue
        kept.append(left)
        index.append(i)
    report = {"n_groups": len(groups), "n_texts": n_texts, "min_shared": min_shared,
              "n_groups_removed_copy": n_copy, "n_texts_removed_equal": n_equal,
              "n_groups_removed_empty": n_empty, "n_groups_kept": len(kept),
              "n_texts_kept": sum(len(g) for g in kept)}
    return kept, np.asarray(index, dtype=np.int64), report
