"""Keyword vocabularies from free text, for keyword-level pseudo-labels (S-CLIP, arXiv 2305.14095).

Domain-agnostic: a keyword is a lower-case word token (optionally an adjacent word pair) that is
not a stop word and occurs in at least ``min_df`` documents. A *document* is one item: either a
single text, or the list of all captions of that item (its keywords are then the union over its
captions, and it counts once towards document frequency). Build the vocabulary from the *paired*
captions only, so that no text of an unpaired item leaks into training.

    >>> vocab = extract_keywords(["A river next to a forest", "a forest road", "dense forest"], min_df=1)
    >>> vocab.keywords[:2]
    ['forest', 'dense']
    >>> vocab.multi_hot([["a road", "the river"]]).astype(int).tolist()
    [[0, 0, 1, 1]]
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

__all__ = ["ENGLISH_STOP_WORDS", "tokenize", "KeywordVocabulary", "extract_keywords"]

#: Built-in English stop words (function words, pronouns, auxiliaries, common adverbs).
ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above across after afterwards again against all almost alone along already also although
    always am among amongst an and another any anyhow anyone anything anyway anywhere are around as at
    be became because become becomes becoming been before beforehand behind being below beside besides
    between beyond both but by can cannot could did do does doing done down during each either else
    elsewhere enough etc even ever every everyone everything everywhere except few for former formerly
    from further had has have having he hence her here hereafter hereby herein hereupon hers herself him
    himself his how however i ie if in indeed into is it its itself just latter latterly least less
    many may me meanwhile might mine more moreover most mostly much must my myself namely neither never
    nevertheless next no nobody none noone nor not nothing now nowhere of off often on once one only
    onto or other others otherwise our ours ourselves out over own per perhaps please rather same
    several she should since so some somehow someone something sometime sometimes somewhere still such
    than that the their theirs them themselves then thence there thereafter thereby therefore therein
    thereupon these they this those though through throughout thru thus to together too toward towards
    under until up upon us very via was we well were what whatever when whence whenever where whereafter
    whereas whereby wherein whereupon wherever whether which while whither who whoever whole whom whose
    why will with within without would yet you your yours yourself yourselves
    """.split()
)

_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*")

