"""Plugin hook specifications (pluggy project ``opensim_biopose``).

Every hook here is a *registration* hook: it receives a ``register`` callback and the
plugin calls ``register(name, factory)`` once per thing it provides. Built-ins register
through the same hooks (see :data:`opensim_biopose.plugins.DEFAULT_PLUGINS`). All
implementations of every hook are called, each once, when plugins load; there is no
"first result wins". Duplicate names are rejected in one place,
:mod:`opensim_biopose.plugins`. Each hook is documented with an example in ``docs/plugins.md``.

A plugin is any module or object with functions decorated by :data:`hookimpl`, found
through the entry point group ``opensim_biopose`` (``[options.entry_points]`` in its
setup.cfg) or passed in-process to :func:`opensim_biopose.plugins.build_plugin_manager`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "opensim_biopose"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``register(name: str, factory: Callable[..., object]) -> None``
Register = Callable[[str, Callable[..., Any]], None]


@hookspec
def register_detectors(register: Register) -> None:
    """Register image keypoint detectors.

    Call ``register(name, factory)`` per detector; ``factory(**options)`` returns a
    :class:`opensim_biopose.detect.Detector` (upright BGR uint8 frame + time in,
    :class:`~opensim_biopose.detect.FrameDetection` or None out). Called once at load.
    """


@hookspec
def register_keypoint_sources(register: Register) -> None:
    """Register readers of keypoints computed elsewhere (OpenPose JSON, COCO JSON, .trc).

    Call ``register(name, factory)``; ``factory(**options)`` returns a
    :class:`opensim_biopose.detect.KeypointSource` whose ``read(path)`` returns a
    :class:`~opensim_biopose.detect.KeypointSequence`. Names share one namespace with
    detectors (``--detector NAME`` picks either). Called once at load.
    """


@hookspec
def register_body_models(register: Register) -> None:
    """Register body models.

    Call ``register(name, factory)``; ``factory(**options)`` returns a body model
    (:mod:`opensim_biopose.body`). Called once at load.
    """


@hookspec
def register_mesh_backends(register: Register) -> None:
    """Register mesh backends (keypoints -> body mesh per frame).

    Call ``register(name, factory)``; ``factory(**options)`` returns a mesh backend
    (:mod:`opensim_biopose.mesh`). Called once at load.
    """


@hookspec
def register_marker_sets(register: Register) -> None:
    """Register virtual marker sets (mesh vertices -> named anatomical markers).

    Call ``register(name, factory)``; ``factory(**options)`` returns a virtual marker set
    (:mod:`opensim_biopose.body`). Called once at load.
    """


__all__ = ["PROJECT", "hookspec", "hookimpl", "Register"]
