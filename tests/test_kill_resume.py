"""kill -9 at random points of ``gentleclip embed`` and ``gentleclip train`` (run as subprocesses):
the resumed runs give bit-identical features and weights to uninterrupted runs."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORDS = ["kinase", "membrane", "nucleus", "transport", "binding", "ribosome", "channel", "secreted", "enzyme",
         "mitochondrion", "receptor", "DNA", "repair", "signal", "cytoplasm", "lipid"]


def _write_data(folder: Path, n: int = 200) -> Path:
    rng = np.random.default_rng(7)
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=int(rng.integers(40, 160)))) for _ in range(n)]
    (folder / "p.fasta").write_text("".join(f">Q{i:04d}\n{s}\n" for i, s in enumerate(seqs)))
    texts = [f"Protein {i}: {' '.join(rng.choice(WORDS, size=6))}." for i in range(n)]
    (folder / "p.tsv").write_text("accession\tfunction\n" + "".join(f"Q{i:04d}\t{t}\n" for i, t in enumerate(texts)))
    return folder / "p.fasta"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gentleclip.app.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "GENTLECLIP_QUIET": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _items_done(cache: Path) -> int:
    total = 0
    for p in cache.rglob("progress.json"):
        try:
            done = json.loads(p.read_text())["done"]
        except (OSError, json.JSONDecodeError, KeyError):
            continue
        total += sum(b - a for ranges in done.values() for a, b in ranges)
    return total


def _log_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


def _kill_when(cmd: list[str], reached, timeout: float = 240) -> bool:
    """Start ``cmd``; SIGKILL it as soon as ``reached()``; True if it was killed before finishing."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the child made no progress"
            if reached():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, err
    return False


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


def _features(cache: Path) -> dict[str, np.ndarray]:
    return {p.parent.name: np.load(p) for p in cache.rglob("features.npy")}


def test_embed_and_train_resume_bit_identically_after_kill_9(tmp_path) -> None:
    fasta = _write_data(tmp_path)
    rng = random.Random(20261201)
    data = ["--domain", "protein", "--task", "uniprot", "--data-dir", str(fasta), "--encoder", "kmer",
            "--set", "domain_options.chunk_size=20"]
    ref_cache, cache = tmp_path / "ref-cache", tmp_path / "cache"
    _run(_cli("embed", *data, "--cache-dir", str(ref_cache)))
    reference = _features(ref_cache)
    assert len(reference) >= 4  # train / val / test proteins and texts

    kills = 0
    for _ in range(2):  # kill -9 at random points of the caching, then let it finish
        target = _items_done(cache) + rng.randint(1, 120)
        kills += _kill_when(_cli("embed", *data, "--cache-dir", str(cache)), lambda: _items_done(cache) >= target)
    assert kills >= 1, "the embedding was never interrupted"
    _run(_cli("embed", *data, "--cache-dir", str(cache)))
    resumed = _features(cache)
    assert resumed.keys() == reference.keys()
    for key, ref in reference.items():
        assert np.array_equal(resumed[key], ref), f"cache entry {key} differs after kill and resume"

    train = ["train", *data, "--cache-dir", str(ref_cache), "--method", "gentle", "--ratio", "0.2", "--steps", "150",
             "--batch-size", "32", "--set", "head.out_dim=16", "--set", "head.hidden_dim=32",
             "--set", "train.checkpoint_every=10", "--set", "train.log_every=1", "--set", "train.eval_every=30",
             "--set", "train.patience=0"]
    out = tmp_path / "run"
    _train_killed_and_resumed(train, tmp_path / "ref-run", out, rng, max_steps_between_kills=50)
    ref_run = json.loads((tmp_path / "ref-run" / "config.json").read_text())["extra"]["run"]
    got_run = json.loads((out / "config.json").read_text())["extra"]["run"]
    assert (got_run["best_step"], got_run["best_val"]) == (ref_run["best_step"], ref_run["best_val"])
    assert not list(out.rglob("*.tmp*")), "no temporary left behind"


def test_fine_tuning_resumes_bit_identically_after_kill_9(tmp_path) -> None:
    """End-to-end: the text encoder's last block trains from raw captions; kills at random steps, then the
    resumed run ends with the same heads and encoder weights as an uninterrupted one."""
    fasta = _write_data(tmp_path, n=120)
    rng = random.Random(20261202)
    train = ["train", "--domain", "protein", "--task", "uniprot", "--data-dir", str(fasta), "--encoder", "kmer2",
             "--cache-dir", str(tmp_path / "cache"), "--method", "clip", "--ratio", "0.5", "--steps", "40",
             "--batch-size", "16", "--finetune-b", "last1", "--set", "head.out_dim=16", "--set", "head.hidden_dim=32",
             "--set", "train.checkpoint_every=4", "--set", "train.log_every=1", "--set", "train.eval_every=10",
             "--set", "train.patience=0"]
    out = tmp_path / "run"
    weights = _train_killed_and_resumed(train, tmp_path / "ref-run", out, rng, max_steps_between_kills=15)
    assert any(k.startswith("encoder_b.") for k in weights), "the encoder's weights are saved and compared"
    assert not list(out.rglob("*.tmp*")), "no temporary left behind"


def _train_killed_and_resumed(train: list[str], ref: Path, out: Path, rng: random.Random,
                              max_steps_between_kills: int) -> list[str]:
    """Train once uninterrupted into ``ref``; into ``out`` with kill -9 at random steps, then to the end;
    assert the saved weights are equal bit for bit; return their names."""
    _run(_cli(*train, "--out", str(ref)))
    kills = 0
    for _ in range(2):
        target = _log_rows(out / "train" / "log.csv") + rng.randint(3, max_steps_between_kills)
        kills += _kill_when(_cli(*train, "--out", str(out)), lambda: _log_rows(out / "train" / "log.csv") >= target)
    assert kills >= 1, "training was never interrupted"
    # a kill in the middle of an atomic write leaves its temporary: plant one as such a kill would
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True).stdout)
    (out / "train" / f"validation.json.tmp{dead_pid}").write_text("{")
    _run(_cli(*train, "--out", str(out)))
    from safetensors.numpy import load_file

    ref_w, got_w = load_file(ref / "model.safetensors"), load_file(out / "model.safetensors")
    assert ref_w.keys() == got_w.keys()
    for key in ref_w:
        assert np.array_equal(ref_w[key], got_w[key]), f"weight {key} differs after kill and resume"
    return list(ref_w)
