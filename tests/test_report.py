"""Results tables (JSON / CSV / Markdown round trips), meta, merging and plots."""
from __future__ import annotations

import csv
import json
import math
import re
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from gentleclip.app.report import (
    LOWER_IS_BETTER,
    ROW_KEYS,
    Results,
    is_lower_better,
    make_meta,
    plot_joint_space,
    plot_metric_vs_ratio,
)


def sample_results() -> Results:
    """Two methods x two ratios x two seeds on one task, plus a second task and a baseline."""
    res = Results({"command": "pytest", "seeds": [0, 1]})
    values = {
        # (method, ratio): (mean_recall per seed, median rank per seed)
        ("clip", 0.01): ((10.0, 14.0), (40.0, 30.0)),
        ("clip", 0.1): ((30.0, 34.0), (8.0, 6.0)),
        ("gentle", 0.01): ((20.0, 22.0), (20.0, 24.0)),
        ("gentle", 0.1): ((31.0, 29.0), (5.0, 5.0)),
    }
    for (method, ratio), (recalls, ranks) in values.items():
        for seed in (0, 1):
            res.add("retrieval", "rsicd", method, ratio, seed, "mean_recall", recalls[seed])
            res.add("retrieval", "rsicd", method, ratio, seed, "i2t_median_rank", ranks[seed])
    res.extend({"nmi": 0.5, "gap_centroid_distance": 0.8}, task="clustering", dataset="ucm", method="gentle",
               pairing_ratio=0.0, seed=0)
    res.add("retrieval", "rsicd", "frozen", None, 0, "mean_recall", 5.0)
    return res


def test_add_extend_rows_and_errors():
    res = Results()
    res.add("zeroshot", "ucm", "clip", 0.1, np.int64(2), "zeroshot_top1", np.float32(42.5))
    res.extend([{"metric": "nmi", "value": 0.25}, {"metric": "ari", "value": 0.1, "seed": 2}],
               task="clustering", dataset="ucm", method="clip", pairing_ratio=0.1, seed=2)
    assert len(res) == 3
    assert res.rows[0] == {"task": "zeroshot", "dataset": "ucm", "method": "clip", "pairing_ratio": 0.1,
                           "seed": 2, "metric": "zeroshot_top1", "value": 42.5}
    assert list(res.rows[1]) == list(ROW_KEYS)
    res.rows[0]["value"] = -1.0  # rows are copies
    assert res.rows[0]["value"] == 42.5
    with pytest.raises(ValueError, match="duplicate"):
        res.add("zeroshot", "ucm", "clip", 0.1, 2, "zeroshot_top1", 40.0)
    with pytest.raises(ValueError, match="finite"):
        res.add("zeroshot", "ucm", "clip", 0.1, 3, "zeroshot_top1", float("nan"))
    with pytest.raises(ValueError, match="non-empty string"):
        res.add("", "ucm", "clip", 0.1, 3, "x", 1.0)
    with pytest.raises(ValueError, match="pairing_ratio must be >= 0"):
        res.add("t", "ucm", "clip", -0.1, 3, "x", 1.0)
    with pytest.raises(ValueError, match="seed"):
        res.add("t", "ucm", "clip", 0.1, 1.5, "x", 1.0)
    with pytest.raises(ValueError, match="common value"):
        res.extend([{"metric": "x", "value": 1.0, "seed": 4}], task="t", dataset="d", method="m",
                   pairing_ratio=0.1, seed=5)
    with pytest.raises(ValueError, match="lacks"):
        res.extend({"x": 1.0}, task="t", dataset="d", method="m")
    with pytest.raises(ValueError, match="unknown fields"):
        res.extend({"x": 1.0}, task="t", dataset="d", method="m", pairing_ratio=0.1, seed=0, ratio=0.1)


def test_summary_mean_std_n():
    res = sample_results()
    s = res.summary()
    assert list(s.columns) == ["task", "dataset", "method", "pairing_ratio", "metric", "mean", "std", "n"]
    row = s[(s.method == "clip") & (s.pairing_ratio == 0.01) & (s.metric == "mean_recall")].iloc[0]
    assert row["mean"] == pytest.approx(12.0)
    assert row["std"] == pytest.approx(np.std([10.0, 14.0], ddof=1))  # sample std = 2*sqrt(2)
    assert row["n"] == 2
    base = s[s.method == "frozen"].iloc[0]
    assert math.isnan(base["pairing_ratio"]) and base["n"] == 1 and math.isnan(base["std"])
    df = res.to_dataframe()
    assert list(df.columns) == list(ROW_KEYS) and len(df) == len(res)


