"""The ``gentleclip`` command line (embed / train / evaluate / report) and the saved pipeline.

Everything runs in-process through ``gentleclip.app.cli.main`` on a tiny offline protein task
(SCL2205 from ``p-scldata``, k-mer features, all-MiniLM-L6-v2), except one subprocess check of the
installed console script. Features go to a per-session temporary cache shared with
``test_notebooks.py``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gentleclip.app.cli import main
from gentleclip.run import default_train_config

TINY = ["--max-train", "80", "--max-test", "80"]
SEQS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ", "MSDNELKQLLEQLEQENKRLKE"]
TEXTS = ["This protein is found in the nucleus.", "This protein is secreted."]


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temporary feature cache for the session (same folder as test_notebooks.py uses)."""
    path = tmp_path_factory.getbasetemp() / "gentleclip-feature-cache"
    path.mkdir(exist_ok=True)
    return path


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``gentleclip *argv`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 2 and the error in one line (the last on stderr; progress lines may come before it)."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1], f"expected one error line on stderr, got:\n{err}"
    for needle in needles:
        assert needle in errors[0], errors[0]


# ---------------------------------------------------------------------------- help and errors
@pytest.mark.parametrize("command", [[], ["embed"], ["train"], ["evaluate"], ["report"]])
def test_help(capsys, command):
    code, out, _ = run_cli(capsys, *command, "--help")
    assert code == 0
    assert out.startswith("usage: gentleclip")
    if command == ["train"]:
        assert "--set KEY=VALUE" in out and "gentle" in out and "pairing_ratio" in out
    if command == ["evaluate"]:
        assert "MODEL_DIR" in out


def test_console_script_one_line_error(tmp_path):
    """The installed ``gentleclip`` script: a missing model folder is one line on stderr, exit code 2."""
    script = Path(sys.executable).with_name("gentleclip")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "gentleclip.app.cli"]
    proc = subprocess.run([*cmd, "evaluate", str(tmp_path / "no-such-run")], capture_output=True, text=True,
                          timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, "no-such-run")
    assert proc.stdout == ""


@pytest.mark.parametrize("argv, needles", [
    (["train", "-c", "{tmp}/missing.yaml", "--out", "{tmp}/run"], ["missing.yaml", "not found"]),
    (["evaluate", "{tmp}/nothing-here"], ["nothing-here"]),
    (["report", "{tmp}/nothing-here"], ["nothing-here", "does not exist"]),
    (["report", "{tmp}"], ["no results.json"]),
    (["train", "--bogus-option"], ["unrecognized arguments: --bogus-option"]),
    (["train", "--steps", "many"], ["--steps", "invalid int"]),
    (["train", "--set", "train.max_stepz=3", "--print-config"], ["max_stepz", "known keys"]),
    (["train", "--set", "nonsense", "--print-config"], ["KEY=VALUE"]),
    (["train", "--set", "objective.sdd_weight=0.3", "--print-config"], ["objective: unknown key", "sdd"]),
    (["train", "--set", "objective.sdd=-1", "--print-config"], ["objective:", "sdd"]),
    (["train", "--method", "magic", "--print-config"], ["unknown method 'magic'"]),
    (["train", "--ratio", "1.5", "--print-config"], ["pairing_ratio"]),
    (["train", "--domain", "remote_sensing", "--print-config"], ["data_dir"]),
    (["train", "--steps", "3"], ["no output folder"]),
    ([], ["choose a command"]),
])
def test_user_errors_are_one_line(capsys, tmp_path, argv, needles):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *needles)


def test_bad_config_files(capsys, tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("domain: protein\ntrain: {max_steps: 3\n")
    code, _, err = run_cli(capsys, "train", "-c", str(bad_yaml), "--print-config")
    assert_one_line_error(code, err, "bad.yaml", "invalid YAML", "line")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"domain": "protein", "pairing_ratioo": 0.1}))
    code, _, err = run_cli(capsys, "train", "-c", str(unknown), "--print-config")
    assert_one_line_error(code, err, "unknown.json", "pairing_ratioo")


def test_config_precedence(capsys, tmp_path):
    """defaults < config file < flags < --set; partial sections keep the other defaults."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"method": "clip", "pairing_ratio": 0.2, "seed": 3,
                                   "train": {"max_steps": 50, "lr": 0.01}, "head": {"out_dim": 64}}))
    code, out, err = run_cli(capsys, "train", "-c", str(cfg), "--ratio", "0.1", "--steps", "20",
                             "--set", "train.max_steps=7", "--set", "head.n_blocks=0", "--print-config")
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert resolved["method"] == "clip" and resolved["seed"] == 3
    assert resolved["pairing_ratio"] == 0.1  # flag over file
    assert resolved["train"]["max_steps"] == 7  # --set over flag
    assert resolved["train"]["lr"] == 0.01 and resolved["train"]["batch_size"] == 256
    # the run defaults (the benchmarks' own) are kept under a partial section
    assert resolved["train"]["checkpoint_every"] == default_train_config().checkpoint_every
    assert resolved["train"]["eval_every"] == default_train_config().eval_every
    assert resolved["head"] == {"out_dim": 64, "hidden_dim": 512, "n_blocks": 0, "dropout": 0.1}


# ---------------------------------------------------------------------------- end to end
def test_embed_prints_cached_arrays(capsys, feature_cache):
    code, out, err = run_cli(capsys, "embed", "--domain", "protein", *TINY, "--cache-dir", str(feature_cache), "--json")
    assert code == 0, err
    arrays = json.loads(out)
    by_desc = {a["description"]: a for a in arrays}
    assert by_desc["SCL2205 train proteins"]["shape"] == [80, 2, 8420]
    assert by_desc["SCL2205 heldout proteins"]["shape"] == [80, 1, 8420]
    for a in arrays:
        assert Path(a["path"]).is_file() and str(feature_cache) in a["path"]
    code, out, err = run_cli(capsys, "embed", *TINY, "--cache-dir", str(feature_cache))
    assert code == 0 and "SCL2205 train proteins" in out and "[80, 2, 8420]" in out


def test_train_evaluate_report_round_trip(capsys, tmp_path, feature_cache):
    out_dir = tmp_path / "runs" / "protein"
    train_args = ["train", "--domain", "protein", *TINY, "--cache-dir", str(feature_cache), "--method", "gentle",
                  "--ratio", "0.1", "--steps", "6", "--batch-size", "32", "--set", "head.out_dim=32",
                  "--set", "head.hidden_dim=64", "--out", str(out_dir)]
    code, out, err = run_cli(capsys, *train_args)
    assert code == 0, err
    for name in ("config.json", "model.safetensors", "run_config.yaml", "split.json", "train/checkpoint.pt",
                 "train/log.csv"):
        assert (out_dir / name).is_file(), name
    saved = json.loads((out_dir / "config.json").read_text())
    block = saved["extra"]["pipeline"]
    assert block["domain"] == "protein" and block["config"]["pairing_ratio"] == 0.1
    assert block["encoders"]["a"]["factory"] == "domains.protein.kmer:KmerEncoder"
    assert block["encoders"]["b"]["factory"] == "domains.text:TextEncoder"
    assert saved["head_a"]["in_dim"] == 8420 and saved["head_b"]["in_dim"] == 384
    assert 1 <= saved["extra"]["run"]["n_paired"] <= 8  # 10 % of 80, whole sequence groups

    # rerun: resumes from the finished checkpoint instead of training again
    code, _, err = run_cli(capsys, *train_args)
    assert code == 0 and "already trained" in err
    # other settings in the same folder: one-line error
    code, _, err = run_cli(capsys, *train_args, "--set", "train.lr=0.5")
    assert_one_line_error(code, err, "other settings", "train.lr")

    code, out, err = run_cli(capsys, "evaluate", str(out_dir))
    assert code == 0, err
    assert "zeroshot_top1" in out and "gentle" in out
    rows = json.loads((out_dir / "results.json").read_text())["rows"]
    metrics = {r["metric"] for r in rows}
    assert {"zeroshot_top1", "linear_probe_acc", "nmi", "gap_centroid_distance"} <= metrics
    assert {(r["method"], r["pairing_ratio"], r["seed"]) for r in rows} == {("gentle", 0.1, 0)}
    assert (out_dir / "results.csv").is_file() and (out_dir / "table.md").is_file()

    # a trained folder embeds new raw items in three lines
    from domains.protein import KmerEncoder
    from gentleclip import load_pipeline
    from gentleclip.model import AlignmentModel

    pipe = load_pipeline(out_dir)
    z = pipe.embed_a(SEQS)
    assert z.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    expected = AlignmentModel.from_pretrained(out_dir).encode_a(KmerEncoder().encode(SEQS))
    np.testing.assert_allclose(z, expected, atol=1e-6)
    best = pipe.retrieve(SEQS[:1], TEXTS, k=2)[0]
    assert [t for t, _ in best] != [] and set(t for t, _ in best) == set(TEXTS)

    # report over the parent folder: tables and plots
    report_dir = tmp_path / "report"
    code, out, err = run_cli(capsys, "report", str(tmp_path / "runs"), "--out", str(report_dir),
                             "--plot", "zeroshot_top1,nmi")
    assert code == 0, err
    assert "scl2205_localisation" in out
    for name in ("results.json", "results.csv", "table.md", "zeroshot_top1_vs_ratio.png", "nmi_vs_ratio.png"):
        assert (report_dir / name).is_file(), name


def test_train_and_the_grid_give_the_same_model(capsys, tmp_path, feature_cache):
    """gentleclip train and the benchmark grid run the same function with the same defaults: for one
    method, ratio and seed they train the same heads (the objective set from the command line)."""
    import torch

    from gentleclip.app.runner import build_adapter, build_task, resolve_method, run_config_of
    from gentleclip.model import AlignmentModel
    from gentleclip.run import fit_run

    out_dir = tmp_path / "cli"
    code, _, err = run_cli(capsys, "train", "--domain", "protein", *TINY, "--cache-dir", str(feature_cache),
                           "--method", "gentle", "--ratio", "0.2", "--steps", "8", "--batch-size", "16",
                           "--set", "head.out_dim=16", "--set", "head.hidden_dim=32", "--set", "objective.sdd=0.3",
                           "--set", "train.eval_every=4", "--out", str(out_dir))
    assert code == 0, err
    run = json.loads((out_dir / "config.json").read_text())["extra"]["run"]
    assert run["objective"]["sdd"] == 0.3 and "objective overrides" in run["configuration"]
    assert run["pairs_per_step"] == min(16, run["n_paired"]) and run["max_steps"] == 8
    assert run["validation"]["metric"] == "zeroshot_top1" and run["best_step"] in (0, 4, 8)
    cfg = run_config_of(out_dir)
    task = build_task(cfg, build_adapter(cfg))
    method, train_cfg, _ = resolve_method(cfg, task.name)
    grid = fit_run(task, method, 0.2, 0, train_cfg, cfg.head, tmp_path / "grid")
    assert grid.info["best_step"] == run["best_step"] and grid.info["best_val"] == pytest.approx(run["best_val"])
    cli_model = AlignmentModel.from_pretrained(out_dir)
    for k, v in grid.model.state_dict().items():
        torch.testing.assert_close(cli_model.state_dict()[k], v, rtol=0, atol=1e-6)


def _write_results(folder: Path, method: str, seed: int, value: float) -> None:
    from gentleclip.app.report import Results

    res = Results({"seeds": [seed]})
    for ratio, v in ((0.01, value), (0.1, value + 10)):
        res.add("retrieval", "rsicd", method, ratio, seed, "mean_recall", v)
        res.add("retrieval", "rsicd", method, ratio, seed, "i2t_median_rank", 100 - v)
    res.write(folder)


def test_report_merges_folders(capsys, tmp_path):
    root = tmp_path / "grid"
    for method, seed, value in (("clip", 0, 10.0), ("clip", 1, 12.0), ("gentle", 0, 20.0), ("gentle", 1, 24.0)):
        _write_results(root / f"{method}-s{seed}", method, seed, value)
    code, out, err = run_cli(capsys, "report", str(root), "--out", str(tmp_path / "rep"))
    assert code == 0, err
    assert "mean_recall" in out and "±" in out and "**" in out  # mean ± std over seeds, best in bold
    merged = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert len(merged["rows"]) == 16 and merged["meta"]["seeds"] == [0, 1]
    assert (tmp_path / "rep" / "mean_recall_vs_ratio.png").is_file()
    # without --out: table only, nothing written; the same folder twice: duplicates are an error
    code, out, err = run_cli(capsys, "report", str(root / "clip-s0"), "--plot", "none")
    assert code == 0 and "mean_recall" in out and "--out" in err
    shutil.copytree(root / "clip-s0", tmp_path / "copy")
    code, _, err = run_cli(capsys, "report", str(root / "clip-s0"), str(tmp_path / "copy"))
    assert_one_line_error(code, err, "on_duplicate")
    code, _, err = run_cli(capsys, "report", str(root), "--out", str(tmp_path / "rep2"), "--plot", "nmi")
    assert_one_line_error(code, err, "nmi")


# ---------------------------------------------------------------------------- pipeline save / load
def test_pipeline_save_load_matches_in_memory_model(tmp_path):
    """Save a model with its encoders' recipes, load it back, embed new raw items: same as in memory."""
    import torch

    from domains.protein import KmerEncoder
    from gentleclip.model import AlignmentModel, ProjectionHead
    from gentleclip.pipeline import EncoderMismatchWarning, Pipeline, build_encoder, load_pipeline

    enc_a = KmerEncoder(k=2, mask_prob=0.2)  # non-default options must survive the round trip
    enc_b = build_encoder({"factory": "domains.text:TextEncoder", "kwargs": {"model": None}})
    torch.manual_seed(0)
    model = AlignmentModel(ProjectionHead(enc_a.dim, 16, 32), ProjectionHead(enc_b.dim, 16, 32)).eval()
    pipe = Pipeline(model, enc_a, enc_b, domain="protein", config={"note": "in-memory"})
    za, zb = pipe.embed_a(SEQS), pipe.embed_b(TEXTS)
    pipe.save(tmp_path / "model")

    loaded = load_pipeline(tmp_path / "model")
    assert loaded.domain == "protein" and loaded.modality_names == ("protein", "text")
    assert loaded.encoder_a.identity == enc_a.identity and loaded.encoder_a.mask_prob == 0.2
    assert loaded.config == {"note": "in-memory"}
    np.testing.assert_allclose(loaded.embed_a(SEQS), za, atol=1e-6)
    np.testing.assert_allclose(loaded.embed_b(TEXTS), zb, atol=1e-6)
    np.testing.assert_allclose(loaded.similarity(SEQS, TEXTS), za @ zb.T, atol=1e-5)
    assert loaded.embed_a(SEQS[0]).shape == (1, 16)  # one raw item is fine too

    # a model saved without the pipeline block needs its encoders; a changed encoder warns
    model.save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="encoder_a= and encoder_b="):
        load_pipeline(tmp_path / "bare")
    bare = load_pipeline(tmp_path / "bare", encoder_a=enc_a, encoder_b=enc_b)
    np.testing.assert_allclose(bare.embed_a(SEQS), za, atol=1e-6)
    cfg_path = tmp_path / "model" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["extra"]["pipeline"]["encoders"]["a"]["identity"] = "something else"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.warns(EncoderMismatchWarning, match="something else"):
        load_pipeline(tmp_path / "model")
    with pytest.raises(ValueError, match="takes 420"):
        Pipeline(model, KmerEncoder(k=1, hash_dim=None), enc_b)  # 20-dim features, head takes 420


def test_a_users_files_are_never_overwritten(capsys, tmp_path, feature_cache):
    """--out naming a folder of the user's: refused in one line unless --overwrite; outputs get the umask."""
    import os
    import stat

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    args = ["train", "--domain", "protein", *TINY, "--cache-dir", str(feature_cache), "--method", "clip",
            "--ratio", "0.1", "--steps", "2", "--batch-size", "16", "--set", "head.out_dim=8",
            "--set", "head.hidden_dim=16"]
    code, _, err = run_cli(capsys, *args, "--out", str(mine))
    assert_one_line_error(code, err, "holds files gentleclip did not write", "config.json", "--overwrite")
    assert (mine / "config.json").read_text() == '{"my": "settings"}'
    code, _, err = run_cli(capsys, *args, "--out", str(mine / "config.json"))
    assert_one_line_error(code, err, "not a folder")
    ours = tmp_path / "ours"
    old = os.umask(0o022)
    try:
        code, _, err = run_cli(capsys, *args, "--out", str(ours))
    finally:
        os.umask(old)
    assert code == 0, err
    for name in ("model.safetensors", "config.json", "run_config.yaml"):
        assert stat.S_IMODE((ours / name).stat().st_mode) == 0o644, name
    code, _, err = run_cli(capsys, *args, "--out", str(ours))  # a folder gentleclip wrote: resumes
    assert code == 0 and "already trained" in err
    code, _, err = run_cli(capsys, "evaluate", str(ours), "--out", str(mine))
    assert_one_line_error(code, err, "holds files gentleclip did not write")
    code, _, err = run_cli(capsys, "evaluate", str(ours), "--out", str(mine), "--overwrite")
    assert code == 0, err
    assert stat.S_IMODE((mine / "results.csv").stat().st_mode) & 0o044, "readable by the group and others"
    if not _has_cuda():  # before any work, not a torch traceback
        code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "gpu"), "--device", "cuda")
        assert_one_line_error(code, err, "no CUDA GPU")
        assert not (tmp_path / "gpu").exists()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_train_sue_saves_a_pipeline_that_embeds_new_items(capsys, tmp_path, feature_cache):
    """A method that is its own pipeline (SUE) trains, saves and embeds through the same commands; with
    no pairs it says it does not apply, in one line."""
    from gentleclip import load_pipeline

    args = ["train", "--domain", "protein", *TINY, "--cache-dir", str(feature_cache), "--method", "sue",
            "--steps", "6", "--batch-size", "16"]
    code, _, err = run_cli(capsys, *args, "--ratio", "0.5", "--out", str(tmp_path / "sue"))
    assert code == 0, err
    saved = json.loads((tmp_path / "sue" / "config.json").read_text())
    assert saved["head_a"]["class"] == "gentleclip.sue:SUEHead" and saved["head_a"]["out_dim"] == 8
    sue = saved["extra"]["run"]["pipeline"]["sue"]
    assert sue["n_pairs"] == saved["extra"]["run"]["n_paired"] and len(sue["cca_train_correlations"]) == 8
    pipe = load_pipeline(tmp_path / "sue")
    assert pipe.embed_a(SEQS).shape == (2, 8) and pipe.embed_b(TEXTS).shape == (2, 8)
    code, _, err = run_cli(capsys, *args, "--ratio", "0", "--out", str(tmp_path / "none"))
    assert_one_line_error(code, err, "SUE fits its CCA on the pairs", "0 pairs")


def test_finetune_train_saves_a_pipeline_that_embeds_with_the_fine_tuned_encoder(capsys, tmp_path, feature_cache):
    """gentleclip train --finetune-b last1: the saved folder holds the text encoder's weights, load_pipeline
    embeds with them (not with the pretrained ones) and evaluate scores the same as in the training process."""
    from gentleclip import load_pipeline
    from gentleclip.app.runner import evaluate_run

    out_dir = tmp_path / "ft"
    code, _, err = run_cli(capsys, "train", "--domain", "protein", *TINY, "--cache-dir", str(feature_cache),
                           "--method", "gentle", "--ratio", "0.5", "--steps", "4", "--batch-size", "16",
                           "--finetune-b", "last1", "--set", "head.out_dim=16", "--set", "head.hidden_dim=32",
                           "--set", "train.encoder_lr_ratio=1", "--set", "train.eval_every=0", "--out", str(out_dir),
                           "--evaluate")
    assert code == 0, err
    saved = json.loads((out_dir / "config.json").read_text())
    assert saved["encoders"]["b"] == {"class": "TextTower", "saved": True, "tower": True}
    assert saved["encoders"]["a"]["saved"] is False and saved["extra"]["run"]["finetune"]["b"] == "last1"
    in_training = json.loads((out_dir / "results.json").read_text())["rows"]
    pipe = load_pipeline(out_dir)
    assert "|finetuned=" in pipe.encoder_b.identity  # a feature cache never mixes it with the pretrained model
    from domains.text import TextEncoder

    pretrained = TextEncoder(device="cpu").encode(TEXTS)
    assert not np.allclose(pipe.encoder_b.encode(TEXTS), pretrained, atol=1e-4)  # the fine-tuned weights
    assert pipe.embed_b(TEXTS).shape == (2, 16) and pipe.embed_a(SEQS).shape == (2, 16)
    again = evaluate_run(out_dir, out=tmp_path / "eval").rows
    assert [(r["metric"], r["value"]) for r in again] == [(r["metric"], r["value"]) for r in in_training]


def test_train_chooses_layers_on_its_training_pairs(capsys, tmp_path, feature_cache):
    """layers: {b: [3, null]}: gentleclip train scores both text layers on the run's training pairs, trains on
    the chosen one, saves its recipe (the layer included) and records the scores."""
    from gentleclip import load_pipeline

    out_dir = tmp_path / "layers"
    args = ["train", "--domain", "protein", *TINY, "--cache-dir", str(feature_cache), "--method", "clip", "--ratio",
            "0.5", "--steps", "4", "--batch-size", "16", "--set", "head.out_dim=16", "--set", "layers.b=[3, null]",
            "--out", str(out_dir)]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "layer selection (mutual_knn on" in err
    saved = json.loads((out_dir / "config.json").read_text())
    chosen = saved["extra"]["run"]["layers"]
    assert set(chosen["scores"]) == {"last|3", "last|last"} and chosen["n_pairs"] == saved["extra"]["run"]["n_paired"]
    layer = None if chosen["best"][1] == "last" else int(chosen["best"][1])
    assert saved["extra"]["pipeline"]["encoders"]["b"]["kwargs"].get("layer") == layer
    assert load_pipeline(out_dir).encoder_b.layer == layer
    code, _, err = run_cli(capsys, *args)  # the rerun finds the finished run
    assert code == 0 and "already trained" in err
    code, _, err = run_cli(capsys, "train", "--domain", "protein", *TINY, "--set", "layers.b=[1, 2]",
                           "--finetune-b", "last1", "--print-config")
    assert_one_line_error(code, err, "does not go with finetune")
