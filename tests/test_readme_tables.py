"""The README's result tables: regenerated from benchmarks/results/, marked correctly, never stale."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gentleclip.app.readme_tables import BLOCK, regenerate, render, stale_blocks
from gentleclip.app.report import Results

REPO = Path(__file__).resolve().parents[1]


def _folder(tmp_path: Path) -> Path:
    """Two methods, ratios 0 and 0.1, three seeds; clip is best at 0.1, gentle within its std."""
    res = Results({"command": "benchmarks/run_protein.py --out x", "git_commit": "abcdef0123", "seeds": [0, 1, 2],
                   "date": "2026-12-02T05:00:00+00:00", "encoders": {"a": "kmer | k=3", "b": "minilm | l2"},
                   "machine": {"cpu_count": 2, "torch": "2.14.1", "cuda_device": None}, "wall_time_s": 600.0})
    values = {("clip", 0.0): [10, 12, 14], ("clip", 0.1): [40, 42, 44], ("gentle", 0.0): [20, 21, 22],
              ("gentle", 0.1): [39, 40, 41], ("sue", 0.1): [30, 30.5, 31]}
    for (method, ratio), vals in values.items():
        for seed, v in enumerate(vals):
            res.add("t", "d", method, ratio, seed, "zeroshot_top1", v)
            res.add("t", "d", method, ratio, seed, "gap_centroid_distance", 1.0 - v / 100)
    out = tmp_path / "protein"
    res.write(out)
    (out / "chance.json").write_text(json.dumps({"seeds": [0], "what": "noise", "rows": [
        {"task": "t", "dataset": "d", "metric": "zeroshot_top1", "value": 10.0},
        {"task": "t", "dataset": "d", "metric": "gap_centroid_distance", "value": 1.4}]}))
    return tmp_path


def test_best_is_bold_and_cells_within_one_std_are_italic(tmp_path) -> None:
    root = _folder(tmp_path)
    text = render("ratios results=protein metric=zeroshot_top1", root)
    lines = {line.split(" | ")[0].strip("| `"): line for line in text.splitlines() if line.startswith("| `")}
    assert lines["clip"] == "| `clip` | 12.0 ± 2.0 | **42.0 ± 2.0** |"
    assert lines["gentle"] == "| `gentle` | **21.0 ± 1.0** | *40.0 ± 1.0* |", "40 is within clip's std of 2"
    assert lines["sue"] == "| `sue` |  | 30.5 ± 0.5 |", "no run at 0: an empty cell; 30.5 is far"
    assert "↑" in text and "| method | 0 | 10 % |" in text
    low = render("ratios results=protein metric=gap_centroid_distance methods=gentle,clip ratios=0.1", root)
    assert "↓" in low and "| `clip` | **0.580 ± 0.020** |" in low, "lower is better for the gap"
    assert "| `gentle` | *0.600 ± 0.010* |" in low
    with pytest.raises(ValueError, match="no results for method"):
        render("ratios results=protein metric=zeroshot_top1 methods=clip,nope", root)
    with pytest.raises(ValueError, match="unknown kind"):
        render("pie results=protein", root)


def test_other_kinds(tmp_path) -> None:
    root = _folder(tmp_path)
    m = render("metrics results=protein metrics=zeroshot_top1,gap_centroid_distance ratio=0.1", root)
    assert "| `clip` | **42.0 ± 2.0** | **0.580 ± 0.020** |" in m
    z = render("zero results=protein metrics=zeroshot_top1 methods=clip,gentle", root)
    assert "| `gentle` | **21.0 ± 1.0** |" in z and "| chance | 10.0 |" in z
    p = render("provenance results=protein", root)
    assert "`python benchmarks/run_protein.py --out x`" in p and "abcdef0" in p and "10.0 min" in p
    assert "a: `kmer`" in p and "CPU, 2 cores" in p


def test_results_of_several_folders_are_joined_and_a_measurement_in_two_is_refused(tmp_path) -> None:
    root = _folder(tmp_path)
    more = Results({"command": "benchmarks/run_protein.py --methods gap --out y", "git_commit": "1234567890",
                    "seeds": [0, 1, 2], "date": "2026-12-03T05:00:00+00:00", "wall_time_s": 60.0})
    for seed, v in enumerate([50, 51, 52]):
        more.add("t", "d", "gap", 0.1, seed, "zeroshot_top1", v)
    more.write(root / "protein_more")
    t = render("ratios results=protein,protein_more metric=zeroshot_top1 methods=clip,gap", root)
    assert "| `gap` |  | **51.0 ± 1.0** |" in t and "| `clip` | **12.0 ± 2.0** | 42.0 ± 2.0 |" in t
    p = render("provenance results=protein,protein_more", root)
    assert "`python benchmarks/run_protein.py --out x`" in p and "--methods gap --out y`" in p
    clash = Results({"seeds": [0]})
    clash.add("t", "d", "clip", 0.1, 0, "zeroshot_top1", 1.0)
    clash.write(root / "clash")
    with pytest.raises(ValueError):
        render("ratios results=protein,clash metric=zeroshot_top1", root)


def test_variants_compare_one_method_across_folders(tmp_path) -> None:
    root = _folder(tmp_path)
    neg = Results({"seeds": [0, 1, 2]})
    for seed, v in enumerate([30, 31, 32]):
        neg.add("t", "d", "gentle", 0.1, seed, "zeroshot_top1", v)
    neg.write(root / "negatives")
    (root / "negatives" / "config.json").write_text(json.dumps({"methods": {"gentle": {"configuration": {
        "objective_overrides": {"clip_unpaired_negatives": True}}}}}))
    t = render("variants results=protein,negatives metric=zeroshot_top1 method=gentle ratios=0.1", root)
    assert "| `protein` | **40.0 ± 1.0** |" in t and "| `negatives` (clip_unpaired_negatives=on) | 31.0 ± 1.0 |" in t
    with pytest.raises(ValueError, match="sue"):
        render("variants results=protein,negatives metric=zeroshot_top1 method=sue", root)
    adapter = {"extra_text": ["sydney", "rsitmd"], "seed": 0, "cache_dir": "a"}
    (root / "protein" / "config.json").write_text(json.dumps({"adapter": adapter}))
    (root / "negatives" / "config.json").write_text(json.dumps({"adapter": {**adapter, "extra_text": [],
                                                                          "cache_dir": "b"}}))
    d = render("variants results=protein,negatives metric=zeroshot_top1 method=gentle ratios=0.1", root)
    assert "| `protein` | **40.0 ± 1.0** |" in d, "the first folder is the reference: no label"
    assert "| `negatives` (extra_text=none) | 31.0 ± 1.0 |" in d, "only the data settings that differ"
    layered = [{**adapter, "encoders": {"b": f"text@{layer}"}} for layer in (2, 4, "last")]
    (root / "negatives" / "config.json").write_text(json.dumps({"adapter": layered, "layer_selection": {
        "measure": "mutual_knn", "layers_a": ["last"], "layers_b": ["2", "4", "last"]}}))
    d = render("variants results=protein,negatives metric=zeroshot_top1 method=gentle ratios=0.1", root)
    assert "| `negatives` (layers_b=2,4,last) | 31.0 ± 1.0 |" in d, "the candidate layers each run chose from"


def test_regenerate_rewrites_only_the_blocks_and_check_finds_stale_ones(tmp_path) -> None:
    root = _folder(tmp_path)
    doc = ("# Title\n\nprose stays\n\n<!-- table: ratios results=protein metric=zeroshot_top1 -->\nold numbers\n"
           "<!-- /table -->\n\nmore prose\n")
    assert stale_blocks(doc, root) == ["ratios results=protein metric=zeroshot_top1"]
    new = regenerate(doc, root)
    assert new.startswith("# Title\n\nprose stays\n\n<!-- table:") and new.endswith("<!-- /table -->\n\nmore prose\n")
    assert "old numbers" not in new and "**42.0 ± 2.0**" in new
    assert stale_blocks(new, root) == [] and regenerate(new, root) == new
    md = tmp_path / "doc.md"
    md.write_text(doc)
    cmd = [sys.executable, str(REPO / "benchmarks" / "summarize.py"), "--files", str(md), "--results", str(root)]
    check = subprocess.run([*cmd, "--check"], capture_output=True, text=True)
    assert check.returncode == 1 and "ratios results=protein" in check.stdout and md.read_text() == doc
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0 and md.read_text() == new
    assert subprocess.run([*cmd, "--check"], capture_output=True, text=True).returncode == 0



def test_presets_table_lists_what_validation_selected(tmp_path, monkeypatch) -> None:
    import gentleclip.methods as methods_module

    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"t": {"sue": {
        "objective": {"temperature": 0.1}, "pipeline": {"n_components": 16}, "train": {"lr": 3e-4},
        "selected_by": {"metric": "mean_recall", "mean_val": 6.456, "n_trials": 12}}}}))
    monkeypatch.setattr(methods_module, "PRESETS_PATH", presets)
    text = render("presets task=t", tmp_path)
    assert "| `sue` | temperature 0.1, n_components 16, lr 0.0003 | 12 | 6.46 (mean_recall) |" in text


def test_finetune_table_joins_seeds_and_methods_of_several_folders(tmp_path) -> None:
    for folder, method, seeds, values, peak in (("a", "clip", [0], {"frozen": 30.0, "finetuned": 34.0}, 1024),
                                                ("b", "clip", [1, 2], {"frozen": 32.0, "finetuned": 36.0}, 2048),
                                                ("c", "gentle", [0], {"frozen": 31.0, "finetuned": 35.0}, 3072)):
        runs = {}
        for setting, v in values.items():
            res = Results({"seeds": seeds})
            for seed in seeds:
                res.add("t", "d", method, 0.05, seed, "zeroshot_top1", v + seed)
                res.add("t", "d", method, 0.05, seed, "gap_centroid_distance", v / 100)
            res.write(tmp_path / folder / setting)
            runs[setting] = {"peak_rss_mib": peak + (512 if setting == "finetuned" else 0),
                             "runs": [{"method": method, "steps": 100, "wall_time_s": 10.0 if setting == "frozen"
                                       else 100.0} for _ in seeds]}
        (tmp_path / folder / "comparison.json").write_text(json.dumps(
            {"script": "run_protein.py", "finetune": {"a": "frozen", "b": "last2"}, "settings": runs}))
    text = render("finetune results=a,b,c metrics=zeroshot_top1,gap_centroid_distance", tmp_path)
    assert "| run | zeroshot_top1 ↑ | gap_centroid_distance ↓ | steps/s | peak RSS GiB |" in text
    assert "| `clip` frozen | 32.3 ± 2.1 | 0.313 ± 0.012 | 10.00 | 2.0 |" in text, "seeds 0, 1, 2: 30, 33, 34"
    assert "| `clip` finetuned | **36.3 ± 2.1** | 0.353 ± 0.012 | 1.00 | 2.5 |" in text and "B last2" in text
    assert "| `gentle` frozen | 31.0 | **0.310** | 10.00 | 3.0 |" in text, "one seed: no spread to show"
    assert "| `gentle` finetuned | *35.0* | 0.350 | 1.00 | 3.5 |" in text
    (tmp_path / "c" / "comparison.json").write_text(json.dumps(
        {"script": "run_protein.py", "finetune": {"a": "frozen", "b": "all"}, "settings": runs}))
    with pytest.raises(ValueError, match="fine-tuned different layers"):
        render("finetune results=a,c metrics=zeroshot_top1", tmp_path)


def test_the_readme_tables_are_what_the_results_regenerate() -> None:
    """Every README table is generated from benchmarks/results/: edit the results, not the README."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(BLOCK.findall(readme)) >= 10, "the README's result tables are generated blocks"
    assert stale_blocks(readme, REPO / "benchmarks" / "results") == [], "run python benchmarks/summarize.py"
    analysis = REPO / "benchmarks" / "results" / "ANALYSIS.md"
    assert stale_blocks(analysis.read_text(encoding="utf-8"), REPO / "benchmarks" / "results") == []
