"""Body-model frames and the one conversion into OpenSim's ground frame.

OpenSim ground (the convention of every .trc/.osim this package writes): X anterior
(the subject's initial facing direction), Y up, Z to the subject's right, metres.
"""
from __future__ import annotations

import torch

from opensim_biopose.body.base import BodyFrame

# Anny 0.6.2: +X subject's left, -Y anterior, +Z up (measured; see DESIGN.md).
# OpenSim X = -Y_anny, Y = Z_anny, Z = -X_anny.
ANNY_FRAME = BodyFrame(
    name="anny: +X left, -Y anterior, +Z up",
    to_opensim=((0.0, -1.0, 0.0), (0.0, 0.0, 1.0), (-1.0, 0.0, 0.0)),
)

# SMPL/SMPL-H/SMPL-X: +X subject's left, +Y up, +Z anterior.
# OpenSim X = Z_smpl, Y = Y_smpl, Z = -X_smpl.
SMPL_FRAME = BodyFrame(
    name="smpl: +X left, +Y up, +Z anterior",
    to_opensim=((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (-1.0, 0.0, 0.0)),
)


def to_opensim_ground(points: torch.Tensor, frame: BodyFrame) -> torch.Tensor:
    """(..., 3) points in a body model's canonical frame -> (..., 3) in OpenSim ground axes.

    A pure rotation (both frames are right-handed, metres); origins are not moved.
    """
    rot = frame.matrix(points.dtype).to(points.device)
    return points @ rot.T
