"""``ProteinAdapter``: the one object a protein benchmark or notebook needs.

Example::

    from domains.protein import ProteinAdapter
    from gentleclip.app.grid import run_grid

    adapter = ProteinAdapter(encoder="kmer", cache_dir="cache/")        # offline default
    task = adapter.scl2205_task()                                       # AlignmentTask
    results = run_grid(task, ["clip", "gentle"], [0.01, 0.1], [0], train_config, "out/")

    adapter = ProteinAdapter(encoder="esm2_t6_8M_UR50D", data_dir="my_uniprot_files/")
    task = adapter.uniprot_task()                                       # sequence <-> function text

It gives the two frozen encoders (:attr:`ProteinAdapter.protein_encoder`,
:attr:`ProteinAdapter.text_encoder`), the datasets with their splits (:meth:`scl2205`,
:meth:`uniprot`), features through the on-disk :class:`gentleclip.cache.FeatureCache` (a rerun
reuses them), and two :class:`~gentleclip.task.AlignmentTask` s:

**SCL2205** (:meth:`scl2205_task`; offline, data shipped by ``p-scldata``). A = sequences, B = a
sentence generated from the location label (SCL2205 has no free text; see
:mod:`domains.protein.datasets.scl2205` for why and how leakage is avoided). Training items: the SCL2205
``train`` split (optionally subsampled to ``max_train``). Validation (model selection only): the
``eval`` split. Evaluation: the ``heldout`` split. With ``leak_filter=True`` validation and heldout
proteins in a sequence cluster that holds a training protein are removed (clusters: MMseqs2 at
``cluster_identity``, default 30 % identity, or the k-mer Jaccard alternative, see
``cluster_method``). Metrics: zero-shot localisation against
ProtST's 10 location prompts (SCL labels mapped by :data:`~domains.protein.locations.SCL_TO_PROTST`;
the two labels without a single ProtST class are left out of this score), linear-probe and k-NN
accuracy over the 13 labels (fitted on up to ``probe_max_train`` training proteins), k-means
clustering vs the 13 labels (of the proteins alone, and ``joint_*`` of proteins and sentences
together, as arXiv 2601.18525 scores group-level semantics), and modality-gap metrics of the heldout
(protein, sentence) pairs. The validation metric is zero-shot top-1 on the ``eval`` proteins.

**UniProt / FASTA** (:meth:`uniprot_task`). A = sequences, B = the text of ``text_fields``
(default: the FUNCTION comment). Records without that text are dropped (reported). Groups of
similar sequences are computed over all records; a group-aware split holds out ``test_fraction``
of them for test and ``val_fraction`` of the rest for validation (mean recall). Metrics on the test split:
protein<->text retrieval (``p2t_R@k``,
``t2p_R@k``, ``mean_recall``), zero-shot localisation (records whose SUBCELLULAR LOCATION maps to
one ProtST class), location probe / k-NN / clustering when at least two classes are present, and
modality-gap metrics.
"""
from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gentleclip.cache import FeatureCache, FeatureEncoder, fingerprint
from gentleclip.evaluate import joint_clustering_metrics, zero_shot_metrics
from gentleclip.io import atomic_path
from gentleclip.items import item_array
from gentleclip.leakage import filter_unpaired_groups
from gentleclip.task import AlignmentTask, EmbedFn
from gentleclip.validation import ValidationSet

from ._problems import ProteinDataWarning
from .clustering import cluster_sequences, group_split
from .datasets import load_scl2205, location_sentence, read_uniprot
from .evaluation import (
    location_clustering,
    modality_gap,
    probe_metrics,
    protein_text_retrieval,
    to_rows,
    zero_shot_localisation,
)
from .fasta import read_fasta
from .kmer import KmerEncoder
from .locations import SCL_TO_PROTST, protst_label_of_location, protst_prompts
from .reactions import ec_class_labels, find_reaction_prompts, read_reaction_prompts
from .records import ProteinRecord
from .textio import base_suffix, strip_compression

__all__ = ["ProteinAdapter", "ProteinDataset", "make_protein_encoder"]

_KMER_SPEC = re.compile(r"^kmer(?P<k>[1-4])?(?:-h(?P<h>\d+))?$")
_FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas")
_TABLE_SUFFIXES = (".tsv", ".csv", ".tab")


