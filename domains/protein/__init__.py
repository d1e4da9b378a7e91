"""Protein domain: sequences (ESM-2 / k-mers) aligned with text (function, location).

Readers (:func:`read_fasta`, :func:`read_uniprot`, :func:`load_scl2205`) yield
:class:`ProteinRecord` s; encoders (:class:`ESMEncoder`, :class:`KmerEncoder`, and
:class:`domains.text.TextEncoder` for the text side) implement ``gentleclip.cache.FeatureEncoder``;
:func:`cluster_sequences` groups near-identical sequences for leak-free splits;
:mod:`domains.protein.evaluation` scores a joint space; :class:`ProteinAdapter` ties them into
``AlignmentTask`` s for the benchmarks and notebooks.
"""
from __future__ import annotations

from ._problems import MissingDescriptionError, MissingSequenceError, ProteinDataWarning
from .adapter import ProteinAdapter, ProteinDataset, make_protein_encoder
from .clustering import UnionFind, cluster_sequences, group_split, minhash_sketches
from .datasets import (
    DEFAULT_UNIPROT_SUFFIXES,
    LOCATION_PHRASES,
    SCL_LABELS,
    SCL_SPLITS,
    SENTENCE_TEMPLATES,
    load_scl2205,
    location_sentence,
    read_uniprot,
    record_from_swissprot,
    uniprot_files,
)
from .esm_encoder import (
    ESM2_MODELS,
    ESMEncoder,
    ESMWeightsUnavailableError,
    esm_checkpoint_path,
    load_esm_checkpoint,
    save_esm2_checkpoint,
    sequence_windows,
    state_dict_hash,
)
from .evaluation import (
    location_clustering,
    modality_gap,
    probe_metrics,
    protein_text_retrieval,
    to_rows,
    zero_shot_localisation,
)
from .fasta import FastaSequences, accession_from_fasta_id, read_description_table, read_fasta
from .hf_esm_encoder import HFESMEncoder
from .kmer import KmerEncoder
from .locations import (
    PROTST_LOCATIONS,
    PROTST_SUBLOC_PROMPTS,
    SCL_TO_PROTST,
    protst_classes_of_location,
    protst_label_of_location,
    protst_prompts,
    read_protst_prompts,
)
from .records import (
    STANDARD_RESIDUES,
    VALID_RESIDUES,
    InvalidSequenceError,
    ProteinRecord,
    clean_uniprot_text,
    validate_sequence,
)
from .views import AUGMENT_MODES, ViewPlan, view_plan

__all__ = [
    "AUGMENT_MODES",
    "DEFAULT_UNIPROT_SUFFIXES",
    "ESM2_MODELS",
    "ESMEncoder",
    "HFESMEncoder",
    "ESMWeightsUnavailableError",
    "InvalidSequenceError",
    "KmerEncoder",
    "LOCATION_PHRASES",
    "MissingDescriptionError",
    "MissingSequenceError",
    "PROTST_LOCATIONS",
    "PROTST_SUBLOC_PROMPTS",
    "ProteinAdapter",
    "ProteinDataWarning",
    "ProteinDataset",
    "ProteinRecord",
    "SCL_LABELS",
    "SCL_SPLITS",
    "SCL_TO_PROTST",
    "SENTENCE_TEMPLATES",
    "STANDARD_RESIDUES",
    "UnionFind",
    "VALID_RESIDUES",
    "ViewPlan",
    "accession_from_fasta_id",
    "clean_uniprot_text",
    "cluster_sequences",
    "esm_checkpoint_path",
    "group_split",
    "load_esm_checkpoint",
    "load_scl2205",
    "location_clustering",
    "location_sentence",
    "make_protein_encoder",
    "minhash_sketches",
    "modality_gap",
    "probe_metrics",
    "protein_text_retrieval",
    "protst_classes_of_location",
    "protst_label_of_location",
    "protst_prompts",
    "read_description_table",
    "read_fasta",
    "FastaSequences",
    "read_protst_prompts",
    "read_uniprot",
    "record_from_swissprot",
    "save_esm2_checkpoint",
    "sequence_windows",
    "state_dict_hash",
    "to_rows",
    "uniprot_files",
    "validate_sequence",
    "view_plan",
    "zero_shot_localisation",
]
