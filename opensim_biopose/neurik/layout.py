"""What NeurIK predicts for a given Skeleton and marker list: a frozen :class:`ModelLayout`.

The layout is derived from the model itself (never from coordinate-name conventions):

* the *root* coordinates are the ones that move every moving body (a floating base such as
  ``pelvis_tx..pelvis_rotation``); the root body is the moving body driven by them alone.
  NeurIK predicts the root body's pose relative to a per-frame reference frame and converts it back to
  root coordinates with :func:`solve_root_coordinates`;
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
    )


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

    Euler-type root joints have several local minima, so each frame starts with its yaw
    coordinate at the target's heading (or, without a yaw coordinate, from a coarse grid of
    3 values per rotational root coordinate, keeping the best after two Gauss-Newton steps).
    """
    if not layout.has_root:
        return q
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
