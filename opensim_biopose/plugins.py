"""Plugin loading and the registries of detectors, keypoint sources, body models, mesh
backends and marker sets.

Built-ins are plugins too (:data:`DEFAULT_PLUGINS`), loaded through the same hooks as
third-party packages found through the ``opensim_biopose`` entry point group. A plugin
that fails to import, has a misspelt hook (``check_pending``), raises while registering,
or registers a name already taken is reported by name in :attr:`Registry.failures` and
skipped; the run stops only when the thing asked for is missing (the error then names the
broken plugins).

Set ``OPENSIM_BIOPOSE_BLOCK_PLUGINS=name1,name2`` (entry point or distribution names)
to keep named plugins from loading.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from opensim_biopose import hookspecs
from opensim_biopose.errors import InputError

log = logging.getLogger(__name__)

BLOCK_ENV = "OPENSIM_BIOPOSE_BLOCK_PLUGINS"

# Modules inside this package that register built-ins. A module listed here may be
# absent while its stage is not built yet; it is then skipped silently. Detectors and
# keypoint sources are not here: they ship as separate packages under plugins/
# (biopose-mediapipe, the default, and biopose-precomputed), found by entry point.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "opensim_biopose.body.builtin",
    "opensim_biopose.mesh.builtin",
)

# One registry table per registration hook: kind "detectors" <- hook "register_detectors".
KINDS: tuple[str, ...] = ("detectors", "keypoint_sources", "body_models", "mesh_backends", "marker_sets")

ORIGIN_BUILTIN = "builtin"
ORIGIN_ENTRY_POINT = "entry point"
ORIGIN_LOCAL = "in-process"


@dataclass(frozen=True)
class Registration:
    """One registered thing: its name, factory, and where it came from.

    ``plugin`` is the plugin's name (module, entry point or object name), ``version`` the
    version of the distribution that provides it, ``origin`` one of ``builtin``,
    ``entry point`` or ``in-process``.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    version: str
    origin: str = ORIGIN_BUILTIN


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: name, version, origin (``builtin``/``entry point``/``in-process``)."""

    name: str
    version: str
    origin: str


@dataclass
class Registry:
    """Everything the loaded plugins registered, plus the plugins that failed.

    ``entries[kind][name]`` -> :class:`Registration`; ``failures[plugin]`` -> reason;
    ``plugins`` lists the plugins that loaded, in load order.
    """

    entries: dict[str, dict[str, Registration]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: dict[str, str] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)

    def names(self, kind: str) -> list[str]:
        """Sorted names registered under ``kind``."""
        return sorted(self.entries[kind])

    def get(self, kind: str, name: str) -> Registration:
        """The registration ``name`` of ``kind``; an InputError listing the alternatives if absent."""
        table = self.entries[kind]
        if name in table:
            return table[name]
        raise InputError(f"unknown {kind[:-1].replace('_', ' ')} {name!r}; available: "
                         f"{', '.join(sorted(table)) or 'none'}{self.failure_hint()}")

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Instantiate ``name`` of ``kind`` with ``options``."""
        return self.get(kind, name).factory(**options)

    def failure_hint(self) -> str:
        """A sentence naming the plugins that failed to load, or ''."""
        if not self.failures:
            return ""
        listed = "; ".join(f"{p}: {why}" for p, why in sorted(self.failures.items()))
        return f" (plugins that failed to load: {listed})"


@dataclass(frozen=True)
class _Source:
    """A plugin waiting to be loaded."""

    name: str
    version: str
    origin: str
    load: Callable[[], object]
    aliases: tuple[str, ...] = ()   # other names that block it (e.g. its distribution)


def _blocked() -> set[str]:
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


def _builtin_sources() -> Iterator[_Source]:
    from opensim_biopose import __version__

    for modname in DEFAULT_PLUGINS:
        yield _Source(modname, __version__, ORIGIN_BUILTIN, lambda m=modname: importlib.import_module(m))


def _entry_point_sources() -> Iterator[_Source]:
    seen: set[tuple[str, str]] = set()   # a dist on sys.path twice lists its entry points twice
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        if (ep.name, ep.value) in seen:
            continue
        seen.add((ep.name, ep.value))
        dist = ep.dist
        version = dist.version if dist is not None else "?"
        aliases = (dist.metadata["Name"],) if dist is not None else ()
        yield _Source(ep.name, version, ORIGIN_ENTRY_POINT, ep.load, aliases)


def _local_sources(extra_plugins: tuple[object, ...]) -> Iterator[_Source]:
    for i, obj in enumerate(extra_plugins):
        name = getattr(obj, "__name__", None) or f"{type(obj).__name__}{i}"
        yield _Source(name, getattr(obj, "__version__", "local"), ORIGIN_LOCAL, lambda o=obj: o)


