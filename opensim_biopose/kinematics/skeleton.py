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
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from torch import Tensor

from opensim_biopose.errors import InputError, UnsupportedModelError
from opensim_biopose.kinematics.functions import FunctionTable
from opensim_biopose.kinematics.osim_reader import FrameSpec, KinematicModel, read_osim
from opensim_biopose.kinematics.rotations import invert, to_homogeneous
from opensim_biopose.kinematics.tree import TreeLevels, accumulate, joint_transforms, mobilizer_transform, points_in_ground


@dataclass
class SkeletonOutput:
    """Result of :meth:`Skeleton.forward`."""

    body_transforms: Tensor  # (B, NB, 4, 4) ground <- body, metres, model body order
    markers: Tensor  # (B, M, 3) metres in ground
    q_full: Tensor  # (B, n) all coordinates, dependent ones recomputed from the independents


@dataclass(frozen=True)
class _CouplerStage:
    """Couplers evaluated together: q[:, dependent] = table(q[:, independent])."""

    table: FunctionTable
    dependent: Tensor  # (C,) long
    independent: Tensor  # (C,) long


@dataclass(frozen=True)
class _Buffers:
    """Every tensor the forward pass reads; all move together in :meth:`Skeleton.to`."""

    axis_table: FunctionTable  # 6 J functions, joint-major: 3 rotations then 3 translations
    axis_coordinate: Tensor  # (6 J,) long: argument column of each axis function
    rotation_axes: Tensor  # (J, 3, 3)
    translation_axes: Tensor  # (J, 3, 3)
    r_pf: Tensor  # (J, 3, 3) parent body <- F
    p_pf: Tensor  # (J, 3)
    r_cm: Tensor  # (J, 3, 3) child body <- M
    p_cm: Tensor  # (J, 3)
    joint_parent_body: Tensor  # (J,) long, model body index + 1 (0 = ground)
    joint_child_body: Tensor  # (J,) long, model body index + 1
    parent_slot: Tensor  # (J,) long
    body_slot: Tensor  # (NB,) long: slot of each body, model order
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

    def to(self, device: torch.device | str | None, dtype: torch.dtype | None) -> _Buffers:
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, FunctionTable):
                moved[f.name] = value.to(device, dtype)
            else:
                moved[f.name] = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
        return _Buffers(**moved)


def _frame_tensors(frames: Sequence[FrameSpec]) -> tuple[Tensor, Tensor]:
    r = torch.tensor([f.rotation for f in frames], dtype=torch.float64).reshape(-1, 3, 3)
    p = torch.tensor([f.translation for f in frames], dtype=torch.float64).reshape(-1, 3)
    return r, p


def _depths(model: KinematicModel) -> list[int]:
    depth_of_body = {-1: -1}
    out = []
    for joint in model.joints:  # parent-first order
        depth_of_body[joint.child] = depth_of_body[joint.parent] + 1
        out.append(depth_of_body[joint.child])
    return out


