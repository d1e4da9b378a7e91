"""The published protein datasets, one module each: its layout and its reader.

* :mod:`.scl2205`: SCL2205 (Stärk et al., "Light attention predicts protein location from the
  language of life", 2021), 19,074 UniProt sequences with subcellular-location labels and splits,
  embedded through the ``p-scldata`` package; :func:`load_scl2205`.
* :mod:`.uniprot`: UniProt / Swiss-Prot flat files (one or many entries per file, compressed or
  not, in a folder tree); :func:`read_uniprot`.

A user's own FASTA + description table is a format, not a published dataset:
:func:`domains.protein.fasta.read_fasta`.
"""
from __future__ import annotations

from .scl2205 import LOCATION_PHRASES, SCL_LABELS, SCL_SPLITS, SENTENCE_TEMPLATES, load_scl2205, location_sentence
from .uniprot import DEFAULT_UNIPROT_SUFFIXES, read_uniprot, record_from_swissprot, uniprot_files

__all__ = ["LOCATION_PHRASES", "SCL_LABELS", "SCL_SPLITS", "SENTENCE_TEMPLATES", "load_scl2205", "location_sentence",
           "DEFAULT_UNIPROT_SUFFIXES", "read_uniprot", "record_from_swissprot", "uniprot_files"]
