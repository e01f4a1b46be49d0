"""``Skeleton``: exact, batched, differentiable forward kinematics of an OpenSim model.

Built once from a .osim (:func:`Skeleton.from_osim`), it maps all coordinates ``q`` (B, n)
in OpenSim internal units (rad / m) to ground<-body transforms (B, NB, 4, 4) and marker
positions (B, M, 3), metres in OpenSim's Y-up ground frame, agreeing with OpenSim's own
kinematics to floating-point precision. Optional per-body scale factors reproduce what
OpenSim's ``Model.scale`` does to the kinematics.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from opensim_biopose.errors import InputError, UnsupportedModelError
from opensim_biopose.kinematics.compiled import CompiledModel, compile_model, move_to
from opensim_biopose.kinematics.native import NativeModel, build_native_model
from opensim_biopose.kinematics.osim_reader import KinematicModel, read_osim
from opensim_biopose.kinematics.jacobian import (
    ColumnPlan,
    axis_motions,
    chain_slopes,
    column_plan,
    coordinate_jacobian,
    marker_jacobian,
    normal_equations,
)
from opensim_biopose.kinematics.tree import (
    accumulate,
    local_transforms,
    points_in_ground,
    translation_factors,
)


# Batches larger than this are evaluated in pieces on CPU: the (J, 4, 4, piece) intermediates
# then stay in cache; measured 1.2-1.5x faster than one 4096-pose block (Rajagopal, 1 thread).
CPU_CHUNK = 1024
# The Jacobian's per-pose intermediates are ~n times larger (n coordinates): smaller pieces.
JACOBIAN_CPU_CHUNK = 256


def _chunk(t: Tensor | None, start: int, size: int) -> Tensor | None:
    """Slice a batch-last tensor (..., B or 1) to [start, start + size) unless it broadcasts."""
    if t is None or t.shape[-1] == 1:
        return t
    return t[..., start : start + size]


@dataclass
class SkeletonOutput:
    """Result of :meth:`Skeleton.forward` (contiguous tensors)."""

    body_transforms: Tensor  # (B, NB, 4, 4) ground <- body, metres, model body order
    markers: Tensor  # (B, M, 3) metres in ground
    q_full: Tensor  # (B, n) all coordinates, dependent ones recomputed from the independents


@dataclass
class SkeletonJacobian:
    """Result of :meth:`Skeleton.jacobians` (contiguous tensors).

    Derivatives are with respect to the F requested columns of q (all n coordinates unless
    ``columns`` was given): a dependent (coupled) coordinate's column is zero, its effect
    folded into its independent's column (chain rule through the coupler functions). Locked
    coordinates get their true columns; callers that hold them fixed leave them out.
    """

    markers: Tensor  # (B, M, 3) metres in ground
    marker_jacobian: Tensor  # (B, M, 3, F) d markers / d q[columns]: metres per rad or per metre
    q_full: Tensor  # (B, n) all coordinates, dependent ones recomputed
    coordinate_jacobian: Tensor  # (B, n, F) d q_full / d q[columns]


@dataclass
class SkeletonNormalEquations:
    """Result of :meth:`Skeleton.normal_equations` (batch first).

    Gauss-Newton normal equations of ``f(q) = sum_m w_m ||x_m(q) - target_m||^2`` with J the
    marker Jacobian by the F requested columns (as :class:`SkeletonJacobian`), W the weights.
    """

    markers: Tensor  # (B, M, 3) metres in ground (a view of batch-last storage)
    q_full: Tensor  # (B, n) all coordinates, dependent ones recomputed (a view)
    coordinate_jacobian: Tensor | None  # (B, n, F) d q_full / d q[columns]; None unless asked for
    cost: Tensor  # (B,) f, weights times m^2
    gradient: Tensor  # (B, F) J^T W (x - target): half the gradient of f
    hessian: Tensor  # (B, F, F) J^T W J


@dataclass(frozen=True)
class MarkerTargets:
    """Checked marker targets for :meth:`Skeleton.normal_equations`, batch last; made by
    :meth:`Skeleton.marker_targets` once, so solvers calling it every iteration skip the checks."""

    positions: Tensor  # (M, 3, B) metres in ground, finite
    weights: Tensor  # (M, B) >= 0; 0 drops a marker

    @property
    def batch(self) -> int:
        return self.positions.shape[-1]

    def take(self, rows: Tensor) -> MarkerTargets:
        """Targets of the frames ``rows`` (long)."""
        return MarkerTargets(self.positions[..., rows], self.weights[:, rows])

    def piece(self, start: int, size: int) -> MarkerTargets:
        return MarkerTargets(self.positions[..., start : start + size], self.weights[:, start : start + size])


@dataclass(frozen=True)
class _AxisMotions:
    """What both derivative passes share, batch last: q_t (n, B) filled, markers (M, 3, B),
    U, V (3, A, B) of :func:`axis_motions`, chain slopes (n, B) or None without couplers."""

    q_t: Tensor
    markers: Tensor
    u: Tensor
    v: Tensor
    chain: Tensor | None


# Poses at which model_hash samples the kinematics: the default pose moved by these fixed
# amounts (rad for rotations, scaled by HASH_TRANSLATION for translations), coordinate j of
# pose k by HASH_AMPLITUDE * sin(1.3 (j + 1)(k + 1)): every coordinate moves in every pose.
HASH_POSES = 4
HASH_AMPLITUDE = 0.5
HASH_TRANSLATION = 0.2   # m per rad of the above
HASH_RESOLUTION = 1e-6   # m (positions) and unit-vector components: far below any real model change


def _rounded(x: Tensor) -> bytes:
    return torch.round(x.double() / HASH_RESOLUTION).to(torch.int64).numpy().tobytes()


def _model_fingerprint(sk: Skeleton) -> str:
    """sha256 of what the model does, not of how this code stores it.

    Hashed: coordinate, body and marker names; ranges, defaults and flags of the coordinates;
    the marker bodies; and every body transform and marker position at HASH_POSES fixed poses,
    rounded to HASH_RESOLUTION. Two models that move alike get the same hash whatever the
    internal data structures look like, so refactoring the kinematics code does not orphan
    trained NeurIK checkpoints (keyed to this hash); a change of a model's geometry, ranges or
    markers above a micrometre does. ``sk`` must be float64 on the CPU.
    """
    h = hashlib.sha256()
    for names in (sk.coordinate_names, sk.body_names, sk.marker_names):
        h.update(("\x1f".join(names) + "\x1e").encode())
    flags = torch.stack([sk.coordinate_clamped, sk.coordinate_locked, sk.coordinate_is_rotational,
                         sk.coordinate_dependent]).to(torch.int64)
    h.update(flags.numpy().tobytes())
    h.update(sk.marker_body_index.to(torch.int64).numpy().tobytes())
    ranges = torch.nan_to_num(sk.coordinate_ranges, posinf=1e9, neginf=-1e9).clamp(-1e9, 1e9)
    h.update(_rounded(ranges))
    h.update(_rounded(sk.coordinate_defaults))
    n = sk.num_coordinates
    j = torch.arange(1, n + 1, dtype=torch.float64)
    k = torch.arange(1, HASH_POSES + 1, dtype=torch.float64)
    delta = HASH_AMPLITUDE * torch.sin(1.3 * k[:, None] * j[None, :])
    delta = torch.where(sk.coordinate_is_rotational, delta, delta * HASH_TRANSLATION)
    out = sk.forward(sk.coordinate_defaults + delta)
    h.update(_rounded(out.body_transforms[..., :3, :]))
    h.update(_rounded(out.markers))
    return h.hexdigest()


def _path_model(model: KinematicModel, bodies: tuple[int, ...]) -> tuple[KinematicModel, list[int]]:
    """``model`` cut down to the joints on the paths from ground to ``bodies`` (body indices),
    bodies renumbered, without markers; and the new index of each of ``bodies``."""
    nb = len(model.body_names)
    bad = [b for b in bodies if not 0 <= b < nb]
    if bad:
        raise InputError(f"model {model.path} has bodies 0..{nb - 1}; no body {bad}")
    parent_of = {j.child: j.parent for j in model.joints}
    keep: set[int] = set()
    for body in bodies:
        while body >= 0 and body not in keep:
            keep.add(body)
            body = parent_of[body]
    order = [j.child for j in model.joints if j.child in keep]  # parent-first, as in model.joints
    index = {old: new for new, old in enumerate(order)} | {-1: -1}
    joints = tuple(dataclasses.replace(j, parent=index[j.parent], child=index[j.child])
                   for j in model.joints if j.child in keep)
    cut = dataclasses.replace(model, body_names=tuple(model.body_names[b] for b in order), joints=joints, markers=())
    return cut, [index[b] for b in bodies]


class Skeleton:
    """Forward kinematics of one OpenSim model; see the module docstring.

    Attributes (tensors on the skeleton's device; floating ones in its dtype):
    ``coordinate_names`` (n, CoordinateSet order = OpenSim IK .mot column order),
    ``body_names`` (NB, ground excluded), ``marker_names`` (M, may be empty),
    ``marker_body_index`` (M,) long (-1 = ground), ``marker_offsets`` (M, 3) metres in the body,
    ``coordinate_ranges`` (n, 2), ``coordinate_defaults`` (n,) internal units,
    ``coordinate_clamped/locked/is_rotational/dependent`` (n,) bool, ``independent_index``.
    ``joint_names`` are in tree order (every joint after its parent's joint).
    """

    marker_body_index: Tensor
    marker_offsets: Tensor
    coordinate_ranges: Tensor
    coordinate_defaults: Tensor
    coordinate_clamped: Tensor
    coordinate_locked: Tensor
    coordinate_is_rotational: Tensor
    coordinate_dependent: Tensor
    independent_index: Tensor

    def __init__(self, model: KinematicModel, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> None:
        self.model_path: Path = model.path
        self.model_name: str = model.name
        self.coordinate_names: list[str] = [c.name for c in model.coordinates]
        self.body_names: list[str] = list(model.body_names)
        self.joint_names: list[str] = [j.name for j in model.joints]
        self.marker_names: list[str] = [m.name for m in model.markers]
        joints_scalable = all(j.parent_frame.scalable and j.child_frame.scalable for j in model.joints)
        self._scalable: bool = joints_scalable and all(m.scalable for m in model.markers)
        compiled = compile_model(model)
        self._set_tensors(move_to(compiled, "cpu", torch.float64))
        # Identity of the model's kinematics for NeurIK checkpoints; the same in any dtype/device.
        self.model_hash: str = _model_fingerprint(self)
        self._set_tensors(move_to(compiled, device, dtype))
        self._plans: dict[tuple[tuple[int, ...], str, torch.dtype], ColumnPlan] = {}  # jacobians' column plans
        self._model = model
        # body_transforms' skeletons of the paths to some bodies, with those bodies' rows in them
        self._paths: dict[tuple[tuple[int, ...], str, torch.dtype], tuple[Skeleton, list[int]]] = {}
        self._native: NativeModel | None = None

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

    def _set_tensors(self, compiled: CompiledModel) -> None:
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
        clone._set_tensors(move_to(self._compiled, device, dtype))
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
        q = q.to(device=self.device, dtype=self.dtype)
        if not bool(q.isfinite().all()) and not bool(q[:, self.independent_index].isfinite().all()):
            raise InputError("q contains NaN or infinite values; every independent coordinate needs a value")
        return q

    def _check_scales(self, scales: Tensor, batch: int) -> Tensor:
        """(NB, 3) or (B, NB, 3) -> batch-last rows per model body + 1 (row 0 = ground): (1 + NB, 3, B or 1)."""
        scales = torch.as_tensor(scales, device=self.device, dtype=self.dtype)
        nb = len(self.body_names)
        if scales.ndim == 2:
            scales = scales.unsqueeze(0)
        if scales.ndim != 3 or scales.shape[1:] != (nb, 3) or scales.shape[0] not in (1, batch):
            raise InputError(f"scales has shape {tuple(scales.shape)}; expected ({nb}, 3) or ({batch}, {nb}, 3)")
        if not bool(scales.isfinite().all()):
            raise InputError("scales contains NaN or infinite values")
        if not self._scalable:
            raise UnsupportedModelError(
                f"model {self.model_path} attaches joints or markers to offset frames of offset frames; "
                "scaling them is not reproduced"
            )
        rows = scales.permute(1, 2, 0)  # (NB, 3, B|1)
        return torch.cat([rows.new_ones(1, 3, rows.shape[2]), rows], 0)

    def _check_offsets(self, offsets: Tensor, batch: int) -> Tensor:
        """(M, 3) or (B, M, 3) -> batch-last (M, 3, B or 1)."""
        offsets = torch.as_tensor(offsets, device=self.device, dtype=self.dtype)
        m = len(self.marker_names)
        if offsets.shape[-2:] != (m, 3) or offsets.ndim not in (2, 3) or offsets.ndim == 3 and offsets.shape[0] != batch:
            raise InputError(f"marker_offsets has shape {tuple(offsets.shape)}; expected ({m}, 3) or ({batch}, {m}, 3)")
        if not bool(offsets.isfinite().all()):
            raise InputError("marker_offsets contains NaN or infinite values")
        return offsets.unsqueeze(-1) if offsets.ndim == 2 else offsets.permute(1, 2, 0)

    def fill_dependent(self, q: Tensor) -> Tensor:
        """q (B, n) with dependent (coupled) coordinates recomputed from their independents."""
        return self._fill_dependent_t(q.transpose(0, 1)).transpose(0, 1)

    def _fill_dependent_t(self, q_t: Tensor) -> Tensor:
        for stage in self._compiled.stages:
            q_t = q_t.index_copy(0, stage.dependent, stage.table(q_t[stage.independent]))
        return q_t

    def _batch_last_inputs(self, q: Tensor, scales: Tensor | None, marker_offsets: Tensor | None
                           ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Checked inputs, batch last: q (n, B), scales (1 + NB, 3, B|1) or None, marker offsets (M, 3, B|1)."""
        q_t = self._check_q(q).transpose(0, 1).contiguous()
        batch = q_t.shape[1]
        s = None if scales is None else self._check_scales(scales, batch)
        if marker_offsets is None:
            offsets = self._compiled.marker_offsets.unsqueeze(-1)
        else:
            offsets = self._check_offsets(marker_offsets, batch)
        return q_t, s, offsets

    def forward(self, q: Tensor, scales: Tensor | None = None, marker_offsets: Tensor | None = None) -> SkeletonOutput:
        """Forward kinematics.

        q: (B, n) all coordinates in internal units (rad / m); values of dependent coordinates
        are ignored. Locked coordinates are not special: pass the value they are locked at.
        scales: optional (NB, 3) or (B, NB, 3) per-body factors applied as OpenSim's
        Model.scale does (joint frame offsets, translation functions, markers).
        marker_offsets: optional (M, 3) or (B, M, 3) marker locations in their bodies, metres,
        before scaling (they replace the model's marker locations and are scaled like them).
        """
        q_t, s, offsets = self._batch_last_inputs(q, scales, marker_offsets)
        batch = q_t.shape[1]
        chunk = CPU_CHUNK if q_t.device.type == "cpu" else batch
        if batch <= chunk:
            return self._forward_chunk(q_t, s, offsets)
        # Each chunk's batch-last results are transposed straight into the batch-first outputs
        # (one pass over them; a concatenation of per-chunk outputs would be a second).
        out = SkeletonOutput(
            body_transforms=q_t.new_empty(batch, len(self.body_names), 4, 4),
            markers=q_t.new_empty(batch, len(self.marker_names), 3),
            q_full=q_t.new_empty(batch, self.num_coordinates),
        )
        for i in range(0, batch, chunk):
            q_full, markers, bodies = self._forward_batch_last(
                q_t[:, i : i + chunk], _chunk(s, i, chunk), _chunk(offsets, i, chunk)
            )
            size = q_full.shape[-1]
            out.body_transforms[i : i + size] = bodies.permute(3, 0, 1, 2)
            out.markers[i : i + size] = markers.permute(2, 0, 1)
            out.q_full[i : i + size] = q_full.t()
        return out

    def _forward_chunk(self, q_t: Tensor, s: Tensor | None, offsets: Tensor) -> SkeletonOutput:
        """Batch-last inputs (see :meth:`_forward_batch_last`) -> batch-first contiguous outputs.

        Transposing per cache-sized chunk is cheaper than once for the whole batch, and callers
        may ``.view()`` the outputs (a permuted view would refuse)."""
        q_full, markers, bodies = self._forward_batch_last(q_t, s, offsets)
        batch = q_full.shape[-1]
        return SkeletonOutput(
            body_transforms=bodies.reshape(-1, batch).t().contiguous().view(batch, -1, 4, 4),
            markers=markers.reshape(-1, batch).t().contiguous().view(batch, -1, 3),
            q_full=q_full.t().contiguous(),
        )

    def _forward_batch_last(self, q_t: Tensor, s: Tensor | None, offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q_t (n, B) -> q_full (n, B), markers (M, 3, B), bodies (NB, 4, 4, B); s (1 + NB, 3, B|1)."""
        c = self._compiled
        q_t = self._fill_dependent_t(q_t)
        values = c.axis_table(q_t[c.axis_coordinate])  # (A, B)
        local, _ = local_transforms(c.layout, values, s)
        transforms = accumulate(c.levels, local)  # (1 + NB, 4, 4, B), row 0 = ground
        if s is not None:
            offsets = offsets * s[c.marker_body_index + 1]
        markers = points_in_ground(transforms, c.marker_body_index + 1, offsets)
        return q_t, markers, transforms[1:]

    __call__ = forward

    def native_model(self) -> NativeModel:
        """This model's arrays for the compiled per-frame kernels (kinematics/native.py), made once.
        They cover the model as read (no per-call scales or marker offsets), in float64."""
        if self._native is None:
            self._native = build_native_model(self._model)
        return self._native

    def body_transforms(self, q: Tensor, bodies: Sequence[int]) -> Tensor:
        """Ground <- body transforms (B, len(bodies), 4, 4), metres, of the model bodies with
        indices ``bodies`` only; q as :meth:`forward`. Only the joints on the paths from ground
        to them are evaluated, so for bodies near the root (NeurIK's root solve poses the
        pelvis alone) this costs a fraction of a full :meth:`forward`."""
        key = (tuple(int(b) for b in bodies), str(self.device), self.dtype)
        if key not in self._paths:
            model, rows = _path_model(self._model, key[0])
            self._paths[key] = (Skeleton(model, dtype=self.dtype, device=self.device), rows)
        path, rows = self._paths[key]
        return path.forward(q).body_transforms[:, rows]

    # ---- derivatives ----------------------------------------------------------------------------

    def marker_jacobian(
        self, q: Tensor, scales: Tensor | None = None, marker_offsets: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Markers (B, M, 3) metres and their analytic derivatives d markers / d q (B, M, 3, n)
        (see :class:`SkeletonJacobian`); arguments as :meth:`forward`. Not differentiable."""
        out = self.jacobians(q, scales, marker_offsets)
        return out.markers, out.marker_jacobian

    def _column_plan(self, columns: Sequence[int] | Tensor | None) -> ColumnPlan:
        """Cached plan for Jacobian columns (all coordinates when None); InputError for
        dependent or unknown coordinates."""
        if columns is None:
            key_columns = tuple(range(self.num_coordinates))
        else:
            key_columns = tuple(columns.tolist() if isinstance(columns, Tensor) else (int(c) for c in columns))
        key = (key_columns, str(self.device), self.dtype)
        if key not in self._plans:
            dependent = self._compiled.coordinate_dependent.cpu()
            bad = [c for c in key_columns if not 0 <= c < self.num_coordinates or columns is not None and bool(dependent[c])]
            if bad:
                raise InputError(
                    f"jacobian columns {bad} are not independent coordinates of {self.model_path.name} "
                    f"(0..{self.num_coordinates - 1}, not coupled)"
                )
            layout = move_to(self._compiled.jacobian, torch.device("cpu"), None)
            plan = column_plan(layout, torch.tensor(key_columns, dtype=torch.long))
            self._plans[key] = move_to(plan, self.device, self.dtype)
        return self._plans[key]

    def jacobians(
        self,
        q: Tensor,
        scales: Tensor | None = None,
        marker_offsets: Tensor | None = None,
        columns: Sequence[int] | Tensor | None = None,
    ) -> SkeletonJacobian:
        """Forward kinematics of the markers with analytic derivatives, in one pass per chunk:
        each transform axis adds f'(q) (w x (x - o)) (rotation) or f'(q) w (translation) to the
        markers below it. Arguments as :meth:`forward`; ``columns`` (F,) independent
        coordinate indices to differentiate by (default all n)."""
        plan = self._column_plan(columns)
        with torch.no_grad():
            q_t, s, offsets = self._batch_last_inputs(q, scales, marker_offsets)
            batch = q_t.shape[1]
            chunk = JACOBIAN_CPU_CHUNK if q_t.device.type == "cpu" else batch
            parts = [
                self._jacobian_chunk(q_t[:, i : i + chunk], _chunk(s, i, chunk), _chunk(offsets, i, chunk), plan)
                for i in range(0, batch, chunk)
            ]
        if len(parts) == 1:
            return parts[0]
        return SkeletonJacobian(*(torch.cat([getattr(p, f) for p in parts]) for f in SkeletonJacobian.__dataclass_fields__))

    def _axis_motions(self, q_t: Tensor, s: Tensor | None, offsets: Tensor) -> _AxisMotions:
        """Batch-last inputs as :meth:`_forward_batch_last` -> markers and axis motions."""
        c = self._compiled
        layout = c.layout
        q_t = self._fill_dependent_t(q_t)
        arguments = q_t[c.axis_coordinate]
        values, slopes = c.axis_table.values_and_slopes(arguments)  # (A, B)
        local, rotation_axes = local_transforms(layout, values, s, with_axes=True)
        transforms = accumulate(c.levels, local)
        m_origins = layout.p_cm.unsqueeze(-1)
        translation_slopes = slopes[layout.translation_rows]
        if s is not None:
            offsets = offsets * s[c.marker_body_index + 1]
            m_origins = m_origins * s[layout.child_body]
            translation_slopes = translation_slopes * translation_factors(layout, s)
        markers = points_in_ground(transforms, c.marker_body_index + 1, offsets)  # (M, 3, B)
        u, v = axis_motions(
            c.jacobian, transforms, layout.parent_body, layout.child_body, rotation_axes,
            slopes[c.jacobian.rotation_rows], m_origins, layout.translation_axes, translation_slopes,
        )
        return _AxisMotions(q_t, markers, u, v, chain_slopes(c.stages, q_t) if c.stages else None)

    def _jacobian_chunk(self, q_t: Tensor, s: Tensor | None, offsets: Tensor, plan: ColumnPlan) -> SkeletonJacobian:
        """Batch-last inputs as :meth:`_forward_batch_last` -> batch-first contiguous outputs."""
        m = self._axis_motions(q_t, s, offsets)
        return SkeletonJacobian(
            markers=m.markers.permute(2, 0, 1).contiguous(),  # (B, M, 3)
            marker_jacobian=marker_jacobian(plan, m.u, m.v, m.markers, m.chain),
            q_full=m.q_t.t().contiguous(),
            coordinate_jacobian=coordinate_jacobian(plan, m.chain, m.q_t.shape[1]).contiguous(),
        )

    def marker_targets(self, targets: Tensor, weights: Tensor) -> MarkerTargets:
        """Check targets (B, M, 3) metres in ground (finite; give absent markers weight 0 and any
        finite target) and weights (M,) or (B, M) >= 0 for :meth:`normal_equations`."""
        targets = torch.as_tensor(targets, device=self.device, dtype=self.dtype)
        weights = torch.as_tensor(weights, device=self.device, dtype=self.dtype)
        m = len(self.marker_names)
        if targets.ndim != 3 or targets.shape[1:] != (m, 3):
            raise InputError(f"marker targets have shape {tuple(targets.shape)}; expected (B, {m}, 3)")
        batch = targets.shape[0]
        if weights.shape not in ((m,), (batch, m)):
            raise InputError(f"marker weights have shape {tuple(weights.shape)}; expected ({m},) or ({batch}, {m})")
        if not bool(targets.isfinite().all()) or not bool(weights.isfinite().all()) or bool((weights < 0).any()):
            raise InputError("marker targets and weights must be finite and weights >= 0 "
                             "(give absent markers weight 0 and any finite target)")
        weights_t = weights.unsqueeze(-1).expand(-1, batch) if weights.ndim == 1 else weights.t()
        return MarkerTargets(targets.permute(1, 2, 0), weights_t)

    def normal_equations(
        self,
        q: Tensor,
        targets: Tensor | MarkerTargets,
        weights: Tensor | None = None,
        scales: Tensor | None = None,
        marker_offsets: Tensor | None = None,
        columns: Sequence[int] | Tensor | None = None,
        with_coordinate_jacobian: bool = False,
    ) -> SkeletonNormalEquations:
        """Gauss-Newton normal equations of weighted marker distances, without the Jacobian.

        targets: (B, M, 3) metres in ground with weights (M,) or (B, M) (see
        :meth:`marker_targets`), or a :class:`MarkerTargets` already checked (weights None).
        Other arguments as :meth:`jacobians`; ``with_coordinate_jacobian`` also returns
        d q_full / d q[columns] (for coordinate targets). J^T W J and J^T W e come from weighted moments
        of the markers below each transform axis (see
        :func:`opensim_biopose.kinematics.jacobian.normal_equations`): at lab batch sizes
        several times faster than forming the (B, M, 3, F) Jacobian and multiplying it.
        """
        plan = self._column_plan(columns)
        with torch.no_grad():
            q_t, s, offsets = self._batch_last_inputs(q, scales, marker_offsets)
            batch = q_t.shape[1]
            if not isinstance(targets, MarkerTargets):
                if weights is None:
                    raise InputError("normal_equations needs marker weights with plain targets")
                targets = self.marker_targets(targets, weights)
            if targets.batch != batch:
                raise InputError(f"marker targets are for {targets.batch} poses, q has {batch}")
            chunk = CPU_CHUNK if q_t.device.type == "cpu" else batch
            parts = [
                self._normal_chunk(q_t[:, i : i + chunk], _chunk(s, i, chunk), _chunk(offsets, i, chunk),
                                   targets.piece(i, chunk), plan, with_coordinate_jacobian)
                for i in range(0, batch, chunk)
            ]
        if len(parts) == 1:
            return parts[0]
        fields = SkeletonNormalEquations.__dataclass_fields__
        return SkeletonNormalEquations(*(None if getattr(parts[0], f) is None else torch.cat([getattr(p, f) for p in parts])
                                         for f in fields))

    def _normal_chunk(self, q_t: Tensor, s: Tensor | None, offsets: Tensor, targets: MarkerTargets,
                      plan: ColumnPlan, with_coordinate_jacobian: bool) -> SkeletonNormalEquations:
        m = self._axis_motions(q_t, s, offsets)
        eq = normal_equations(self._compiled.jacobian, plan, m.u, m.v, m.markers, targets.positions, targets.weights,
                              m.chain)
        return SkeletonNormalEquations(
            markers=m.markers.permute(2, 0, 1),
            q_full=m.q_t.t(),
            coordinate_jacobian=coordinate_jacobian(plan, m.chain, m.q_t.shape[1]) if with_coordinate_jacobian else None,
            cost=eq.cost, gradient=eq.gradient, hessian=eq.hessian,
        )

    def __repr__(self) -> str:
        return (
            f"Skeleton({self.model_name!r}: {self.num_coordinates} coordinates, {len(self.body_names)} bodies, "
            f"{len(self.marker_names)} markers, {self.dtype}, {self.device})"
        )

