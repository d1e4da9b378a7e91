"""The engine knows no domain: a toy third domain registers itself and runs ``gentleclip train``,
``gentleclip evaluate`` and ``load_pipeline`` like the installed ones."""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from gentleclip.domain import (
    ConfigError,
    Domain,
    available_domains,
    check_options,
    get_domain,
    register_domain,
    unregister_domain,
)
from gentleclip.task import AlignmentTask

ROOT = Path(__file__).resolve().parents[1]


class ToyEncoder:
    """Deterministic features of strings (a hash per character trigram), rebuilt from its recipe."""

    def __init__(self, dim: int = 8, salt: str = "a") -> None:
        self.dim, self.salt = int(dim), str(salt)
        self.name = f"toy-{salt}{dim}"
        self.identity = f"toy|dim={dim}|salt={salt}"

    def recipe(self, **overrides: object) -> dict:
        return {"dim": self.dim, "salt": self.salt, **overrides}

    def encode(self, items: list[str], view: int = 0) -> np.ndarray:
        out = np.zeros((len(items), self.dim), np.float32)
        for i, text in enumerate(items):
            for j in range(max(1, len(text) - 2)):
                h = hashlib.sha256(f"{self.salt}{text[j:j + 3]}".encode()).digest()
                out[i, h[0] % self.dim] += 1.0 + (h[1] / 255.0)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


class ToyAdapter:
    domain = "toy_molecules"

    def __init__(self, encoder_a: ToyEncoder, encoder_b: ToyEncoder) -> None:
        self.encoder_a, self.encoder_b = encoder_a, encoder_b
        rng = np.random.default_rng(0)
        atoms = ["C", "O", "N", "S", "Cl"]
        self.molecules = ["".join(rng.choice(atoms, size=8)) for _ in range(40)]
        self.texts = [f"a molecule with {m.count('C')} carbons and {m.count('O')} oxygens" for m in self.molecules]


class ToyDomain(Domain):
    name = "toy_molecules"
    tasks = ("toy",)
    modality_names = ("molecule", "text")
    help = {"task": "toy", "data_dir": "none", "encoder": "none"}
    user_errors = ("test_domain_registry:ToyDataError",)

    def build_encoders(self, cfg, device):
        from gentleclip.pipeline import encoder_recipe

        a, b = ToyEncoder(8, "a"), ToyEncoder(6, "b")
        return a, b, encoder_recipe(a), encoder_recipe(b)

    def build_adapter(self, cfg, encoder_a, encoder_b):
        check_options(ToyAdapter.__init__, dict(cfg.domain_options), "ToyAdapter", "domain_options")
        return ToyAdapter(encoder_a, encoder_b)

    def build_task(self, cfg, adapter):
        fa = adapter.encoder_a.encode(adapter.molecules)
        fb = adapter.encoder_b.encode(adapter.texts)

        def evaluate(embed_a, embed_b):
            za, zb = embed_a(fa), embed_b(fb)
            return [{"metric": "pair_cosine", "value": float(np.mean(np.sum(za * zb, axis=1)))}]

        return AlignmentTask("toy", "ToyMolecules", fa[:, None], fb[:, None], evaluate,
                             encoders={"molecule": adapter.encoder_a.name, "text": adapter.encoder_b.name},
                             modality_names=self.modality_names)


class ToyDataError(ValueError):
    pass


@pytest.fixture
def toy_domain():
    domain = register_domain(ToyDomain())
    yield domain
    unregister_domain(domain.name)


def test_the_installed_domains_come_from_entry_points() -> None:
    assert {"protein", "remote_sensing"} <= set(available_domains())
    assert get_domain("protein").tasks[0] == "scl2205"
    with pytest.raises(ValueError, match="unknown domain 'nope'; registered domains: .*protein"):
        get_domain("nope")


def test_a_toy_domain_trains_evaluates_and_loads_through_the_command_line(toy_domain, tmp_path) -> None:
    from gentleclip.app.cli import main
    from gentleclip.pipeline import load_pipeline

    out = tmp_path / "run"
    assert main(["train", "--domain", "toy_molecules", "--method", "clip", "--ratio", "0.5",
                 "--set", "train.max_steps=6", "--set", "train.eval_every=0", "--set", "head.out_dim=4",
                 "--set", "head.hidden_dim=8", "--out", str(out)]) == 0
    assert main(["evaluate", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["metric"] for r in rows] == ["pair_cosine"] and rows[0]["dataset"] == "ToyMolecules"

    pipe = load_pipeline(out)
    assert pipe.modality_names == ("molecule", "text") and pipe.domain == "toy_molecules"
    assert isinstance(pipe.encoder_a, ToyEncoder) and pipe.encoder_b.dim == 6
    z = pipe.embed_a(["CCOCCNSO"])
    expected = pipe.model.encode_a(ToyEncoder(8, "a").encode(["CCOCCNSO"]))
    np.testing.assert_allclose(z, expected, rtol=1e-6)


def test_a_toy_domain_checks_its_options_and_names_its_user_errors(toy_domain, tmp_path) -> None:
    from gentleclip.app.cli import user_errors
    from gentleclip.app.config import RunConfig
    from gentleclip.app.runner import build_adapter

    cfg = RunConfig(domain="toy_molecules", domain_options={"colour": "red"})
    with pytest.raises(ConfigError, match="domain_options: ToyAdapter has no option\\(s\\) colour"):
        build_adapter(cfg)
    with pytest.raises(ConfigError, match="task: domain 'toy_molecules' has tasks toy, not 'other'"):
        RunConfig(domain="toy_molecules", task="other")
    assert ToyDataError in user_errors()


def test_register_domain_refuses_a_second_domain_of_the_same_name(toy_domain) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_domain(ToyDomain())
    with pytest.raises(ValueError, match="needs a name and at least one task"):
        register_domain(Domain())


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_engine_imports_no_domain_and_not_the_application() -> None:
    """``gentleclip/`` imports no domain; the engine (all but ``gentleclip/app``) not the app either."""
    for path in sorted((ROOT / "gentleclip").rglob("*.py")):
        imported = _imports(path)
        rel = path.relative_to(ROOT)
        assert not any(n == "domains" or n.startswith("domains.") for n in imported), rel
        if "app" not in rel.parts:
            assert not any(n.startswith("gentleclip.app") for n in imported), rel
