"""Mesh backends: a person's keypoints over a video -> a body mesh per frame (OpenSim ground).

Public API: :class:`MeshBackend`, :class:`MeshFit`, :class:`FitQuality`, :class:`KeypointFit`
(backend ``"keypoint-fit"``, the default) with :class:`KeypointFitConfig`, :class:`PinholeCamera`.
"""
from __future__ import annotations

from opensim_biopose.mesh.base import FitQuality, MeshBackend, MeshFit
from opensim_biopose.mesh.camera import PinholeCamera
from opensim_biopose.mesh.keypoint_fit import KeypointFit, KeypointFitConfig, build_keypoint_fit

DEFAULT_BACKEND = "keypoint-fit"

__all__ = ["FitQuality", "MeshBackend", "MeshFit", "PinholeCamera", "KeypointFit", "KeypointFitConfig",
           "build_keypoint_fit", "DEFAULT_BACKEND"]
