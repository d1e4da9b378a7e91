"""Property-based tests of the readers (Hypothesis): random valid inputs parse to what was written,
random corruptions give one of the project's error classes (or a reported skip), never another
exception."""
from __future__ import annotations

import json
import re
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_protein_readers import entry

from domains.protein import read_fasta, read_uniprot
from domains.remote_sensing.formats import read_coco_captions, read_karpathy_captions
from domains.remote_sensing.images import ImageReadError
from domains.remote_sensing.scenes import read_scene_folder

#: What bad input may raise: the project's error classes (all readers' errors are one of these).
PROJECT_ERRORS = (ValueError, FileNotFoundError, ImageReadError)
AMINO = "ACDEFGHIKLMNPQRSTVWY"
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

accessions = st.lists(st.from_regex(r"[A-Z][A-Z0-9]{3,8}", fullmatch=True), min_size=1, max_size=12, unique=True)
sequence = st.text(alphabet=AMINO, min_size=1, max_size=150)
corruption = st.tuples(st.sampled_from(["insert", "replace", "truncate", "delete"]), st.integers(0, 10**6),
                       st.binary(min_size=1, max_size=12))


def _corrupt(data: bytes, how: tuple[str, int, bytes]) -> bytes:
    kind, pos, junk = how
    pos = pos % (len(data) + 1)
    if kind == "insert":
        return data[:pos] + junk + data[pos:]
    if kind == "replace":
        return data[:pos] + junk + data[pos + len(junk):]
    if kind == "truncate":
        return data[:pos]
    return data[:pos] + data[pos + len(junk):]


def _only_project_errors(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except PROJECT_ERRORS:
            return None


# ---------------------------------------------------------------- FASTA
@SETTINGS
@given(accs=accessions, data=st.data(), width=st.integers(1, 80))
def test_fasta_round_trip(tmp_path_factory, accs, data, width) -> None:
    seqs = [data.draw(sequence) for _ in accs]
    text = "".join(f">{a} some description\n" + "\n".join(s[i:i + width] for i in range(0, len(s), width)) + "\n"
                   for a, s in zip(accs, seqs))
    path = tmp_path_factory.mktemp("fa") / "p.fasta"
    path.write_text(text)
    recs = read_fasta(path)
    assert [(r.accession, r.sequence) for r in recs] == list(zip(accs, seqs))


@SETTINGS
@given(accs=accessions, data=st.data(), how=corruption, skip=st.booleans())
def test_fasta_corruption_gives_a_project_error(tmp_path_factory, accs, data, how, skip) -> None:
    seqs = [data.draw(sequence) for _ in accs]
    folder = tmp_path_factory.mktemp("fa")
    (folder / "p.fasta").write_bytes(_corrupt("".join(f">{a}\n{s}\n" for a, s in zip(accs, seqs)).encode(), how))
    (folder / "d.tsv").write_text("accession\tfunction\n" + "".join(f"{a}\tdoes {a}\n" for a in accs))
    out = _only_project_errors(read_fasta, folder / "p.fasta", descriptions=folder / "d.tsv",
                               on_error="skip" if skip else "raise")
    assert out is None or all(r.sequence and set(r.sequence) <= set(AMINO + "BJOUXZ") for r in out)


# ---------------------------------------------------------------- UniProt flat files
@SETTINGS
@given(accs=accessions, data=st.data())
def test_uniprot_round_trip(tmp_path_factory, accs, data) -> None:
    seqs = [data.draw(st.text(alphabet=AMINO, min_size=1, max_size=60)) for _ in accs]
    text = "".join(entry(a, f"N{i}", " ".join(s[j:j + 10] for j in range(0, len(s), 10)))
                   for i, (a, s) in enumerate(zip(accs, seqs)))
    path = tmp_path_factory.mktemp("up") / "e.dat"
    path.write_text(text)
    recs = read_uniprot(path)
    assert [(r.accession, r.sequence) for r in recs] == list(zip(accs, seqs))


@SETTINGS
@given(accs=accessions, how=corruption, skip=st.booleans())
def test_uniprot_corruption_gives_a_project_error(tmp_path_factory, accs, how, skip) -> None:
    text = "".join(entry(a, f"N{i}") for i, a in enumerate(accs))
    path = tmp_path_factory.mktemp("up") / "e.dat"
    path.write_bytes(_corrupt(text.encode(), how))
    out = _only_project_errors(read_uniprot, path, on_error="skip" if skip else "raise")
    assert out is None or len(out) <= len(accs)


# ---------------------------------------------------------------- caption files
captions = st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
                            max_size=40).filter(lambda t: t.strip()), min_size=1, max_size=5)


