"""What NeurIK predicts for a given Skeleton and marker list: a frozen :class:`ModelLayout`.

The layout is derived from the model itself (never from coordinate-name conventions):

* the *root* coordinates are the ones that move every moving body (a floating base such as
  ``pelvis_tx..pelvis_rotation``); the root body is the moving body driven by them alone.
  NeurIK predicts the root body's pose relative to a per-frame reference frame and converts it back to
  root coordinates with :func:`solve_root_coordinates` (in closed form for the usual floating base of
  three rotations about orthogonal axes plus three translations, see :class:`EulerRoot`; by
  Gauss-Newton on the root body's forward kinematics otherwise);
* the *predicted* coordinates are the remaining independent, unlocked ones; NeurIK regresses
  them directly (radians / metres, normalised by their range);
* locked coordinates stay at their defaults and dependent (coupled) ones follow through
  ``Skeleton.forward``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from opensim_biopose.errors import InputError
from opensim_biopose.kinematics.functions import PolynomialSpec
from opensim_biopose.kinematics.osim_reader import AxisSpec, JointSpec

# Finite-difference probe (rad / m) used to find which coordinates move which bodies; large
# enough to be far above round-off, any non-zero motion counts.
_PROBE = 0.1
# Half-width (rad) used to normalise rotational coordinates whose range is wider than a
# full turn (OpenSim writes +-1e5 deg for "unbounded").
_MAX_HALF_SPAN_ROT = math.pi
# Same for translations (m).
_MAX_HALF_SPAN_TRANS = 2.0


@dataclasses.dataclass(frozen=True, eq=False)
class RootPose:
    """Pose of a body in ground: ``rotation`` (..., 3, 3) body-to-ground, ``position`` (..., 3) metres."""

    rotation: Tensor
    position: Tensor


def body_pose(body_transforms: Tensor, body: int) -> RootPose:
    """Pose of body index ``body`` from ``SkeletonOutput.body_transforms`` (..., NB, 4, 4)."""
    t = body_transforms[..., body, :, :]
    return RootPose(rotation=t[..., :3, :3], position=t[..., :3, 3])


@dataclasses.dataclass(frozen=True, eq=False)
class ModelLayout:
    """Index bookkeeping between a Skeleton, a marker list and the network's outputs.

    Attributes:
        coordinate_names: all n coordinates of the Skeleton, in its order.
        marker_names: the M markers NeurIK reads, in checkpoint order.
        marker_index: (M,) index of each of them in ``sk.marker_names``.
        predicted: (P,) indices of directly regressed coordinates.
        root: (R,) indices of the floating-base coordinates (empty for a grounded model).
        root_rotational: (R,) bool, which root coordinates are rotations.
        root_body: index of the root body in ``sk.body_names`` (-1 without a floating base).
        yaw_coordinate: the root rotation about (nearly) ground Y at the default pose, -1 if none;
            it starts the root-coordinate solve at each frame's heading.
        heading_markers: (K,) indices into ``marker_names`` of markers on the root body
            (all markers when fewer than 2 are), used to estimate each window's heading.
        heading_reference: (K, 3) their positions (m) in the default pose, facing +X.
        root_reference: (K, 3) their positions (m) in the root body frame.
        rigid_root: True when >= 3 non-collinear markers sit on the root body, so each frame's
            reference frame is the root pose fitted to them; else the window's heading frame.
        centre: (P,) mid-range of the predicted coordinates (rad / m).
        half_span: (P,) half their range, capped (rad / m): network outputs are in these units.
        lower, upper: (n,) coordinate ranges; clamped: (n,) bool.
        default_q: (n,) default coordinate values.
        rotational: (n,) bool.
        root_closed_form: the closed-form root solve when the floating base allows one (checked
            against the model's forward kinematics at build time), else None: Gauss-Newton.
    """

    coordinate_names: tuple[str, ...]
    marker_names: tuple[str, ...]
    marker_index: Tensor
    predicted: Tensor
    root: Tensor
    root_rotational: Tensor
    root_body: int
    yaw_coordinate: int
    heading_markers: Tensor
    heading_reference: Tensor
    root_reference: Tensor
    rigid_root: bool
    centre: Tensor
    half_span: Tensor
    lower: Tensor
    upper: Tensor
    clamped: Tensor
    default_q: Tensor
    rotational: Tensor
    root_closed_form: EulerRoot | None = None

    @property
    def n_coordinates(self) -> int:
        return len(self.coordinate_names)

    @property
    def has_root(self) -> bool:
        return self.root_body >= 0


def _moved_bodies(sk, default_q: Tensor) -> Tensor:
    """(n, NB) bool: does perturbing coordinate j move body b?"""
    n = default_q.shape[0]
    q = default_q.unsqueeze(0).repeat(n + 1, 1)
    q[1:] += torch.eye(n, dtype=q.dtype) * _PROBE
    with torch.no_grad():
        t = sk.forward(q).body_transforms
    delta = (t[1:] - t[:1]).abs().flatten(2).amax(-1)
    return delta > 1e-9


def _find_root(sk, default_q: Tensor) -> tuple[list[int], int]:
    moved = _moved_bodies(sk, default_q)
    moving_bodies = moved.any(0)
    if not bool(moving_bodies.any()):
        return [], -1
    moves_all = moved[:, moving_bodies].all(1)
    root = [j for j in range(moved.shape[0]) if bool(moves_all[j])]
    if len(root) == 0:
        return [], -1
    root_set = torch.zeros(moved.shape[0], dtype=torch.bool)
    root_set[root] = True
    only_root = [(b) for b in range(moved.shape[1]) if bool(moving_bodies[b]) and bool((moved[:, b] == root_set).all())]
    return (root, only_root[0]) if only_root else ([], -1)


def _yaw_coordinate(sk, default_q: Tensor, root: list[int], root_body: int) -> int:
    """The root rotational coordinate turning the root body about ground Y, or -1."""
    rotational = torch.as_tensor(sk.coordinate_is_rotational)
    best, best_align = -1, 0.95
    for j in root:
        if not bool(rotational[j]):
            continue
        q = default_q.clone().unsqueeze(0).repeat(2, 1)
        q[1, j] += _PROBE
        with torch.no_grad():
            r = sk.forward(q).body_transforms[:, root_body, :3, :3].double()
        rel = r[1] @ r[0].T                                   # small rotation in ground
        axis = torch.stack([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]])
        align = float(axis[1].abs() / axis.norm().clamp_min(1e-12))
        if align > best_align:
            best, best_align = j, align
    return best


def _marker_indices(sk, marker_names: Sequence[str]) -> Tensor:
    names = list(sk.marker_names)
    missing = [m for m in marker_names if m not in names]
    if missing:
        raise InputError(
            f"markers {missing} are not in the model's marker set; add them to the .osim "
            "(or its marker file) or drop them from the marker list"
        )
    if len(marker_names) == 0:
        raise InputError("NeurIK needs at least one marker; the marker list is empty")
    return torch.tensor([names.index(m) for m in marker_names], dtype=torch.long)


def _heading(sk, marker_index: Tensor, root_body: int, default_q: Tensor, root: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """Heading markers, their default-pose ground positions and their root-body-frame positions."""
    q = default_q.clone()
    q[root] = torch.where(torch.as_tensor(sk.coordinate_is_rotational)[root], 0.0, q[root])
    with torch.no_grad():
        out = sk.forward(q.unsqueeze(0).to(sk.marker_offsets.dtype))
    markers = out.markers[0][marker_index].to(torch.float64)
    on_root = (torch.as_tensor(sk.marker_body_index)[marker_index] == root_body).nonzero().flatten()
    chosen = on_root if on_root.numel() >= 2 else torch.arange(marker_index.numel())
    pose = body_pose(out.body_transforms[0].to(torch.float64), root_body)
    local = (markers[chosen] - pose.position) @ pose.rotation
    return chosen, markers[chosen], local


def _spans_a_plane(points: Tensor) -> bool:
    """At least 3 points, not (nearly) collinear: a rigid frame can be fitted to them."""
    if points.shape[0] < 3:
        return False
    s = torch.linalg.svdvals(points - points.mean(0))
    return bool(s[1] > 0.02 * s[0] and s[1] > 0.01)


def _normalisation(lower: Tensor, upper: Tensor, rotational: Tensor) -> tuple[Tensor, Tensor]:
    cap = torch.where(rotational, _MAX_HALF_SPAN_ROT, _MAX_HALF_SPAN_TRANS).to(lower.dtype)
    half = ((upper - lower) / 2).clamp_min(1e-3)
    centre = torch.where(half > cap, torch.zeros_like(lower), (upper + lower) / 2)
    return centre, torch.minimum(half, cap)


def build_layout(sk, marker_names: Sequence[str]) -> ModelLayout:
    """Work out root, predicted coordinates and heading markers of ``sk`` for ``marker_names``."""
    sk.require_markers()
    default_q = torch.as_tensor(sk.coordinate_defaults, dtype=torch.float64).clone()
    ranges = torch.as_tensor(sk.coordinate_ranges, dtype=torch.float64)
    rotational = torch.as_tensor(sk.coordinate_is_rotational, dtype=torch.bool)
    locked = torch.as_tensor(sk.coordinate_locked, dtype=torch.bool)
    dependent = torch.as_tensor(sk.coordinate_dependent, dtype=torch.bool)
    root, root_body = _find_root(sk, default_q)
    is_root = torch.zeros_like(locked)
    is_root[root] = True
    predicted = (~locked & ~dependent & ~is_root).nonzero().flatten()
    marker_index = _marker_indices(sk, marker_names)
    heading_markers, heading_reference, root_reference = _heading(sk, marker_index, root_body, default_q, root)
    rigid = root_body >= 0 and _spans_a_plane(root_reference) and bool(
        (torch.as_tensor(sk.marker_body_index)[marker_index][heading_markers] == root_body).all())
    centre, half = _normalisation(ranges[:, 0], ranges[:, 1], rotational)
    return ModelLayout(
        coordinate_names=tuple(sk.coordinate_names),
        marker_names=tuple(marker_names),
        marker_index=marker_index,
        predicted=predicted,
        root=torch.tensor(root, dtype=torch.long),
        root_rotational=rotational[root],
        root_body=root_body,
        yaw_coordinate=_yaw_coordinate(sk, default_q, root, root_body) if root else -1,
        heading_markers=heading_markers,
        heading_reference=heading_reference,
        root_reference=root_reference,
        rigid_root=rigid,
        centre=centre[predicted],
        half_span=half[predicted],
        lower=ranges[:, 0].clone(),
        upper=ranges[:, 1].clone(),
        clamped=torch.as_tensor(sk.coordinate_clamped, dtype=torch.bool).clone(),
        default_q=default_q,
        rotational=rotational,
        root_closed_form=euler_root(sk, root, root_body),
    )


# ---- closed-form root solve ------------------------------------------------------------------
#
# A CustomJoint floating base poses its child body as (tree.py, OpenSim's CustomJoint)
#     R = R_GF R_1(a_1, v_1) R_2(a_2, v_2) R_3(a_3, v_3) R_CM^T           (body-fixed sequence)
#     p = p_GF + R_GF sum_i t_i d_i - R p_CM
# with axis values v_i, t_i linear in the root coordinates. For mutually orthogonal rotation
# axes, B = [a_1, a_2, s a_3] (s = +-1 making det B = 1) gives R_i(a_i, v) = B R_e_i(v) B^T, so
# B^T R_GF^T R R_CM B = R_x(v_1) R_y(v_2) R_z(s v_3): X-Y-Z Euler angles of a known matrix.

# Largest |a_i . a_j| (i != j) still treated as orthogonal rotation axes.
_ORTHOGONAL_TOL = 1e-9
# Forward kinematics of the closed-form answer must reproduce random root poses to this
# (rotation-matrix entries / metres) in float64, else the model keeps the Gauss-Newton solve.
_CLOSED_FORM_TOL = 1e-9
# Random root poses checked at build time; a handful covers every branch of the formula.
_CLOSED_FORM_CHECKS = 16


@dataclasses.dataclass(frozen=True, eq=False)
class EulerRoot:
    """Closed-form inverse of a floating base: three rotations about orthogonal axes (any order,
    signs and frame offsets) and three translations along independent axes, each axis value
    ``gain * q + offset`` of its own root coordinate. All tensors float64.

    Attributes:
        coordinates: (6,) indices of the coordinates driving rotation axes 1, 2, 3 (rad), then
            translation axes 1, 2, 3 (m).
        left: (3, 3) B^T R_GF^T; right: (3, 3) R_CM B (see the comment above).
        angle_sign: (3,) signs of the atan2 numerators of the X-Y-Z angles (below), the third times s.
        rotation_gain, rotation_offset: (3,) axis value = gain * q + offset (rad).
        translation_matrix, translation_constant: (3, 3), (3,): the translation coordinates are
            (p + R p_cm) @ translation_matrix + translation_constant for a root pose (R, p): from
            p = p_GF + [R_GF d_i] (gain * q + offset) - R p_CM, solved for q.
        p_cm: (3,) origin of M in the root body (m).
    """

    coordinates: Tensor
    left: Tensor
    right: Tensor
    angle_sign: Tensor
    rotation_gain: Tensor
    rotation_offset: Tensor
    translation_matrix: Tensor
    translation_constant: Tensor
    p_cm: Tensor


# X-Y-Z angles of m = R_x(a) R_y(b) R_z(c), b in [-pi/2, pi/2]:
#   a = atan2(-m12, m22), b = atan2(m02, hypot(m00, m01)), c = atan2(-m01, m00),
# gathered from the row-major flattened m: numerators (signs in EulerRoot.angle_sign) and
# denominators (the middle one replaced by the hypot).
_NUMERATORS = (5, 2, 1)
_DENOMINATORS = (8, 0, 0)


def euler_root_coordinates(form: EulerRoot, q: Tensor, target: RootPose) -> Tensor:
    """Closed-form root coordinates putting the root body at ``target`` (rotation (B, 3, 3),
    position (B, 3) m); q (B, n) with its other entries kept. Rotations wrapped to (-pi, pi].

    The X-Y-Z angles of ``left R right`` (see _NUMERATORS; one atan2 for all three), then the
    axis values' inverse affine maps.
    """
    r = target.rotation.to(torch.float64)
    m = (form.left @ r @ form.right).flatten(-2)                                  # (B, 9)
    den = m[:, _DENOMINATORS]
    den[:, 1] = torch.hypot(m[:, 0], m[:, 1])
    angles = torch.atan2(m[:, _NUMERATORS] * form.angle_sign, den)
    rot = _wrap((angles - form.rotation_offset) / form.rotation_gain)
    trans = torch.addmm(form.translation_constant, target.position.to(torch.float64) + r @ form.p_cm,
                        form.translation_matrix)
    out = q.clone()
    out[:, form.coordinates] = torch.cat([rot, trans], 1).to(q.dtype)
    return out


def _linear_axis(axis: AxisSpec, root: list[int]) -> tuple[int, float, float] | None:
    """(coordinate, gain, offset) of an axis whose value is gain * q + offset of a root coordinate."""
    f = axis.function
    if axis.coordinate not in root or not isinstance(f, PolynomialSpec) or len(f.coefficients) != 2:
        return None
    gain, offset = f.scale * f.coefficients[0], f.scale * f.coefficients[1]
    return (axis.coordinate, gain, offset) if gain != 0.0 else None


def _euler_candidate(joint: JointSpec, root: list[int]) -> EulerRoot | None:
    """The closed form from the root joint's axes, or None when they do not have its shape."""
    if joint.parent != -1:
        return None
    rotations = [_linear_axis(a, root) for a in joint.rotations]
    translations = [_linear_axis(a, root) for a in joint.translations]
    parts = rotations + translations
    if any(p is None for p in parts) or sorted(p[0] for p in parts) != sorted(root):
        return None
    f64 = torch.float64
    axes = torch.tensor([a.axis for a in joint.rotations], dtype=f64)
    axes = axes / axes.norm(dim=1, keepdim=True)
    gram = axes @ axes.T
    if float((gram - torch.diag(torch.diagonal(gram))).abs().max()) > _ORTHOGONAL_TOL:
        return None
    sign = 1.0 if float(torch.linalg.det(axes.T)) > 0 else -1.0
    basis = axes.T * torch.tensor([1.0, 1.0, sign], dtype=f64)          # columns a_1, a_2, s a_3
    r_gf = torch.tensor(joint.parent_frame.rotation, dtype=f64)
    r_cm = torch.tensor(joint.child_frame.rotation, dtype=f64)
    directions = r_gf @ torch.tensor([a.axis for a in joint.translations], dtype=f64).T
    if float(torch.linalg.svdvals(directions)[-1]) < 1e-6:            # translations span < 3D
        return None
    t_gain = torch.tensor([p[1] for p in translations], dtype=f64)
    t_offset = torch.tensor([p[2] for p in translations], dtype=f64)
    p_gf = torch.tensor(joint.parent_frame.translation, dtype=f64)
    matrix = torch.linalg.inv(directions).T / t_gain
    return EulerRoot(
        coordinates=torch.tensor([p[0] for p in rotations + translations], dtype=torch.long),
        left=basis.T @ r_gf.T,
        right=r_cm @ basis,
        angle_sign=torch.tensor([-1.0, 1.0, -sign], dtype=f64),
        rotation_gain=torch.tensor([p[1] for p in rotations], dtype=f64),
        rotation_offset=torch.tensor([p[2] for p in rotations], dtype=f64),
        translation_matrix=matrix,
        translation_constant=-(p_gf @ matrix) - t_offset / t_gain,
        p_cm=torch.tensor(joint.child_frame.translation, dtype=f64),
    )


def _reproduces_poses(sk, form: EulerRoot, root: list[int], root_body: int) -> bool:
    """Random root poses -> closed form -> forward kinematics gives the same poses back."""
    gen = torch.Generator().manual_seed(0)
    n = len(sk.coordinate_names)
    sk64 = sk if sk.marker_offsets.dtype == torch.float64 else sk.to(dtype=torch.float64)
    q = torch.as_tensor(sk.coordinate_defaults, dtype=torch.float64).repeat(_CLOSED_FORM_CHECKS, 1)
    q[:, root] = (torch.rand(_CLOSED_FORM_CHECKS, len(root), generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    with torch.no_grad():
        pose = body_pose(sk64.body_transforms(q, [root_body]), 0)
        solved = euler_root_coordinates(form, torch.zeros(_CLOSED_FORM_CHECKS, n, dtype=torch.float64), pose)
        back = body_pose(sk64.body_transforms(q.index_copy(1, torch.tensor(root), solved[:, root]), [root_body]), 0)
    error = max(float((back.rotation - pose.rotation).abs().max()), float((back.position - pose.position).abs().max()))
    return error < _CLOSED_FORM_TOL


def euler_root(sk, root: list[int], root_body: int) -> EulerRoot | None:
    """The closed-form root solve of ``sk`` if its floating base has that shape and the formula
    reproduces its forward kinematics (checked on random poses), else None."""
    model = getattr(sk, "_model", None)  # the Skeleton's joint specs, read only
    if root_body < 0 or model is None:
        return None
    joints = [j for j in model.joints if j.child == root_body]
    form = _euler_candidate(joints[0], root) if len(joints) == 1 else None
    return form if form is not None and _reproduces_poses(sk, form, root, root_body) else None


def _root_residual(sk, q: Tensor, layout: ModelLayout, target: RootPose) -> Tensor:
    pose = body_pose(sk.body_transforms(q, [layout.root_body]), 0)  # the root body alone
    dr = (pose.rotation - target.rotation).flatten(-2)
    dp = pose.position - target.position
    return torch.cat([dr, dp], -1)                                   # (B, 12)


# Largest root-coordinate step (rad / m) at which the root solve stops. Gauss-Newton converges
# quadratically here (the target pose is reachable), so after a step below 1e-6 the remaining
# error is ~1e-12, far below the network's own error (degrees).
_ROOT_STEP_TOL = 1e-6


def _gauss_newton(sk, q: Tensor, layout: ModelLayout, target: RootPose, iters: int,
                  with_cost: bool = True) -> tuple[Tensor, Tensor | None]:
    root = layout.root
    k, (b, n) = root.numel(), q.shape
    eps = 1e-6
    # Pose 0 is q, pose 1 + i moves root coordinate i by eps: one forward pass per iteration
    # for all finite differences (per-call overhead dominates at NeurIK's batch sizes).
    shifts = torch.zeros(k + 1, 1, n, dtype=q.dtype)
    shifts[torch.arange(1, k + 1), 0, root] = eps
    repeated = RootPose(target.rotation.repeat(k + 1, 1, 1), target.position.repeat(k + 1, 1))
    for _ in range(iters):
        r_all = _root_residual(sk, (q + shifts).reshape(-1, n), layout, repeated).view(k + 1, b, -1)
        r = r_all[0]
        jac = ((r_all[1:] - r) / eps).permute(1, 2, 0)                 # (B, 12, R)
        jtj = jac.transpose(1, 2) @ jac
        jtj = jtj + 1e-6 * torch.eye(k, dtype=q.dtype)
        step = torch.linalg.solve(jtj, -(jac.transpose(1, 2) @ r.unsqueeze(-1))).squeeze(-1)
        q = q.clone()
        q[:, root] += step.clamp(-1.0, 1.0)
        if float(step.abs().max()) < _ROOT_STEP_TOL:  # converges quadratically: 3-5 steps
            break
    if not with_cost:
        return q, None
    r = _root_residual(sk, q, layout, target)
    return q, (r * r).sum(-1)


def _wrap(angle: Tensor) -> Tensor:
    return torch.atan2(torch.sin(angle), torch.cos(angle))


def _heading_of(rotation: Tensor) -> Tensor:
    """Yaw (rad) of body orientations (B, 3, 3): the direction of their X axis in the ground X-Z plane."""
    return torch.atan2(-rotation[:, 2, 0], rotation[:, 0, 0])


def solve_root_coordinates(sk, q: Tensor, layout: ModelLayout, target: RootPose, iters: int = 8) -> Tensor:
    """Root coordinates that put the root body at ``target``, other coordinates of ``q`` kept.

    Args:
        q: (B, n) coordinates (rad / m); its root entries are replaced.
        target: root body pose in ground, rotation (B, 3, 3), position (B, 3) metres.
    Returns:
        (B, n) with the root coordinates solved (rotations wrapped to (-pi, pi]).

    With ``layout.root_closed_form`` (the usual floating base) this is a closed form
    (:func:`euler_root_coordinates`, middle angle in [-pi/2, pi/2]). Otherwise, Gauss-Newton:
    Euler-type root joints have several local minima, so each frame starts with its yaw
    coordinate at the target's heading (or, without a yaw coordinate, from a coarse grid of
    3 values per rotational root coordinate, keeping the best after two Gauss-Newton steps).
    """
    if not layout.has_root:
        return q
    if layout.root_closed_form is not None:
        return euler_root_coordinates(layout.root_closed_form, q, target)
    with torch.no_grad():
        b = q.shape[0]
        rot = layout.root[layout.root_rotational].tolist()
        trans = layout.root[~layout.root_rotational]
        if layout.yaw_coordinate >= 0:
            q0 = q.clone()
            q0[:, rot] = 0.0
            q0[:, layout.yaw_coordinate] = _heading_of(target.rotation)
            q0[:, trans] = target.position.new_zeros(()) + layout.default_q[trans].to(q.dtype)
        else:
            grid = torch.tensor([-2 * math.pi / 3, 0.0, 2 * math.pi / 3], dtype=q.dtype)
            starts = torch.cartesian_prod(*([grid] * len(rot))).reshape(-1, len(rot))
            s = starts.shape[0]
            qs = q.unsqueeze(0).repeat(s, 1, 1)
            qs[:, :, rot] = starts.unsqueeze(1)
            qs[:, :, trans] = layout.default_q[trans].to(q.dtype)
            rep = RootPose(target.rotation.repeat(s, 1, 1), target.position.repeat(s, 1))
            q1, cost = _gauss_newton(sk, qs.reshape(s * b, -1), layout, rep, iters=2)
            best = cost.reshape(s, b).argmin(0)
            q0 = q1.reshape(s, b, -1)[best, torch.arange(b)]
        q2, _ = _gauss_newton(sk, q0, layout, target, iters=iters, with_cost=False)
        q2[:, rot] = _wrap(q2[:, rot])
        return q2
