"""The seam between a domain and the engine: :class:`AlignmentTask`, one alignment problem's data and scoring."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from gentleclip.validation import ValidationSet

EmbedFn = Callable[[np.ndarray], np.ndarray]

#: Options of :func:`gentleclip.keywords.extract_keywords` an :class:`AlignmentTask` may set
#: through ``keyword_options`` (stop words go in ``keyword_stop_words``).
KEYWORD_OPTIONS = ("min_df", "max_keywords", "bigrams", "min_length", "drop_numeric")


@dataclass
class AlignmentTask:
    """Everything the core needs from a domain to train and score one alignment problem.

    ``train_a[i]`` and ``train_b[i]`` are the cached features ``[N, V, D]`` of the two halves of
    training item ``i`` (the true pair). ``groups`` (optional, length N) keeps similar items on
    one side of every split. ``extra_unpaired_b`` holds B-only items (e.g. captions without
    images) that only ever enter the unpaired-B pool. ``evaluate(embed_a, embed_b)`` scores the
    joint space: ``embed_*`` map feature arrays ``[n, D]`` to joint-space arrays ``[n, d]``, and
    it returns rows ``{"task", "dataset", "metric", "value"}``. ``joint_space`` (optional) holds
    held-out features ``(a [n, Da], b [n, Db], labels or None)`` of true pairs, drawn after training
    as a 2-D projection of the joint space (first seed of each method and ratio).

    Keyword pseudo-labels (methods with ``uses_keywords``, e.g. ``s-clip``) need the texts of the
    B side: ``b_texts[i]`` is the caption of item ``i`` (a str) or its captions (a list of str);
    ``encode_b_texts(list[str]) -> [n, Db]`` gives the view-0 features of the frozen B encoder for
    any strings (it embeds the keywords). Keywords are extracted from the captions of the *paired*
    items of each split only (:func:`gentleclip.keywords.extract_keywords` with the built-in English
    stop words plus ``keyword_stop_words``, the dataset's own uninformative words such as "image"
    or "protein", and ``keyword_options``: ``min_df`` (default 2), ``max_keywords`` (default 1000),
    ``bigrams``, ``min_length``, ``drop_numeric``).
    """

    name: str
    dataset: str
    train_a: np.ndarray
    train_b: np.ndarray
    evaluate: Callable[[EmbedFn, EmbedFn], list[dict]]
    encoders: dict[str, str] = field(default_factory=dict)
    groups: np.ndarray | None = None
    extra_unpaired_b: np.ndarray | None = None
    modality_names: tuple[str, str] = ("a", "b")
    joint_space: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
    b_texts: Sequence[str | Sequence[str]] | None = None
    encode_b_texts: Callable[[list[str]], np.ndarray] | None = None
    keyword_stop_words: tuple[str, ...] = ()
    keyword_options: dict[str, Any] = field(default_factory=lambda: {"min_df": 2, "max_keywords": 1000})
    validation: "ValidationSet | None" = None
    train_labels: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label, arr in (("train_a", self.train_a), ("train_b", self.train_b)):
            if arr.ndim != 3:
                raise ValueError(f"AlignmentTask {self.name!r}: {label} must be [N, V, D], got shape {arr.shape}")
        if len(self.train_a) != len(self.train_b):
            raise ValueError(
                f"AlignmentTask {self.name!r}: train_a has {len(self.train_a)} items but train_b has "
                f"{len(self.train_b)}; row i of each must be the same item"
            )
        if self.train_labels is not None and len(self.train_labels) != len(self.train_a):
            raise ValueError(f"AlignmentTask {self.name!r}: train_labels has {len(self.train_labels)} entries for "
                             f"{len(self.train_a)} items")
        if self.groups is not None and len(self.groups) != len(self.train_a):
            raise ValueError(
                f"AlignmentTask {self.name!r}: groups has {len(self.groups)} entries for {len(self.train_a)} items"
            )
        if self.b_texts is not None:
            if isinstance(self.b_texts, str) or not hasattr(self.b_texts, "__len__"):
                raise ValueError(f"AlignmentTask {self.name!r}: b_texts must be a list with one caption (str) or "
                                 f"list of captions per training item, got {type(self.b_texts).__name__}")
            if len(self.b_texts) != len(self.train_b):
                raise ValueError(f"AlignmentTask {self.name!r}: b_texts has {len(self.b_texts)} entries for "
                                 f"{len(self.train_b)} training items (row i of train_b)")
            for i, doc in enumerate(self.b_texts):
                if not (isinstance(doc, str) or (isinstance(doc, (list, tuple))
                                                 and all(isinstance(c, str) for c in doc))):
                    raise ValueError(f"AlignmentTask {self.name!r}: b_texts[{i}] must be a str or a list of str, "
                                     f"got {type(doc).__name__}")
        if self.encode_b_texts is not None and not callable(self.encode_b_texts):
            raise ValueError(f"AlignmentTask {self.name!r}: encode_b_texts must be callable (list[str] -> [n, Db])")
        if isinstance(self.keyword_stop_words, str):
            raise ValueError(f"AlignmentTask {self.name!r}: keyword_stop_words must be a sequence of words, "
                             f"not one string")
        self.keyword_stop_words = tuple(self.keyword_stop_words)
        for w in self.keyword_stop_words:
            if not isinstance(w, str):
                raise ValueError(f"AlignmentTask {self.name!r}: keyword_stop_words must be str, got {w!r}")
        unknown = sorted(set(self.keyword_options) - set(KEYWORD_OPTIONS))
        if unknown:
            raise ValueError(f"AlignmentTask {self.name!r}: unknown keyword_options {unknown}; allowed: "
                             f"{list(KEYWORD_OPTIONS)} (stop words go in keyword_stop_words)")

    @property
    def has_keyword_texts(self) -> bool:
        """True when the task can give keyword pseudo-labels (``b_texts`` and ``encode_b_texts`` set)."""
        return self.b_texts is not None and self.encode_b_texts is not None

