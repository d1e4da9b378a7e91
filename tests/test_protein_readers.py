"""Protein readers: FASTA + description table, UniProt flat files, SCL2205, ProtST prompts."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from fake_data import generator

from domains.protein import (
    PROTST_LOCATIONS,
    SCL_LABELS,
    SCL_TO_PROTST,
    InvalidSequenceError,
    MissingDescriptionError,
    ProteinDataWarning,
    ProteinRecord,
    clean_uniprot_text,
    load_scl2205,
    location_sentence,
    protst_classes_of_location,
    protst_label_of_location,
    protst_prompts,
    read_fasta,
    read_protst_prompts,
    read_uniprot,
    validate_sequence,
)

SEQ = generator("uniprot").SEQ
entry = generator("uniprot").entry


# ---------------------------------------------------------------------------- validation
def test_validate_sequence_names_record_position_and_letter():
    assert validate_sequence("mkta*", record="P1") == "MKTA"  # lower case, trailing stop removed
    with pytest.raises(InvalidSequenceError, match=r"'P1'.*'J' at position 3"):
        validate_sequence("MKJA", record="P1")
    with pytest.raises(InvalidSequenceError, match=r"'P2' in f\.fasta.*'-' at position 2"):
        validate_sequence("M-KA", record="P2", source="f.fasta")
    with pytest.raises(InvalidSequenceError, match="empty sequence"):
        validate_sequence("", record="P3")
    with pytest.raises(InvalidSequenceError, match="empty"):
        validate_sequence("*", record="P4")
    assert validate_sequence("ACDXBZUO") == "ACDXBZUO"


def test_clean_uniprot_text():
    assert clean_uniprot_text("Binds DNA (PubMed:1, PubMed:2) {ECO:0000269|PubMed:3}.") == "Binds DNA."
    assert clean_uniprot_text("tissue- type and alpha- and beta-chains") == "tissue-type and alpha- and beta-chains"


def test_record_text_fields():
    r = ProteinRecord("P1", "MK", name="Kinase", function="Binds ATP", ec=("2.7.1.1",),
                      go=("GO:0005634 C:nucleus",), extra={"note": "hello"})
    assert r.text(["name", "function"]) == "Kinase. Binds ATP."
    assert r.text(["ec", "go", "note"]) == "EC 2.7.1.1. GO terms: nucleus. hello."
    assert r.text(["location"]) == ""
    with pytest.raises(KeyError, match="unknown text field 'colour'"):
        r.text(["colour"])


# ---------------------------------------------------------------------------- FASTA
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_fasta_with_tsv_descriptions(tmp_path):
    fa = _write(tmp_path / "p.fasta", ">sp|P11111|A_HUMAN Alpha\nMKTA\nYIAK\n>P22222 beta\nMLLV*\n")
    tsv = _write(tmp_path / "d.tsv", "accession\tfunction\tlocation\nP11111\tBinds DNA\tNucleus\nP22222\tA pump\tCell "
                                     "membrane\n")
    recs = read_fasta(fa, descriptions=tsv)
    assert [r.accession for r in recs] == ["P11111", "P22222"]
    assert recs[0].sequence == "MKTAYIAK" and recs[1].sequence == "MLLV"
    assert recs[0].function == "Binds DNA" and recs[1].location == "Cell membrane"
    assert recs[0].text(["function"]) == "Binds DNA."
    csv = _write(tmp_path / "d.csv", "id,desc,label\nP11111,one,x\nP22222,two,y\n")
    recs = read_fasta(fa, descriptions=csv, label_column="label")
    assert [r.label for r in recs] == ["x", "y"] and recs[1].extra["desc"] == "two"


def test_fasta_missing_description_is_an_error_or_skipped(tmp_path):
    fa = _write(tmp_path / "p.fasta", ">P1\nMKTA\n>P2\nMLLV\n>P3\nMAAA\n")
    tsv = _write(tmp_path / "d.tsv", "accession\tfunction\nP1\tBinds DNA\nP3\t\n")
    with pytest.raises(MissingDescriptionError, match=r"p\.fasta, record #2 \('P2'\).*no row in .*d\.tsv"):
        read_fasta(fa, descriptions=tsv)
    with pytest.warns(ProteinDataWarning, match=r"(?s)skipped 2 .*'P2' has no row.*'P3' has only empty cells"):
        recs = read_fasta(fa, descriptions=tsv, on_error="skip")
    assert [r.accession for r in recs] == ["P1"]


def test_fasta_duplicate_accessions(tmp_path):
    fa = _write(tmp_path / "p.fasta", ">P1\nMKTA\n>P1\nMLLV\n")
    with pytest.raises(ValueError, match=r"record #2 .*duplicate accession 'P1' \(first seen as record #1\)"):
        read_fasta(fa)
    fa2 = _write(tmp_path / "q.fasta", ">P1\nMKTA\n")
    tsv = _write(tmp_path / "d.tsv", "accession\tfunction\nP1\ta\nP1\tb\n")
    with pytest.raises(ValueError, match=r"d\.tsv: duplicate accession 'P1' on lines 2 and 3"):
        read_fasta(fa2, descriptions=tsv)


def test_fasta_invalid_and_empty_sequences(tmp_path):
    fa = _write(tmp_path / "p.fasta", ">P1\nMKTA\n>P2\nMK1A\n>P3\n\n>P4\nMLLV\n")
    with pytest.raises(InvalidSequenceError, match=r"'P2' in .*p\.fasta \(record #2\).*'1' at position 3"):
        read_fasta(fa)
    with pytest.warns(ProteinDataWarning, match="skipped 2"):
        recs = read_fasta(fa, on_error="skip")
    assert [r.accession for r in recs] == ["P1", "P4"]
    with pytest.raises(ValueError, match=r"empty\.fasta: not valid FASTA after 0 record"):
        read_fasta(_write(tmp_path / "empty.fasta", "just text\n"))
    with pytest.raises(ValueError, match="no records"):
        read_fasta(_write(tmp_path / "blank.fasta", ""))


# ---------------------------------------------------------------------------- UniProt
def test_uniprot_entry_fields(tmp_path):
    f = _write(tmp_path / "one.txt", entry("P99991"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (rec,) = read_uniprot(f)
    assert rec.accession == "P99991" and rec.sequence == SEQ.replace(" ", "")
    assert rec.name == "Test kinase P99991"
    assert rec.function == "Phosphorylates test substrates in response to tissue-type signals."
    assert rec.location == "Nucleus."
    assert rec.ec == ("2.7.11.1",)
    assert rec.go[0] == "GO:0005634 C:nucleus" and len(rec.go) == 2
    assert rec.keywords == ("Kinase", "Nucleus", "Transferase")
    assert rec.text(["name", "function"]).startswith("Test kinase P99991. Phosphorylates")


def test_uniprot_directory_recursive_skips_non_entries_with_warning(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    _write(tmp_path / "a" / "one.txt", entry("P00001"))
    _write(tmp_path / "a" / "b" / "many.dat", entry("P00002") + entry("P00003", name="TEST3"))
    _write(tmp_path / "a" / "b" / "rna-uniprot.txt", "SNORD3A is a non-coding RNA and has no UniProt entry.\n")
    _write(tmp_path / "a" / "empty.txt", "")
    _write(tmp_path / "a" / "table.tsv", "not\ta flat file\n")  # other suffixes are ignored
    with pytest.warns(ProteinDataWarning) as rec:
        recs = read_uniprot(tmp_path)
    assert sorted(r.accession for r in recs) == ["P00001", "P00002", "P00003"]
    messages = " ".join(str(w.message) for w in rec)
    assert "rna-uniprot.txt: not a UniProt flat-file entry" in messages
    assert "empty.txt: holds no UniProt entry" in messages
    assert "table.tsv" not in messages


def test_uniprot_duplicates_and_bad_residues(tmp_path):
    _write(tmp_path / "a.txt", entry("P00001"))
    _write(tmp_path / "b.txt", entry("P00001"))
    with pytest.warns(ProteinDataWarning, match=r"b\.txt: accession 'P00001' already read from .*a\.txt \(identical"):
        assert len(read_uniprot(tmp_path)) == 1
    with pytest.raises(ValueError, match="already read"):
        read_uniprot(tmp_path, on_duplicate="raise")
    bad = tmp_path / "bad"
    bad.mkdir()
    _write(bad / "c.txt", entry("P00009", seq="MKTAYIAKQR QISFVKSHFS RQLEERLGL1"))
    with pytest.raises(InvalidSequenceError, match=r"'P00009' in .*c\.txt.*'1' at position 30"):
        read_uniprot(bad)
    with pytest.warns(ProteinDataWarning, match="P00009"):
        assert read_uniprot(bad, on_error="skip") == []
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="no file with suffix"):
        read_uniprot(tmp_path / "nothing")


def test_uniprot_real_flatfiles(shared_data):
    folder = shared_data / "protein" / "uniprot_flatfiles"
    with pytest.warns(ProteinDataWarning) as rec:
        recs = read_uniprot(folder)
    skipped = " ".join(str(w.message) for w in rec if "not protein entries" in str(w.message))
    assert "human__SNORD3A__SNORD3A-uniprot.txt" in skipped  # the non-protein file is named
    assert 1200 < len(recs) < 1500
    assert len({r.accession for r in recs}) == len(recs)
    assert sum(bool(r.function) for r in recs) > 1000
    assert sum(bool(r.location) for r in recs) > 900
    assert sum(bool(r.ec) for r in recs) > 300
    assert all("{ECO" not in r.function for r in recs)


# ---------------------------------------------------------------------------- SCL2205
def test_scl2205_records_and_sentences():
    recs = load_scl2205()
    assert len(recs) == 19074
    assert {r.split for r in recs} == {"train", "eval", "heldout"}
    assert sum(r.split == "heldout" for r in recs) == 2631
    assert {r.label for r in recs} == set(SCL_LABELS)
    sentences = {location_sentence(lab, f"ACC{i}") for lab in SCL_LABELS for i in range(20)}
    assert len(sentences) == 3 * len(SCL_LABELS)
    assert location_sentence("Cytoplasm;Nucleus", "X") in {
        "This protein is found in the cytoplasm and the nucleus.", "Localises to the cytoplasm and the nucleus.",
        "Its subcellular localisation is the cytoplasm and the nucleus."}
    with pytest.raises(KeyError, match="not an SCL2205 label"):
        location_sentence("Golgi", "X")
    with pytest.raises(ValueError, match="unknown"):
        load_scl2205("test")


# ---------------------------------------------------------------------------- locations
def test_scl_to_protst_mapping_is_complete():
    assert set(SCL_TO_PROTST) == set(SCL_LABELS)
    assert {v for v in SCL_TO_PROTST.values() if v} <= set(PROTST_LOCATIONS)
    assert [k for k, v in SCL_TO_PROTST.items() if v is None] == ["Cytoplasm;Nucleus", "Cytoplasm;Membrane"]


def test_uniprot_location_rules():
    assert protst_label_of_location("Mitochondrion inner membrane; Multi-pass membrane protein.") == "Mitochondrion"
    assert protst_label_of_location("Cytoplasm, cytoskeleton, cilium axoneme.") == "Cytoplasm"
    assert protst_label_of_location("Plastid, chloroplast thylakoid membrane.") == "Plastid"
    assert protst_label_of_location("Secreted. Note=Found in the nucleus of dying cells.") == "Extracellular"
    assert protst_classes_of_location("Cytoplasm. Nucleus.") == {"Cytoplasm", "Nucleus"}
    assert protst_label_of_location("Cytoplasm. Nucleus.") is None
    assert protst_label_of_location("Membrane; Single-pass membrane protein.") is None


def test_embedded_protst_prompts_match_the_files(shared_data):
    folder = shared_data / "protein" / "protst_prompts"
    for prompt_set in ("name", "language", "template"):
        for field in ("name", "description", "both"):
            assert protst_prompts(prompt_set, field) == read_protst_prompts(folder, prompt_set, field)
    names, prompts = protst_prompts("language", "name")
    assert names == list(PROTST_LOCATIONS) and prompts[6] == ["A protein locating at Nucleus"]
