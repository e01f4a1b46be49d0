"""Analytic derivatives of points fixed in bodies with respect to the coordinates.

Pure batch-last tensor math (batch LAST, as in :mod:`tree`). A rotation by angle f(q) about a
unit axis w (in ground) through the point o moves every point x of the bodies below it at
``dx/dq = f'(q) (w x (x - o))``; a translation by f(q) along w at ``f'(q) w``. Summing
these over the axes above each body gives, per body and coordinate, two vectors U, V with
``dx/dq = U x x - V`` for every point x of that body (U = sum f' w over rotations,
V = sum f' (w x o) over rotations - sum f' w over translations), so a marker's derivative
costs one cross product. Couplers (q_d = g(q_i)) then fold a dependent coordinate's column
into its independent's, times g'(q_i) (chain rule), and the dependent's column becomes zero.

For a CustomJoint, X_FM is the rotations followed by a translation expressed in F, so the
rotations turn about the origin of the joint's child-side frame M; this is where ``o`` is.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from opensim_biopose.kinematics.rotations import matvec3


@dataclass(frozen=True)
class JacobianLayout:
    """Constant tensors that map transform axes to (body, coordinate) derivative columns.

    Axes are in "Jacobian order": the rotation axes of every rotation group (groups in order,
    axis-major within a group), then the translation axes in ``JointLayout`` order.
    """

    rotation_rows: Tensor  # (R,) long: rows of the axis-value tensor
    rotation_joints: Tensor  # (R,) long: joint (tree order) of each rotation axis
    translation_joints: Tensor  # (T,) long: joint (tree order) of each translation axis
    # (1 + NB) * n rows, R + T columns, 0/1: entry ((b, c), a) is 1 where axis a moves body row b
    # (its joint is b's or an ancestor's) and reads coordinate c.
    gather: Tensor


def build_jacobian_layout(
    rotation_rows: Tensor,
    rotation_joints: Tensor,
    translation_rows: Tensor,
    translation_joints: Tensor,
    axis_coordinate: Sequence[int],
    joint_parent_body: Sequence[int],
    joint_child_body: Sequence[int],
    num_coordinates: int,
) -> JacobianLayout:
    """Build the layout from plain indices (body rows: model body index + 1, 0 = ground;
    ``axis_coordinate`` -1 for constant functions, which move nothing)."""
    joint_of_body = {child: j for j, child in enumerate(joint_child_body)}
    num_rows = 1 + len(joint_child_body)
    columns = torch.cat([rotation_rows, translation_rows]).tolist()
    joints = torch.cat([rotation_joints, translation_joints]).tolist()
    gather = torch.zeros(num_rows, num_coordinates, len(columns), dtype=torch.float64)
    for body in range(1, num_rows):
        ancestors, b = set(), body
        while b != 0:
            j = joint_of_body[b]
            ancestors.add(j)
            b = joint_parent_body[j]
        for a, (row, joint) in enumerate(zip(columns, joints)):
            if joint in ancestors and axis_coordinate[row] >= 0:
                gather[body, axis_coordinate[row], a] = 1.0
    return JacobianLayout(
        rotation_rows=rotation_rows,
        rotation_joints=rotation_joints,
        translation_joints=translation_joints,
        gather=gather.flatten(0, 1),
    )


def body_motion_vectors(
    layout: JacobianLayout,
    transforms: Tensor,
    joint_parent_body: Tensor,
    joint_child_body: Tensor,
    rotation_axes: Tensor,
    rotation_slopes: Tensor,
    m_origins: Tensor,
    translation_axes: Tensor,
    translation_slopes: Tensor,
) -> tuple[Tensor, Tensor]:
    """U, V (1 + NB, n, 3, B) with dx/dq_c = U[b, c] x x - V[b, c] for a point x (ground,
    metres) fixed in body row b, over the direct effect of each coordinate on the axes.

    transforms (1 + NB, 4, 4, B) ground <- body; joint_parent_body / joint_child_body (J,) long;
    rotation_axes (R, 3, B) unit, in the parent body; rotation_slopes (R, B) d angle / d q;
    m_origins (J, 3, B or 1) origin of each joint's M frame in its child body (scaled);
    translation_axes (T, 3) unit, in the parent body; translation_slopes (T, B) d length / d q
    (including scaling).
    """
    batch = transforms.shape[-1]
    rj = layout.rotation_joints
    w = matvec3(transforms[joint_parent_body[rj], :3, :3], rotation_axes)  # (R, 3, B) in ground
    child = transforms[joint_child_body[rj]]
    o = matvec3(child[:, :3, :3], m_origins[rj]) + child[:, :3, 3]  # (R, 3, B)
    u = w * rotation_slopes.unsqueeze(1)
    tj = layout.translation_joints
    w_t = matvec3(transforms[joint_parent_body[tj], :3, :3], translation_axes.unsqueeze(-1))  # (T, 3, B)
    v = torch.cat([torch.linalg.cross(u, o, dim=1), -w_t * translation_slopes.unsqueeze(1)], 0)
    u = torch.cat([u, u.new_zeros(tj.shape[0], 3, batch)], 0)
    # One GEMM per vector: ((1 + NB) n, R + T) @ (R + T, 3 B).
    rows = transforms.shape[0]
    uv = layout.gather @ torch.cat([u, v], 1).flatten(1)  # ((1 + NB) n, 6 B)
    uv = uv.view(rows, -1, 6, batch)
    return uv[:, :, :3], uv[:, :, 3:]


def point_jacobian(u: Tensor, v: Tensor, body_rows: Tensor, points: Tensor) -> Tensor:
    """d points / d q (P, n, 3, B) from :func:`body_motion_vectors` U, V, the points' body rows
    (P,) long and their ground positions (P, 3, B)."""
    return torch.linalg.cross(u[body_rows], points.unsqueeze(1), dim=2) - v[body_rows]


def fold_coupler_columns(jacobian: Tensor, stages: Sequence, q_t: Tensor) -> Tensor:
    """Chain rule through couplers over the coordinate dimension 1 of ``jacobian`` (X, n, ..., B).

    Stages are folded last first, so a dependent of a dependent reaches its root independent;
    dependent columns end at zero. q_t (n, B) with dependents already filled.
    """
    jacobian = jacobian.clone()
    for stage in reversed(stages):
        slope = stage.table.slopes(q_t[stage.independent])  # (C, B)
        shape = (1, -1) + (1,) * (jacobian.ndim - 3) + (slope.shape[-1],)
        moved = jacobian[:, stage.dependent] * slope.view(shape)
        jacobian.index_add_(1, stage.independent, moved)
        jacobian[:, stage.dependent] = 0.0
    return jacobian
