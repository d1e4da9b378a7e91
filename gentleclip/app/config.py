"""Run configuration: one training run of one method at one pairing ratio, read from YAML or JSON.

A :class:`RunConfig` says everything ``gentleclip train`` needs: which domain and task, where the
data are, which frozen encoders, which method, the pairing ratio and seed, the projection heads,
the training settings and the output folder. Example (``protein.yaml``)::

    domain: protein            # a registered domain (gentleclip.domain): protein | remote_sensing | yours
    task: scl2205              # one of the domain's tasks (protein: scl2205 or uniprot; remote_sensing: rsicd)
    data_dir: null             # the domain's data (protein: UniProt flat files / FASTA + table; remote_sensing: rsicd/)
    encoder: kmer              # A side: protein encoder (kmer, esm2_t6_8M_UR50D, a .pt) or image encoder
    text_encoder: null         # B side: null = the offline all-MiniLM-L6-v2, or a local model folder / hub id
    cache_dir: null            # feature cache (null: $GENTLECLIP_CACHE or ~/.cache/gentleclip/features)
    method: gentle             # see `gentleclip train --help` for the list
    pairing_ratio: 0.05        # fraction of the training items whose pair is known
    seed: 0                    # pairing split, head initialisation and batches
    max_train: 2000            # subsample the training items (null: all)
    head: {out_dim: 256, hidden_dim: 512, n_blocks: 1, dropout: 0.1}
    train: {max_steps: 300, batch_size: 256, lr: 0.001}   # any gentleclip.train.TrainConfig field (defaults: the
    benchmarks')
    objective: {sdd: 0.3, clip_unpaired_negatives: false} # any term weight or option, on top of the method's preset
    selection: val             # val: early stopping on the task's validation split; budget: on 20 % of the pairs
    finetune: {a: frozen, b: last2}   # end-to-end: frozen (cached features), all, or the last K blocks
    layers: {b: [2, 4, null]}  # layer selection: the pair of layers most alike on the training pairs
    out: runs/protein

:func:`load_run_config` reads such a file (``.yaml``/``.yml``/``.json``), applies ``key=value``
overrides (``train.max_steps=200``; values are read as YAML, so ``null``, ``true``, ``1e-3`` and
``[a, b]`` work) and checks every key: a misspelt key is an error naming the file and listing the
keys that exist.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from gentleclip.domain import ConfigError, Domain, default_domain, get_domain
from gentleclip.finetune import FinetuneConfig
from gentleclip.run import HeadConfig
from gentleclip.train import TrainConfig

__all__ = [
    "ConfigError",
    "RunConfig",
    "load_run_config",
    "read_config_file",
    "parse_override",
    "apply_overrides",
]

def _default_train() -> dict[str, Any]:
    """The training defaults of ``gentleclip train``: the benchmarks' (300 steps, early stopping on
    validation), so that both run paths give the same model for the same method, ratio and seed."""
    from gentleclip.run import default_train_config

    base, cfg = TrainConfig().to_dict(), default_train_config().to_dict()
    return {k: v for k, v in cfg.items() if base[k] != v}


#: Training defaults of a run where they differ from :class:`TrainConfig`'s.
DEFAULT_TRAIN: dict[str, Any] = _default_train()


@dataclass
class RunConfig:
    """Everything that determines one ``gentleclip train`` run (see the module docstring).

    ``seed`` sets the pairing split, the head initialisation and the batch order (it overrides
    ``train.seed``); the data subsample (``max_train``/``max_test``) uses the adapter's own seed
    (``domain_options: {seed: ...}``, default 0), so runs with different seeds see the same items.
    ``domain_options`` are passed to the domain's adapter (e.g. ``{image_threads: 1, ucm: false}``
    for remote sensing) and ``task_options`` to its task builder (e.g. ``{max_extra_text: 500}``);
    see :class:`gentleclip.domain.Domain`.
    """

    domain: str | None = None  # None: the default domain (gentleclip.domain.default_domain)
    task: str | None = None
    data_dir: str | None = None
    encoder: str | None = None
    text_encoder: str | None = None
    cache_dir: str | None = None
    method: str = "gentle"
    pairing_ratio: float = 0.05
    seed: int = 0
    max_train: int | None = None
    max_test: int | None = None
    n_views: int = 2
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**DEFAULT_TRAIN))
    domain_options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, Any] = field(default_factory=dict)
    selection: str = "val"
    preset: bool = True
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    layers: dict[str, Any] = field(default_factory=dict)
    out: str | None = None

    def __post_init__(self) -> None:
        if self.domain is None:
            self.domain = default_domain()
        if isinstance(self.head, Mapping):
            self.head = _dataclass_from(HeadConfig, self.head, "head")
        if isinstance(self.train, Mapping):  # a partial section: the rest keeps RunConfig's defaults
            self.train = _dataclass_from(TrainConfig, {**DEFAULT_TRAIN, **self.train}, "train")
        if isinstance(self.finetune, Mapping):
            self.finetune = _dataclass_from(FinetuneConfig, self.finetune, "finetune")
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        domain = self.registered_domain
        if self.task is not None and self.task not in domain.tasks:
            raise ConfigError(f"task: domain {self.domain!r} has tasks {', '.join(domain.tasks)}, not {self.task!r}")
        domain.check(self)
        from gentleclip.methods import get_method

        try:
            get_method(self.method)
        except ValueError as exc:
            raise ConfigError(f"method: {exc}") from None
        if isinstance(self.pairing_ratio, bool) or not isinstance(self.pairing_ratio, (int, float)) \
                or not 0.0 <= float(self.pairing_ratio) <= 1.0:
            raise ConfigError(f"pairing_ratio: expected a number in [0, 1], got {self.pairing_ratio!r}")
        self.pairing_ratio = float(self.pairing_ratio)
        for name in ("seed", "n_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}: expected an integer, got {value!r}")
        if self.n_views < 1:
            raise ConfigError(f"n_views: expected >= 1, got {self.n_views}")
        for name in ("max_train", "max_test"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
                raise ConfigError(f"{name}: expected null or an integer >= 2, got {value!r}")
        for name in ("data_dir", "encoder", "text_encoder", "cache_dir", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ConfigError(f"{name}: expected a string or null, got {value!r}")
            if value is not None:
                setattr(self, name, os.fspath(value))
        from gentleclip.losses import ObjectiveConfig
        from gentleclip.validation import SELECTION_MODES

        if self.selection not in SELECTION_MODES:
            raise ConfigError(f"selection: expected one of {', '.join(SELECTION_MODES)}, got {self.selection!r}")
        if not isinstance(self.preset, bool):
            raise ConfigError(f"preset: expected true or false, got {self.preset!r}")
        if not isinstance(self.objective, Mapping):
            raise ConfigError(f"objective: expected a mapping of term weights and options, got {self.objective!r}")
        known = set(ObjectiveConfig.keys())
        unknown = sorted(set(self.objective) - known)
        if unknown:
            raise ConfigError(f"objective: unknown key(s) {', '.join(map(str, unknown))}; known keys: "
                              f"{', '.join(sorted(known))}")
        try:
            ObjectiveConfig(**{**ObjectiveConfig.gentle().to_dict(), **self.objective})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"objective: {exc}") from None
        self._validate_layers()
        for name in ("domain_options", "task_options", "objective"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"{name}: expected a mapping, got {getattr(self, name)!r}")
            setattr(self, name, dict(getattr(self, name)))

    def _validate_layers(self) -> None:
        """``layers: {a: [...], b: [...], measure: mutual_knn|cka}``: the candidate layers of layer selection."""
        if not isinstance(self.layers, Mapping):
            raise ConfigError(f"layers: expected a mapping {{a: [...], b: [...], measure: ...}}, got {self.layers!r}")
        unknown = sorted(set(self.layers) - {"a", "b", "measure"})
        if unknown:
            raise ConfigError(f"layers: unknown key(s) {', '.join(map(str, unknown))}; known keys: a, b, measure")
        for side in ("a", "b"):
            values = self.layers.get(side, [None])
            if not isinstance(values, (list, tuple)) or not values or not all(
                    v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
                raise ConfigError(f"layers.{side}: expected a list of layer numbers (null: the usual output), "
                                  f"got {values!r}")
        if self.layers.get("measure", "mutual_knn") not in ("mutual_knn", "cka"):
            raise ConfigError(f"layers.measure: expected mutual_knn or cka, got {self.layers.get('measure')!r}")
        if self.layers and self.finetune.active:
            raise ConfigError("layers: layer selection chooses among cached layers of frozen encoders; it does not go "
                              "with finetune")
        self.layers = dict(self.layers)

    @property
    def registered_domain(self) -> Domain:
        """The :class:`~gentleclip.domain.Domain` named by ``domain``."""
        if not isinstance(self.domain, str):
            raise ConfigError(f"domain: expected a domain name, got {self.domain!r}")
        try:
            return get_domain(self.domain)
        except ValueError as exc:
            raise ConfigError(f"domain: {exc}") from None

    @property
    def resolved_task(self) -> str:
        """``task``, or the domain's default (:meth:`gentleclip.domain.Domain.default_task`)."""
        if self.task is not None:
            return self.task
        return self.registered_domain.default_task(self)

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON/YAML-serialisable dict (``from_dict`` inverts it)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["head"] = asdict(self.head)
        d["train"] = self.train.to_dict()
        d["finetune"] = self.finetune.to_dict()
        d["domain_options"] = dict(self.domain_options)
        d["task_options"] = dict(self.task_options)
        d["objective"] = dict(self.objective)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> "RunConfig":
        """Build from a dict; unknown keys raise :class:`ConfigError` naming ``source``."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}; known keys: "
                              f"{', '.join(known)}")
        try:
            return cls(**dict(d))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def to_yaml(self) -> str:
        """The configuration as YAML text (what ``gentleclip train --print-config`` shows)."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


