"""``Skeleton``: exact, batched, differentiable forward kinematics of an OpenSim model.

Built once from a .osim (:func:`Skeleton.from_osim`), it maps all coordinates ``q`` (B, n)
in OpenSim internal units (rad / m) to ground<-body transforms (B, NB, 4, 4) and marker
positions (B, M, 3), metres in OpenSim's Y-up ground frame, agreeing with OpenSim's own
kinematics to floating-point precision. Optional per-body scale factors reproduce what
OpenSim's ``Model.scale`` does to the kinematics.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any
from pathlib import Path

import torch
from torch import Tensor

from opensim_biopose.errors import InputError, UnsupportedModelError
from opensim_biopose.kinematics.functions import FunctionTable, PolynomialSpec
from opensim_biopose.kinematics.osim_reader import AxisSpec, FrameSpec, JointSpec, KinematicModel, read_osim
from opensim_biopose.kinematics.tree import (
    JointLayout,
    RotationGroup,
    TreeLevels,
    accumulate,
    homogeneous,
    local_rotations,
    local_translations,
    points_in_ground,
    rotation_factor_matrices,
)


# Batches larger than this are evaluated in pieces on CPU: the (J, 4, 4, piece) intermediates
# then stay in cache; measured ~1.5x faster than one 4096-pose block (Rajagopal, 1 thread).
CPU_CHUNK = 1024


def _chunk(t: Tensor | None, start: int, size: int) -> Tensor | None:
    """Slice a batch-last tensor (..., B or 1) to [start, start + size) unless it broadcasts."""
    if t is None or t.shape[-1] == 1:
        return t
    return t[..., start : start + size]


@dataclass
class SkeletonOutput:
    """Result of :meth:`Skeleton.forward`."""

    body_transforms: Tensor  # (B, NB, 4, 4) ground <- body, metres, model body order
    markers: Tensor  # (B, M, 3) metres in ground
    q_full: Tensor  # (B, n) all coordinates, dependent ones recomputed from the independents


@dataclass(frozen=True)
class _CouplerStage:
    """Couplers evaluated together: q[dependent] = table(q[independent]) (batch-last q (n, B))."""

    table: FunctionTable
    dependent: Tensor  # (C,) long
    independent: Tensor  # (C,) long


@dataclass(frozen=True)
class _Compiled:
    """Every tensor the forward pass reads; all move together in :meth:`Skeleton.to`."""

    axis_table: FunctionTable  # the q-dependent transform axes (A functions)
    axis_coordinate: Tensor  # (A,) long: argument coordinate of each
    layout: JointLayout
    levels: TreeLevels
    stages: tuple[_CouplerStage, ...]
    body_slot: Tensor  # (NB,) long: slot of each body (model order) in the accumulated tree
    marker_slot: Tensor  # (M,) long
    marker_body_index: Tensor  # (M,) long, -1 = ground
    marker_offsets: Tensor  # (M, 3) metres in the body
    coordinate_ranges: Tensor  # (n, 2)
    coordinate_defaults: Tensor  # (n,)
    coordinate_clamped: Tensor  # (n,) bool
    coordinate_locked: Tensor  # (n,) bool
    coordinate_is_rotational: Tensor  # (n,) bool
    coordinate_dependent: Tensor  # (n,) bool
    independent_index: Tensor  # (n_ind,) long


def _move(value: Any, device: torch.device | str | None, dtype: torch.dtype | None) -> Any:
    """Tensors (floating ones to ``dtype``), FunctionTables, dataclasses and tuples of them."""
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=dtype if value.is_floating_point() else None)
    if isinstance(value, FunctionTable):
        return value.to(device, dtype)
    if isinstance(value, tuple):
        return tuple(_move(v, device, dtype) for v in value)
    if is_dataclass(value):
        return type(value)(**{f.name: _move(getattr(value, f.name), device, dtype) for f in fields(value)})
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


def _compile(model: KinematicModel) -> _Compiled:
    joints = _depth_sorted(model)
    slot = {-1: 0} | {j.child: i + 1 for i, j in enumerate(joints)}
    long, f64 = torch.long, torch.float64
    functions: list = []
    arguments: list[int] = []

    def row(axis: AxisSpec) -> int:
        functions.append(axis.function)
        arguments.append(max(axis.coordinate, 0))
        return len(functions) - 1

    by_count: dict[int, list[tuple[int, list[tuple[int, AxisSpec]]]]] = {}
    fixed: list[tuple[int, Tensor]] = []
    t_joint, t_row, t_axis, t_scale_axis, t_parent = [], [], [], [], []
    for j, joint in enumerate(joints):
        r_pf, r_mc = _mat(joint.parent_frame), _mat(joint.child_frame).T
        active = [(row(a), a) for a in joint.rotations if _is_active(a)]
        if active:
            by_count.setdefault(len(active), []).append((j, active))
        else:
            fixed.append((j, r_pf @ r_mc))
        for a in joint.translations:
            if _is_active(a):
                axis = torch.tensor(a.axis, dtype=f64)
                t_joint.append(j), t_row.append(row(a)), t_parent.append(joint.parent + 1)
                t_axis.append(r_pf @ axis), t_scale_axis.append(axis)
    groups = []
    for k, members in sorted(by_count.items()):
        matrices = torch.zeros(k, 3, len(members), 3, 3, dtype=f64)
        for m, (j, active) in enumerate(members):
            r_pf, r_mc = _mat(joints[j].parent_frame), _mat(joints[j].child_frame).T
            for i, (_, a) in enumerate(active):
                factor = rotation_factor_matrices(torch.tensor(a.axis, dtype=f64))
                factor = r_pf @ factor if i == 0 else factor
                matrices[i, :, m] = factor @ r_mc if i == k - 1 else factor
        groups.append(
            RotationGroup(
                joints=torch.tensor([j for j, _ in members], dtype=long),
                rows=torch.tensor([[r for r, _ in active] for _, active in members], dtype=long).T.contiguous(),
                matrices=matrices,
            )
        )
    assembled = [j for j, _ in fixed] + [int(j) for g in groups for j in g.joints]
    layout = JointLayout(
        groups=tuple(groups),
        fixed_joints=torch.tensor([j for j, _ in fixed], dtype=long),
        fixed_rotations=torch.stack([r for _, r in fixed]) if fixed else torch.zeros(0, 3, 3, dtype=f64),
        order=torch.argsort(torch.tensor(assembled, dtype=long)),
        translation_joints=torch.tensor(t_joint, dtype=long),
        translation_rows=torch.tensor(t_row, dtype=long),
        translation_axes=torch.stack(t_axis) if t_axis else torch.zeros(0, 3, dtype=f64),
        translation_scale_axes=torch.stack(t_scale_axis) if t_axis else torch.zeros(0, 3, dtype=f64),
        translation_parent=torch.tensor(t_parent, dtype=long),
        p_pf=torch.tensor([j.parent_frame.translation for j in joints], dtype=f64).reshape(-1, 3),
        p_cm=torch.tensor([j.child_frame.translation for j in joints], dtype=f64).reshape(-1, 3),
        parent_body=torch.tensor([j.parent + 1 for j in joints], dtype=long),
        child_body=torch.tensor([j.child + 1 for j in joints], dtype=long),
    )
    coords = model.coordinates
    dependent = torch.zeros(len(coords), dtype=torch.bool)
    for c in model.couplers:
        dependent[c.dependent] = True
    return _Compiled(
        axis_table=FunctionTable.build(functions),
        axis_coordinate=torch.tensor(arguments, dtype=long),
        layout=layout,
        levels=_levels(joints, slot),
        stages=_coupler_stages(model),
        body_slot=torch.tensor([slot[b] for b in range(len(model.body_names))], dtype=long),
        marker_slot=torch.tensor([slot[m.body] for m in model.markers], dtype=long),
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


def _levels(joints: list[JointSpec], slot: dict[int, int]) -> TreeLevels:
    """Depth levels of depth-sorted joints; each level's parents index the previous level."""
    depth = {-1: -1}
    for joint in joints:
        depth[joint.child] = depth[joint.parent] + 1
    bounds = [0]
    for i in range(1, len(joints)):
        if depth[joints[i].child] != depth[joints[i - 1].child]:
            bounds.append(i)
    bounds.append(len(joints))
    parents = []
    for level in range(len(bounds) - 1):
        previous_start = bounds[level - 1] if level else 0
        members = joints[bounds[level] : bounds[level + 1]]
        parents.append(torch.tensor([max(slot[j.parent] - 1 - previous_start, 0) for j in members], dtype=torch.long))
    return TreeLevels(bounds=tuple(bounds), parents=tuple(parents))


