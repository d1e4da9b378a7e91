"""SCL2205 (package ``p-scldata==2025.6.0``): 19,074 UniProtKB sequences, 13 locations, fixed splits.

What the package carries, per protein: the UniProtKB accession, the sequence and one of 13
subcellular-location labels (four of them combinations such as ``"Cytoplasm;Nucleus"``), and the
split (train 15,183 / eval 1,260 / heldout 2,631; homology-reduced by the dataset authors). It
carries **no free text**.

**The paired text** (:func:`location_sentence`). Because SCL2205 has no description, the text half
of each pair is a sentence generated from the protein's location label, e.g. "This protein is
found in the cytoplasm and the nucleus." One of :data:`SENTENCE_TEMPLATES` is chosen per protein
from a hash of its accession (deterministic) so that texts vary in wording, not only in class.
This is honest about what the data are: the SCL2205 task measures how well the joint space learns
*location semantics* from few (sequence, location-sentence) pairs plus unpaired sequences and
sentences. To keep the evaluation from being trivially leaked by that text:

* evaluation uses only heldout proteins (train-split pairs are the only pairs ever trained on);
* zero-shot localisation scores against ProtST's independently written prompts
  (:mod:`domains.protein.locations`), never against these templates;
* there is no SCL2205 text<->protein retrieval score: with label-derived text it would only
  restate classification;
* heldout proteins whose sequence is near-identical to a train sequence (same cluster of
  :func:`domains.protein.clustering.cluster_sequences`) can be removed (``ProteinAdapter`` does so by
  default).

Note that "zero-shot" here means unseen *wording* (ProtST's prompts), not unseen *classes*: the
location classes themselves are what the training text describes.
"""
from __future__ import annotations

import zlib
from typing import Sequence

from .._problems import protein_problems
from ..records import InvalidSequenceError, ProteinRecord, validate_sequence

__all__ = [
    "SCL_LABELS",
    "SCL_SPLITS",
    "SENTENCE_TEMPLATES",
    "LOCATION_PHRASES",
    "load_scl2205",
    "location_sentence",
]

#: The 13 SCL2205 labels, in the package's index order (``labels.json``).
SCL_LABELS: tuple[str, ...] = (
    "Cytoplasm",
    "Plastid",
    "Secreted",
    "Mitochondrion",
    "Membrane",
    "Peroxisome",
    "Nucleus",
    "Cell projection",
    "ER",
    "Cytoplasm;Nucleus",
    "Centrosome;Cytoplasm;Cytoskeleton;Microtubule organizing center",
    "Cytoplasm;Membrane",
    "Cytoplasm;Cytoskeleton",
)
#: SCL2205 split names as the package calls them.
SCL_SPLITS: tuple[str, ...] = ("train", "eval", "heldout")

#: Noun phrase per label used in the generated sentences.
LOCATION_PHRASES: dict[str, str] = {
    "Cytoplasm": "the cytoplasm",
    "Plastid": "a plastid",
    "Secreted": "the extracellular space, as a secreted protein",
    "Mitochondrion": "the mitochondrion",
    "Membrane": "a membrane",
    "Peroxisome": "the peroxisome",
    "Nucleus": "the nucleus",
    "Cell projection": "a cell projection",
    "ER": "the endoplasmic reticulum",
    "Cytoplasm;Nucleus": "the cytoplasm and the nucleus",
    "Centrosome;Cytoplasm;Cytoskeleton;Microtubule organizing center":
        "the centrosome, the cytoplasm, the cytoskeleton and the microtubule organizing center",
    "Cytoplasm;Membrane": "the cytoplasm and a membrane",
    "Cytoplasm;Cytoskeleton": "the cytoplasm and the cytoskeleton",
}

#: Sentence templates (``{}`` = location phrase); deliberately unlike ProtST's prompts.
SENTENCE_TEMPLATES: tuple[str, ...] = (
    "This protein is found in {}.",
    "Localises to {}.",
    "Its subcellular localisation is {}.",
)


def location_sentence(label: str, accession: str = "", templates: Sequence[str] = SENTENCE_TEMPLATES) -> str:
    """The paired sentence of an SCL2205 protein: a template (chosen by a CRC32 hash of the
    accession) filled with the location phrase of ``label``.

    Raises:
        KeyError: ``label`` is not an SCL2205 label (the message lists them).
    """
    if label not in LOCATION_PHRASES:
        raise KeyError(f"{label!r} is not an SCL2205 label; expected one of {list(SCL_LABELS)}")
    if not templates:
        raise ValueError("templates: need at least one sentence template with a '{}' placeholder")
    template = templates[zlib.crc32(accession.encode()) % len(templates)]
    return template.format(LOCATION_PHRASES[label])


def load_scl2205(splits: Sequence[str] | str = SCL_SPLITS, on_error: str = "raise") -> list[ProteinRecord]:
    """SCL2205 as :class:`ProteinRecord` s (``label`` = location, ``split`` = its split).

    Args:
        splits: which splits (``"train"``, ``"eval"``, ``"heldout"``); records come split by split in
            the package's order.
        on_error: ``"raise"`` or ``"skip"`` for invalid sequences (there are none in 2025.6.0).

    Raises:
        ImportError: ``p-scldata`` is not installed (names the pinned version).
        ValueError: an unknown split name.
    """
    if isinstance(splits, str):
        splits = (splits,)
    bad = [s for s in splits if s not in SCL_SPLITS]
    if bad:
        raise ValueError(f"SCL2205 splits {bad} unknown; expected some of {list(SCL_SPLITS)}")
    try:
        from scldata import loader
    except ImportError as e:  # pragma: no cover - dependency of the project
        raise ImportError(
            "SCL2205 needs the package p-scldata==2025.6.0 (later versions ship no data): "
            "pip install 'p-scldata==2025.6.0'"
        ) from e
    import pandas as pd

    full = pd.read_csv(loader._DATA_DIR / "scl2205.csv", index_col="entry")
    index_to_label = {int(k): v for k, v in loader.labels["index_to_label"].items()}
    key = {"train": "trn", "eval": "evl", "heldout": "tst"}
    try:
        from importlib.metadata import version

        source = f"SCL2205 (p-scldata {version('p-scldata')})"
    except Exception:  # noqa: BLE001 - only a label
        source = "SCL2205 (p-scldata)"
    problems = protein_problems("load_scl2205", on_error)
    records: list[ProteinRecord] = []
    for split in splits:
        accs = [loader.entries[str(i)] for i in loader.splits[key[split]]]
        rows = full.loc[accs]
        for acc, seq, lab in zip(rows.index, rows["seq"], rows["scl"]):
            label = index_to_label[int(lab)] if not isinstance(lab, str) else lab
            try:
                seq = validate_sequence(seq, record=acc, source="SCL2205")
            except InvalidSequenceError as e:
                problems.bad("", "", str(e), InvalidSequenceError)
                continue
            records.append(ProteinRecord(accession=str(acc), sequence=seq, label=label, split=split, source=source))
    problems.warn()
    return records
