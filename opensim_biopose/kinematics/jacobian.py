"""Analytic derivatives of points fixed in bodies with respect to the coordinates.

Pure tensor math (inputs batch-last as in :mod:`tree`; the Jacobians come out batch-first).
A rotation by angle f(q) about a unit axis w (in ground) through the point o moves every
point x of the bodies below it at ``dx/dq = f'(q) (w x (x - o))``; a translation by f(q)
along w at ``f'(q) w``. Both read ``dx/dq = U x x - V`` with U = f' w, V = f' (w x o) for a
rotation and U = 0, V = -f' w for a translation, so each (marker, axis above it) pair costs
one cross product; pairs reading the same coordinate add up. A coupled coordinate q_d =
g(q_i) moves its pairs into the column of its root independent coordinate, times
dq_d/dq_root (the product of the coupler slopes along the chain: chain rule); its own
column stays zero.

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
    """Constant index tensors from transform axes to marker derivative columns.

    Axes are in "Jacobian order": the rotation axes of every rotation group (groups in order,
    axis-major within a group), then the translation axes in ``JointLayout`` order. A "pair"
    is a marker and an axis above it (its joint is the marker body's or an ancestor's) whose
    value reads a coordinate; only pairs are evaluated (a marker depends on ~1/3 of the
    coordinates), then scattered into the dense (B, M, 3, F) Jacobian.
    """

    rotation_rows: Tensor  # (R,) long: rows of the axis-value tensor
    rotation_joints: Tensor  # (R,) long: joint (tree order) of each rotation axis
    translation_joints: Tensor  # (T,) long: joint (tree order) of each translation axis
    pair_marker: Tensor  # (P,) long
    pair_axis: Tensor  # (P,) long: index in Jacobian order
    pair_coordinate: Tensor  # (P,) long: the coordinate the axis reads (may be a dependent one)
    root: Tensor  # (n,) long: the independent coordinate each coordinate follows (itself if independent)


@dataclass(frozen=True)
class ColumnPlan:
    """Where pair derivatives land for one choice of Jacobian columns (independent coordinates)."""

    pairs: Tensor  # (P',) long: the pairs whose root coordinate is a column
    axis: Tensor  # (P',) long: their axes (Jacobian order)
    marker: Tensor  # (P',) long: their markers
    coordinate: Tensor  # (P',) long: the coordinates their axes read
    # Flat targets (marker * 3 + component) * F + column of the (3, P') pair terms, split so
    # that most are written with one assignment (fast) and only repeats are added:
    first: Tensor  # long: indices into the 3 P' terms of those landing first on their targets
    repeat: Tensor  # long: indices of the other terms
    first_target: Tensor  # long: targets of the first terms (unique)
    repeat_target: Tensor  # long: targets of the other terms
    coordinate_column: Tensor  # (n,) long: column of each coordinate's root, -1 if not a column
    width: int  # F


def column_plan(layout: JacobianLayout, columns: Tensor) -> ColumnPlan:
    """Plan for Jacobian columns ``columns`` (F,) long, independent coordinates (CPU tensors)."""
    width = int(columns.numel())
    column_of = torch.full((layout.root.numel(),), -1, dtype=torch.long)
    column_of[columns] = torch.arange(width)
    coordinate_column = column_of[layout.root]
    pair_column = coordinate_column[layout.pair_coordinate]
    pairs = torch.nonzero(pair_column >= 0).flatten()
    component = torch.arange(3, dtype=torch.long)[:, None]
    target = ((layout.pair_marker[pairs] * 3 + component) * width + pair_column[pairs]).flatten()  # (3 P',)
    first = torch.zeros(target.numel(), dtype=torch.bool)
    seen: set[int] = set()
    for i, t in enumerate(target.tolist()):
        first[i] = t not in seen
        seen.add(t)
    return ColumnPlan(
        pairs=pairs, axis=layout.pair_axis[pairs], marker=layout.pair_marker[pairs],
        coordinate=layout.pair_coordinate[pairs], first=torch.nonzero(first).flatten(),
        repeat=torch.nonzero(~first).flatten(), first_target=target[first], repeat_target=target[~first],
        coordinate_column=coordinate_column, width=width,
    )


def build_jacobian_layout(
    rotation_rows: Tensor,
    rotation_joints: Tensor,
    translation_rows: Tensor,
    translation_joints: Tensor,
    axis_coordinate: Sequence[int],
    joint_parent_body: Sequence[int],
    joint_child_body: Sequence[int],
    marker_body_rows: Sequence[int],
    root: Tensor,
) -> JacobianLayout:
    """Build the layout from plain indices (body rows: model body index + 1, 0 = ground;
    ``axis_coordinate`` -1 for constant functions, which move nothing)."""
    joint_of_body = {child: j for j, child in enumerate(joint_child_body)}
    columns = torch.cat([rotation_rows, translation_rows]).tolist()
    joints = torch.cat([rotation_joints, translation_joints]).tolist()
    pairs: list[tuple[int, int, int]] = []
    for m, body in enumerate(marker_body_rows):
        ancestors = set()
        while body != 0:
            ancestors.add(joint_of_body[body])
            body = joint_parent_body[joint_of_body[body]]
        pairs += [
            (m, a, axis_coordinate[row])
            for a, (row, joint) in enumerate(zip(columns, joints))
            if joint in ancestors and axis_coordinate[row] >= 0
        ]
    index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 3)
    return JacobianLayout(
        rotation_rows=rotation_rows,
        rotation_joints=rotation_joints,
        translation_joints=translation_joints,
        pair_marker=index[:, 0].contiguous(),
        pair_axis=index[:, 1].contiguous(),
        pair_coordinate=index[:, 2].contiguous(),
        root=root,
    )


def axis_motions(
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
    """U, V (3, R + T, B) (component first, batch last), per axis in Jacobian order, with dx/dq = U x x - V
    for a point x (ground, metres) below the axis, through the axis's value alone.

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
    v = torch.cat([cross3(u, o, dim=1), -w_t * translation_slopes.unsqueeze(1)], 0)
    u = torch.cat([u, u.new_zeros(tj.shape[0], 3, batch)], 0)
    return u.transpose(0, 1), v.transpose(0, 1)


