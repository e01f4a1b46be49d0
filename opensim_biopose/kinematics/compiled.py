"""Turn a :class:`KinematicModel` (plain data read from a .osim) into the tensors that the
forward kinematics reads: q-dependent transform axes in one :class:`FunctionTable`, joints
grouped by their number of q-dependent rotations (joint frames folded into constant
matrices), depth levels of the tree and coupler stages.

Joint ("tree") order here is by depth. Body rows (of scale factors and of the accumulated
transforms) are model body index + 1, row 0 = ground.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import torch
from torch import Tensor

from opensim_biopose.kinematics.functions import FunctionSpec, FunctionTable, PolynomialSpec
from opensim_biopose.kinematics.jacobian import JacobianLayout, build_jacobian_layout
from opensim_biopose.kinematics.osim_reader import AxisSpec, CouplerSpec, FrameSpec, JointSpec, KinematicModel
from opensim_biopose.kinematics.rotations import rotation_factor_matrices
from opensim_biopose.kinematics.tree import JointLayout, RotationGroup, TreeLevels


@dataclass(frozen=True)
class CouplerStage:
    """Couplers evaluated together: q[dependent] = table(q[independent]) (batch-last q (n, B))."""

    table: FunctionTable
    dependent: Tensor  # (C,) long
    independent: Tensor  # (C,) long


@dataclass(frozen=True)
class CompiledModel:
    """Every tensor the forward pass reads; all move together in :meth:`Skeleton.to`."""

    axis_table: FunctionTable  # the q-dependent transform axes (A functions)
    axis_coordinate: Tensor  # (A,) long: argument coordinate of each
    layout: JointLayout
    levels: TreeLevels
    stages: tuple[CouplerStage, ...]
    marker_body_index: Tensor  # (M,) long, -1 = ground
    marker_offsets: Tensor  # (M, 3) metres in the body
    coordinate_ranges: Tensor  # (n, 2)
    coordinate_defaults: Tensor  # (n,)
    coordinate_clamped: Tensor  # (n,) bool
    coordinate_locked: Tensor  # (n,) bool
    coordinate_is_rotational: Tensor  # (n,) bool
    coordinate_dependent: Tensor  # (n,) bool
    independent_index: Tensor  # (n_ind,) long
    jacobian: JacobianLayout


def move_to(value: Any, device: torch.device | str | None, dtype: torch.dtype | None) -> Any:
    """Tensors (floating ones to ``dtype``), FunctionTables, dataclasses and tuples of them."""
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=dtype if value.is_floating_point() else None)
    if isinstance(value, FunctionTable):
        return value.to(device, dtype)
    if isinstance(value, tuple):
        return tuple(move_to(v, device, dtype) for v in value)
    if is_dataclass(value):
        return type(value)(**{f.name: move_to(getattr(value, f.name), device, dtype) for f in fields(value)})
    return value


def _mat(frame: FrameSpec) -> Tensor:
    return torch.tensor(frame.rotation, dtype=torch.float64)


def _is_active(axis: AxisSpec) -> bool:
    """False for axes that are identically zero (unused CustomJoint axes, WeldJoint, ...)."""
    f = axis.function
    return not (isinstance(f, PolynomialSpec) and all(c == 0.0 for c in f.coefficients))


def _depth_sorted(model: KinematicModel) -> list[JointSpec]:
    depth = {-1: -1}
    for joint in model.joints:  # parent-first order
        depth[joint.child] = depth[joint.parent] + 1
    return sorted(model.joints, key=lambda j: depth[j.child])


class _AxisRows:
    """Collects the q-dependent axis functions; each gets a row of the axis-value tensor."""

    def __init__(self) -> None:
        self.functions: list[FunctionSpec] = []
        self.arguments: list[int] = []
        self.coordinates: list[int] = []  # -1 for constants

    def add(self, axis: AxisSpec) -> int:
        self.functions.append(axis.function)
        self.arguments.append(max(axis.coordinate, 0))  # constants ignore their argument
        self.coordinates.append(axis.coordinate)
        return len(self.functions) - 1


Members = list[tuple[int, list[tuple[int, AxisSpec]]]]  # (joint, [(row, rotation axis)])


def _rotation_group(count: int, members: Members, joints: list[JointSpec]) -> RotationGroup:
    """Fold each joint's frame rotations into its first and last rotation factors."""
    matrices = torch.zeros(count, 3, len(members), 3, 3, dtype=torch.float64)
    axes = torch.zeros(count, len(members), 3, dtype=torch.float64)
    for m, (j, active) in enumerate(members):
        r_pf, r_mc = _mat(joints[j].parent_frame), _mat(joints[j].child_frame).T
        for i, (_, axis) in enumerate(active):
            direction = torch.tensor(axis.axis, dtype=torch.float64)
            axes[i, m] = r_pf @ direction if i == 0 else direction
            factor = rotation_factor_matrices(direction)
            factor = r_pf @ factor if i == 0 else factor
            matrices[i, :, m] = factor @ r_mc if i == count - 1 else factor
    return RotationGroup(
        joints=torch.tensor([j for j, _ in members], dtype=torch.long),
        rows=torch.tensor([[r for r, _ in active] for _, active in members], dtype=torch.long).T.contiguous(),
        matrices=matrices,
        axes=axes,
    )


