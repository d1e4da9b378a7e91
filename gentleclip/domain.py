"""What a domain gives the engine, and the registry of domains.

The engine knows no domain by name. A domain (proteins <-> text, satellite images <-> captions, or
yours) subclasses :class:`Domain` and registers an instance, either by calling
:func:`register_domain` or through the ``gentleclip.domains`` entry-point group of its package
(``pyproject.toml``)::

    [project.entry-points."gentleclip.domains"]
    molecules = "my_package.domain:MOLECULES"

A domain says which tasks it offers, builds its two frozen encoders and its adapter from a run
configuration, builds the :class:`~gentleclip.task.AlignmentTask` of a task, and names the
exceptions that mean "the user can fix this" (the command line prints them as one line).

The run configuration handed to these methods is :class:`gentleclip.app.config.RunConfig`; a
domain reads its fields ``task``, ``data_dir``, ``encoder``, ``text_encoder``, ``cache_dir``,
``n_views``, ``max_train``, ``max_test``, ``domain_options``, ``task_options`` and
``train.device``.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import sys
from typing import Any, Callable, Iterable

__all__ = [
    "ConfigError",
    "Domain",
    "register_domain",
    "get_domain",
    "available_domains",
    "imported_domains",
    "check_options",
    "default_domain",
    "import_object",
    "resolve_errors",
    "unregister_domain",
    "ENTRY_POINT_GROUP",
]

#: Entry-point group through which installed packages register their domains.
ENTRY_POINT_GROUP = "gentleclip.domains"

_REGISTRY: dict[str, "Domain"] = {}


class ConfigError(ValueError):
    """A run configuration, a configuration file or an override is invalid (the message names the key)."""


class Domain:
    """One domain: its tasks, encoders, adapter and user errors (subclass it and register an instance).

    Class attributes:
        name: the registry name (``--domain NAME``, ``domain: NAME`` in a run config).
        tasks: the task names it offers; the first is the default (see :meth:`default_task`).
        modality_names: display names of side A and side B.
        help: one-line help per command-line option (``task``, ``data_dir``, ``encoder``).
        user_errors: ``"module:Class"`` names of its exceptions that a user can fix (bad data,
            missing weights); they are looked up only once their module is imported.
        default: True for the one domain a run configuration without ``domain`` uses.
    """

    name: str = ""
    tasks: tuple[str, ...] = ()
    modality_names: tuple[str, str] = ("a", "b")
    help: dict[str, str] = {}
    user_errors: tuple[str, ...] = ()
    #: the domain of a run configuration that names none (one installed domain says so)
    default: bool = False

    def default_task(self, cfg: Any) -> str:
        """The task of a run config that names none (default: the first of :attr:`tasks`)."""
        return self.tasks[0]

    def check(self, cfg: Any) -> None:
        """Raise :class:`ConfigError` ``("<key>: ...")`` when ``cfg`` cannot run in this domain (before any work)."""

    def build_encoders(self, cfg: Any, device: str | None) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
        """The frozen encoders of ``cfg`` and their saved recipes: ``(encoder_a, encoder_b, recipe_a, recipe_b)``
        (recipes from :func:`gentleclip.pipeline.encoder_recipe`)."""
        raise NotImplementedError

    def build_adapter(self, cfg: Any, encoder_a: Any, encoder_b: Any) -> Any:
        """The domain adapter of ``cfg`` over the given encoders (it computes and caches features)."""
        raise NotImplementedError

    def build_task(self, cfg: Any, adapter: Any) -> Any:
        """The :class:`~gentleclip.task.AlignmentTask` of ``cfg``'s task."""
        raise NotImplementedError

    def encoders_of(self, adapter: Any) -> tuple[Any, Any]:
        """The ``(encoder_a, encoder_b)`` an adapter of this domain embeds with."""
        return adapter.encoder_a, adapter.encoder_b

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, tasks={self.tasks!r})"


def register_domain(domain: Domain, replace: bool = False) -> Domain:
    """Add ``domain`` to the registry under ``domain.name`` (``replace=True`` replaces a registered one)."""
    if not isinstance(domain, Domain):
        raise TypeError(f"register_domain expects a Domain instance, got {type(domain).__name__}")
    if not domain.name or not domain.tasks:
        raise ValueError(f"register_domain: {domain!r} needs a name and at least one task")
    if domain.name in _REGISTRY and not replace and _REGISTRY[domain.name] is not domain:
        raise ValueError(f"a domain named {domain.name!r} is already registered ({_REGISTRY[domain.name]!r}); "
                         "pass replace=True to replace it")
    _REGISTRY[domain.name] = domain
    return domain


def unregister_domain(name: str) -> None:
    """Remove a registered domain (tests register toy domains and remove them again)."""
    _REGISTRY.pop(name, None)


@functools.cache
def _entry_points() -> tuple[Any, ...]:
    """The installed domains' entry points (read from the package metadata once per process)."""
    from importlib.metadata import entry_points

    return tuple(entry_points(group=ENTRY_POINT_GROUP))


def _load(ep: Any) -> None:
    if ep.name not in _REGISTRY:
        domain = ep.load()
        register_domain(domain() if isinstance(domain, type) else domain)


def available_domains() -> list[str]:
    """The names of every registered or installed domain (installed ones are not imported)."""
    return sorted(set(_REGISTRY) | {ep.name for ep in _entry_points()})


def imported_domains() -> list["Domain"]:
    """The registered domains, plus the installed ones whose package is already imported (loading
    those costs nothing): the domains whose errors can have been raised in this process."""
    for ep in _entry_points():
        package = ep.value.split(":")[0].rsplit(".", 1)[0]
        if ep.name not in _REGISTRY and package in sys.modules:
            _load(ep)
    return list(_REGISTRY.values())


def get_domain(name: str) -> Domain:
    """The registered domain ``name`` (installed domains are loaded on first use)."""
    if name not in _REGISTRY:
        for ep in _entry_points():
            if ep.name == name:
                _load(ep)
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ValueError(f"unknown domain {name!r}; registered domains: {known} (a package registers one with "
                         f"gentleclip.domain.register_domain or the {ENTRY_POINT_GROUP!r} entry points)")
    return _REGISTRY[name]


def default_domain() -> str:
    """The name of the first domain (by name) that declares itself the default, or of the only one;
    domains are imported one by one until one answers."""
    names = available_domains()
    for name in names:
        if get_domain(name).default:
            return name
    if len(names) == 1:
        return names[0]
    raise ConfigError(f"domain: no default domain among {', '.join(names) or 'none'}; name one (--domain)")


def resolve_errors(names: Iterable[str]) -> list[type[BaseException]]:
    """The exception classes behind ``"module:Class"`` names whose module is already imported
    (an error of a module never imported cannot have been raised)."""
    out = []
    for text in names:
        module, _, attr = text.partition(":")
        cls = getattr(sys.modules.get(module), attr, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            out.append(cls)
    return out


def import_object(path: str) -> Any:
    """The object named ``"package.module:attr"``."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'module:attribute', got {path!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def check_options(target: Callable, options: dict[str, Any], what: str, section: str) -> None:
    """Raise :class:`ConfigError` naming ``section`` when ``options`` holds a keyword ``target`` does not take."""
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        allowed = [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL]
        raise ConfigError(f"{section}: {what} has no option(s) {', '.join(unknown)}; it takes {', '.join(allowed)}")