def cross3(a: Tensor, b: Tensor, dim: int) -> Tensor:
    """Cross product along ``dim`` (size 3) with broadcasting; plain elementwise products,
    several times faster on CPU than torch.linalg.cross on batch-last layouts."""
    a0, a1, a2 = a.unbind(dim)
    b0, b1, b2 = b.unbind(dim)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim)


def chain_slopes(stages: Sequence, q_t: Tensor) -> Tensor:
    """(n, B) d q_c / d q_root(c) for every coordinate c (1 for independents): the product of
    the coupler slopes along the chain to its root (chain rule). q_t (n, B) filled."""
    slopes = torch.ones_like(q_t)
    for stage in stages:
        slopes[stage.dependent] = stage.table.slopes(q_t[stage.independent]) * slopes[stage.independent]
    return slopes


def marker_jacobian(plan: ColumnPlan, u: Tensor, v: Tensor, markers: Tensor, chain: Tensor | None) -> Tensor:
    """d markers / d q[columns] (B, M, 3, F) from :func:`axis_motions` U, V (3, R + T, B), the
    markers (M, 3, B) in ground (batch last) and :func:`chain_slopes` (n, B) (None without
    couplers): each pair adds (U x x - V) d q_c / d q_root to its marker's root column.

    The pair terms are formed component-first and batch-last, (3, P', B), so every product
    runs over contiguous batch rows; one transpose makes the result batch-first."""
    count, batch = markers.shape[0], markers.shape[-1]
    ua, va = u[:, plan.axis], v[:, plan.axis]  # (3, P', B)
    x = markers.transpose(0, 1)[:, plan.marker]  # (3, P', B)
    motion = torch.stack(
        [ua[1] * x[2] - ua[2] * x[1] - va[0], ua[2] * x[0] - ua[0] * x[2] - va[1], ua[0] * x[1] - ua[1] * x[0] - va[2]]
    )
    if chain is not None:
        motion = motion * chain[plan.coordinate]
    terms = motion.view(-1, batch)  # (3 P', B)
    jac = markers.new_zeros(batch, count * 3 * plan.width)
    jac[:, plan.first_target] = terms[plan.first].t()
    if plan.repeat.numel():
        jac.index_add_(1, plan.repeat_target, terms[plan.repeat].t())
    return jac.view(batch, count, 3, plan.width)


def coordinate_jacobian(plan: ColumnPlan, chain: Tensor) -> Tensor:
    """d q_full / d q[columns] (B, n, F): each coordinate moves with its root's column only."""
    n, batch = chain.shape
    rows = torch.nonzero(plan.coordinate_column >= 0).flatten()
    jac = chain.new_zeros(batch, n * plan.width)
    jac[:, rows * plan.width + plan.coordinate_column[rows]] = chain[rows].t()
    return jac.view(batch, n, plan.width)
