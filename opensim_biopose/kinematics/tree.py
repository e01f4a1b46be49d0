"""Pure tensor forward kinematics over a joint tree (no OpenSim, no model reading).

Frames: ground G (OpenSim Y-up), each body B, and per joint the parent-side frame F (fixed in
the parent body P) and child-side frame M (fixed in the child body C). For a joint,
``X_GC = X_GP * X_PF * X_FM(q) * inverse(X_CM)``; X_FM is up to three rotations applied in
sequence about their axes (body-fixed), then a translation along parent-frame (F) axes, as in
OpenSim's CustomJoint. Lengths in metres, angles in radians.

Layout: the batch is the LAST dimension of every tensor here (rotations (J, 3, 3, B),
points (J, 3, B)), so each elementwise operation runs over contiguous batch rows; this is
several times faster on CPU than batched 3x3 matrix products. Fixed parts are folded into
constant matrices once: a rotation by angle a about unit axis k is
``k k^T + cos(a) (I - k k^T) + sin(a) [k]x``, and the joint's fixed frame rotations are
multiplied into the first and last factors, so a one-axis joint costs two multiply-adds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from opensim_biopose.kinematics.rotations import compose_rigid, matmul33, matvec3


@dataclass(frozen=True)
class RotationGroup:
    """Joints with the same number k >= 1 of q-dependent rotation axes.

    Their rotation parent body <- child body is F_0(a_0) ... F_{k-1}(a_{k-1}) with
    F_i(a) = M_i0 + cos(a) M_i1 + sin(a) M_i2; the joint frames are folded into M_0 and M_{k-1}.
    """

    joints: Tensor  # (Jk,) long: joint indices, tree order
    rows: Tensor  # (k, Jk) long: rows of the axis-value tensor holding each angle
    matrices: Tensor  # (k, 3, Jk, 3, 3)
    # (k, Jk, 3) unit axes for the Jacobian: axis 0 in the parent body (F's rotation applied),
    # axis i >= 1 in the frame of the first i factors (rotated into the parent body per pose).
    axes: Tensor


def group_rotations(group: RotationGroup, values: Tensor) -> Tensor:
    """Rotations (Jk, 3, 3, B) of one group from axis values (A, B) radians."""
    result = None
    for i in range(group.rows.shape[0]):
        angle = values[group.rows[i]].unsqueeze(1).unsqueeze(1)  # (Jk, 1, 1, B)
        m = group.matrices[i].unsqueeze(-1)  # (3, Jk, 3, 3, 1)
        factor = torch.addcmul(torch.addcmul(m[0], torch.cos(angle), m[1]), torch.sin(angle), m[2])
        result = factor if result is None else matmul33(result, factor)
    assert result is not None
    return result


def group_rotations_and_axes(group: RotationGroup, values: Tensor) -> tuple[Tensor, Tensor]:
    """Rotations (Jk, 3, 3, B) of one group and its rotation axes in the parent body
    (k, Jk, 3, B), from axis values (A, B) radians: axis i is the first i factors applied to
    its constant direction (factor i leaves its own axis unchanged)."""
    result = None
    axes = []
    for i in range(group.rows.shape[0]):
        if result is None:
            axes.append(group.axes[0].unsqueeze(-1).expand(-1, -1, values.shape[1]))
        else:
            axes.append(matvec3(result, group.axes[i].unsqueeze(-1)))
        angle = values[group.rows[i]].unsqueeze(1).unsqueeze(1)  # (Jk, 1, 1, B)
        m = group.matrices[i].unsqueeze(-1)  # (3, Jk, 3, 3, 1)
        factor = torch.addcmul(torch.addcmul(m[0], torch.cos(angle), m[1]), torch.sin(angle), m[2])
        result = factor if result is None else matmul33(result, factor)
    assert result is not None
    return result, torch.stack(axes)


@dataclass(frozen=True)
class JointLayout:
    """How local joint transforms are assembled from the axis values."""

    groups: tuple[RotationGroup, ...]
    fixed_joints: Tensor  # (J0,) long: joints without q-dependent rotations
    fixed_rotations: Tensor  # (J0, 3, 3) their constant rotation parent body <- child body
    translation_membership: Tensor  # (J, T) 1.0 where translation axis t belongs to joint j
    translation_rows: Tensor  # (T,) long: row of its value
    translation_axes: Tensor  # (T, 3) axis in the parent body (F axis rotated by F's orientation)
    translation_scale_axes: Tensor  # (T, 3) axis in F (OpenSim scales by axis . parent factors)
    translation_unscaled: Tensor  # (T,) 1.0 where the value is a coordinate that scaling leaves alone, else 0.0
    translation_parent: Tensor  # (T,) long: parent body row of each axis (for scaling)
    p_pf: Tensor  # (J, 3) origin of F in the parent body, metres
    p_cm: Tensor  # (J, 3) origin of M in the child body, metres
    parent_body: Tensor  # (J,) long: parent body row (model body index + 1; 0 = ground)
    child_body: Tensor  # (J,) long: child body row


def translation_factors(layout: JointLayout, scales: Tensor | None) -> Tensor | None:
    """(T, B or 1) factors OpenSim's Model.scale applies to each translation value, or None
    unscaled: (axis . parent factors) for scaled axes, 1 for the others."""
    if scales is None:
        return None
    s_axis = scales[layout.translation_parent]  # (T, 3, B|1)
    factor = (layout.translation_scale_axes.unsqueeze(-1) * s_axis).sum(1)
    return factor + layout.translation_unscaled.unsqueeze(-1)


def local_translations(layout: JointLayout, values: Tensor, rotations: Tensor, scales: Tensor | None) -> Tensor:
    """Origins of child bodies in parent bodies (J, 3, B), metres.

    p = p_PF + sum_i t_i (R_PF axis_i) - R_PC p_CM; with per-body ``scales`` (1 + NB, 3, B or 1)
    (row 0 = ground) as OpenSim's Model.scale: p_PF by the parent's factors, p_CM by the child's,
    and each CustomJoint translation value t_i by (axis_i . parent factors).
    """
    t = values[layout.translation_rows]  # (T, B)
    p_pf, p_cm = layout.p_pf.unsqueeze(-1), layout.p_cm.unsqueeze(-1)
    if scales is not None:
        t = t * translation_factors(layout, scales)
        p_pf = p_pf * scales[layout.parent_body]
        p_cm = p_cm * scales[layout.child_body]
    moved = t.unsqueeze(1) * layout.translation_axes.unsqueeze(-1)  # (T, 3, B)
    # Sum each joint's translation axes: a (J, T) 0/1 matrix times (T, 3 B) is one small GEMM.
    summed = (layout.translation_membership @ moved.flatten(1)).view(-1, 3, moved.shape[-1])
    return p_pf + summed - matvec3(rotations, p_cm)


def local_transforms(
    layout: JointLayout, values: Tensor, scales: Tensor | None, with_axes: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Local transforms [R | p] parent body <- child body (J, 3, 4, B) (rotations written in
    place into one tensor: no reordering copy) and, with ``with_axes``, the q-dependent rotation
    axes in their parent bodies (R, 3, B): groups in order, each axis-major (as
    ``torch.cat([g.rows.flatten() for g in layout.groups])``), else None. values (A, B);
    scales as :func:`local_translations`."""
    batch = values.shape[1]
    rotations = values.new_empty(layout.p_pf.shape[0], 3, 3, batch)
    if layout.fixed_joints.numel():
        rotations.index_copy_(0, layout.fixed_joints, layout.fixed_rotations.unsqueeze(-1).expand(-1, -1, -1, batch))
    axes = [values.new_zeros(0, 3, batch)]
    for g in layout.groups:
        if with_axes:
            rotation, group_axes = group_rotations_and_axes(g, values)
            axes.append(group_axes.flatten(0, 1))
        else:
            rotation = group_rotations(g, values)
        rotations.index_copy_(0, g.joints, rotation)
    translations = local_translations(layout, values, rotations, scales)
    return torch.cat([rotations, translations.unsqueeze(2)], 2), torch.cat(axes, 0) if with_axes else None