def _starts_like_fasta(path: Path) -> bool:
    """True when the (possibly compressed) file's first non-blank character is a FASTA '>'."""
    from .textio import open_text

    try:
        with open_text(path) as fh:
            head = fh.read(256).lstrip()
    except (OSError, EOFError, ValueError):
        return False
    return head.startswith(">")


_HF_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")  # owner/name of a Hugging Face checkpoint


def make_protein_encoder(spec: str | os.PathLike | FeatureEncoder, device: str | None = None,
                         **esm_kwargs: Any) -> FeatureEncoder:
    """Build a protein encoder from a spec.

    * a :class:`~gentleclip.cache.FeatureEncoder` -> returned as is;
    * ``"kmer"`` -> ``KmerEncoder(k=3)`` (8,420 dims); ``"kmer2"`` -> ``k=2``;
      ``"kmer3-h1024"`` -> ``k=3, hash_dim=1024`` (the pattern of ``KmerEncoder.name``);
    * a transformers checkpoint (a folder with ``config.json``, or a ``owner/name`` hub name such as
      ``"facebook/esm2_t6_8M_UR50D"``) -> ``HFESMEncoder(spec, device=device, **esm_kwargs)``;
    * anything else -> ``ESMEncoder(spec, device=device, **esm_kwargs)`` (fair-esm hub name or checkpoint path).
    """
    if isinstance(spec, FeatureEncoder) and not isinstance(spec, (str, os.PathLike)):
        return spec
    text = os.fspath(spec)
    m = _KMER_SPEC.match(text)
    if m:
        return KmerEncoder(k=int(m.group("k") or 3), hash_dim=int(m.group("h")) if m.group("h") else None)
    path = Path(text).expanduser()
    if (path.is_dir() and (path / "config.json").is_file()) or (
            not path.exists() and not text.endswith(".pt") and _HF_NAME.match(text)):
        from .hf_esm_encoder import HFESMEncoder

        return HFESMEncoder(text, device=device, **esm_kwargs)
    from .esm_encoder import ESMEncoder

    return ESMEncoder(text, device=device, **esm_kwargs)


@dataclass
class ProteinDataset:
    """Records with their paired texts and a train/test split.

    Attributes:
        name: dataset name (``"SCL2205"``, ``"UniProt"``...).
        records: all records.
        texts: the paired text of each record (same order).
        train: indices of the training items (after ``max_train`` subsampling).
        test: indices of the evaluation items (after the leak filter).
        val: indices of the validation items (model selection only; after the leak filter).
        groups: near-identical-sequence group id of every record.
        removed_from_test: test indices dropped because their group holds a training record.
        info: counts and settings, for reports.
    """

    name: str
    records: list[ProteinRecord]
    texts: list[str]
    train: np.ndarray
    test: np.ndarray
    groups: np.ndarray
    removed_from_test: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    info: dict[str, Any] = field(default_factory=dict)

    def sequences(self, idx: Sequence[int] | np.ndarray) -> list[str]:
        """Sequences of the records at ``idx``."""
        return [self.records[int(i)].sequence for i in idx]

    def labels(self, idx: Sequence[int] | np.ndarray) -> list[str | None]:
        """Labels of the records at ``idx``."""
        return [self.records[int(i)].label for i in idx]


#: Words of protein descriptions that name no content, passed to S-CLIP's keyword extraction.
PROTEIN_KEYWORD_STOP_WORDS: tuple[str, ...] = (
    "protein", "proteins", "found", "located", "localized", "localised", "also", "may", "involved",
    "probably", "plays", "role", "required", "this",
)