def _load(source: _Source, registry: Registry) -> object | None:
    """Import one plugin; record a failure and return None if it cannot be imported."""
    try:
        return source.load()
    except ModuleNotFoundError as exc:
        if source.origin == ORIGIN_BUILTIN and exc.name == source.name:
            return None  # built-in stage not present in this build
        _fail(registry, source.name, f"cannot import: {type(exc).__name__}: {exc}")
    except Exception as exc:  # a broken third-party plugin must not take the run down
        _fail(registry, source.name, f"cannot import: {type(exc).__name__}: {exc}")
    return None


def _fail(registry: Registry, plugin: str, reason: str) -> None:
    registry.failures.setdefault(plugin, reason)
    log.warning("plugin %s skipped: %s", plugin, reason)


def _add_plugin(pm: pluggy.PluginManager, registry: Registry, source: _Source, plugin: object) -> bool:
    """Register ``plugin`` with pluggy; reject it (and record why) if its hooks are misspelt."""
    try:
        pm.register(plugin, name=source.name)
    except Exception as exc:  # ValueError: registered twice; PluginValidationError: bad signature
        _fail(registry, source.name, f"cannot register: {exc}")
        return False
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=source.name)
        _fail(registry, source.name, f"unknown hook (misspelt?): {exc}")
        return False
    registry.plugins.append(PluginInfo(source.name, source.version, source.origin))
    return True


def _make_register(registry: Registry, kind: str, info: PluginInfo) -> Callable[..., None]:
    """The ``register`` callback handed to one plugin's ``register_<kind>`` hook.

    This is the one place where duplicate names are rejected (across detectors and
    keypoint sources too, since ``--detector`` picks from both).
    """
    shared = ("detectors", "keypoint_sources") if kind in ("detectors", "keypoint_sources") else (kind,)

    def register(name: str, factory: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not name or not callable(factory):
            raise TypeError(f"register(name, factory) needs a non-empty str and a callable, "
                            f"got {name!r}, {factory!r}")
        for other_kind in shared:
            taken = registry.entries[other_kind].get(name)
            if taken is not None:
                raise _DuplicateName(f"{kind[:-1].replace('_', ' ')} {name!r} is already registered "
                                     f"by plugin {taken.plugin!r}")
        registry.entries[kind][name] = Registration(kind, name, factory, info.name, info.version, info.origin)

    return register


class _DuplicateName(Exception):
    pass


def _call_registrations(pm: pluggy.PluginManager, registry: Registry, only: object | None = None) -> None:
    """Call every ``register_<kind>`` implementation once (of plugin ``only`` if given),
    attributing failures to its plugin."""
    infos = {p.name: p for p in registry.plugins}
    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}")
        # get_hookimpls() is in registration (= load) order, so built-ins claim names first
        for impl in hook.get_hookimpls():
            if only is not None and impl.plugin is not only:
                continue
            info = infos[impl.plugin_name]
            try:
                impl.function(register=_make_register(registry, kind, info))
            except Exception as exc:
                _fail(registry, info.name, f"register_{kind} raised {type(exc).__name__}: {exc}")


def build_plugin_manager(extra_plugins: tuple[object, ...] = ()) -> tuple[pluggy.PluginManager, Registry]:
    """Load built-ins, entry-point plugins and ``extra_plugins``; return the manager and registry.

    Plugins named in ``$OPENSIM_BIOPOSE_BLOCK_PLUGINS`` are not loaded. A plugin that
    cannot be imported, whose hooks are misspelt or raise, or that registers a taken name
    is recorded in ``registry.failures`` (plugin name -> reason) and logged once; the
    others still load.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    blocked = _blocked()
    sources = [*_builtin_sources(), *_entry_point_sources(), *_local_sources(extra_plugins)]
    for source in sources:
        if blocked & {source.name, *source.aliases}:
            log.info("plugin %s blocked by %s", source.name, BLOCK_ENV)
            continue
        plugin = _load(source, registry)
        if plugin is not None:
            _add_plugin(pm, registry, source, plugin)
    _call_registrations(pm, registry)
    return pm, registry


_CACHE: tuple[pluggy.PluginManager, Registry] | None = None


def add_plugin(plugin: object) -> Registry:
    """Register an in-process plugin (module or object with hookimpls) into the process-wide
    registry, e.g. from a notebook or a test, so that the CLI and ``detect_video`` see it.
    Its failures are recorded like any other plugin's; returns the registry."""
    pm, registry = _cached()
    source = next(_local_sources((plugin,)))
    if _add_plugin(pm, registry, source, plugin):
        _call_registrations(pm, registry, only=plugin)
    return registry


def get_registry() -> Registry:
    """The process-wide registry; plugins (entry points included) load once, on first use."""
    return _cached()[1]


def _cached() -> tuple[pluggy.PluginManager, Registry]:
    global _CACHE
    if _CACHE is None:
        _CACHE = build_plugin_manager()
    return _CACHE


def reset_registry() -> None:
    """Forget the loaded plugins (tests; after installing a plugin in-process)."""
    global _CACHE
    _CACHE = None
