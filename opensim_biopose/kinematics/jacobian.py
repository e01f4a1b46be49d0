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

Gauss-Newton needs only J^T W J and J^T W e of weighted marker residuals e = x - target, and
these follow from a few weighted moments of the markers below each axis, without forming J
(:func:`normal_equations`): with W, X, Q the sums of w, w x, w x x^T over the markers below
axis b (the markers below two axes are those below the deeper one), the entry of axes a
(above or beside b) and b is ``U_a . alpha_b + V_a . beta_b`` with
``alpha_b = (tr(Q) I - Q) U_b - X x V_b`` and ``beta_b = X x U_b + W V_b``, and the gradient
entry of axis a is ``U_a . sum w (x x e) - V_a . sum w e``. This is the composite-rigid-body
idea applied to least squares: cost per pose O(axes^2 + axes x markers), no gathers.
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
    axis_coordinate: Tensor  # (A,) long: coordinate each axis reads, -1 for constants (Jacobian order)
    below: Tensor  # (A, M) float 0/1: marker m is fixed in a body below axis a (its joint's subtree)
    # (A, A) float: 1 where axis a's joint is a strict ancestor of axis b's or the same joint
    # with a < b (the markers below both axes are those below b), 0.5 on the diagonal (added
    # to its transpose this counts every pair once), 0 elsewhere.
    above: Tensor


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
    selection: Tensor  # (n, F) float 0/1: d q / d q[columns] without couplers
    # For the normal equations, the axes that move a column are merged per (joint, column)
    # "entry": their U, V add up (a knee's rotation and the translations that follow its angle
    # are one entry), so there are about as many entries E as columns.
    moving: Tensor  # (A',) long: the axes (Jacobian order) whose coordinate moves a column
    entry: Tensor  # (A',) long: the entry of each of them
    entry_column: Tensor  # (E,) long: the column each entry moves
    # True when entry f < F moves column f (every column has an entry): the first F entries
    # are the columns, the other E - F add into theirs; ``extra_pairs`` (E - F)^2 flat indices
    # (row * F + column) of the extra-extra block.
    direct: bool
    extra_pairs: Tensor
    entry_joint: Tensor  # (E,) long: row of each entry's joint in ``below``
    below: Tensor  # (J', M) float: JacobianLayout.below of the entries' joints
    above: Tensor  # (E, E) float: JacobianLayout.above of the entries (by their first axes)
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
    reads = layout.axis_coordinate >= 0
    axis_column = torch.where(reads, coordinate_column[layout.axis_coordinate.clamp_min(0)], -1)
    moving = torch.nonzero(axis_column >= 0).flatten()
    axis_joint = torch.cat([layout.rotation_joints, layout.translation_joints])
    entry_of: dict[tuple[int, int], int] = {}
    first_axis: list[int] = []
    for a, key in zip(moving.tolist(), zip(axis_joint[moving].tolist(), axis_column[moving].tolist())):
        if key not in entry_of:
            entry_of[key] = len(first_axis)
            first_axis.append(a)
    # Entries in column order first, one per column where every column has one ("direct"):
    # then the normal equations of the columns are those of the first F entries, plus the
    # few extra entries (a coupled coordinate's other joints) added in.
    keys = list(entry_of)
    primary = {}
    for key in keys:
        primary.setdefault(key[1], key)
    direct = len(primary) == width
    if direct:
        order = [primary[f] for f in range(width)] + [k for k in keys if primary[k[1]] != k]
        entry_of = {key: i for i, key in enumerate(order)}
        first_axis = [first_axis[keys.index(key)] for key in order]
    entry = torch.tensor([entry_of[k] for k in zip(axis_joint[moving].tolist(), axis_column[moving].tolist())],
                         dtype=torch.long)
    leads = torch.tensor(first_axis, dtype=torch.long)
    extra = axis_column[leads][width:] if direct else torch.zeros(0, dtype=torch.long)
    joints, entry_joint = torch.unique(axis_joint[leads], return_inverse=True)
    joint_lead = torch.tensor([first_axis[int(torch.nonzero(entry_joint == j)[0])] for j in range(joints.numel())],
                              dtype=torch.long)
    selection = torch.zeros(layout.root.numel(), width, dtype=torch.float64)
    has_column = torch.nonzero(coordinate_column >= 0).flatten()
    selection[has_column, coordinate_column[has_column]] = 1.0
    return ColumnPlan(
        pairs=pairs, axis=layout.pair_axis[pairs], marker=layout.pair_marker[pairs],
        coordinate=layout.pair_coordinate[pairs], first=torch.nonzero(first).flatten(),
        repeat=torch.nonzero(~first).flatten(), first_target=target[first], repeat_target=target[~first],
        coordinate_column=coordinate_column, selection=selection, moving=moving, entry=entry,
        entry_column=axis_column[leads], direct=direct, extra_pairs=(extra[:, None] * width + extra).flatten(),
        entry_joint=entry_joint, below=layout.below[joint_lead], above=layout.above[leads][:, leads], width=width,
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

    def joints_above(body: int) -> set[int]:
        """The joints on the path from ground to ``body`` (body row)."""
        found = set()
        while body != 0:
            found.add(joint_of_body[body])
            body = joint_parent_body[joint_of_body[body]]
        return found

    pairs: list[tuple[int, int, int]] = []
    below = torch.zeros(len(joints), len(marker_body_rows), dtype=torch.float64)
    for m, body in enumerate(marker_body_rows):
        ancestors = joints_above(body)
        below[:, m] = torch.tensor([float(j in ancestors) for j in joints], dtype=torch.float64)
        pairs += [
            (m, a, axis_coordinate[row])
            for a, (row, joint) in enumerate(zip(columns, joints))
            if joint in ancestors and axis_coordinate[row] >= 0
        ]
    index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 3)
    above = torch.zeros(len(joints), len(joints), dtype=torch.float64)
    for b, joint_b in enumerate(joints):
        strict = joints_above(joint_child_body[joint_b]) - {joint_b}
        for a, joint_a in enumerate(joints):
            above[a, b] = 0.5 if a == b else float(joint_a in strict or (joint_a == joint_b and a < b))
    return JacobianLayout(
        rotation_rows=rotation_rows,
        rotation_joints=rotation_joints,
        translation_joints=translation_joints,
        pair_marker=index[:, 0].contiguous(),
        pair_axis=index[:, 1].contiguous(),
        pair_coordinate=index[:, 2].contiguous(),
        root=root,
        axis_coordinate=torch.tensor([axis_coordinate[row] for row in columns], dtype=torch.long),
        below=below,
        above=above,
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
    return torch.stack([torch.addcmul(a1 * b2, a2, b1, value=-1.0), torch.addcmul(a2 * b0, a0, b2, value=-1.0),
                        torch.addcmul(a0 * b1, a1, b0, value=-1.0)], dim)


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


def coordinate_jacobian(plan: ColumnPlan, chain: Tensor | None, batch: int) -> Tensor:
    """d q_full / d q[columns] (B, n, F): each coordinate moves with its root's column only,
    by the chain slopes (n, B) (None without couplers: a constant 0/1 matrix, returned expanded)."""
    if chain is None:
        return plan.selection.expand(batch, -1, -1)
    n = chain.shape[0]
    rows = torch.nonzero(plan.coordinate_column >= 0).flatten()
    jac = chain.new_zeros(batch, n * plan.width)
    jac[:, rows * plan.width + plan.coordinate_column[rows]] = chain[rows].t()
    return jac.view(batch, n, plan.width)


# (x x e)_i = x_{i+1} e_{i+2} - x_{i+2} e_{i+1}: entries of the outer product x e^T
_NEXT = torch.tensor([1, 2, 0])
_AFTER_NEXT = torch.tensor([2, 0, 1])
MOMENT_ROWS = 19


def _moments(markers: Tensor, targets: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Per-marker quantities (M, 19, B), batch last: w, w x (3), w x x^T (3 x 3 row-major),
    w (x x e) (3), w e (3), with e = x - target; and the cost sum w e.e (B,).
    markers, targets (M, 3, B), weights (M, B)."""
    e = markers - targets
    w = weights.unsqueeze(1)  # (M, 1, B)
    wx, we = markers * w, e * w
    outer = wx.unsqueeze(2) * markers.unsqueeze(1)  # (M, 3, 3, B)
    mixed = wx.unsqueeze(2) * e.unsqueeze(1)  # w x_i e_j
    cross = mixed[:, _NEXT, _AFTER_NEXT] - mixed[:, _AFTER_NEXT, _NEXT]  # (M, 3, B)
    return torch.cat([w, wx, outer.flatten(1, 2), cross, we], 1), (we * e).sum((0, 1))


def _into_columns(plan: ColumnPlan, hess_axes: Tensor, grad_axes: Tensor) -> tuple[Tensor, Tensor]:
    """Entry normal equations (B, E, E), (E, B) -> column ones (B, F, F), (B, F): entries of
    one column add up (a coupled coordinate's entries on several joints)."""
    column, f = plan.entry_column, plan.width
    batch, entries = hess_axes.shape[0], hess_axes.shape[1]
    if not plan.direct:
        hessian = hess_axes.new_zeros(batch, f, entries).index_add_(1, column, hess_axes)
        hessian = hessian.new_zeros(batch, f, f).index_add_(2, column, hessian)
        return hessian, grad_axes.new_zeros(f, batch).index_add_(0, column, grad_axes).t()
    if entries == f:
        return hess_axes, grad_axes.t()
    extra = column[f:]
    hessian = hess_axes[:, :f, :f].clone()
    hessian.index_add_(1, extra, hess_axes[:, f:, :f])
    hessian.index_add_(2, extra, hess_axes[:, :f, f:])
    hessian.view(batch, -1).index_add_(1, plan.extra_pairs, hess_axes[:, f:, f:].reshape(batch, -1))
    gradient = grad_axes[:f].index_add(0, extra, grad_axes[f:])
    return hessian, gradient.t()


@dataclass(frozen=True)
class NormalEquations:
    """Gauss-Newton normal equations of ``f = sum_m w_m ||x_m(q) - target_m||^2`` (batch first).

    Derivatives by the F columns of a :class:`ColumnPlan`; J = d x / d q[columns] (3M rows).
    """

    cost: Tensor  # (B,) f, m^2 (times the weights)
    gradient: Tensor  # (B, F) J^T W e (half the gradient of f)
    hessian: Tensor  # (B, F, F) J^T W J


def normal_equations(
    layout: JacobianLayout, plan: ColumnPlan, u: Tensor, v: Tensor, markers: Tensor,
    targets: Tensor, weights: Tensor, chain: Tensor | None,
) -> NormalEquations:
    """Normal equations from :func:`axis_motions` U, V (3, A, B), the markers (M, 3, B) in ground,
    their targets (M, 3, B) and weights (M, B) (batch last; 0 drops a marker) and
    :func:`chain_slopes` (n, B) (None without couplers). See the module docstring."""
    u, v = u[:, plan.moving], v[:, plan.moving]  # axes that move no column drop out
    if chain is not None:  # a coupled coordinate's axes move its root's column, scaled by the chain
        factor = chain[layout.axis_coordinate[plan.moving]]  # (A', B)
        u, v = u * factor, v * factor
    entries = plan.entry_column.numel()
    if entries < plan.entry.numel():  # sum the axes of each (joint, column) entry
        u = u.new_zeros(3, entries, u.shape[-1]).index_add_(1, plan.entry, u)
        v = v.new_zeros(3, entries, v.shape[-1]).index_add_(1, plan.entry, v)
    moments, cost = _moments(markers, targets, weights)  # (M, 19, B), (B,)
    count, batch = markers.shape[0], markers.shape[-1]
    # Sums over the markers below each joint: one (J', M) x (M, 19 B) product; then per entry.
    s = (plan.below @ moments.view(count, -1)).view(-1, MOMENT_ROWS, batch)[plan.entry_joint]  # (E, 19, B)
    w, x, q = s[:, :1], s[:, 1:4], s[:, 4:13].view(-1, 3, 3, batch)
    xe, we = s[:, 13:16], s[:, 16:19]
    u, v = u.transpose(0, 1), v.transpose(0, 1)  # (E, 3, B)
    trace = torch.diagonal(q, dim1=1, dim2=2).sum(-1).unsqueeze(1)  # (E, 1, B)
    gu = trace * u - (q * u.unsqueeze(1)).sum(2)  # (tr Q I - Q) U
    x_cross = cross3(x.unsqueeze(0), torch.stack([u, v]), dim=2)  # X x U, X x V: (2, E, 3, B)
    alpha = gu - x_cross[1]
    beta = x_cross[0] + w * v
    z = torch.cat([u, v], 1).permute(2, 0, 1).contiguous()  # (B, E, 6); bmm copies strided batches one by one
    y = torch.cat([alpha, beta], 1).permute(2, 1, 0).contiguous()  # (B, 6, E)
    half = torch.bmm(z, y).mul_(plan.above)  # pairs (a above or beside b) once, the diagonal halved
    hess_axes = half + half.transpose(1, 2)  # (B, E, E) symmetric
    grad_axes = (u * xe - v * we).sum(1)  # (E, B)
    hessian, gradient = _into_columns(plan, hess_axes, grad_axes)
    return NormalEquations(cost=cost, gradient=gradient, hessian=hessian)
