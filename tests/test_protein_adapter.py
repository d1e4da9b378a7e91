"""ProteinAdapter: SCL2205 and UniProt/FASTA alignment tasks, features via FeatureCache, evaluation rows."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from fake_data import generator

from domains.protein import (
    PROTST_LOCATIONS,
    SCL_TO_PROTST,
    KmerEncoder,
    ProteinAdapter,
    ProteinDataWarning,
    make_protein_encoder,
    protst_label_of_location,
)
from gentleclip.task import AlignmentTask

AA = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


class HashTextEncoder:
    """A fast deterministic bag-of-words text encoder (stands in for MiniLM in tests)."""

    name = "hash-bow"
    identity = "hash-bow-v1|dim=64"
    dim = 64

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, items, view=0):
        self.calls += 1
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for i, text in enumerate(items):
            words = text.lower().split()
            if view and len(words) > 1:
                words = words[:-1] if (zlib.crc32(text.encode()) + view) % 2 else words[1:]
            for w in words:
                h = zlib.crc32(w.encode())
                out[i, h % self.dim] += 1.0 if (h >> 16) % 2 else -1.0
            out[i] /= max(np.linalg.norm(out[i]), 1e-6)
            if not out[i].any():
                out[i, 0] = 1.0
        return out


def test_make_protein_encoder_specs():
    assert make_protein_encoder("kmer").dim == 8420
    assert make_protein_encoder("kmer2").dim == 420
    enc = make_protein_encoder("kmer3-h512")
    assert isinstance(enc, KmerEncoder) and enc.dim == 20 + 400 + 512
    same = KmerEncoder(k=1)
    assert make_protein_encoder(same) is same
    with pytest.raises(ValueError, match="known ESM-2 names"):
        make_protein_encoder("protbert")


# ---------------------------------------------------------------------------- SCL2205
@pytest.fixture(scope="module")
def scl(tmp_path_factory):
    adapter = ProteinAdapter(encoder="kmer2", text_encoder=HashTextEncoder(),
                             cache_dir=tmp_path_factory.mktemp("cache"),
                             max_train=300, max_test=400, probe_max_train=300,
                             cluster_method="kmer")  # fmt: skip  (MMseqs2 has its own tests; it takes ~1 min here)
    return adapter, adapter.scl2205_task()


def test_scl2205_task_shapes_groups_and_leak_filter(scl):
    adapter, task = scl
    ds = adapter.scl2205()
    assert isinstance(task, AlignmentTask) and task.dataset == "SCL2205"
    assert task.train_a.shape == (300, 2, 420) and task.train_b.shape == (300, 2, 64)
    assert len(task.groups) == 300 and task.modality_names == ("protein", "text")
    assert set(task.encoders) == {"protein", "text"}
    assert {ds.records[i].split for i in ds.train} == {"train"}
    assert {ds.records[i].split for i in ds.test} == {"heldout"}
    assert len(ds.test) == 400 and ds.info["n_heldout"] == 2631
    # near-identical heldout proteins were removed; none left shares a group with any train protein
    assert ds.info["n_removed_from_test"] > 50
    train_groups = {ds.groups[i] for i, r in enumerate(ds.records) if r.split == "train"}
    assert not {ds.groups[i] for i in ds.test} & train_groups
    # the eval split is the validation set: leak-filtered too, never trained on, never tested
    assert {ds.records[i].split for i in ds.val} == {"eval"} and ds.info["n_removed_from_val"] > 0
    assert not {ds.groups[i] for i in ds.val} & train_groups
    assert task.validation is not None and task.validation.metric == "zeroshot_top1"
    assert len(task.validation) == sum(SCL_TO_PROTST[lab] is not None for lab in ds.labels(ds.val))
    assert task.train_labels.shape == (300,) and task.train_labels.max() < len(adapter.class_names)
    # row i of train_b is the sentence of item i (a location sentence of its label)
    i = ds.train[7]
    expected = HashTextEncoder().encode([ds.texts[i]], view=0)[0]
    np.testing.assert_allclose(task.train_b[7, 0], expected, atol=1e-6)
    np.testing.assert_allclose(task.train_a[7, 0], KmerEncoder(k=2).encode([ds.records[i].sequence])[0], atol=1e-6)


def test_scl2205_pairing_text_is_not_the_evaluation_prompt(scl):
    adapter, _ = scl
    ds = adapter.scl2205()
    prompts = {p for ps in adapter.class_prompts for p in ps}
    assert not prompts & set(ds.texts)
    for text, rec in zip(ds.texts, ds.records):
        assert "locating at" not in text and "SUBCELLULAR LOCATION" not in text


def test_scl2205_evaluate_rows_and_oracle(scl):
    adapter, task = scl
    ds = adapter.scl2205()
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((420, 64)).astype(np.float32)
    rows = task.evaluate(lambda x: np.asarray(x) @ proj, lambda x: np.asarray(x))
    metrics = {r["metric"]: r["value"] for r in rows}
    assert {r["task"] for r in rows} == {task.name} and {r["dataset"] for r in rows} == {"SCL2205"}
    for name in ("zeroshot_top1", "zeroshot_balanced_acc", "linear_probe_acc", "knn_acc", "nmi", "v_measure",
                 "gap_centroid_distance", "pair_cosine_mean", "joint_v_measure", "joint_nmi", "joint_ari"):
        assert name in metrics, name
    assert 0 <= metrics["zeroshot_top1"] <= 100 and 0 <= metrics["linear_probe_acc"] <= 100
    assert not any(m.startswith(("p2t", "t2p")) for m in metrics)  # no label-text retrieval on SCL2205

    # Oracle: each heldout protein embedded exactly at the prompt of its true ProtST class.
    # Zero-shot must then be perfect -- this checks the label mapping and prompt order end to end.
    test_feats = adapter.protein_features(ds.sequences(ds.test), n_views=1)[:, 0]
    prompt_feats = adapter.text_features([p[0] for p in adapter.class_prompts], n_views=1)[:, 0]
    lookup = {row.tobytes(): ds.records[i].label for row, i in zip(np.asarray(test_feats), ds.test)}

    def oracle(x):
        x = np.asarray(x)
        out = rng.standard_normal((len(x), 64)).astype(np.float32)
        for j, row in enumerate(x):
            target = SCL_TO_PROTST.get(lookup.get(row.tobytes(), ""), None)
            if target is not None:
                out[j] = prompt_feats[PROTST_LOCATIONS.index(target)]
        return out

    metrics = {r["metric"]: r["value"] for r in task.evaluate(oracle, lambda x: np.asarray(x))}
    assert metrics["zeroshot_top1"] == pytest.approx(100.0)


def test_scl2205_features_are_cached(scl, tmp_path):
    adapter, _ = scl
    text = adapter.text_encoder
    calls = text.calls
    adapter.scl2205_task()  # same adapter: everything served from the cache
    assert text.calls == calls
    n_entries = len(adapter.cache.entries())
    again = ProteinAdapter(encoder="kmer2", text_encoder=HashTextEncoder(), cache_dir=adapter.cache.root,
                           max_train=300, max_test=400, probe_max_train=300, cluster_method="kmer")  # fmt: skip
    task = again.scl2205_task()
    assert again.text_encoder.calls == 0 and len(again.cache.entries()) == n_entries
    assert task.train_a.shape == (300, 2, 420)


# ---------------------------------------------------------------------------- UniProt / FASTA
UNIPROT = generator("uniprot")
LOCATIONS = UNIPROT.LOCATIONS
make_flatfiles = UNIPROT.generate


def test_uniprot_task_from_flatfiles(tmp_path):
    family_of = make_flatfiles(tmp_path / "data")
    adapter = ProteinAdapter(encoder="kmer2", text_encoder=HashTextEncoder(), cache_dir=tmp_path / "cache",
                             data_dir=tmp_path / "data", test_fraction=0.25)  # fmt: skip
    with pytest.warns(ProteinDataWarning) as warned:
        task = adapter.uniprot_task(extra_texts=["GO term: kinase activity.", "GO term: nucleus."])
    messages = " ".join(str(w.message) for w in warned)
    assert "rna-uniprot.txt" in messages and "Q99999" in messages  # non-entry file and text-less record
    ds = adapter.uniprot()
    assert len(ds.records) == len(family_of) and ds.info["n_without_text"] == 1
    fam = np.array([family_of[r.accession] for r in ds.records])
    assert not set(fam[ds.train]) & set(fam[ds.test])  # families never straddle the split
    assert len(np.unique(ds.groups)) == 20  # the clustering recovers the families
    assert task.train_a.shape == (len(ds.train), 2, 420) and task.train_b.shape == (len(ds.train), 2, 64)
    assert task.extra_unpaired_b.shape == (2, 2, 64)
    assert ds.texts[0].startswith("Enzyme of pathway")

    # Oracle: proteins embedded at their own text -> perfect retrieval and zero gap
    test_a = adapter.protein_features(ds.sequences(ds.test), n_views=1)[:, 0]
    test_b = adapter.text_features([ds.texts[i] for i in ds.test], n_views=1)[:, 0]
    to_text = {row.tobytes(): t for row, t in zip(np.asarray(test_a), np.asarray(test_b))}
    rng = np.random.default_rng(0)

    def oracle(x):
        return np.stack([to_text.get(r.tobytes(), rng.standard_normal(64).astype(np.float32)) for r in np.asarray(x)])

    metrics = {r["metric"]: r["value"] for r in task.evaluate(oracle, lambda x: np.asarray(x))}
    assert metrics["p2t_R@1"] == pytest.approx(100.0) and metrics["t2p_R@1"] == pytest.approx(100.0)
    assert metrics["mean_recall"] == pytest.approx(100.0)
    assert metrics["gap_centroid_distance"] == pytest.approx(0.0, abs=1e-5)
    proj = rng.standard_normal((420, 64)).astype(np.float32)
    metrics = {r["metric"]: r["value"] for r in task.evaluate(lambda x: np.asarray(x) @ proj, lambda x: np.asarray(x))}
    assert metrics["p2t_R@1"] < 60 and "zeroshot_top1" in metrics and "nmi" in metrics


def test_uniprot_task_from_fasta_and_table(tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "fasta"
    data.mkdir()
    lines, rows = [], ["accession\tfunction\tlocation"]
    for i in range(24):
        seq = "".join(rng.choice(AA, size=int(rng.integers(60, 200))))
        lines.append(f">sp|A{i:05d}|X_HUMAN protein {i}\n{seq}\n")
        rows.append(f"A{i:05d}\tBinds substrate number {i}.\t{LOCATIONS[i % 5]}")
    (data / "proteins.fasta").write_text("".join(lines))
    (data / "proteins.tsv").write_text("\n".join(rows) + "\n")
    adapter = ProteinAdapter(encoder="kmer1", text_encoder=HashTextEncoder(), cache_dir=tmp_path / "cache",
                             data_dir=data / "proteins.fasta", n_views=1, test_fraction=0.25)  # fmt: skip
    task = adapter.uniprot_task()
    ds = adapter.uniprot()
    assert len(ds.records) == 24 and task.train_a.shape[1:] == (1, 20)
    assert protst_label_of_location(ds.records[0].location) == "Nucleus"
    rows = task.evaluate(lambda x: np.asarray(x) @ np.ones((20, 64), np.float32) + 0.0, lambda x: np.asarray(x))
    assert any(r["metric"] == "t2p_R@10" for r in rows)
    bad = ProteinAdapter(encoder="kmer1", text_encoder=HashTextEncoder(), cache_dir=tmp_path / "cache",
                         data_dir=data, text_fields=("comment",))  # fmt: skip
    with pytest.raises(KeyError, match="unknown text field 'comment'"):
        bad.uniprot()


def test_uniprot_task_on_real_flatfiles(shared_data, tmp_path):
    adapter = ProteinAdapter(encoder="kmer1", text_encoder=HashTextEncoder(), cache_dir=tmp_path,
                             data_dir=shared_data / "protein" / "uniprot_flatfiles", n_views=1)  # fmt: skip
    with pytest.warns(ProteinDataWarning):
        task = adapter.uniprot_task()
    ds = adapter.uniprot()
    assert 1000 < len(ds.records) < 1300  # entries with a FUNCTION comment
    assert 0.15 < len(ds.test) / len(ds.records) < 0.3
    assert not set(ds.groups[ds.train]) & set(ds.groups[ds.test])
    assert task.train_a.shape == (len(ds.train), 1, 20)
    # ProtST's EC reaction classes: the test proteins with exactly one EC number among them are scored
    ec_adapter = ProteinAdapter(encoder="kmer1", text_encoder=HashTextEncoder(), cache_dir=tmp_path,
                                data_dir=shared_data / "protein" / "uniprot_flatfiles", n_views=1,
                                ec_prompts_dir=shared_data / "protein" / "protst_prompts")  # fmt: skip
    with pytest.warns(ProteinDataWarning):
        ec_task = ec_adapter.uniprot_task()
    ec = ec_task.info["ec_zero_shot"]
    assert ec["classes"] == 384 and ec["scored"] and 10 <= ec["test_proteins"] < len(ds.test)
    proj = np.random.default_rng(0).standard_normal((20, 64)).astype(np.float32)
    metrics = {r["metric"]: r["value"] for r in ec_task.evaluate(lambda x: np.asarray(x) @ proj,
                                                                 lambda x: np.asarray(x))}
    assert 0 <= metrics["ec_zeroshot_top1"] <= 100 and "ec_zeroshot_top5" in metrics
    assert "ec_zeroshot_top1" not in {r["metric"] for r in task.evaluate(lambda x: np.asarray(x) @ proj,
                                                                         lambda x: np.asarray(x))}


def test_reaction_prompts_and_ec_labels(tmp_path):
    from domains.protein.reactions import ec_class_labels, read_reaction_prompts

    (tmp_path / "reaction_description.tsv").write_text(
        "id\tEC_number\thier1\tname\n1\t2.7.11.1\tTransferases.\tkinase.\n0\t1.1.1.1\tOxidoreductases.\tADH.\n")
    (tmp_path / "reaction_language.tsv").write_text("id\tname\n0\tAn alcohol dehydrogenase.\n1\tA kinase.\n")
    ecs, prompts = read_reaction_prompts(tmp_path)
    assert ecs == ["1.1.1.1", "2.7.11.1"] and prompts == [["An alcohol dehydrogenase."], ["A kinase."]]
    assert ec_class_labels([("2.7.11.1",), ("2.7.11.1", "1.1.1.1"), ("3.4.-.-",), ()], ecs) == [
        "2.7.11.1", None, None, None]  # several classes or none: not scored
    (tmp_path / "reaction_language.tsv").write_text("id\tname\n0\tAn alcohol dehydrogenase.\n1\t \n")
    with pytest.raises(ValueError, match=r"reaction_language.tsv: id 1: empty prompt"):
        read_reaction_prompts(tmp_path)
    (tmp_path / "reaction_language.tsv").write_text("id\tname\n0\tAn alcohol dehydrogenase.\n")
    with pytest.raises(ValueError, match="different ids"):
        read_reaction_prompts(tmp_path)
    with pytest.raises(FileNotFoundError, match="reaction_name.tsv"):
        read_reaction_prompts(tmp_path, style="name")
    with pytest.raises(FileNotFoundError, match="ProtST's repository has them"):
        read_reaction_prompts(tmp_path / "nowhere")