def test_write_json_csv_markdown_round_trip(tmp_path):
    res = sample_results()
    paths = res.write(tmp_path / "out")
    assert {p.name for p in paths.values()} == {"results.json", "results.csv", "table.md"}
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(data) == ["meta", "rows"]
    assert data["meta"] == {"command": "pytest", "seeds": [0, 1]}
    assert all(list(r) == list(ROW_KEYS) for r in data["rows"])
    assert data["rows"] == res.rows
    back = Results.load(tmp_path / "out")
    assert back.rows == res.rows and back.meta == res.meta
    with open(tmp_path / "out" / "results.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == len(res) and list(csv_rows[0]) == list(ROW_KEYS)
    from_csv = Results.load(tmp_path / "out" / "results.csv")
    assert from_csv.rows == res.rows
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    assert frame["value"].sum() == pytest.approx(sum(r["value"] for r in res.rows))


def test_markdown_table_cells_and_bold(tmp_path):
    md = sample_results().to_markdown()
    assert "## retrieval / rsicd" in md and "## clustering / ucm" in md
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    header = next(line for line in lines if line.startswith("| method") and "mean_recall" in line)
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[0] == "method"
    assert "mean_recall ↑ (r=0.01)" in cols and "i2t_median_rank ↓ (r=0.1)" in cols
    assert cols.index("mean_recall ↑ (r=0.01)") < cols.index("mean_recall ↑ (r=0.1)")  # ratios ascending
    assert cols[-1] == "mean_recall ↑ (r=n/a)"  # ratio-independent baseline last

    def cell(method: str, column: str) -> str:
        row = next(line for line in lines
                   if line.startswith(f"| {method} |") and len(line.split("|")) == len(header.split("|")))
        return [c.strip() for c in row.strip("|").split("|")][cols.index(column)]

    sd = np.std([10.0, 14.0], ddof=1)
    assert cell("clip", "mean_recall ↑ (r=0.01)") == f"12.0 ± {sd:.1f}"
    # higher is better for recall: gentle (21.0) beats clip (12.0) at r = 0.01
    assert cell("gentle", "mean_recall ↑ (r=0.01)") == f"**21.0 ± {np.std([20.0, 22.0], ddof=1):.1f}**"
    # at r = 0.1 clip (32.0) beats gentle (30.0)
    assert cell("clip", "mean_recall ↑ (r=0.1)").startswith("**32.0")
    assert not cell("gentle", "mean_recall ↑ (r=0.1)").startswith("**")
    # lower is better for the median rank: gentle 5.0 < clip 7.0 at r = 0.1
    assert cell("gentle", "i2t_median_rank ↓ (r=0.1)") == "**5.00 ± 0.00**"
    assert cell("clip", "i2t_median_rank ↓ (r=0.1)") == f"7.00 ± {np.std([8.0, 6.0], ddof=1):.2f}"
    # a single seed: the mean alone (2 decimals below 10); alone in its column, so not bold
    assert cell("frozen", "mean_recall ↑ (r=n/a)") == "5.00"
    assert cell("frozen", "mean_recall ↑ (r=0.01)") == "–"
    assert re.search(r"\| gentle \| 0\.500 \| 0\.800 \|", md)  # clustering block, 3 decimals below 1
    # a custom lower-is-better set flips the choice
    flipped = sample_results().to_markdown(lower_is_better={"mean_recall"})
    assert "**12.0 ±" in flipped


def test_lower_is_better_set():
    for metric in ("i2t_median_rank", "gap_centroid_distance", "modality_classifier_acc", "uniformity",
                   "joint_modality_nmi"):
        assert is_lower_better(metric)
    for metric in ("i2t_R@1", "mean_recall", "nmi", "zeroshot_top1", "pair_cosine_mean", "linear_probe_acc"):
        assert not is_lower_better(metric)
    assert "median_rank" in LOWER_IS_BETTER


def test_merge_folders(tmp_path):
    one, two = Results({"encoders": {"a": "x"}, "seeds": [0], "date": "d1"}), Results(
        {"encoders": {"a": "x"}, "seeds": [1], "date": "d2"})
    one.add("t", "d", "m", 0.1, 0, "nmi", 0.4)
    two.add("t", "d", "m", 0.1, 1, "nmi", 0.6)
    one.write(tmp_path / "one")
    two.write(tmp_path / "two")
    merged = Results.merge([tmp_path / "one", tmp_path / "two" / "results.json"])
    assert [r["value"] for r in merged.rows] == [0.4, 0.6]
    assert merged.meta["encoders"] == {"a": "x"} and merged.meta["seeds"] == [0, 1]
    assert "date" not in merged.meta and len(merged.meta["merged_from"]) == 2
    assert merged.summary()["mean"].iloc[0] == pytest.approx(0.5)
    clash = Results()
    clash.add("t", "d", "m", 0.1, 1, "nmi", 0.9)
    clash.write(tmp_path / "clash")
    with pytest.raises(ValueError, match="on_duplicate"):
        Results.merge([tmp_path / "two", tmp_path / "clash"])
    assert Results.merge([tmp_path / "two", tmp_path / "clash"], on_duplicate="last").rows[0]["value"] == 0.9
    assert Results.merge([tmp_path / "two", tmp_path / "clash"], on_duplicate="first").rows[0]["value"] == 0.6
    with pytest.raises(FileNotFoundError):
        Results.load(tmp_path / "missing")


def test_load_rejects_bad_files(tmp_path):
    (tmp_path / "bad.json").write_text('{"rows": [{"task": "t"}]}')
    with pytest.raises(ValueError, match="bad.json"):
        Results.load(tmp_path / "bad.json")
    (tmp_path / "worse.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected an object"):
        Results.load(tmp_path / "worse.json")


def test_make_meta():
    meta = make_meta(["python", "run.py", "--ratio", "0.1 0.2"], encoders={"a": "esm"}, seeds=[0, 1],
                     extra={"note": "x"})
    assert meta["command"] == "python run.py --ratio '0.1 0.2'"
    assert datetime.fromisoformat(meta["date"]).tzinfo is not None
    assert meta["git_commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", meta["git_commit"])
    assert meta["machine"]["cpu_count"] >= 1 and "torch" in meta["machine"] and "cuda_device" in meta["machine"]
    assert meta["machine"]["torch_threads"] >= 1, "the thread count changes speed and the last digits"
    assert meta["encoders"] == {"a": "esm"} and meta["seeds"] == [0, 1] and meta["note"] == "x"
    json.dumps(meta)
    with pytest.raises(ValueError, match="clashes"):
        make_meta(extra={"date": "today"})


def _assert_image(path, min_side: int = 200) -> None:
    img = mpimg.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side
    assert float(np.std(img[..., :3])) > 0.01  # not a blank canvas


def test_plot_metric_vs_ratio(tmp_path):
    res = sample_results()
    res.add("retrieval", "rsicd", "clip", 0.0, 0, "mean_recall", 2.0)  # ratio 0 on the symlog axis
    out = plot_metric_vs_ratio(res, "mean_recall", tmp_path / "plots" / "recall.png", task="retrieval")
    assert out.exists()
    _assert_image(out)
    out2 = plot_metric_vs_ratio(res.to_dataframe(), "i2t_median_rank", tmp_path / "rank.png")
    _assert_image(out2)
    with pytest.raises(ValueError, match="metrics available"):
        plot_metric_vs_ratio(res, "no_such_metric", tmp_path / "x.png")
    two_blocks = sample_results()
    two_blocks.add("retrieval", "ucm", "clip", 0.1, 0, "mean_recall", 1.0)
    with pytest.raises(ValueError, match="choose one"):
        plot_metric_vs_ratio(two_blocks, "mean_recall", tmp_path / "x.png")


def test_plot_joint_space(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    shift = np.zeros(8)
    shift[0] = 3.0
    out = plot_joint_space(x + shift, x - shift, tmp_path / "joint.png", labels=rng.integers(0, 3, 40),
                           names=("image", "caption"))
    _assert_image(out)
    out2 = plot_joint_space(x, x[:25], tmp_path / "joint_tsne.png", labels=np.arange(65) % 2, method="tsne")
    _assert_image(out2)
    with pytest.raises(ValueError, match="labels"):
        plot_joint_space(x, x[:25], tmp_path / "bad.png", labels=np.arange(40))
    with pytest.raises(ValueError, match="method"):
        plot_joint_space(x, x, tmp_path / "bad.png", method="mds")
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="umap-learn"):
            plot_joint_space(x, x, tmp_path / "bad.png", method="umap")
