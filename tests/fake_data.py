"""Load the fake-data generators of ``tests/data/<name>/data.py`` (one per published dataset)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

DATA = Path(__file__).resolve().parent / "data"
_LOADED: dict[str, ModuleType] = {}


def generator(name: str) -> ModuleType:
    """The module ``tests/data/<name>/data.py`` (its ``generate(root)`` writes the fake dataset)."""
    if name not in _LOADED:
        path = DATA / name / "data.py"
        if not path.is_file():
            raise FileNotFoundError(f"no fake-data generator {path}")
        spec = importlib.util.spec_from_file_location(f"fake_data_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _LOADED[name] = module
    return _LOADED[name]