class ProteinAdapter:
    """Protein encoders, datasets, features and alignment tasks (see module docstring).

    Args:
        encoder: ``"kmer"`` (default, offline), ``"kmer2"``, ``"kmer3-h1024"``, an ESM hub name
            (``"esm2_t6_8M_UR50D"`` ... ``"esm2_t33_650M_UR50D"``), a checkpoint path, or any
            FeatureEncoder (e.g. a configured ``ESMEncoder``).
        text_encoder: a FeatureEncoder for texts; None = ``TextEncoder()`` (offline all-MiniLM-L6-v2).
        cache_dir: FeatureCache folder (None: ``$GENTLECLIP_CACHE`` or ``~/.cache/gentleclip/features``).
        data_dir: UniProt flat files (file or folder, read recursively), or a FASTA with a TSV/CSV of
            descriptions (a ``.fasta`` path, or a folder holding one FASTA and one table), for
            :meth:`uniprot_task`.
        n_views: views per training item (1 = clean only; 2 = clean + one augmentation).
        max_train: subsample the training items to at most this many (seeded); None = all.
        max_test: subsample the evaluation items (quick runs; seeded); None = all.
        seed: seed of subsampling and splits.
        text_fields: record fields joined into the paired text of :meth:`uniprot_task`.
        test_fraction: held-out fraction (by group) of :meth:`uniprot_task`.
        val_fraction: validation fraction (by group) of the remaining proteins of :meth:`uniprot_task`.
        cluster_method: ``"mmseqs"`` (default: MMseqs2 sequence-identity clusters, see
            :mod:`domains.protein.mmseqs`) or ``"kmer"`` (MinHash k-mer Jaccard groups,
            :func:`cluster_sequences`, no extra binary).
        cluster_identity: minimum sequence identity of an MMseqs2 cluster (default 0.3).
        cluster_threshold: Jaccard threshold of the ``"kmer"`` groups.
        leak_filter: drop SCL2205 validation and heldout proteins whose group holds a training protein.
        prompt_set, prompt_field: ProtST prompts for zero-shot (see :func:`protst_prompts`).
        prompts_dir: read ProtST's ``subloc_*.tsv`` from here instead of the embedded copy.
        ec_prompts_dir: ProtST's ``reaction_*.tsv`` folder (:mod:`domains.protein.reactions`): adds
            zero-shot EC reaction classification (``ec_zeroshot_*``) to :meth:`uniprot_task`, on the
            test proteins with exactly one EC number among ProtST's 384 classes. None: not scored.
        ec_prompt_set: which ``reaction_{name,language,template}.tsv`` gives the prompts.
        probe_max_train: training proteins used to fit the linear probe / k-NN.
        device: torch device of the default encoders.
        on_error: ``"raise"`` or ``"skip"`` for bad records in user data.
        chunk_size: items per encoder call / resumable cache unit.
        esm_kwargs: extra ``ESMEncoder`` arguments when ``encoder`` is an ESM name or path.
        raw_items: hand out the sequences and texts themselves (item arrays, :mod:`gentleclip.items`)
            where features would be, for end-to-end training; nothing is encoded or cached.
    """

    #: the registered domain (:mod:`gentleclip.domain`) this adapter belongs to
    domain = "protein"

    def __init__(
        self,
        encoder: str | os.PathLike | FeatureEncoder = "kmer",
        text_encoder: FeatureEncoder | None = None,
        cache_dir: str | os.PathLike | None = None,
        data_dir: str | os.PathLike | None = None,
        n_views: int = 2,
        max_train: int | None = None,
        max_test: int | None = None,
        seed: int = 0,
        text_fields: Sequence[str] = ("function",),
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        cluster_method: str = "mmseqs",
        cluster_identity: float = 0.3,
        cluster_threshold: float = 0.3,
        leak_filter: bool = True,
        prompt_set: str = "language",
        prompt_field: str = "name",
        prompts_dir: str | os.PathLike | None = None,
        ec_prompts_dir: str | os.PathLike | None = None,
        ec_prompt_set: str = "language",
        probe_max_train: int = 5000,
        device: str | None = None,
        on_error: str = "raise",
        chunk_size: int = 2048,
        esm_kwargs: dict[str, Any] | None = None,
        raw_items: bool = False,
    ) -> None:
        if n_views < 1:
            raise ValueError(f"ProteinAdapter: n_views must be >= 1, got {n_views}")
        self.raw_items = bool(raw_items)
        if max_train is not None and max_train < 2:
            raise ValueError(f"ProteinAdapter: max_train must be None or >= 2, got {max_train}")
        self._encoder_spec = encoder
        self._text_encoder = text_encoder
        self._protein_encoder: FeatureEncoder | None = None
        self.cache = FeatureCache(cache_dir)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.n_views = int(n_views)
        self.max_train = max_train
        if max_test is not None and max_test < 2:
            raise ValueError(f"ProteinAdapter: max_test must be None or >= 2, got {max_test}")
        self.max_test = max_test
        self.seed = int(seed)
        self.text_fields = tuple([text_fields] if isinstance(text_fields, str) else text_fields)
        self.test_fraction = float(test_fraction)
        self.val_fraction = float(val_fraction)
        if cluster_method not in ("mmseqs", "kmer"):
            raise ValueError(f"ProteinAdapter: cluster_method must be 'mmseqs' or 'kmer', got {cluster_method!r}")
        self.cluster_method = cluster_method
        self.cluster_identity = float(cluster_identity)
        self.cluster_threshold = float(cluster_threshold)
        self.leak_filter = bool(leak_filter)
        self.class_names, self.class_prompts = protst_prompts(prompt_set, prompt_field, prompts_dir)
        self.prompt_set, self.prompt_field = prompt_set, prompt_field
        self.ec_prompts_dir = None if ec_prompts_dir is None else str(find_reaction_prompts(ec_prompts_dir))
        self.ec_classes, self.ec_prompts = (read_reaction_prompts(self.ec_prompts_dir, ec_prompt_set)
                                            if self.ec_prompts_dir is not None else ([], []))
        self.probe_max_train = int(probe_max_train)
        self.device = device
        self.on_error = on_error
        self.chunk_size = int(chunk_size)
        self.esm_kwargs = dict(esm_kwargs or {})
        self.timings: dict[str, float] = {}
        self._datasets: dict[str, ProteinDataset] = {}

    # ------------------------------------------------------------------ encoders
    @property
    def protein_encoder(self) -> FeatureEncoder:
        """The protein (A-side) encoder, built on first use."""
        if self._protein_encoder is None:
            self._protein_encoder = make_protein_encoder(self._encoder_spec, device=self.device, **self.esm_kwargs)
        return self._protein_encoder

    @property
    def text_encoder(self) -> FeatureEncoder:
        """The text (B-side) encoder, built on first use (default: offline all-MiniLM-L6-v2)."""
        if self._text_encoder is None:
            from domains.text import TextEncoder

            self._text_encoder = TextEncoder(device=self.device)
        return self._text_encoder

    def encoders(self) -> dict[str, str]:
        """``{"protein": "name | identity", "text": ...}`` for result metadata."""
        return {
            "protein": f"{self.protein_encoder.name} | {self.protein_encoder.identity}",
            "text": f"{self.text_encoder.name} | {self.text_encoder.identity}",
        }

    # ------------------------------------------------------------------ features
    def _timed_get(self, key: str, encoder: FeatureEncoder, items: Sequence, n_views: int, desc: str) -> np.ndarray:
        if self.raw_items:  # end-to-end training: the items themselves where the features would be
            return item_array(list(items), n_views)
        t0 = time.perf_counter()
        feats = self.cache.get(encoder, items, n_views=n_views, chunk_size=self.chunk_size, desc=desc)
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0
        return feats

    def protein_features(self, sequences: Sequence[str], n_views: int | None = None,
                         desc: str | None = None) -> np.ndarray:
        """Cached protein features ``[N, V, D]`` (V = ``n_views`` or the adapter's)."""
        v = self.n_views if n_views is None else n_views
        return self._timed_get("protein_features_s", self.protein_encoder, list(sequences), v,
                               desc or f"{self.protein_encoder.name} features")  # fmt: skip

    def text_features(self, texts: Sequence[str], n_views: int | None = None, desc: str | None = None) -> np.ndarray:
        """Cached text features ``[N, V, D]``."""
        v = self.n_views if n_views is None else n_views
        return self._timed_get("text_features_s", self.text_encoder, list(texts), v,
                               desc or f"{self.text_encoder.name} features")  # fmt: skip

    def clustering(self) -> dict[str, Any]:
        """How the sequence groups are made (for reports)."""
        if self.cluster_method == "mmseqs":
            return {"method": "mmseqs2 easy-cluster", "min_seq_id": self.cluster_identity, "coverage": 0.8}
        return {"method": "kmer-jaccard (MinHash, k=5)", "threshold": self.cluster_threshold}

    def groups_of(self, records: Sequence[ProteinRecord]) -> np.ndarray:
        """Sequence groups (MMseqs2 clusters, or k-mer Jaccard groups), cached beside the features."""
        from .mmseqs import mmseqs_clusters

        seqs = [r.sequence for r in records]
        if self.cluster_method == "mmseqs":
            recipe = f"mmseqs easy-cluster|min_seq_id={self.cluster_identity}|c=0.8|cov_mode=0"
        else:
            recipe = f"cluster_sequences|threshold={self.cluster_threshold}|k=5|sketch=64|seed={self.seed}"
        key = fingerprint([recipe, *seqs])
        path = self.cache.root / "protein_groups" / f"{key}.npy"
        if path.is_file():
            try:
                groups = np.load(path)
                if groups.shape == (len(seqs),):
                    return groups
            except (OSError, ValueError):
                pass  # unreadable: recompute and overwrite
        if self.cluster_method == "mmseqs":
            groups = mmseqs_clusters(seqs, min_seq_id=self.cluster_identity)
        else:
            groups = cluster_sequences(seqs, threshold=self.cluster_threshold, seed=self.seed)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, groups)
        return groups

    def _subsample(self, idx: np.ndarray, limit: int | None, salt: int = 0) -> np.ndarray:
        if limit is None or len(idx) <= limit:
            return idx
        rng = np.random.default_rng([self.seed, salt])
        return np.sort(rng.choice(idx, size=limit, replace=False))

    # ------------------------------------------------------------------ datasets
    def scl2205(self) -> ProteinDataset:
        """SCL2205: train split (subsampled to ``max_train``), eval split (validation) and heldout split
        (test), both leak-filtered against the whole train split."""
        if "scl2205" in self._datasets:
            return self._datasets["scl2205"]
        t0 = time.perf_counter()
        records = [r for r in load_scl2205(("train", "eval", "heldout"), on_error=self.on_error)]
        texts = [location_sentence(r.label or "", r.accession) for r in records]
        split = np.array([r.split for r in records])
        train_all = np.flatnonzero(split == "train")
        val, heldout = np.flatnonzero(split == "eval"), np.flatnonzero(split == "heldout")
        groups = self.groups_of(records)
        train = self._subsample(train_all, self.max_train)
        removed, removed_val = np.zeros(0, dtype=np.int64), 0
        test = heldout
        if self.leak_filter:
            leaked = np.isin(groups[heldout], groups[train_all])
            removed, test = heldout[leaked], heldout[~leaked]
            leaked_val = np.isin(groups[val], groups[train_all])
            removed_val, val = int(leaked_val.sum()), val[~leaked_val]
        test = self._subsample(test, self.max_test, salt=1)
        val = self._subsample(val, self.max_test, salt=2)
        ds = ProteinDataset(
            name="SCL2205", records=records, texts=texts, train=train, test=test, groups=groups,
            removed_from_test=removed, val=val,
            info={"n_train_split": int(len(train_all)), "n_train": int(len(train)), "n_heldout": int(len(heldout)),
                  "n_test": int(len(test)), "n_removed_from_test": int(len(removed)),
                  "n_eval_split": int((split == "eval").sum()), "n_val": int(len(val)),
                  "n_removed_from_val": removed_val, "n_clusters": int(len(np.unique(groups))),
                  "clustering": self.clustering(),
                  "pairing_text": "location sentence (scl.location_sentence)",
                  "seconds_load_and_cluster": round(time.perf_counter() - t0, 2)},
        )  # fmt: skip
        self._datasets["scl2205"] = ds
        return ds

    def _read_user_data(self, data_dir: Path) -> list[ProteinRecord]:
        fasta: Path | None = None
        folder = data_dir if data_dir.is_dir() else data_dir.parent
        if data_dir.is_file() and (base_suffix(data_dir) in _FASTA_SUFFIXES or _starts_like_fasta(data_dir)):
            fasta = data_dir
        elif data_dir.is_dir():
            found = sorted(p for p in data_dir.iterdir() if base_suffix(p) in _FASTA_SUFFIXES)
            if len(found) > 1:
                raise ValueError(f"{data_dir}: {len(found)} FASTA files ({[p.name for p in found]}); pass one as "
                                 "data_dir")
            fasta = found[0] if found else None
        if fasta is None:
            return read_uniprot(data_dir, on_error=self.on_error)
        plain = strip_compression(fasta)  # proteins.fasta.gz -> proteins.fasta, whose table is proteins.tsv
        tables = [plain.with_suffix(s) for s in _TABLE_SUFFIXES if plain.with_suffix(s).is_file()]
        if not tables:
            tables = sorted(p for p in folder.iterdir() if p.suffix.lower() in _TABLE_SUFFIXES)
        if len(tables) != 1:
            raise FileNotFoundError(
                f"{fasta}: expected one description table (.tsv/.csv, ideally {strip_compression(fasta).stem}.tsv) "
                "beside it, found "
                f"{[p.name for p in tables] or 'none'}"
            )
        return read_fasta(fasta, descriptions=tables[0], on_error=self.on_error)

    def uniprot(self, data_dir: str | os.PathLike | None = None) -> ProteinDataset:
        """User data (UniProt flat files, or FASTA + table) with a group-aware train/test split."""
        path = Path(data_dir) if data_dir is not None else self.data_dir
        if path is None:
            raise ValueError("ProteinAdapter.uniprot: no data_dir given (ProteinAdapter(data_dir=...) or "
                             "uniprot(data_dir))")
        key = f"uniprot:{path.resolve()}"
        if key in self._datasets:
            return self._datasets[key]
        if not path.exists():
            raise FileNotFoundError(f"ProteinAdapter: data_dir {path} does not exist")
        t0 = time.perf_counter()
        all_records = self._read_user_data(path)
        fields = self.text_fields
        records, texts, dropped = [], [], []
        for r in all_records:
            try:
                text = r.text(fields)
            except KeyError as e:
                raise KeyError(f"{r.source}: record {r.accession!r}: {e.args[0]}") from None
            if text:
                records.append(r)
                texts.append(text)
            else:
                dropped.append(r.accession)
        if dropped:
            warnings.warn(
                f"ProteinAdapter.uniprot({path}): {len(dropped)} of {len(all_records)} records have no text in "
                f"fields {list(fields)} and are not used (first: {dropped[:5]})",
                ProteinDataWarning,
                stacklevel=2,
            )
        if len(records) < 10:
            columns = sorted(all_records[0].extra) if all_records else []
            raise ValueError(
                f"ProteinAdapter.uniprot({path}): only {len(records)} records with text in {list(fields)}; need >= 10"
                + (f" (the records' extra columns are {columns}; pass text_fields=...)" if columns else "")
            )
        groups = self.groups_of(records)
        train_all, test = group_split(groups, test_fraction=self.test_fraction, seed=self.seed)
        inner_train, inner_val = group_split(groups[train_all], test_fraction=self.val_fraction, seed=self.seed + 1)
        train_all, val = train_all[inner_train], train_all[inner_val]
        train = self._subsample(train_all, self.max_train)
        test = self._subsample(test, self.max_test, salt=1)
        ds = ProteinDataset(
            name=path.name or str(path), records=records, texts=texts, train=train, test=test, groups=groups,
            val=val,
            info={"n_records_read": len(all_records), "n_without_text": len(dropped),
                  "n_train_split": int(len(train_all)),
                  "n_train": int(len(train)), "n_val": int(len(val)), "n_test": int(len(test)),
                  "text_fields": list(fields), "n_clusters": int(len(np.unique(groups))),
                  "clustering": self.clustering(), "test_fraction": self.test_fraction,
                  "val_fraction": self.val_fraction,
                  "seconds_load_and_cluster": round(time.perf_counter() - t0, 2)},
        )  # fmt: skip
        self._datasets[key] = ds
        return ds

    # ------------------------------------------------------------------ tasks
    def _prompt_features(self, class_prompts: Sequence[Sequence[str]] | None = None,
                         desc: str = "ProtST prompts") -> np.ndarray:
        """``[C, T, D]`` text features of the prompts of every class (default: ProtST's locations)."""
        class_prompts = self.class_prompts if class_prompts is None else class_prompts
        flat = [p for prompts in class_prompts for p in prompts]
        feats = np.asarray(self.text_features(flat, n_views=1, desc=desc)[:, 0])
        return feats.reshape(len(class_prompts), len(class_prompts[0]), -1)

    def _class_embeddings(self, embed_b: EmbedFn, class_prompts: Sequence[Sequence[str]] | None = None,
                          desc: str = "ProtST prompts") -> np.ndarray:
        c, t, d = (feats := self._prompt_features(class_prompts, desc)).shape
        return np.asarray(embed_b(feats.reshape(c * t, d))).reshape(c, t, -1)

    def _class_index(self, protst_labels: Sequence[str | None]) -> np.ndarray:
        """Index into the ProtST classes of each label (``-1`` for None)."""
        index = {c: i for i, c in enumerate(self.class_names)}
        return np.array([-1 if lab is None else index[lab] for lab in protst_labels], dtype=np.int64)

    def _probe_subset(self, idx: np.ndarray) -> np.ndarray:
        if len(idx) <= self.probe_max_train:
            return np.arange(len(idx))
        rng = np.random.default_rng(self.seed + 1)
        return np.sort(rng.choice(len(idx), size=self.probe_max_train, replace=False))

    def _encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """View-0 text features ``[n, D]`` (for S-CLIP's keyword strings)."""
        return np.asarray(self.text_features(list(texts), n_views=1, desc="keywords")[:, 0])

    def scl2205_task(self) -> AlignmentTask:
        """The default task: SCL2205 sequences <-> location sentences (see module docstring)."""
        ds = self.scl2205()
        uniq, inverse = np.unique(np.asarray(ds.texts, dtype=object).astype(str), return_inverse=True)
        uniq_list = [str(u) for u in uniq]
        train_a = self.protein_features(ds.sequences(ds.train), desc="SCL2205 train proteins")
        text_feats = self.text_features(uniq_list, desc="SCL2205 sentences")
        train_b = np.ascontiguousarray(text_feats[inverse[ds.train]])
        test_a = np.asarray(self.protein_features(ds.sequences(ds.test), n_views=1, desc="SCL2205 heldout "
                                                                                         "proteins")[:, 0])
        test_text = np.asarray(text_feats[inverse[ds.test], 0])
        test_labels = np.asarray(ds.labels(ds.test), dtype=object).astype(str)
        protst = [SCL_TO_PROTST[lab] for lab in test_labels]
        probe = self._probe_subset(ds.train)
        train_labels = np.asarray(ds.labels(ds.train[probe]), dtype=object).astype(str)
        val_a = np.asarray(self.protein_features(ds.sequences(ds.val), n_views=1, desc="SCL2205 eval proteins")[:, 0])
        val_labels = self._class_index([SCL_TO_PROTST[lab] for lab in ds.labels(ds.val)])
        validation = ValidationSet("zeroshot_top1", val_a, labels=val_labels, class_b=self._prompt_features(),
                                   source=f"SCL2205 eval split ({len(ds.val)} proteins)")
        name = "scl2205_localisation"

        def evaluate(embed_a: EmbedFn, embed_b: EmbedFn) -> list[dict]:
            zp = np.asarray(embed_a(test_a))
            zt = np.asarray(embed_b(test_text))
            metrics: dict[str, float] = {}
            metrics.update(zero_shot_localisation(zp, protst, self._class_embeddings(embed_b), self.class_names))
            ztr = np.asarray(embed_a(np.asarray(train_a[probe, 0])))
            metrics.update(probe_metrics(ztr, train_labels, zp, test_labels, seed=self.seed))
            metrics.update(location_clustering(zp, test_labels, seed=self.seed))
            metrics.update(joint_clustering_metrics(zp, zt, test_labels, seed=self.seed, per_modality=False))
            metrics.update(modality_gap(zp, zt, seed=self.seed))
            return to_rows(metrics, name, "SCL2205")

        return AlignmentTask(
            name=name, dataset="SCL2205", train_a=train_a, train_b=train_b, evaluate=evaluate,
            encoders=self.encoders(), groups=ds.groups[ds.train], modality_names=("protein", "text"),
            b_texts=[ds.texts[i] for i in ds.train], encode_b_texts=self._encode_texts,
            keyword_stop_words=PROTEIN_KEYWORD_STOP_WORDS, joint_space=(test_a, test_text, test_labels),
            validation=validation,
            train_labels=self._class_index([SCL_TO_PROTST[lab] for lab in ds.labels(ds.train)]),
            info={**ds.info, "validation": validation.source},
        )  # fmt: skip

    def uniprot_task(self, data_dir: str | os.PathLike | None = None,
                     extra_texts: Sequence[str] | None = None) -> AlignmentTask:
        """Sequences <-> function texts of user data (see module docstring).

        Args:
            data_dir: overrides the adapter's ``data_dir``.
            extra_texts: unpaired texts (e.g. GO term definitions) for the unpaired-B pool.
        """
        ds = self.uniprot(data_dir)
        train_a = self.protein_features(ds.sequences(ds.train), desc=f"{ds.name} train proteins")
        train_b = self.text_features([ds.texts[i] for i in ds.train], desc=f"{ds.name} train texts")
        test_a = np.asarray(self.protein_features(ds.sequences(ds.test), n_views=1, desc=f"{ds.name} test "
                                                                                         "proteins")[:, 0])
        test_b = np.asarray(self.text_features([ds.texts[i] for i in ds.test], n_views=1, desc=f"{ds.name} test "
                                                                                               "texts")[:, 0])
        extra, info = None, dict(ds.info)
        if extra_texts:
            kept, _, report = filter_unpaired_groups([[t] for t in extra_texts], [[t] for t in ds.texts])
            info["extra_text_filter"] = report
            if kept:
                extra = self.text_features([g[0] for g in kept], desc="unpaired texts")
        val_a = np.asarray(self.protein_features(ds.sequences(ds.val), n_views=1, desc=f"{ds.name} val proteins")[:, 0])
        val_b = np.asarray(self.text_features([ds.texts[i] for i in ds.val], n_views=1, desc=f"{ds.name} val "
                                                                                             "texts")[:, 0])
        validation = ValidationSet("mean_recall", val_a, val_b, source=f"{ds.name}: group-aware "
                                   f"{self.val_fraction:.0%} of the training proteins ({len(ds.val)})")
        loc_test = [protst_label_of_location(ds.records[i].location) for i in ds.test]
        probe = self._probe_subset(ds.train)
        loc_train = [protst_label_of_location(ds.records[i].location) for i in ds.train[probe]]
        tr_keep = np.array([lab is not None for lab in loc_train], dtype=bool)
        te_keep = np.array([lab is not None for lab in loc_test], dtype=bool)
        name = "uniprot_function"
        ec_test = ec_class_labels([ds.records[i].ec for i in ds.test], self.ec_classes)
        ec_keep = np.array([lab is not None for lab in ec_test], dtype=bool)
        ec_scored = bool(self.ec_classes) and ec_keep.sum() >= 10
        ec_index = {ec: i for i, ec in enumerate(self.ec_classes)}
        ec_y = np.array([ec_index[lab] for lab in ec_test if lab is not None], dtype=np.int64)
        if self.ec_classes:
            info["ec_zero_shot"] = {"prompts": self.ec_prompts_dir, "classes": len(self.ec_classes),
                                    "test_proteins": int(ec_keep.sum()), "scored": ec_scored}

        def evaluate(embed_a: EmbedFn, embed_b: EmbedFn) -> list[dict]:
            zp, zt = np.asarray(embed_a(test_a)), np.asarray(embed_b(test_b))
            metrics: dict[str, float] = dict(protein_text_retrieval(zp, zt))
            metrics.update(zero_shot_localisation(zp, loc_test, self._class_embeddings(embed_b), self.class_names,
                                                  min_items=10))  # fmt: skip
            if te_keep.sum() >= 10:
                yte = np.asarray(loc_test, dtype=object)[te_keep].astype(str)
                if tr_keep.sum() >= 10:
                    ztr = np.asarray(embed_a(np.asarray(train_a[probe[tr_keep], 0])))
                    ytr = np.asarray(loc_train, dtype=object)[tr_keep].astype(str)
                    metrics.update(probe_metrics(ztr, ytr, zp[te_keep], yte, seed=self.seed))
                metrics.update(location_clustering(zp[te_keep], yte, seed=self.seed))
                metrics.update(joint_clustering_metrics(zp[te_keep], zt[te_keep], yte, seed=self.seed,
                                                        per_modality=False))
            metrics.update(modality_gap(zp, zt, seed=self.seed))
            if ec_scored:
                ec = zero_shot_metrics(zp[ec_keep], ec_y, self._class_embeddings(embed_b, self.ec_prompts,
                                                                                  "ProtST reaction prompts"))
                metrics.update({f"ec_{k}": v for k, v in ec.items()})
            return to_rows(metrics, name, ds.name)

        return AlignmentTask(
            name=name, dataset=ds.name, train_a=train_a, train_b=train_b, evaluate=evaluate,
            encoders=self.encoders(), groups=ds.groups[ds.train], extra_unpaired_b=extra,
            modality_names=("protein", "text"),
            b_texts=[ds.texts[i] for i in ds.train], encode_b_texts=self._encode_texts,
            keyword_stop_words=PROTEIN_KEYWORD_STOP_WORDS, joint_space=(test_a, test_b, None),
            validation=validation, info={**info, "validation": validation.source},
        )  # fmt: skip

    def task(self, name: str = "scl2205", **kwargs: Any) -> AlignmentTask:
        """``"scl2205"`` -> :meth:`scl2205_task`; ``"uniprot"`` -> :meth:`uniprot_task` (kwargs passed on)."""
        if name == "scl2205":
            return self.scl2205_task(**kwargs)
        if name in ("uniprot", "fasta"):
            return self.uniprot_task(**kwargs)
        raise ValueError(f"ProteinAdapter.task: unknown task {name!r}; expected 'scl2205' or 'uniprot'")