def _dataclass_from(cls: type, d: Mapping[str, Any], section: str) -> Any:
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {', '.join(map(str, unknown))}; known keys: {', '.join(known)}")
    try:
        return cls(**dict(d))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}: {exc}") from None


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml``/``.json`` file into a dict (errors name the file and the line)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} not found" + (" (it is a folder)" if p.is_dir() else ""))
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    elif p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{p}: invalid YAML{where}: {problem}") from None
    else:
        raise ConfigError(f"{p}: unknown config format {p.suffix!r}; use .yaml, .yml or .json")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.max_steps=200"`` -> ``(["train", "max_steps"], 200)`` (the value is read as YAML)."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.max_steps=200")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"--set {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text as it is
    return parts, value


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys reach into sections) to a copy of ``config``."""
    out = json.loads(json.dumps(config, default=str))
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {p!r} is not a section (it holds {child!r})")
            node = child
        node[parts[-1]] = value
    return out


def load_run_config(
    path: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    **settings: Any,
) -> RunConfig:
    """Read a run configuration: defaults < file ``path`` < ``settings`` (top-level keys, None ignored) < ``overrides``.

    ``settings`` may use dotted keys through a dict, e.g. ``train={"max_steps": 50}``: sections are
    merged key by key with the file's.
    """
    source = str(path) if path is not None else "config"
    data: dict[str, Any] = read_config_file(path) if path is not None else {}
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(data.get(key), Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    data = apply_overrides(data, overrides)
    return RunConfig.from_dict(data, source=source)
