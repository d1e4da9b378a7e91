import os
import subprocess
import sys

from gentleclip.io import atomic_path, atomic_write_text, remove_stale_temporaries


def test_atomic_write_replaces_in_one_step_and_an_error_leaves_the_old_file(tmp_path) -> None:
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    except RuntimeError:
        pass
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    (tmp_path / f"validation.json.tmp{dead_pid}").write_text("{")
    (tmp_path / f"model.safetensors.tmp{os.getpid()}").write_text("x")  # this process: a write under way
    (tmp_path / "notes.tmp").write_text("a user's file")  # no pid: not one of ours
    (tmp_path / "validation.json").write_text("{}")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [f"validation.json.tmp{dead_pid}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"model.safetensors.tmp{os.getpid()}", "notes.tmp", "validation.json"]