def _stack(rows: list[Tensor], width: tuple[int, ...]) -> Tensor:
    return torch.stack(rows) if rows else torch.zeros((0, *width), dtype=torch.float64)


def _membership(owners: list[int], count: int) -> Tensor:
    """(count, len(owners)) float 0/1 matrix: entry (j, t) is 1 where owners[t] == j."""
    matrix = torch.zeros(count, len(owners), dtype=torch.float64)
    matrix[owners, range(len(owners))] = 1.0
    return matrix


def _joint_layout(joints: list[JointSpec], rows: _AxisRows) -> JointLayout:
    by_count: dict[int, Members] = {}
    fixed: list[tuple[int, Tensor]] = []
    t_joint, t_row, t_axis, t_scale_axis, t_parent, t_unscaled = [], [], [], [], [], []
    for j, joint in enumerate(joints):
        r_pf, r_mc = _mat(joint.parent_frame), _mat(joint.child_frame).T
        active = [(rows.add(a), a) for a in joint.rotations if _is_active(a)]
        if active:
            by_count.setdefault(len(active), []).append((j, active))
        else:
            fixed.append((j, r_pf @ r_mc))
        for a in filter(_is_active, joint.translations):
            axis = torch.tensor(a.axis, dtype=torch.float64)
            t_joint.append(j)
            t_row.append(rows.add(a))
            t_parent.append(joint.parent + 1)
            t_axis.append(r_pf @ axis)
            t_scale_axis.append(axis if a.scaled else torch.zeros(3, dtype=torch.float64))
            t_unscaled.append(0.0 if a.scaled else 1.0)
    groups = [_rotation_group(k, members, joints) for k, members in sorted(by_count.items())]
    long = torch.long
    return JointLayout(
        groups=tuple(groups),
        fixed_joints=torch.tensor([j for j, _ in fixed], dtype=long),
        fixed_rotations=_stack([r for _, r in fixed], (3, 3)),
        translation_membership=_membership(t_joint, len(joints)),
        translation_rows=torch.tensor(t_row, dtype=long),
        translation_axes=_stack(t_axis, (3,)),
        translation_scale_axes=_stack(t_scale_axis, (3,)),
        translation_unscaled=torch.tensor(t_unscaled, dtype=torch.float64),
        translation_parent=torch.tensor(t_parent, dtype=long),
        p_pf=torch.tensor([j.parent_frame.translation for j in joints], dtype=torch.float64).reshape(-1, 3),
        p_cm=torch.tensor([j.child_frame.translation for j in joints], dtype=torch.float64).reshape(-1, 3),
        parent_body=torch.tensor([j.parent + 1 for j in joints], dtype=long),
        child_body=torch.tensor([j.child + 1 for j in joints], dtype=long),
    )


