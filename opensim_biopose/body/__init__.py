"""Body models (Anny default; SMPL/SMPL-H/SMPL-X via smplx) and virtual marker sets.

Public API: :class:`BodyModel`, :class:`BodyOutput`, :class:`VertexRegressor`,
:class:`VirtualMarkerSet`, :func:`load_marker_set`, :func:`to_opensim_ground`.
Concrete models are created through the plugin registry (``body_models``: "anny", "smpl",
"smplh", "smplx"); marker sets through ``marker_sets`` ("anny-pig53").
"""
from __future__ import annotations

from opensim_biopose.body.base import BodyFrame, BodyModel, BodyOutput, PoseLimit, VertexRegressor
from opensim_biopose.body.frames import ANNY_FRAME, SMPL_FRAME, to_opensim_ground
from opensim_biopose.body.markers import VirtualMarkerSet, load_marker_set

__all__ = [
    "BodyFrame", "BodyModel", "BodyOutput", "PoseLimit", "VertexRegressor",
    "ANNY_FRAME", "SMPL_FRAME", "to_opensim_ground", "VirtualMarkerSet", "load_marker_set",
]