def _build_buffers(model: KinematicModel) -> tuple[_Buffers, TreeLevels, tuple[_CouplerStage, ...]]:
    depths = _depths(model)
    joints = [j for _, j in sorted(zip(depths, model.joints), key=lambda t: t[0])]
    sorted_depths = sorted(depths)
    bounds = [0] + [i for i in range(1, len(joints)) if sorted_depths[i] != sorted_depths[i - 1]] + [len(joints)]
    slot_of_body = {-1: 0} | {j.child: i + 1 for i, j in enumerate(joints)}
    axes = [a for j in joints for a in (*j.rotations, *j.translations)]
    long = torch.long
    r_pf, p_pf = _frame_tensors([j.parent_frame for j in joints])
    r_cm, p_cm = _frame_tensors([j.child_frame for j in joints])
    coords = model.coordinates
    dependent = torch.zeros(len(coords), dtype=torch.bool)
    for c in model.couplers:
        dependent[c.dependent] = True
    buffers = _Buffers(
        axis_table=FunctionTable.build([a.function for a in axes]),
        axis_coordinate=torch.tensor([max(a.coordinate, 0) for a in axes], dtype=long),
        rotation_axes=torch.tensor([[a.axis for a in j.rotations] for j in joints], dtype=torch.float64).reshape(-1, 3, 3),
        translation_axes=torch.tensor([[a.axis for a in j.translations] for j in joints], dtype=torch.float64).reshape(-1, 3, 3),
        r_pf=r_pf,
        p_pf=p_pf,
        r_cm=r_cm,
        p_cm=p_cm,
        joint_parent_body=torch.tensor([j.parent + 1 for j in joints], dtype=long),
        joint_child_body=torch.tensor([j.child + 1 for j in joints], dtype=long),
        parent_slot=torch.tensor([slot_of_body[j.parent] for j in joints], dtype=long),
        body_slot=torch.tensor([slot_of_body[b] for b in range(len(model.body_names))], dtype=long),
        marker_slot=torch.tensor([slot_of_body[m.body] for m in model.markers], dtype=long),
        marker_body_index=torch.tensor([m.body for m in model.markers], dtype=long),
        marker_offsets=torch.tensor([m.offset for m in model.markers], dtype=torch.float64).reshape(-1, 3),
        coordinate_ranges=torch.tensor([c.range for c in coords], dtype=torch.float64).reshape(-1, 2),
        coordinate_defaults=torch.tensor([c.default for c in coords], dtype=torch.float64),
        coordinate_clamped=torch.tensor([c.clamped for c in coords], dtype=torch.bool),
        coordinate_locked=torch.tensor([c.locked for c in coords], dtype=torch.bool),
        coordinate_is_rotational=torch.tensor([c.rotational for c in coords], dtype=torch.bool),
        coordinate_dependent=dependent,
        independent_index=torch.nonzero(~dependent).flatten(),
    )
    levels = TreeLevels(bounds=tuple(bounds), parent_slot=buffers.parent_slot)
    return buffers, levels, _coupler_stages(model)


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
        buffers, self._levels, stages = _build_buffers(model)
        self._set_tensors(buffers.to(device, dtype), tuple(_move_stage(s, device, dtype) for s in stages))

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

    def _set_tensors(self, buffers: _Buffers, stages: tuple[_CouplerStage, ...]) -> None:
        self._buffers = buffers
        self._stages = stages
        self._levels = replace(self._levels, parent_slot=buffers.parent_slot)
        for name in (
            "marker_body_index", "marker_offsets", "coordinate_ranges", "coordinate_defaults",
            "coordinate_clamped", "coordinate_locked", "coordinate_is_rotational",
            "coordinate_dependent", "independent_index",
        ):
            setattr(self, name, getattr(buffers, name))

    @property
    def dtype(self) -> torch.dtype:
        return self._buffers.r_pf.dtype

    @property
    def device(self) -> torch.device:
        return self._buffers.r_pf.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Skeleton:
        """A NEW Skeleton with every tensor on ``device`` / in ``dtype``; ``self`` is unchanged."""
        clone = object.__new__(Skeleton)
        clone.__dict__.update(self.__dict__)
        clone._set_tensors(self._buffers.to(device, dtype), tuple(_move_stage(s, device, dtype) for s in self._stages))
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
        ones = scales.new_ones(scales.shape[0], 1, 3)
        return torch.cat([ones, scales], 1).expand(batch, -1, -1)  # (B, 1 + NB, 3), slot 0 = ground

    def _check_offsets(self, offsets: Tensor) -> Tensor:
        offsets = torch.as_tensor(offsets, device=self.device, dtype=self.dtype)
        m = len(self.marker_names)
        if offsets.shape[-2:] != (m, 3) or offsets.ndim not in (2, 3):
            raise InputError(f"marker_offsets has shape {tuple(offsets.shape)}; expected ({m}, 3) or (B, {m}, 3)")
        return offsets

    def fill_dependent(self, q: Tensor) -> Tensor:
        """q (B, n) with dependent (coupled) coordinates recomputed from their independents."""
        for stage in self._stages:
            q = q.index_copy(1, stage.dependent, stage.table(q[:, stage.independent]))
        return q

    def forward(self, q: Tensor, scales: Tensor | None = None, marker_offsets: Tensor | None = None) -> SkeletonOutput:
        """Forward kinematics.

        q: (B, n) all coordinates in internal units (rad / m); values of dependent coordinates
        are ignored. Locked coordinates are not special: pass the value they are locked at.
        scales: optional (NB, 3) or (B, NB, 3) per-body factors applied as OpenSim's
        Model.scale does (joint frame offsets, translation functions, markers).
        marker_offsets: optional (M, 3) or (B, M, 3) marker locations in their bodies, metres,
        before scaling (they replace the model's marker locations and are scaled like them).
        """
        b = self._buffers
        q_full = self.fill_dependent(self._check_q(q))
        batch = q_full.shape[0]
        values = b.axis_table(q_full[:, b.axis_coordinate]).view(batch, -1, 6)
        rotation_angles, translations = values[..., :3], values[..., 3:]
        p_pf, p_cm = b.p_pf, b.p_cm
        offsets = b.marker_offsets if marker_offsets is None else self._check_offsets(marker_offsets)
        if scales is not None:
            s = self._check_scales(scales, batch)
            s_parent = s[:, b.joint_parent_body]  # (B, J, 3)
            # OpenSim scales a translation function by (axis . parent body's factors).
            translations = translations * torch.einsum("jik,bjk->bji", b.translation_axes, s_parent)
            p_pf = p_pf * s_parent
            p_cm = p_cm * s[:, b.joint_child_body]
            offsets = offsets * s[:, b.marker_body_index + 1]
        r_fm, p_fm = mobilizer_transform(b.rotation_axes, rotation_angles, b.translation_axes, translations)
        r_mc, p_mc = invert(b.r_cm, p_cm)
        local = joint_transforms(b.r_pf, p_pf, r_fm, p_fm, r_mc, p_mc)
        rotation, translation = accumulate(self._levels, local)
        markers = points_in_ground(rotation, translation, b.marker_slot, offsets)
        bodies = to_homogeneous(rotation[:, b.body_slot], translation[:, b.body_slot])
        return SkeletonOutput(body_transforms=bodies, markers=markers, q_full=q_full)

    __call__ = forward

    def __repr__(self) -> str:
        return (
            f"Skeleton({self.model_name!r}: {self.num_coordinates} coordinates, {len(self.body_names)} bodies, "
            f"{len(self.marker_names)} markers, {self.dtype}, {self.device})"
        )


def _move_stage(stage: _CouplerStage, device: torch.device | str | None, dtype: torch.dtype | None) -> _CouplerStage:
    return _CouplerStage(stage.table.to(device, dtype), stage.dependent.to(device), stage.independent.to(device))
