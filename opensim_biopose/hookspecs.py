"""Plugin hook specifications (pluggy project ``opensim_biopose``).

Every registration hook receives a ``register`` callback; a plugin calls it once per
thing it provides. Built-ins register through the same hooks. Duplicate names are
rejected in one place, :mod:`opensim_biopose.plugins`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "opensim_biopose"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def register_detectors(register: Register) -> None:
    """Called once when plugins load. Call ``register(name, factory)`` for each keypoint
    detector; ``factory(**options)`` returns a :class:`opensim_biopose.detect.Detector`.
    All implementations are called; names must be unique across plugins."""


@hookspec
def register_body_models(register: Register) -> None:
    """Called once when plugins load. Call ``register(name, factory)`` for each body model;
    ``factory(**options)`` returns a :class:`opensim_biopose.body.BodyModel`.
    All implementations are called; names must be unique across plugins."""


@hookspec
def register_mesh_backends(register: Register) -> None:
    """Called once when plugins load. Call ``register(name, factory)`` for each mesh backend
    (keypoints -> body mesh per frame). All implementations are called; names unique."""


@hookspec
def register_marker_sets(register: Register) -> None:
    """Called once when plugins load. Call ``register(name, factory)`` for each virtual
    marker set; ``factory()`` returns a :class:`opensim_biopose.body.VirtualMarkerSet`.
    All implementations are called; names unique."""


__all__ = ["PROJECT", "hookspec", "hookimpl", "Register", "Any"]
