"""Plugin loading and the registries of detectors, body models, mesh backends and marker sets.

Built-ins are plugins too (:data:`DEFAULT_PLUGINS`), loaded through the same hooks as
third-party packages found through the ``opensim_biopose`` entry point group. A plugin
that fails to import or raises while registering is reported by name and skipped; the
run stops only when the thing asked for is the broken one.

Set ``OPENSIM_BIOPOSE_BLOCK_PLUGINS=name1,name2`` to keep named plugins from loading.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from opensim_biopose import hookspecs
from opensim_biopose.errors import BioPoseError, InputError

log = logging.getLogger(__name__)

BLOCK_ENV = "OPENSIM_BIOPOSE_BLOCK_PLUGINS"

# Modules inside this package that register built-ins. A module listed here may be
# absent while its stage is not built yet; it is then skipped silently.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "opensim_biopose.detect.builtin",
    "opensim_biopose.body.builtin",
    "opensim_biopose.mesh.builtin",
)

KINDS = ("detectors", "body_models", "mesh_backends", "marker_sets")


@dataclass(frozen=True)
class Registration:
    """One registered thing: its name, factory, and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    version: str


@dataclass
class Registry:
    """Everything the loaded plugins registered, plus the plugins that failed."""

    entries: dict[str, dict[str, Registration]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: dict[str, str] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Registration:
        """The registration ``name`` of ``kind``; a clear error listing the alternatives if absent."""
        table = self.entries[kind]
        if name in table:
            return table[name]
        broken = [p for p in self.failures if name in p]
        hint = f" (plugin {broken[0]!r} failed to load: {self.failures[broken[0]]})" if broken else ""
        available = ", ".join(sorted(table)) or "none"
        raise InputError(f"unknown {kind[:-1].replace('_', ' ')} {name!r}{hint}; available: {available}")

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Instantiate ``name`` of ``kind`` with ``options``."""
        return self.get(kind, name).factory(**options)


def _blocked() -> set[str]:
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


def _make_register(registry: Registry, kind: str, plugin: str, version: str) -> Callable[..., None]:
    def register(name: str, factory: Callable[..., Any]) -> None:
        table = registry.entries[kind]
        if name in table:
            other = table[name].plugin
            raise BioPoseError(f"{kind[:-1]} {name!r} registered twice: by {other!r} and by {plugin!r}")
        table[name] = Registration(kind, name, factory, plugin, version)

    return register


def build_plugin_manager(extra_plugins: tuple[object, ...] = ()) -> tuple[pluggy.PluginManager, Registry]:
    """Load built-ins, entry-point plugins and ``extra_plugins``; return the manager and registry.

    A plugin that cannot be imported or whose hooks raise is recorded in
    ``registry.failures`` (name -> reason) and logged once; the others still load.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    blocked = _blocked()
    from opensim_biopose import __version__

    sources: list[tuple[str, str, Callable[[], object]]] = []
    for modname in DEFAULT_PLUGINS:
        sources.append((modname, __version__, lambda m=modname: importlib.import_module(m)))
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        version = ep.dist.version if ep.dist else "?"
        sources.append((ep.name, version, ep.load))
    for i, obj in enumerate(extra_plugins):
        sources.append((getattr(obj, "__name__", f"extra{i}"), "local", lambda o=obj: o))

    for name, version, load in sources:
        if name in blocked:
            log.info("plugin %s blocked by %s", name, BLOCK_ENV)
            continue
        try:
            plugin = load()
        except ModuleNotFoundError as exc:
            if name in DEFAULT_PLUGINS and exc.name == name:
                continue  # built-in stage not present in this build
            registry.failures[name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %s failed to import: %s", name, exc)
            continue
        except Exception as exc:  # a broken third-party plugin must not take the run down
            registry.failures[name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %s failed to import: %s", name, exc)
            continue
        pm.register(plugin, name=name)
        _call_registrations(pm, registry, plugin, name, version)
    pm.check_pending()
    return pm, registry


def _call_registrations(pm: pluggy.PluginManager, registry: Registry, plugin: object, name: str,
                        version: str) -> None:
    for kind in KINDS:
        hook = getattr(plugin, f"register_{kind}", None)
        if hook is None:
            continue
        try:
            hook(register=_make_register(registry, kind, name, version))
        except BioPoseError:
            raise
        except Exception as exc:
            registry.failures[name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %s raised in register_%s: %s", name, kind, exc)


_CACHE: tuple[pluggy.PluginManager, Registry] | None = None


def get_registry() -> Registry:
    """The process-wide registry; plugins (entry points included) load once, on first use."""
    global _CACHE
    if _CACHE is None:
        _CACHE = build_plugin_manager()
    return _CACHE[1]


def reset_registry() -> None:
    """Forget the loaded plugins (tests; after installing a plugin in-process)."""
    global _CACHE
    _CACHE = None