def _coupler_stages(model: KinematicModel) -> tuple[_CouplerStage, ...]:
    """Couplers grouped so each stage reads only coordinates final after earlier stages."""
    stages: list[list] = []
    done_in_stage: dict[int, int] = {}
    for c in model.couplers:  # already sorted independent-first
        stage = done_in_stage.get(c.independent, -1) + 1
        done_in_stage[c.dependent] = stage
        while len(stages) <= stage:
            stages.append([])
        stages[stage].append(c)
    return tuple(
        _CouplerStage(
            table=FunctionTable.build([c.function for c in group]),
            dependent=torch.tensor([c.dependent for c in group], dtype=torch.long),
            independent=torch.tensor([c.independent for c in group], dtype=torch.long),
        )
        for group in stages
    )


def _model_hash(model: KinematicModel) -> str:
    """sha256 of the kinematic structure and markers (names, numbers), not of the file path."""
    content = repr((model.coordinates, model.body_names, model.joints, model.couplers, model.markers))
    return hashlib.sha256(content.encode()).hexdigest()


class Skeleton:
    """Forward kinematics of one OpenSim model; see the module docstring.

    Attributes (tensors on the skeleton's device; floating ones in its dtype):
    ``coordinate_names`` (n, CoordinateSet order = OpenSim IK .mot column order),
    ``body_names`` (NB, ground excluded), ``marker_names`` (M, may be empty),
    ``marker_body_index`` (M,) long (-1 = ground), ``marker_offsets`` (M, 3) metres in the body,
    ``coordinate_ranges`` (n, 2), ``coordinate_defaults`` (n,) internal units,
    ``coordinate_clamped/locked/is_rotational/dependent`` (n,) bool, ``independent_index``.
    """

    def __init__(self, model: KinematicModel, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> None:
        self.model_path: Path = model.path
        self.model_name: str = model.name
        self.coordinate_names: list[str] = [c.name for c in model.coordinates]
        self.body_names: list[str] = list(model.body_names)
        self.joint_names: list[str] = [j.name for j in model.joints]
        self.marker_names: list[str] = [m.name for m in model.markers]
        self.model_hash: str = _model_hash(model)
        joints_scalable = all(j.parent_frame.scalable and j.child_frame.scalable for j in model.joints)
        self._scalable: bool = joints_scalable and all(m.scalable for m in model.markers)
        self._set_tensors(_move(_compile(model), device, dtype))

    @classmethod
    def from_osim(
        cls,
        path: str | os.PathLike[str],
        *,
        marker_file: str | os.PathLike[str] | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Skeleton:
        """Read ``path`` (+ an OpenSim MarkerSet .xml whose markers replace same-named ones and
        add the rest) through the opensim API. InputError for bad files, UnsupportedModelError
        for constructs whose kinematics would not be reproduced exactly."""
        return cls(read_osim(path, marker_file), dtype=dtype, device=device)

    # ---- tensors and devices ---------------------------------------------------------------

    def _set_tensors(self, compiled: _Compiled) -> None:
        self._compiled = compiled
        for name in (
            "marker_body_index", "marker_offsets", "coordinate_ranges", "coordinate_defaults",
            "coordinate_clamped", "coordinate_locked", "coordinate_is_rotational",
            "coordinate_dependent", "independent_index",
        ):
            setattr(self, name, getattr(compiled, name))

    @property
    def dtype(self) -> torch.dtype:
        return self._compiled.layout.p_pf.dtype

    @property
    def device(self) -> torch.device:
        return self._compiled.layout.p_pf.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Skeleton:
        """A NEW Skeleton with every tensor on ``device`` / in ``dtype``; ``self`` is unchanged."""
        clone = object.__new__(Skeleton)
        clone.__dict__.update(self.__dict__)
        clone._set_tensors(_move(self._compiled, device, dtype))
        return clone

    # ---- look-ups ----------------------------------------------------------------------------

    @property
    def num_coordinates(self) -> int:
        return len(self.coordinate_names)

    def coordinate_index(self, name: str) -> int:
        """Column of coordinate ``name`` in q; InputError naming the model if absent."""
        try:
            return self.coordinate_names.index(name)
        except ValueError:
            raise InputError(f"model {self.model_path} has no coordinate '{name}'") from None

    def marker_index(self, names: Sequence[str]) -> Tensor:
        """Indices (len(names),) long of markers ``names``; InputError listing the missing ones."""
        lookup = {n: i for i, n in enumerate(self.marker_names)}
        missing = [n for n in names if n not in lookup]
        if missing:
            raise InputError(f"model {self.model_path} has no marker(s) {', '.join(missing)}")
        return torch.tensor([lookup[n] for n in names], dtype=torch.long, device=self.device)

    def require_markers(self) -> None:
        """InputError when the model has no markers (IK and NeurIK need them)."""
        if not self.marker_names:
            raise InputError(
                f"model {self.model_path} has no markers; add a <MarkerSet> to the model or pass "
                "marker_file=<OpenSim MarkerSet .xml> to Skeleton.from_osim"
            )

    # ---- forward kinematics -----------------------------------------------------------------

    def _check_q(self, q: Tensor) -> Tensor:
        q = torch.as_tensor(q)
        if q.ndim != 2 or q.shape[1] != self.num_coordinates:
            raise InputError(
                f"q has shape {tuple(q.shape)}; expected (B, {self.num_coordinates}): all coordinates of "
                f"{self.model_path.name} in CoordinateSet order"
            )
        if not q.is_floating_point():
            q = q.to(self.dtype)
        if not bool(torch.isfinite(q[:, self.independent_index]).all()):
            raise InputError("q contains NaN or infinite values; every independent coordinate needs a value")
        return q.to(device=self.device, dtype=self.dtype)

    def _check_scales(self, scales: Tensor, batch: int) -> Tensor:
        """(NB, 3) or (B, NB, 3) -> batch-last rows per model body + 1 (row 0 = ground): (1 + NB, 3, B or 1)."""
        scales = torch.as_tensor(scales, device=self.device, dtype=self.dtype)
        nb = len(self.body_names)
        if scales.ndim == 2:
            scales = scales.unsqueeze(0)
        if scales.ndim != 3 or scales.shape[1:] != (nb, 3) or scales.shape[0] not in (1, batch):
            raise InputError(f"scales has shape {tuple(scales.shape)}; expected ({nb}, 3) or ({batch}, {nb}, 3)")
        if not self._scalable:
            raise UnsupportedModelError(
                f"model {self.model_path} attaches joints or markers to offset frames of offset frames; "
                "scaling them is not reproduced"
            )
        rows = scales.permute(1, 2, 0)  # (NB, 3, B|1)
        return torch.cat([rows.new_ones(1, 3, rows.shape[2]), rows], 0)

    def _check_offsets(self, offsets: Tensor) -> Tensor:
        """(M, 3) or (B, M, 3) -> batch-last (M, 3, B or 1)."""
        offsets = torch.as_tensor(offsets, device=self.device, dtype=self.dtype)
        m = len(self.marker_names)
        if offsets.shape[-2:] != (m, 3) or offsets.ndim not in (2, 3):
            raise InputError(f"marker_offsets has shape {tuple(offsets.shape)}; expected ({m}, 3) or (B, {m}, 3)")
        return offsets.unsqueeze(-1) if offsets.ndim == 2 else offsets.permute(1, 2, 0)

    def fill_dependent(self, q: Tensor) -> Tensor:
        """q (B, n) with dependent (coupled) coordinates recomputed from their independents."""
        return self._fill_dependent_t(q.transpose(0, 1)).transpose(0, 1)

    def _fill_dependent_t(self, q_t: Tensor) -> Tensor:
        for stage in self._compiled.stages:
            q_t = q_t.index_copy(0, stage.dependent, stage.table(q_t[stage.independent]))
        return q_t

    def forward(self, q: Tensor, scales: Tensor | None = None, marker_offsets: Tensor | None = None) -> SkeletonOutput:
        """Forward kinematics.

        q: (B, n) all coordinates in internal units (rad / m); values of dependent coordinates
        are ignored. Locked coordinates are not special: pass the value they are locked at.
        scales: optional (NB, 3) or (B, NB, 3) per-body factors applied as OpenSim's
        Model.scale does (joint frame offsets, translation functions, markers).
        marker_offsets: optional (M, 3) or (B, M, 3) marker locations in their bodies, metres,
        before scaling (they replace the model's marker locations and are scaled like them).
        """
        q_t = self._check_q(q).transpose(0, 1)  # (n, B): batch last from here on
        batch = q_t.shape[1]
        s = None if scales is None else self._check_scales(scales, batch)
        if marker_offsets is None:
            offsets = self._compiled.marker_offsets.unsqueeze(-1)
        else:
            offsets = self._check_offsets(marker_offsets)
        chunk = CPU_CHUNK if q_t.device.type == "cpu" else batch
        if batch <= chunk:
            q_full, markers, bodies = self._forward_batch_last(q_t, s, offsets)
        else:
            parts = [
                self._forward_batch_last(q_t[:, i : i + chunk], _chunk(s, i, chunk), _chunk(offsets, i, chunk))
                for i in range(0, batch, chunk)
            ]
            q_full, markers, bodies = (torch.cat(p, -1) for p in zip(*parts))
        return SkeletonOutput(
            body_transforms=bodies.permute(3, 0, 1, 2), markers=markers.permute(2, 0, 1), q_full=q_full.transpose(0, 1)
        )

    def _forward_batch_last(self, q_t: Tensor, s: Tensor | None, offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q_t (n, B) -> q_full (n, B), markers (M, 3, B), bodies (NB, 4, 4, B); s (1 + NB, 3, B|1)."""
        c = self._compiled
        q_t = self._fill_dependent_t(q_t)
        values = c.axis_table(q_t[c.axis_coordinate])  # (A, B)
        r_local = local_rotations(c.layout, values)
        p_local = local_translations(c.layout, values, r_local, s)
        transforms = accumulate(c.levels, homogeneous(r_local, p_local))  # (1 + J, 3, 4, B)
        if s is not None:
            offsets = offsets * s[c.marker_body_index + 1]
        markers = points_in_ground(transforms, c.marker_slot, offsets)
        top = transforms[c.body_slot]  # (NB, 3, 4, B)
        bottom = top.new_tensor([0.0, 0.0, 0.0, 1.0]).view(1, 1, 4, 1).expand(top.shape[0], 1, 4, top.shape[-1])
        return q_t, markers, torch.cat([top, bottom], 1)

    __call__ = forward

    def __repr__(self) -> str:
        return (
            f"Skeleton({self.model_name!r}: {self.num_coordinates} coordinates, {len(self.body_names)} bodies, "
            f"{len(self.marker_names)} markers, {self.dtype}, {self.device})"
        )