@dataclass(frozen=True)
class TreeLevels:
    """Joints in tree order grouped by depth: ``bounds[l]:bounds[l+1]`` have depth l and their
    parents at depth l - 1; ``parents[l]`` (Jl,) long indexes the previous level's rows;
    ``rows[l]`` (Jl,) long are their child bodies' rows in the output (model body index + 1)."""

    bounds: tuple[int, ...]
    parents: tuple[Tensor, ...]
    rows: tuple[Tensor, ...]


def accumulate(levels: TreeLevels, local: Tensor) -> Tensor:
    """Ground <- body homogeneous transforms (1 + NB, 4, 4, B), row 0 = ground, row b + 1 = model
    body b, from the local transforms [R | p] parent body <- child body (J, 3, 4, B) in tree order.

    Levels are written into one output tensor (no gather or concatenation afterwards); each
    level reads its parents from the previous level's result.
    """
    batch = local.shape[-1]
    out = local.new_empty(1 + local.shape[0], 4, 4, batch)
    out[:, 3] = local.new_tensor([0.0, 0.0, 0.0, 1.0]).view(1, 4, 1)
    out[0, :3] = torch.eye(3, 4, dtype=local.dtype, device=local.device).unsqueeze(-1)
    top = out[:, :3]  # view written level by level
    previous = None
    for level, parents in enumerate(levels.parents):
        start, end = levels.bounds[level], levels.bounds[level + 1]
        if previous is None:  # children of ground
            current = local[start:end]
        else:
            current = compose_rigid(previous[parents], local[start:end])
        top.index_copy_(0, levels.rows[level], current)
        previous = current
    return out


def points_in_ground(transforms: Tensor, rows: Tensor, offsets: Tensor) -> Tensor:
    """Points fixed in bodies -> ground (M, 3, B), metres. transforms (S, 4, 4, B) ground <- body,
    rows (M,) long, offsets (M, 3, B or 1) metres in the body."""
    t = transforms[:, :3].index_select(0, rows)  # (M, 3, 4, B): the rows read, not all 4 x 4
    return matvec3(t[..., :3, :], offsets) + t[:, :, 3]
