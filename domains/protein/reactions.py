"""Enzyme reactions: ProtST's 384 EC reaction classes, zero-shot over their prompts.

ProtST (Xu et al., 2023; Apache-2.0, github.com/DeepGraphLearning/ProtST) ships, for zero-shot
reaction classification, 384 EC numbers (``zero_shot_classification/reaction_description.tsv``:
``id``, ``EC_number``, the EC hierarchy and the enzyme's name) and one prompt per class in three
styles (``reaction_{name,language,template}.tsv``: ``id``, ``name`` and, for ``template``, a
``description``). :func:`read_reaction_prompts` reads the EC numbers and one style's prompts, in
class order; the files are not embedded (give their folder: ``--ec-prompts`` of ``run_protein.py``).

:func:`ec_class_labels` gives each protein the class of its EC number when exactly one of its EC
numbers is among the classes (proteins with none, or with several, are left out of the score, as
ProtST's benchmark keeps single-class proteins).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

__all__ = ["read_reaction_prompts", "find_reaction_prompts", "ec_class_labels", "REACTION_STYLES"]

REACTION_STYLES = ("name", "language", "template")


def find_reaction_prompts(root: str | os.PathLike) -> Path:
    """The folder holding ``reaction_description.tsv`` under ``root`` (that folder, ``protst_prompts/``
    or a data folder with ``protein/protst_prompts/``)."""
    root = Path(root)
    for cand in (root, root / "zero_shot_classification", root / "protst_prompts" / "zero_shot_classification",
                 root / "protein" / "protst_prompts" / "zero_shot_classification"):
        if (cand / "reaction_description.tsv").is_file():
            return cand
    raise FileNotFoundError(f"ProtST reaction prompts: reaction_description.tsv not found under {root} (looked in "
                            "it, zero_shot_classification/, protst_prompts/zero_shot_classification/ and "
                            "protein/protst_prompts/zero_shot_classification/); ProtST's repository has them")


def _read_tsv(path: Path, columns: set[str]) -> dict[int, dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if reader.fieldnames is None or not columns <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a TSV with columns {sorted(columns)}, got {reader.fieldnames}")
        rows: dict[int, dict[str, str]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                key = int(row["id"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: id {row['id']!r} is not an integer") from None
            if key in rows:
                raise ValueError(f"{path}, line {line}: id {key} appears twice")
            rows[key] = row
    return rows


def read_reaction_prompts(root: str | os.PathLike, style: str = "language",
                          field: str = "name") -> tuple[list[str], list[list[str]]]:
    """``(ec_numbers, prompts per class)`` of ProtST's reaction classes, in id order.

    Args:
        root: the folder of the TSVs (or one above it, see :func:`find_reaction_prompts`).
        style: ``"name"``, ``"language"`` or ``"template"`` (which ``reaction_*.tsv``).
        field: ``"name"``, or for ``template`` also ``"description"`` (the longer text).

    Raises:
        FileNotFoundError: a file is missing. ValueError: a bad column, id, EC number or empty prompt,
        naming the file and line.
    """
    if style not in REACTION_STYLES:
        raise ValueError(f"style: expected one of {REACTION_STYLES}, got {style!r}")
    if field not in ("name", "description") or (field == "description" and style != "template"):
        raise ValueError(f"field: 'name' (any style) or 'description' (style 'template'), got {field!r}")
    folder = find_reaction_prompts(root)
    classes = _read_tsv(folder / "reaction_description.tsv", {"id", "EC_number"})
    prompts = _read_tsv(folder / f"reaction_{style}.tsv", {"id", field})
    if set(classes) != set(prompts):
        raise ValueError(f"{folder}: reaction_description.tsv and reaction_{style}.tsv list different ids")
    ecs, texts = [], []
    for key in sorted(classes):
        ec = (classes[key]["EC_number"] or "").strip()
        if len(ec.split(".")) != 4:
            raise ValueError(f"{folder / 'reaction_description.tsv'}: id {key}: {ec!r} is not a 4-level EC number")
        text = (prompts[key][field] or "").strip()
        if not text:
            raise ValueError(f"{folder / f'reaction_{style}.tsv'}: id {key}: empty prompt")
        ecs.append(ec)
        texts.append([text])
    if len(set(ecs)) != len(ecs):
        raise ValueError(f"{folder / 'reaction_description.tsv'}: an EC number appears twice")
    return ecs, texts


def ec_class_labels(protein_ecs: Sequence[Sequence[str]], classes: Sequence[str]) -> list[str | None]:
    """Per protein, its EC number among ``classes`` when it has exactly one there, else None."""
    known = set(classes)
    out: list[str | None] = []
    for ecs in protein_ecs:
        hits = sorted({e for e in ecs if e in known})
        out.append(hits[0] if len(hits) == 1 else None)
    return out
