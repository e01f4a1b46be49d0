"""A posed body sequence in OpenSim ground, and its ground-truth virtual markers.

The body model's mesh is posed by a :class:`~opensim_biopose.render.motions.Motion`, leaned
forward as a whole, turned from the body model's frame into OpenSim ground, stood on the floor
(lowest vertex at Y = 0 in every frame) and held in place by its feet or its pelvis. The
virtual markers are read off the very vertices that are rendered, so they are the exact
"oracle" markers of the clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from opensim_biopose.body.base import BodyModel
from opensim_biopose.body.frames import to_opensim_ground
from opensim_biopose.body.markers import VirtualMarkerSet
from opensim_biopose.body.rotations import axis_angle_to_matrix
from opensim_biopose.errors import InputError
from opensim_biopose.render.motions import Motion
from opensim_biopose.render.texture import FlatMesh, box, clothes_colours, dominant_bones

# Frames posed per body-model call: bounds memory (a frame of Anny is ~13.7k vertices).
_CHUNK = 32


@dataclass(frozen=True)
class PosedSequence:
    """A body in motion, OpenSim ground (X anterior, Y up, Z right), metres, floor at Y = 0.

    vertices: (T, V, 3); faces: (F, 3); markers: (T, M, 3) virtual markers named ``marker_names``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    markers: np.ndarray
    marker_names: tuple[str, ...]
    # Scene props that the body touches (a stool for sit-to-stand); part of the backdrop.
    props: tuple[FlatMesh, ...] = ()

    @property
    def centre(self) -> np.ndarray:
        """(3,) mean position of the body over the sequence (m)."""
        return self.vertices.mean(axis=(0, 1))

    @property
    def stature(self) -> float:
        """Largest height over the sequence (m): the standing height when the subject stands at all."""
        return float(self.vertices[:, :, 1].max())


def _lean(tilt: torch.Tensor, frame_matrix: torch.Tensor) -> torch.Tensor:
    """(T, 3, 3) forward lean by ``tilt`` (rad) about the body's left axis, in body-model axes.

    The subject's left is -Z in OpenSim ground; a positive rotation about it turns the trunk
    forward (+X) and the legs backward. Returned in the body model's own axes.
    """
    left_in_body = frame_matrix.T @ torch.tensor([0.0, 0.0, -1.0])
    return axis_angle_to_matrix(tilt[:, None] * left_in_body)


def pose_sequence(body: BodyModel, motion: Motion, shape: torch.Tensor, markers: VirtualMarkerSet,
                  forward_speed_m_s: float = 0.0, times: torch.Tensor | None = None) -> PosedSequence:
    """Pose ``body`` (phenotypes ``shape``, (S,)) through ``motion`` and place it in OpenSim ground.

    ``forward_speed_m_s``: progression along +X for a treadmill motion (needs ``times``).
    """
    if markers.body_model != body.name:
        raise InputError(f"marker set {markers.name!r} belongs to {markers.body_model!r}, not {body.name!r}")
    frame = body.frame.matrix()
    lean = _lean(motion.tilt, frame)
    chunks = []
    with torch.no_grad():
        for i in range(0, motion.pose.shape[0], _CHUNK):
            v = body(motion.pose[i:i + _CHUNK], shape[None]).vertices            # (t, V, 3) body frame
            v = v @ lean[i:i + _CHUNK].transpose(1, 2)
            chunks.append(to_opensim_ground(v, body.frame))
    verts = torch.cat(chunks).to(torch.float64)
    verts[..., 1] -= verts[..., 1].amin(dim=1, keepdim=True)                       # stand on the floor
    anchor = _anchor_points(body, verts, motion.anchor)                              # (T, 3)
    shift = anchor[:1] - anchor
    shift[:, 1] = 0.0
    if forward_speed_m_s and times is not None:
        shift[:, 0] += forward_speed_m_s * times.to(verts.dtype)
    verts = verts + shift[:, None, :]
    verts[..., [0, 2]] -= anchor[0, [0, 2]]                                          # start over the origin
    marker_xyz = markers.positions(verts)
    props = (stool_under(body, verts.numpy()),) if motion.seat else ()
    return PosedSequence(verts.numpy(), body.faces.numpy(), marker_xyz.numpy(), markers.names, props)


