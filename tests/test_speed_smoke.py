"""Smoke test of ``benchmarks/run_speed.py``: its functions at tiny sizes (a few seconds, no GPU).

Checks that the per-sample loop reference losses and our vectorised losses agree (values and
gradients, float64), that the embedding paths agree, that the report files are written with
the expected content, and that ``--device cuda`` fails clearly without a GPU.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import run_speed  # noqa: E402
import speed_reference  # noqa: E402


@pytest.mark.parametrize("n", [8, 33])
def test_reference_and_vectorised_losses_agree(n: int) -> None:
    checks = run_speed.check_loss_agreement(n, dim=12, paired_fraction=0.25, seed=1)
    assert set(checks) == {"CLIP", "SDD", "MK-MMD", "CLIP+SDD+MMD"}
    for name, c in checks.items():
        assert np.isfinite(c["value_ours"]) and c["value_ours"] != 0.0, name
        assert c["value_abs_diff"] <= 1e-5 * max(1.0, abs(c["value_loop"])), (name, c)
        assert c["grad_max_abs_diff"] <= 1e-5, (name, c)


def test_reference_options_match_ours() -> None:
    """Non-default options of SDD / MK-MMD give the same values in both implementations."""
    from gentleclip.losses import MKMMDLoss, SDDLoss

    za, zb = run_speed._loss_inputs(10, 6, 3, torch.float64, "cpu")
    zb = zb[:7]
    for kw in ({"normalize": False}, {"spread": "range"}, {"spread": "none", "bandwidth": 0.7}):
        ours = float(SDDLoss(**kw)(za, zb))
        loop = float(speed_reference.sdd_loss_loop(za, zb, **kw))
        assert ours == pytest.approx(loop, rel=1e-9, abs=1e-12), kw
    for kw in ({"unbiased": True}, {"bandwidth": 0.5, "kernel_num": 3, "kernel_mul": 3.0}):
        ours = float(MKMMDLoss(**kw)(za, zb))
        loop = float(speed_reference.mkmmd_loss_loop(za, zb, **kw))
        assert ours == pytest.approx(loop, rel=1e-9, abs=1e-12), kw


def test_run_writes_report(tmp_path: Path) -> None:
    cfg = run_speed.SpeedConfig(
        only=("loss", "train", "protein"), out=str(tmp_path / "results"), isolate=False, threads=1, min_time=0.0,
        loss_batches=(16,), loss_dim=8,
        train_batch=32, n_pairs=16, pool_base=48, pool_scales=(1, 2), train_steps=3, dim_a=8, dim_b=12,
        n_seqs=3, esm_archs=("2x32x4",), max_residues=40, window_overlap=8, toks_per_batch=128,
        fixed_batch_size=2, work_dir=str(tmp_path / "work"),
    )
    report = run_speed.run(cfg, command="pytest")
    md = (tmp_path / "results" / "speed.md").read_text()
    data = json.loads((tmp_path / "results" / "speed.json").read_text())
    assert data["meta"]["command"] == "pytest"
    for key in ("cpu_model", "logical_cores", "torch", "device", "load_average"):
        assert key in data["meta"]["machine"], key
    tasks = {r["task"] for r in data["rows"]}
    assert tasks == {"loss", "train", "protein"}
    assert data["checks"] and all(c["passed"] for c in data["checks"]), [c for c in data["checks"] if not c["passed"]]
    speedups = {(c["task"], c["case"], c["baseline"], c["metric"]) for c in data["comparisons"]}
    assert ("loss", "CLIP+SDD+MMD@16", "per_sample_loop", "fwd_bwd_ms") in speedups
    assert any(k[0] == "protein" and k[2] == "fair_esm_batches" for k in speedups)
    assert any(k[0] == "train" and k[2] == "plain_loop" for k in speedups)
    for c in data["comparisons"]:
        assert c["speedup"] > 0
    for title in ("## Losses", "## Training", "## Protein", "Correctness checks"):
        assert title in md, title
    growth = [r for r in data["rows"] if r["method"] == "growth_vs_first" and r["metric"] == "steps_ratio"]
    assert len(growth) == 2 and growth[1]["value"] > growth[0]["value"] == 1.0
    assert report.value("protein", report._cases("protein")[0], "ours", "padding_fraction") is not None
    assert set(data["meta"]["sections"]) == {"loss", "train", "protein"}

    # re-running one section with merge=True keeps the others
    cfg.only, cfg.merge, cfg.loss_batches = ("loss",), True, (12,)
    run_speed.run(cfg, command="pytest again")
    data = json.loads((tmp_path / "results" / "speed.json").read_text())
    assert {r["task"] for r in data["rows"]} == {"loss", "train", "protein"}
    assert {r["case"] for r in data["rows"] if r["task"] == "loss"} == {f"{n}@12" for n in
                                                                       ("CLIP", "SDD", "MK-MMD", "CLIP+SDD+MMD")}
    assert data["meta"]["sections"]["loss"]["command"] == "pytest again"
    assert data["meta"]["sections"]["train"]["command"] == "pytest"
    assert "Measured" in (tmp_path / "results" / "speed.md").read_text()


def test_isolated_measurement_reports_memory(tmp_path: Path) -> None:
    """A measurement in a fresh subprocess returns its own peak memory."""
    pa = run_speed.write_features(tmp_path / "a.npy", 40, 2, 8, 0)
    pb = run_speed.write_features(tmp_path / "b.npy", 40, 2, 12, 1)
    res = run_speed.run_measurement("train", dict(method="plain_loop", path_a=str(pa), path_b=str(pb), n_pairs=8,
                                                  n_unpaired=16, batch_size=16, threads=1, max_steps=2), isolate=True)
    assert res["steps"] == 2 and res["peak_rss_mb"] > 0 and "peak_anon_mb" in res


def test_cuda_requested_without_gpu_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="--device cuda"):
        run_speed.check_device("cuda")
    with pytest.raises(SystemExit) as exc:
        run_speed.main(["--device", "cuda", "--only", "loss", "--out", "unused"])
    assert exc.value.code == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


def test_cli_rejects_unknown_section(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_speed.main(["--only", "loss,gpu"])
    assert "unknown section" in capsys.readouterr().err


def test_quick_config_is_small() -> None:
    args = run_speed.build_parser().parse_args(["--quick", "--only", "loss", "--loss-batches", "8,16"])
    cfg = run_speed.config_from_args(args)
    assert cfg.only == ("loss",) and cfg.loss_batches == (8, 16) and cfg.n_seqs < 100 and cfg.pool_scales == (1, 4)


def test_sequence_samples_are_reproducible_and_in_file_order() -> None:
    first = run_speed.load_sequences(5)
    a, b = run_speed.load_sequences(5, "random", seed=1), run_speed.load_sequences(5, "random", seed=1)
    assert a == b and a != first and len(set(a)) == 5
    assert a != run_speed.load_sequences(5, "random", seed=2)
    with pytest.raises(ValueError, match="'first' or 'random'"):
        run_speed.load_sequences(5, "shuffled")


def test_render_rewrites_the_markdown_from_the_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    with pytest.raises(SystemExit):
        run_speed.main(["--render", "--out", str(out)])  # no speed.json yet
    cfg = run_speed.SpeedConfig(only=("loss",), out=str(out), isolate=False, threads=1, min_time=0.0,
                                loss_batches=(16,), loss_dim=8)
    run_speed.run(cfg, command="pytest")
    md = (out / "speed.md").read_text()
    (out / "speed.md").unlink()
    assert run_speed.main(["--render", "--out", str(out)]) == 0
    assert (out / "speed.md").read_text() == md


def test_stream_section_embeds_a_generated_fasta(tmp_path: Path) -> None:
    """The stream section (tiny sizes, in-process): both paths give the same features, the report has its table."""
    cfg = run_speed.SpeedConfig(only=("stream",), out=str(tmp_path / "results"), isolate=False, threads=1,
                                stream_sizes=(40, 120), stream_baseline_max=120, stream_chunk=32,
                                work_dir=str(tmp_path / "work"))
    report = run_speed.run(cfg, command="pytest")
    assert [c["passed"] for c in report.checks] == [True, True], report.checks
    assert report.value("stream", "n=120", "streamed", "n") == 120
    assert report.value("stream", "n=120", "streamed_growth", "items_ratio") == 3.0
    md = (tmp_path / "results" / "speed.md").read_text()
    assert "## Streaming a large FASTA into the feature cache" in md and "| 120 |" in md
    fasta = run_speed.write_random_fasta(tmp_path / "r.fasta", 25, seed=1)
    from domains.protein import read_fasta

    lengths = [len(r.sequence) for r in read_fasta(fasta)]
    assert len(lengths) == 25 and min(lengths) >= 50 and max(lengths) <= 500
