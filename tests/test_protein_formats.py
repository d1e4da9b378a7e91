"""The usual download formats and damaged files: compressed FASTA / flat files, non-UTF-8 bytes,
truncated entries, description rows without sequences."""
from __future__ import annotations

import bz2
import gzip
import lzma
import warnings

import pytest
from test_protein_readers import entry

from domains.protein import (
    MissingDescriptionError,
    MissingSequenceError,
    ProteinAdapter,
    ProteinDataWarning,
    read_fasta,
    read_uniprot,
)

COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


def _fasta(n: int = 300) -> str:
    return "".join(f">sp|P{i:05d}|PROT{i}_HUMAN Protein {i}\nMKTAYIAKQRQISFVKSHFSRQLEERLGLI{'A' * (i % 7)}\n"
                   for i in range(n))


def _table(n: int = 300) -> str:
    return "accession\tfunction\n" + "".join(f"P{i:05d}\tFunction of protein {i}\n" for i in range(n))


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_compressed_fasta_reads_like_the_plain_file(tmp_path, suffix) -> None:
    plain = tmp_path / "p.fasta"
    plain.write_text(_fasta())
    (tmp_path / "p.tsv").write_text(_table())
    packed = tmp_path / f"q.fasta{suffix}"
    packed.write_bytes(COMPRESSORS[suffix](plain.read_bytes()))
    expected = read_fasta(plain, descriptions=tmp_path / "p.tsv")
    got = read_fasta(packed, descriptions=tmp_path / "p.tsv")
    assert [(r.accession, r.sequence, r.function) for r in got] == [
        (r.accession, r.sequence, r.function) for r in expected]
    # by content too: a gzip file without the .gz suffix
    hidden = tmp_path / "r.fasta"
    hidden.write_bytes(gzip.compress(plain.read_bytes()))
    assert len(read_fasta(hidden, descriptions=tmp_path / "p.tsv")) == 300


def test_adapter_reads_a_gzipped_fasta_with_its_table(tmp_path) -> None:
    (tmp_path / "proteins.fasta.gz").write_bytes(gzip.compress(_fasta(40).encode()))
    (tmp_path / "proteins.tsv").write_text(_table(40))
    adapter = ProteinAdapter(data_dir=tmp_path / "proteins.fasta.gz", cluster_method="kmer")
    records = adapter._read_user_data(tmp_path / "proteins.fasta.gz")
    assert len(records) == 40 and records[0].function == "Function of protein 0"


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_compressed_uniprot_flat_files(tmp_path, suffix) -> None:
    text = entry("P11111", "ONE") + entry("P22222", "TWO")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f"entries.dat{suffix}").write_bytes(COMPRESSORS[suffix](text.encode()))
    recs = read_uniprot(tmp_path)
    assert [r.accession for r in recs] == ["P11111", "P22222"]
    single = tmp_path / "single.txt"
    single.write_bytes(gzip.compress(text.encode()))  # by content, whatever the suffix says
    assert [r.accession for r in read_uniprot(single)] == ["P11111", "P22222"]


def test_one_non_utf8_header_keeps_every_record(tmp_path) -> None:
    raw = bytearray(_fasta().encode())
    pos = raw.index(b"Protein 17")
    raw[pos:pos + 1] = b"\xe9"  # a Latin-1 byte in one header
    path = tmp_path / "p.fasta"
    path.write_bytes(bytes(raw))
    with pytest.warns(ProteinDataWarning, match=r"(?s)record #18 \('sp\|P00017\|PROT17_HUMAN'\).*not UTF-8"):
        recs = read_fasta(path, on_error="skip")
    assert len(recs) == 300
    with pytest.warns(ProteinDataWarning):
        assert len(read_fasta(path)) == 300, "a header byte is no reason to refuse the file"


