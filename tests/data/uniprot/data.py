"""Fake UniProt flat files (Swiss-Prot text entries), in the layouts users bring.

:func:`entry` writes one full entry (function, location, EC, GO and keyword lines);
:func:`generate` writes a folder of families of near-identical sequences, one file per entry plus
a multi-entry file, an entry without FUNCTION and a file that is not a protein entry.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

AA = np.array(list("ACDEFGHIKLMNPQRSTVWY"))

FULL_ENTRY = """ID   {name}_HUMAN             Reviewed;          30 AA.
AC   {acc}; Q00001;
DT   01-JAN-2000, integrated into UniProtKB/Swiss-Prot.
DE   RecName: Full=Test kinase {acc} {{ECO:0000305}};
DE            EC=2.7.11.1;
GN   Name=TK1;
OS   Homo sapiens (Human).
OC   Eukaryota; Metazoa.
OX   NCBI_TaxID=9606;
CC   -!- FUNCTION: Phosphorylates test substrates in response to tissue-
CC       type signals {{ECO:0000269|PubMed:12345}}.
CC   -!- SUBCELLULAR LOCATION: Nucleus {{ECO:0000269}}.
DR   GO; GO:0005634; C:nucleus; IDA:UniProtKB.
DR   GO; GO:0004674; F:protein serine/threonine kinase activity; IEA:UniProtKB-EC.
KW   Kinase; Nucleus; Transferase.
SQ   SEQUENCE   30 AA;  3300 MW;  0000000000000000 CRC64;
     {seq}
//
"""
SEQ = "MKTAYIAKQR QISFVKSHFS RQLEERLGLI"


def entry(acc: str, name: str = "TEST1", seq: str = SEQ) -> str:
    """One full Swiss-Prot entry of 30 residues (``seq`` may hold spaces, as the SQ block does)."""
    return FULL_ENTRY.format(acc=acc, name=name, seq=seq)


ENTRY = """ID   {name}_HUMAN             Reviewed;          {n} AA.
AC   {acc};
DE   RecName: Full={pname};
OS   Homo sapiens (Human).
CC   -!- FUNCTION: {function}
CC   -!- SUBCELLULAR LOCATION: {location}
SQ   SEQUENCE   {n} AA;  3300 MW;  0000000000000000 CRC64;
     {seq}
//
"""
LOCATIONS = ["Nucleus.", "Mitochondrion matrix.", "Secreted.", "Cytoplasm, cytosol.", "Peroxisome."]


def _mutate(seq: str, rng: np.random.Generator, n: int = 5) -> str:
    s = np.array(list(seq))
    s[rng.choice(len(s), size=n, replace=False)] = rng.choice(AA, size=n)
    return "".join(s)


def generate(folder: Path, n_families: int = 20, per_family: int = 3, seed: int = 0) -> dict[str, int]:
    """Synthetic flat files: families of near-identical sequences, one file per entry, one multi-entry
    file, one entry without FUNCTION and one file that is not a protein entry."""
    rng = np.random.default_rng(seed)
    family_of: dict[str, int] = {}
    chunks = []
    for f in range(n_families):
        parent = "".join(rng.choice(AA, size=int(rng.integers(120, 300))))
        for m in range(per_family):
            seq = parent if m == 0 else _mutate(parent, rng)
            acc = f"P{f:02d}{m:03d}"
            family_of[acc] = f
            text = ENTRY.format(name=f"T{f}{m}", n=len(seq), acc=acc, pname=f"Protein {f}-{m}",
                                function=f"Enzyme of pathway {f} variant {m} that binds ligand {f * 7 + m}.",
                                location=LOCATIONS[f % len(LOCATIONS)], seq=seq)  # fmt: skip
            chunks.append((acc, text))
    (folder / "sub").mkdir(parents=True)
    for acc, text in chunks[:-6]:
        (folder / f"{acc}-uniprot.txt").write_text(text)
    (folder / "sub" / "many.dat").write_text("".join(t for _, t in chunks[-6:]))
    (folder / "sub" / "rna-uniprot.txt").write_text("This gene is a non-coding RNA; it has no UniProt entry.\n")
    nofunc = ENTRY.format(name="NOF", n=50, acc="Q99999", pname="No function", function="x",
                          location="Nucleus.", seq="".join(rng.choice(AA, size=50)))
    nofunc = nofunc.replace("CC   -!- FUNCTION: x\n", "")
    (folder / "nofunction.txt").write_text(nofunc)
    return family_of


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "uniprot"
    out.mkdir(parents=True, exist_ok=True)
    print(len(generate(out)), "entries in families under", out)