def compile_model(model: KinematicModel) -> CompiledModel:
    """All tensors of ``model`` (float64, CPU); move them with :func:`move_to`."""
    joints = _depth_sorted(model)
    rows = _AxisRows()
    layout = _joint_layout(joints, rows)
    coords = model.coordinates
    dependent = torch.zeros(len(coords), dtype=torch.bool)
    for c in model.couplers:
        dependent[c.dependent] = True
    long, f64 = torch.long, torch.float64
    return CompiledModel(
        jacobian=_jacobian_layout(layout, rows, [m.body + 1 for m in model.markers], model),
        axis_table=FunctionTable.build(rows.functions),
        axis_coordinate=torch.tensor(rows.arguments, dtype=long),
        layout=layout,
        levels=_levels(joints),
        stages=coupler_stages(model),
        marker_body_index=torch.tensor([m.body for m in model.markers], dtype=long),
        marker_offsets=torch.tensor([m.offset for m in model.markers], dtype=f64).reshape(-1, 3),
        coordinate_ranges=torch.tensor([c.range for c in coords], dtype=f64).reshape(-1, 2),
        coordinate_defaults=torch.tensor([c.default for c in coords], dtype=f64),
        coordinate_clamped=torch.tensor([c.clamped for c in coords], dtype=torch.bool),
        coordinate_locked=torch.tensor([c.locked for c in coords], dtype=torch.bool),
        coordinate_is_rotational=torch.tensor([c.rotational for c in coords], dtype=torch.bool),
        coordinate_dependent=dependent,
        independent_index=torch.nonzero(~dependent).flatten(),
    )


def _coupler_roots(model: KinematicModel) -> Tensor:
    """(n,) long: the independent coordinate each coordinate follows through couplers."""
    root = list(range(len(model.coordinates)))
    for c in model.couplers:  # sorted independent-first
        root[c.dependent] = root[c.independent]
    return torch.tensor(root, dtype=torch.long)


def _jacobian_layout(layout: JointLayout, rows: _AxisRows, marker_rows: list[int], model: KinematicModel) -> JacobianLayout:
    long = torch.long
    rotation_rows = [g.rows.flatten() for g in layout.groups]  # axis-major, as local_transforms(with_axes=True)
    rotation_joints = [g.joints.repeat(g.rows.shape[0]) for g in layout.groups]
    translation_joints = layout.translation_membership.argmax(0) if layout.translation_rows.numel() else torch.zeros(0, dtype=long)
    return build_jacobian_layout(
        rotation_rows=torch.cat(rotation_rows) if rotation_rows else torch.zeros(0, dtype=long),
        rotation_joints=torch.cat(rotation_joints) if rotation_joints else torch.zeros(0, dtype=long),
        translation_rows=layout.translation_rows,
        translation_joints=translation_joints,
        axis_coordinate=rows.coordinates,
        joint_parent_body=layout.parent_body.tolist(),
        joint_child_body=layout.child_body.tolist(),
        marker_body_rows=marker_rows,
        root=_coupler_roots(model),
    )


def _levels(joints: list[JointSpec]) -> TreeLevels:
    """Depth levels of depth-sorted joints; each level's parents index the previous level."""
    depth = {-1: -1}
    for joint in joints:
        depth[joint.child] = depth[joint.parent] + 1
    bounds = [0]
    for i in range(1, len(joints)):
        if depth[joints[i].child] != depth[joints[i - 1].child]:
            bounds.append(i)
    bounds.append(len(joints))
    position = {j.child: i for i, j in enumerate(joints)}
    parents, rows = [], []
    for level in range(len(bounds) - 1):
        previous_start = bounds[level - 1] if level else 0
        members = joints[bounds[level] : bounds[level + 1]]
        parents.append(
            torch.tensor([position[j.parent] - previous_start if level else 0 for j in members], dtype=torch.long)
        )
        rows.append(torch.tensor([j.child + 1 for j in members], dtype=torch.long))
    return TreeLevels(bounds=tuple(bounds), parents=tuple(parents), rows=tuple(rows))


def coupler_stages(model: KinematicModel) -> tuple[CouplerStage, ...]:
    """Couplers grouped so each stage reads only coordinates final after earlier stages."""
    stages: list[list[CouplerSpec]] = []
    done_in_stage: dict[int, int] = {}
    for c in model.couplers:  # already sorted independent-first
        stage = done_in_stage.get(c.independent, -1) + 1
        done_in_stage[c.dependent] = stage
        while len(stages) <= stage:
            stages.append([])
        stages[stage].append(c)
    return tuple(
        CouplerStage(
            table=FunctionTable.build([c.function for c in group]),
            dependent=torch.tensor([c.dependent for c in group], dtype=torch.long),
            independent=torch.tensor([c.independent for c in group], dtype=torch.long),
        )
        for group in stages
    )