def test_truncated_flat_file_keeps_the_good_entries_in_skip_mode(tmp_path) -> None:
    text = "".join(entry(f"P{i:05d}", f"N{i}") for i in range(55))
    cut = text[: text.index("ID   N54_HUMAN") + 200]  # entry 55 ends mid-way
    path = tmp_path / "many.dat"
    path.write_text(cut)
    with pytest.warns(ProteinDataWarning, match=r"entry #55 and the rest of the file .* after 54 good entries"):
        recs = read_uniprot(path, on_error="skip")
    assert len(recs) == 54
    with pytest.raises(ValueError, match=r"many\.dat: entry #55"):
        read_uniprot(path)
    gz = tmp_path / "many.dat.gz"
    gz.write_bytes(gzip.compress(text.encode())[:-40])  # a truncated download
    with pytest.warns(ProteinDataWarning, match="truncated"):
        recs = read_uniprot(gz, on_error="skip")
    assert 0 < len(recs) <= 55


def test_description_row_without_a_fasta_record(tmp_path) -> None:
    fa = tmp_path / "p.fasta"
    fa.write_text(">P1\nMKTA\n>P2\nMLLV\n")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("accession\tfunction\nP1\tone\nP2\ttwo\nP9\tnine\n")
    with pytest.raises(MissingSequenceError, match=r"d\.tsv: row 'P9' has no FASTA record in .*p\.fasta"):
        read_fasta(fa, descriptions=tsv)
    with pytest.warns(ProteinDataWarning, match="'P9' has no FASTA record"):
        recs = read_fasta(fa, descriptions=tsv, on_error="skip")
    assert [r.accession for r in recs] == ["P1", "P2"]


def test_missing_description_is_a_value_error(tmp_path) -> None:
    """So every handler of bad input (the benchmarks catch ValueError) turns it into one line."""
    assert issubclass(MissingDescriptionError, ValueError) and issubclass(MissingDescriptionError, KeyError)
    fa = tmp_path / "p.fasta"
    fa.write_text(">P1\nMKTA\n")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("accession\tfunction\nP1\t\n")
    with pytest.raises(ValueError, match="only empty cells"), warnings.catch_warnings():
        read_fasta(fa, descriptions=tsv)


def test_undecodable_bytes_in_a_sequence_line_are_a_bad_record(tmp_path) -> None:
    path = tmp_path / "p.fasta"
    path.write_bytes(b">P1\nMKTA\n>P2\nMK\xffTA\n>P3\nMLLV\n")
    with pytest.warns(ProteinDataWarning, match=r"P2"):
        recs = read_fasta(path, on_error="skip")
    assert [r.accession for r in recs] == ["P1", "P3"]
    with pytest.raises(ValueError, match="P2"):
        read_fasta(path)


def test_fasta_sequences_read_lazily_what_read_fasta_reads(tmp_path) -> None:
    from domains.protein import FastaSequences, InvalidSequenceError, KmerEncoder
    from gentleclip.cache import FeatureCache

    path = tmp_path / "p.fasta"
    text = _fasta(50).replace("MKTAYIAKQRQ", "MKTAYIA\nKQRQ")  # sequences over several lines
    path.write_text(text)
    seqs = FastaSequences(path)
    expected = [r.sequence for r in read_fasta(path)]
    assert len(seqs) == 50 and seqs[:] == expected and seqs[10:13] == expected[10:13]
    assert seqs[-1] == expected[-1] and seqs[::10] == expected[::10]
    with pytest.raises(IndexError):
        seqs[50]
    feats = FeatureCache(tmp_path / "cache").get(KmerEncoder(k=2), seqs, fingerprint=seqs.fingerprint, chunk_size=7)
    np_expected = KmerEncoder(k=2).encode(expected)
    assert (feats[:, 0] == np_expected).all()
    path.write_text(text.replace("Protein 3", "Protein three"))
    assert FastaSequences(path).fingerprint != seqs.fingerprint, "the fingerprint follows the bytes"
    (tmp_path / "bad.fasta").write_text(">A\nMKTA\n>B\nMK1TA\n")
    with pytest.raises(InvalidSequenceError, match=r"bad\.fasta \(record #2\)"):
        FastaSequences(tmp_path / "bad.fasta")[:]
    (tmp_path / "p.fasta.gz").write_bytes(gzip.compress(text.encode()))
    with pytest.raises(ValueError, match="compressed"):
        FastaSequences(tmp_path / "p.fasta.gz")