def stool_under(body: BodyModel, verts: np.ndarray, size_m: float = 0.38) -> FlatMesh:
    """A stool whose top touches the buttocks in the frame where the pelvis is lowest (the seated frame).

    ``verts``: (T, V, 3) ground-frame vertices; the stool is ``size_m`` square, centred under the
    pelvis's vertices and pushed back so that it stays behind the calves.
    """
    dominant = _dominant(body)
    bones = _bone_names(body)
    pelvis = np.isin(dominant, [i for i, b in enumerate(bones) if b.startswith(("pelvis", "root"))])
    t = int(np.argmin(verts[:, pelvis, 1].mean(axis=1)))
    hips = verts[t, pelvis]
    centre = hips.mean(axis=0)
    behind = hips[:, 0] < centre[0] + 0.05                        # buttocks, not the lap
    top = float(hips[behind, 1].min())
    x_back = float(hips[:, 0].min())
    return box(np.array([x_back - 0.05, 0.0, centre[2] - size_m / 2]),
               np.array([x_back - 0.05 + size_m, top, centre[2] + size_m / 2]))


def _anchor_points(body: BodyModel, verts: torch.Tensor, anchor: str) -> torch.Tensor:
    """(T, 3) the point held still: mean of the feet's vertices, or of the pelvis's."""
    bones = _bone_names(body)
    dominant = torch.as_tensor(_dominant(body))
    if anchor == "feet":
        wanted = [i for i, b in enumerate(bones) if b.startswith(("foot", "toe"))]
    elif anchor == "pelvis":
        wanted = [i for i, b in enumerate(bones) if b.startswith(("pelvis", "root"))]
    else:
        raise InputError(f"unknown motion anchor {anchor!r}; use 'feet' or 'pelvis'")
    mask = torch.isin(dominant, torch.tensor(wanted))
    return verts[:, mask].mean(dim=1)


def _bone_names(body: BodyModel) -> list[str]:
    anny = getattr(body, "_anny", None)
    if anny is None:
        raise InputError(f"rendering needs the Anny body model (bone weights); got {body.name!r}")
    return list(anny.bone_labels)


def _dominant(body: BodyModel) -> np.ndarray:
    anny = body._anny  # type: ignore[attr-defined]
    return dominant_bones(anny.vertex_bone_weights.numpy(), anny.vertex_bone_indices.numpy())


def body_colours(body: BodyModel, seed: int = 0) -> np.ndarray:
    """(V, 3) uint8 RGB clothes-like colours of the body model's mesh (see :mod:`.texture`)."""
    rest = body(torch.zeros(1, len(body.pose_joint_names), 3), body.neutral_shape[None]).vertices[0]
    rest = to_opensim_ground(rest.to(torch.float64), body.frame).numpy()
    return clothes_colours(_bone_names(body), _dominant(body), rest_up=rest[:, 1], rest_back=-rest[:, 0], seed=seed)


def standing_height(body: BodyModel, shape: torch.Tensor) -> float:
    """Stature (m) of the body with phenotypes ``shape`` (S,) in its rest pose: what a tape measure gives."""
    with torch.no_grad():
        v = body(torch.zeros(1, len(body.pose_joint_names), 3), shape[None]).vertices[0]
    up = to_opensim_ground(v.to(torch.float64), body.frame)[:, 1]
    return float(up.max() - up.min())


def keypoints_ground(body: BodyModel, seq: PosedSequence, names: tuple[str, ...]) -> np.ndarray:
    """(T, K, 3) the body model's own keypoints ``names`` (e.g. COCO joints) on the rendered mesh, metres.

    Anny's keypoint regressor is linear in the vertices, so it applies to ground-frame vertices.
    """
    reg = body.keypoint_regressor().subset(tuple(names))
    return reg.positions(torch.as_tensor(seq.vertices)).numpy()
