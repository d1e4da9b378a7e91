"""benchmarks/compare_results.py: per-seed values of two runs, moved values and missing keys."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("compare_results", ROOT / "benchmarks" / "compare_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    return folder


def _row(method: str, seed: int, value: float, metric: str = "mean_recall") -> dict:
    return {"task": "t", "dataset": "d", "method": method, "pairing_ratio": 0.05, "seed": seed, "metric": metric,
            "value": value}


def test_equal_runs_pass_and_a_moved_value_or_a_missing_key_fails(tmp_path, capsys) -> None:
    cmp = _module()
    before = _write(tmp_path / "a", [_row("clip", 0, 1.0), _row("clip", 1, 2.0)])
    same = _write(tmp_path / "b", [_row("clip", 1, 2.0 + 1e-9), _row("clip", 0, 1.0)])
    assert cmp.main([str(before), str(same), "--tol", "1e-6"]) == 0
    moved = _write(tmp_path / "c", [_row("clip", 0, 1.0), _row("clip", 1, 2.5), _row("gentle", 0, 3.0)])
    out = tmp_path / "cmp.md"
    assert cmp.main([str(before), str(moved / "results.json"), "--out", str(out)]) == 1
    text = out.read_text()
    assert "values that moved by more than the tolerance: 1" in text and "| t | d | clip | 0.05 | 1 |" in text
    assert "only in the second: 1" in text and "largest absolute difference: 0.5" in text
    capsys.readouterr()