Document = Union[str, Sequence[str]]


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of ``text``: runs of letters/digits, hyphenated compounds kept whole
    (``"ATP-binding site"`` -> ``["atp-binding", "site"]``); other punctuation separates tokens."""
    if not isinstance(text, str):
        raise ValueError(f"tokenize expects a str, got {type(text).__name__}")
    return _TOKEN.findall(text.lower())


def _captions(doc: Document, index: int) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, (bytes, bytearray)) or not isinstance(doc, Iterable):
        raise ValueError(f"text #{index}: expected a str or a sequence of str (the item's captions), "
                         f"got {type(doc).__name__}")
    captions = list(doc)
    for j, c in enumerate(captions):
        if not isinstance(c, str):
            raise ValueError(f"text #{index}, caption #{j}: expected a str, got {type(c).__name__}")
    return captions


@dataclass(frozen=True)
class KeywordVocabulary:
    """An ordered keyword list plus the tokenisation settings needed to apply it to new texts.

    ``keywords`` are ordered by decreasing document frequency, ties alphabetically; keyword ``k``
    is column ``k`` of :meth:`multi_hot`. Bigram keywords are the two words joined by one space.
    """

    keywords: list[str]
    document_frequency: list[int]
    stop_words: frozenset[str] = field(repr=False)
    min_length: int = 2
    drop_numeric: bool = True
    bigrams: bool = False
    n_documents: int = 0
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.keywords) != len(self.document_frequency):
            raise ValueError(
                f"KeywordVocabulary: {len(self.keywords)} keywords but {len(self.document_frequency)} frequencies"
            )
        index = {k: i for i, k in enumerate(self.keywords)}
        if len(index) != len(self.keywords):
            raise ValueError("KeywordVocabulary: keywords must be unique")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.keywords)

    def __contains__(self, keyword: object) -> bool:
        return keyword in self._index

    def index(self, keyword: str) -> int:
        """Column of ``keyword`` in :meth:`multi_hot`; unknown keywords raise a ValueError."""
        try:
            return self._index[keyword]
        except KeyError:
            raise ValueError(f"{keyword!r} is not in the keyword vocabulary ({len(self)} keywords)") from None

    def terms(self, text: str) -> set[str]:
        """Candidate terms of one text under this vocabulary's settings (before vocabulary lookup)."""
        return _terms(tokenize(text), self.stop_words, self.min_length, self.drop_numeric, self.bigrams)

    def keywords_of(self, doc: Document) -> list[str]:
        """Vocabulary keywords found in one document (a text or an item's captions), in vocabulary order."""
        found = set().union(*(self.terms(c) for c in _captions(doc, 0)))
        return [k for k in self.keywords if k in found]

    def multi_hot(self, texts: Sequence[Document]) -> np.ndarray:
        """``[n, K]`` bool matrix: row ``i`` marks the keywords of document ``i``.

        A document given as a sequence of captions gets the union of its captions' keywords.
        """
        if isinstance(texts, str):
            raise ValueError("multi_hot expects a sequence of documents, got a single str; wrap it in a list")
        docs = list(texts)
        out = np.zeros((len(docs), len(self.keywords)), dtype=bool)
        for i, doc in enumerate(docs):
            cols = [self._index[t] for c in _captions(doc, i) for t in self.terms(c) if t in self._index]
            out[i, cols] = True
        return out

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (:meth:`from_dict` inverts it)."""
        return {
            "keywords": list(self.keywords),
            "document_frequency": [int(x) for x in self.document_frequency],
            "stop_words": sorted(self.stop_words),
            "min_length": self.min_length,
            "drop_numeric": self.drop_numeric,
            "bigrams": self.bigrams,
            "n_documents": self.n_documents,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "KeywordVocabulary":
        """Inverse of :meth:`to_dict`."""
        missing = {"keywords", "document_frequency", "stop_words"} - set(d)
        if missing:
            raise ValueError(f"KeywordVocabulary.from_dict: missing keys {sorted(missing)}")
        return cls(
            keywords=list(d["keywords"]),
            document_frequency=[int(x) for x in d["document_frequency"]],
            stop_words=frozenset(d["stop_words"]),
            min_length=int(d.get("min_length", 2)),
            drop_numeric=bool(d.get("drop_numeric", True)),
            bigrams=bool(d.get("bigrams", False)),
            n_documents=int(d.get("n_documents", 0)),
        )

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "KeywordVocabulary":
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: not a keyword vocabulary file ({exc})") from exc


def _is_word(token: str, stop_words: frozenset[str], min_length: int, drop_numeric: bool) -> bool:
    if len(token) < min_length or token in stop_words:
        return False
    if drop_numeric and token.replace("-", "").isdigit():
        return False
    return True


def _terms(
    tokens: list[str], stop_words: frozenset[str], min_length: int, drop_numeric: bool, bigrams: bool
) -> set[str]:
    ok = [_is_word(t, stop_words, min_length, drop_numeric) for t in tokens]
    terms = {t for t, keep in zip(tokens, ok) if keep}
    if bigrams:
        terms.update(f"{tokens[i]} {tokens[i + 1]}" for i in range(len(tokens) - 1) if ok[i] and ok[i + 1])
    return terms


def extract_keywords(
    texts: Sequence[Document],
    stop_words: Iterable[str] | None = None,
    min_df: int = 2,
    max_keywords: int | None = None,
    bigrams: bool = False,
    min_length: int = 2,
    drop_numeric: bool = True,
    use_builtin_stop_words: bool = True,
) -> KeywordVocabulary:
    """Build a keyword vocabulary from documents (texts, or per-item lists of captions).

    Args:
        texts: one entry per document; a str, or a sequence of str (an item's captions, united).
        stop_words: extra stop words (case-insensitive), added to the built-in English list.
        min_df: minimum number of documents a keyword must occur in (>= 1).
        max_keywords: keep only the ``max_keywords`` most frequent keywords (``None``: all).
        bigrams: also count adjacent word pairs whose two words are both kept (``"tennis court"``).
        min_length: shortest token kept, in characters.
        drop_numeric: drop tokens made only of digits (and hyphens).
        use_builtin_stop_words: include :data:`ENGLISH_STOP_WORDS`.

    Returns:
        A :class:`KeywordVocabulary`, keywords ordered by decreasing document frequency, ties
        alphabetically (deterministic for a given input, whatever the input order).
    """
    if isinstance(texts, str):
        raise ValueError("extract_keywords expects a sequence of documents, got a single str; wrap it in a list")
    if int(min_df) != min_df or min_df < 1:
        raise ValueError(f"min_df must be an integer >= 1 (a document count), got {min_df!r}")
    if max_keywords is not None and (int(max_keywords) != max_keywords or max_keywords < 0):
        raise ValueError(f"max_keywords must be a non-negative integer or None, got {max_keywords!r}")
    if int(min_length) != min_length or min_length < 1:
        raise ValueError(f"min_length must be an integer >= 1, got {min_length!r}")
    extra = []
    for w in stop_words or ():
        if not isinstance(w, str):
            raise ValueError(f"stop words must be str, got {type(w).__name__}")
        extra.append(w.lower())
    stops = (ENGLISH_STOP_WORDS if use_builtin_stop_words else frozenset()) | frozenset(extra)
    df: Counter[str] = Counter()
    n_docs = 0
    for i, doc in enumerate(texts):
        n_docs += 1
        found: set[str] = set()
        for caption in _captions(doc, i):
            found |= _terms(tokenize(caption), stops, int(min_length), drop_numeric, bigrams)
        df.update(found)
    ranked = sorted((k for k, c in df.items() if c >= min_df), key=lambda k: (-df[k], k))
    if max_keywords is not None:
        ranked = ranked[: int(max_keywords)]
    return KeywordVocabulary(
        keywords=ranked,
        document_frequency=[df[k] for k in ranked],
        stop_words=stops,
        min_length=int(min_length),
        drop_numeric=bool(drop_numeric),
        bigrams=bool(bigrams),
        n_documents=n_docs,
    )