@SETTINGS
@given(groups=st.lists(captions, min_size=1, max_size=8))
def test_karpathy_and_coco_round_trip(tmp_path_factory, groups) -> None:
    folder = tmp_path_factory.mktemp("cap")
    karpathy = {"images": [{"filename": f"img{i}.jpg", "split": "train", "sentences": [{"raw": c} for c in g]}
                           for i, g in enumerate(groups)]}
    (folder / "k.json").write_text(json.dumps(karpathy))
    recs = read_karpathy_captions(folder / "k.json", image_dir=None)
    folded = [[re.sub(r"\s+", " ", c).strip() for c in g] for g in groups]  # readers fold white space
    assert [list(r.captions) for r in recs] == folded
    coco = {"images": [{"id": i, "file_name": f"{i}.tif"} for i in range(len(groups))],
            "annotations": [{"id": 100 * i + j, "image_id": i, "caption": c}
                            for i, g in enumerate(groups) for j, c in enumerate(g)]}
    (folder / "c.json").write_text(json.dumps(coco))
    recs = read_coco_captions(folder / "c.json")
    assert len(recs) == len(groups) and sum(len(r.captions) for r in recs) == sum(len(g) for g in groups)


@SETTINGS
@given(groups=st.lists(captions, min_size=1, max_size=5), how=corruption, skip=st.booleans())
def test_caption_file_corruption_gives_a_project_error(tmp_path_factory, groups, how, skip) -> None:
    folder = tmp_path_factory.mktemp("cap")
    karpathy = {"images": [{"filename": f"img{i}.jpg", "split": "train", "sentences": [{"raw": c} for c in g]}
                           for i, g in enumerate(groups)]}
    (folder / "k.json").write_bytes(_corrupt(json.dumps(karpathy).encode(), how))
    _only_project_errors(read_karpathy_captions, folder / "k.json", image_dir=None,
                         on_error="skip" if skip else "raise")
    coco = {"images": [{"id": i, "file_name": f"{i}.tif"} for i in range(len(groups))],
            "annotations": [{"id": i, "image_id": i, "caption": g[0]} for i, g in enumerate(groups)]}
    (folder / "c.json").write_bytes(_corrupt(json.dumps(coco).encode(), how))
    _only_project_errors(read_coco_captions, folder / "c.json", on_error="skip" if skip else "raise")


# ---------------------------------------------------------------- scene folders
@SETTINGS
@given(layout=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.integers(1, 3), min_size=1, max_size=4),
       how=corruption, skip=st.booleans())
def test_scene_folder_round_trip_and_corrupt_images(tmp_path_factory, layout, how, skip) -> None:
    from PIL import Image

    root = tmp_path_factory.mktemp("scenes")
    for cls, n in layout.items():
        (root / cls).mkdir()
        for j in range(n):
            Image.new("RGB", (8, 8), (j * 40, 10, 200)).save(root / cls / f"{cls}{j}.png")
    recs = read_scene_folder(root)
    assert sorted(r.label for r in recs) == sorted(c for c, n in layout.items() for _ in range(n))
    victim = root / next(iter(layout)) / f"{next(iter(layout))}0.png"
    victim.write_bytes(_corrupt(victim.read_bytes(), how))
    _only_project_errors(read_scene_folder, root, verify=True, on_error="skip" if skip else "raise")


def test_the_property_helpers_corrupt_bytes() -> None:
    assert _corrupt(b"abcdef", ("truncate", 3, b"x")) == b"abc"
    assert _corrupt(b"abcdef", ("insert", 2, b"XY")) == b"abXYcdef"
    assert _corrupt(b"abcdef", ("replace", 0, b"ZZ")) == b"ZZcdef"
    assert _corrupt(b"abcdef", ("delete", 1, b"12")) == b"adef"
    assert _only_project_errors(int, "x") is None, "a project error class is accepted"
    with pytest.raises(TypeError):  # any other exception fails the property tests
        _only_project_errors(int, [])
