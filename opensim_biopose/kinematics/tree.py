"""Pure tensor forward kinematics over a joint tree (no OpenSim, no model reading).

Frames: ground G (OpenSim Y-up), each body B, and per joint the parent-side frame F (fixed in
the parent body P) and child-side frame M (fixed in the child body C). For a joint,
``X_GC = X_GP * X_PF * X_FM(q) * inverse(X_CM)``; X_FM is three rotations applied in sequence
about their axes (body-fixed), then a translation along parent-frame (F) axes, as in OpenSim's
CustomJoint. Lengths in metres, angles in radians.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from opensim_biopose.kinematics.rotations import axis_angle_matrix, compose


@dataclass(frozen=True)
class JointTransforms:
    """Per-joint local transforms parent body <- child body, joints in tree order."""

    rotation: Tensor  # (B, J, 3, 3)
    translation: Tensor  # (B, J, 3) metres, parent body frame


def mobilizer_transform(
    rotation_axes: Tensor, rotation_angles: Tensor, translation_axes: Tensor, translation_values: Tensor
) -> tuple[Tensor, Tensor]:
    """X_FM of CustomJoint-style joints.

    rotation_axes (J, 3, 3) [joint, axis i, xyz]; rotation_angles (B, J, 3) rad, applied in
    sequence R = R0 R1 R2; translation_axes (J, 3, 3); translation_values (B, J, 3) metres
    along the axes expressed in F. Returns R_FM (B, J, 3, 3) and p_FM (B, J, 3).
    """
    r = axis_angle_matrix(rotation_axes, rotation_angles)  # (B, J, 3, 3, 3)
    r_fm = r[:, :, 0] @ r[:, :, 1] @ r[:, :, 2]
    p_fm = torch.einsum("bji,jik->bjk", translation_values, translation_axes)
    return r_fm, p_fm


def joint_transforms(
    r_pf: Tensor, p_pf: Tensor, r_fm: Tensor, p_fm: Tensor, r_mc: Tensor, p_mc: Tensor
) -> JointTransforms:
    """X_PC = X_PF X_FM X_MC. Fixed frames (J, 3, 3)/(J, 3) or batched (B, J, ...); q-dependent (B, J, ...)."""
    r_fc, p_fc = compose(r_fm, p_fm, r_mc, p_mc)
    r, p = compose(r_pf, p_pf, r_fc, p_fc)
    return JointTransforms(r, p)


@dataclass(frozen=True)
class TreeLevels:
    """Joints grouped by depth. Slot 0 is ground; joint j (tree order) writes slot j + 1.

    ``bounds[l]:bounds[l+1]`` are the joints of depth l; ``parent_slot`` (J,) long.
    """

    bounds: tuple[int, ...]
    parent_slot: Tensor


def accumulate(levels: TreeLevels, local: JointTransforms) -> tuple[Tensor, Tensor]:
    """Ground <- body transforms for every slot: R (B, 1 + J, 3, 3), p (B, 1 + J, 3)."""
    batch = local.rotation.shape[0]
    eye = torch.eye(3, dtype=local.rotation.dtype, device=local.rotation.device)
    rotations = [eye.expand(batch, 1, 3, 3)]
    positions = [local.translation.new_zeros(batch, 1, 3)]
    for start, end in zip(levels.bounds[:-1], levels.bounds[1:]):
        parents = levels.parent_slot[start:end]
        r_all = torch.cat(rotations, 1)
        p_all = torch.cat(positions, 1)
        r, p = compose(
            r_all[:, parents], p_all[:, parents], local.rotation[:, start:end], local.translation[:, start:end]
        )
        rotations.append(r)
        positions.append(p)
    return torch.cat(rotations, 1), torch.cat(positions, 1)


def points_in_ground(rotation: Tensor, translation: Tensor, slot: Tensor, offsets: Tensor) -> Tensor:
    """Points fixed in bodies -> ground. rotation (B, S, 3, 3), translation (B, S, 3),
    slot (M,) long, offsets (M, 3) or (B, M, 3) metres in the body -> (B, M, 3) metres."""
    r = rotation[:, slot]
    return (r @ offsets.unsqueeze(-1)).squeeze(-1) + translation[:, slot]
