"""Batched refinement: OpenSim's inverse-kinematics objective solved for all frames at once.

Per frame the objective is exactly the one OpenSim's InverseKinematicsTool minimises::

    f(q) = sum_i w_i ||x_i(q) - m_i||^2  +  sum_j w_j (q_j - v_j)^2

over the markers present in that frame (NaN = absent) and the coordinate tasks. Clamped
coordinate ranges are hard bounds, locked coordinates stay at their default, and dependent
(coupled) coordinates follow their independents through ``Skeleton.forward``.

The solver is a projected Levenberg-Marquardt method run on every frame in one batch: the
residual ``r = [sqrt(w_i) (x_i - m_i); sqrt(w_j) (q_j - v_j)]`` is linearised with respect to
the free coordinates in one batched pass per iteration, and the step needs only the
Gauss-Newton normal equations J^T J, J^T r. By default the Skeleton forms them for the
markers without the Jacobian (``Skeleton.normal_equations``, from weighted marker moments);
the analytic Jacobian itself (``Skeleton.jacobians``), finite differences (coordinates that
share no residual row perturbed together) and forward-mode autodiff remain as options to
check it.
Bounds are handled with an active set: a variable at a bound whose gradient pushes
outwards is held there for the step, and every step is projected back into the box. A frame
stops when its step falls below ``tol`` or, from a close start and on real residuals, on
OpenSim's own test (projected gradient of its normalised objective below the accuracy, see
``RefineConfig.gradient_tol``). Frames that end in another local minimum than their
neighbours are re-solved from a neighbour's answer (the batched counterpart of OpenSim's
frame-to-frame warm start).

Kernels: on the CPU with the analytic normal equations, each frame runs its own loop in
compiled code (:mod:`opensim_biopose.kinematics.native`, same objective, derivatives, step
and stopping rules as the batched torch loop below, which stays for other devices and for
the finite-difference / autodiff cross-checks): at lab sizes the batched loop's time was
mostly per-operator overhead, and a batch costs as many passes as its slowest frame.

Cost: per iteration and frame, one Skeleton pass with derivatives (analytic); the finite
differences need (colour groups + 1) poses instead — 10 on gait2354, 12 on Rajagopal2016.
At lab sizes (50-500 frames) the time is mostly per-operation overhead of small tensors, so
frames that have converged leave the batch and the loop avoids host syncs where it can.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from opensim_biopose.errors import InputError
from opensim_biopose.kinematics import native


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine`."""

    # Gauss-Newton converges in a handful of steps from a good start; 100 leaves room for a
    # start at the default pose, which needs ~20-40 damped steps on a gait trial.
    max_iters: int = 100
    # Largest accepted step (rad / m) below which a frame has converged. Gauss-Newton converges
    # linearly on IK's large residuals (~2 cm; measured rate ~0.4 per step), so the remaining
    # error is ~0.7 x the last step: 1e-5 rad leaves ~1e-4 deg, far inside the spread of
    # OpenSim's own answers (0.007 deg mean between its accuracy 1e-5 and 1e-6 on gait2354).
    # 1e-4 would save ~15 % of the passes on the lab trials (0.0014 deg from the tol-1e-6
    # answer), but the temporal sweeps compare objectives between frames to 1e-6 relative,
    # and on exact (synthetic) markers, where the objective tends to 0, the looser answers
    # made them pick wrong minima: 54 instead of 6 failed frames of bench_ik's wide-range
    # motion from the default pose.
    tol: float = 1e-5
    # A frame has also converged when, after an accepted step, the largest component of the
    # objective's projected gradient (bound-held coordinates left out) divided by the frame's
    # total marker weight is at most this (per rad / per m): OpenSim's own stopping test.
    # Its IK runs Simbody's Assembler, which minimises sum w_i |e_i|^2 / (2 sum w_i) with
    # L-BFGS-B at the setup's accuracy as the projected-gradient tolerance (Simbody
    # Assembler.cpp, AssemblyCondition_Markers.cpp, LBFGSBOptimizer.cpp), and that gradient is
    # exactly J^T r / sum w_i here. 1e-5 is OpenSim's default accuracy and the lab setups'.
    # It stops weakly determined coordinates (Rajagopal2016's forearm rotation and elbows: few
    # or no arm markers) that would creep on for 10-20 steps while the objective no longer
    # changes, as OpenSim leaves them; measured against OpenSim at accuracy 1e-6: 0.010 deg
    # (gait2354_walk1) and 0.009 deg (rajagopal_walk) over OpenCap's DoFs, marker RMS within
    # 0.05 mm (OpenSim's own answer at 1e-5: 0.007 / 0.060 deg). 0 turns it off (`tol` alone).
    gradient_tol: float = 1e-5
    # ... but only where the frame's weighted RMS marker error, sqrt(objective / sum w_i), is at
    # least this (m). The test leaves the objective above its minimum by ~|g|^2 / curvature, which
    # is negligible against real IK residuals (1-3 cm on the lab trials) but not against the
    # near-zero objectives of exact (synthetic) markers, where the temporal sweeps compare
    # objectives between frames: there (below 1 mm) only the step test `tol` stops a frame. With
    # the gradient test on such frames, bench_ik's wide-range motion from NeurIK went through
    # 150 iterations of sweeps per frame and one frame ended 42 deg off.
    gradient_min_rms: float = 1e-3
    # ... and only where the start's objective was at most this multiple of the current one:
    # OpenSim applies the test after a warm start from the previous frame's answer, which
    # already explains the markers nearly as well as the solution (NeurIK's starts: ~1.1x on a
    # typical rajagopal_walk frame; at 2, a few gait2354_walk1 frames still took 5 steps). From a far start (the default pose on a fast wide-range motion) a small
    # relative gradient can also mean a plateau on the way to another minimum: with the test
    # there, 30 of bench_ik's 120 wide-range frames ended in wrong minima. (A distance from
    # the start cannot tell the two apart: weakly determined coordinates move far from any start.)
    gradient_start_ratio: float = 3.0
    # Initial Marquardt damping relative to diag(J^T J): small, because the start is usually
    # close (NeurIK); it grows by `damping_up` on a rejected step and shrinks on success.
    initial_damping: float = 1e-3
    damping_up: float = 10.0
    damping_down: float = 0.3
    # A rejected step raises the damping to at least this: after a few accepted steps the
    # damping is ~1e-5 (Gauss-Newton), and a step the model mispredicts (Rajagopal2016's elbows
    # and forearms, nearly flat, beside a forearm held at its bound) then took 4-5 rejections
    # at x10 each before one was accepted; from 0.1 it takes 1-2. rajagopal_walk from NeurIK:
    # 10 -> 7 passes, same answer (0.0001 deg); the default-pose paths are unchanged or faster
    # (bench_ik's wide-range motion: 145 -> 126 iterations per frame).
    reject_damping: float = 0.1
    # A frame whose damping exceeds this cannot improve any more: it has converged to a
    # (possibly bound-constrained) minimum within floating-point resolution.
    max_damping: float = 1e10
    # "native": on a CPU Skeleton with jacobian == "analytic", every frame is solved by the compiled
    # per-frame kernel (kinematics/native.py); "torch": the batched torch loop (any device, any
    # `jacobian`). Same answers to round-off (tests/test_refine_native.py); the native kernel is
    # 5-10x faster at lab sizes, where the torch loop's cost is per-operator overhead.
    kernel: str = "native"
    # Frames per batch: bounds memory (the default normal equations hold frames x F x F
    # doubles, ~3.5 MB for 512 frames of Rajagopal2016; the "analytic_jacobian" route holds
    # frames x 3M x F, ~17 MB; finite differences pass frames x (groups + 1) poses).
    chunk_frames: int = 512
    # How the normal equations are obtained; see LINEARISERS. "analytic" (Skeleton.normal_equations,
    # exact, one pass, no Jacobian formed) is the fastest; "analytic_jacobian" (Skeleton.jacobians
    # then J^T J), "finite_difference" (10-12 poses per frame) and "forward_ad" (one tangent per
    # coordinate) are kept to cross-check it (tests/test_refine.py).
    jacobian: str = "analytic"
    # Finite-difference step (rad / m) when jacobian == "finite_difference".
    fd_step: float = 1e-7
    # Frames are solved independently, so one can settle in another local minimum than its
    # neighbours (seen from the default pose on Rajagopal's lumbar/arm coordinates). Doubtful
    # frames are re-solved from a neighbour's answer, up to this many sweeps; 0 turns it off.
    temporal_sweeps: int = 200
    # A frame is doubtful when not converged or its objective exceeds a neighbour's by 10 %.
    neighbour_cost_ratio: float = 1.1
    # A rotational coordinate moving more than this (rad) between frames marks a doubtful frame:
    # 45 deg/frame is beyond any human motion at 25 Hz and above.
    max_jump: float = 0.785
    # torch threads while refining (restored after); None keeps the caller's setting. The
    # tensors are small: on the 2-core dev machine two threads cost 2.5x the CPU time of one.
    threads: int | None = 1
    # Step limit of a frame's re-solve from a neighbour's answer.
    sweep_max_iters: int = 30
    # A frame whose answer changed in a sweep is offered as the start to the frames up to this
    # far on each side in the next sweep, so a run of N frames stuck in another minimum takes
    # ~N / reach sweeps instead of N (sweeps are small batches: their cost is per sweep, not
    # per frame). 8 frames is <= 0.1 s at lab rates: still a close start.
    sweep_reach: int = 8
    # A doubtful frame is not re-solved from a neighbour whose answer lies within this (rad / m,
    # every free coordinate) of its own: from there it falls back into its own minimum (distinct
    # IK minima lie tens of degrees apart; gait at 60-100 Hz moves ~1 deg per frame). The frames
    # the cost test flags on real trials are mostly such: objectives that change by > 10 % from
    # frame to frame as markers come and go (gait2354_walk1: 14 re-solves that changed nothing).
    sweep_skip_radius: float = 0.2
    # A neighbour's start must lower the objective by this fraction to be taken.
    improvement: float = 1e-6
    # A re-solve from a neighbour's answer that comes this close (rad / m, every free
    # coordinate) to the frame's converged answer is falling into the same minimum: it stops
    # there. Distinct IK minima lie tens of degrees apart, and two answers within 0.6 deg have
    # objectives too close for the sweep to prefer either; most re-solves on real trials end
    # this way, after 2-3 steps instead of 7-10.
    same_minimum: float = 1e-2


class SkeletonLike(Protocol):
    """What refinement needs from ``opensim_biopose.kinematics.Skeleton``."""

    coordinate_names: Sequence[str]
    marker_names: Sequence[str]
    coordinate_ranges: torch.Tensor
    coordinate_clamped: torch.Tensor
    coordinate_locked: torch.Tensor
    coordinate_dependent: torch.Tensor
    coordinate_defaults: torch.Tensor

    def forward(self, q: torch.Tensor, scales=None, marker_offsets=None): ...

    def jacobians(self, q: torch.Tensor, scales=None, marker_offsets=None, columns=None): ...

    def marker_targets(self, targets: torch.Tensor, weights: torch.Tensor): ...

    def normal_equations(self, q: torch.Tensor, targets, weights=None, scales=None, marker_offsets=None,
                         columns=None, with_coordinate_jacobian=False): ...


@dataclasses.dataclass(frozen=True, eq=False)
class CoordinateTargets:
    """Coordinate tasks of the objective: ``w_j (q_j - v_j)^2``.

    Attributes:
        index: (K,) long, coordinate indices into ``sk.coordinate_names``.
        weights: (K,) task weights.
        values: (K,) or (T, K) targets in internal units (rad / m).
    """

    index: torch.Tensor
    weights: torch.Tensor
    values: torch.Tensor


@dataclasses.dataclass(frozen=True)
class RefineStages:
    """Where :func:`refine`'s time went (wall seconds) and how much batched work each stage did.

    A "pass" is one batched linearisation (one ``Skeleton.normal_equations`` call by default):
    at lab sizes its cost is mostly per-operation overhead, so passes x seconds per pass is
    the cost model. Setup: problem (weights, bounds, Jacobian structure); solve: all frames;
    sweeps: re-solves of doubtful frames from a neighbour's answer; report: marker errors.
    """

    setup_s: float
    solve_s: float
    solve_passes: int
    sweeps_s: float
    sweep_rounds: int
    sweep_candidates: int
    sweep_passes: int
    report_s: float


@dataclasses.dataclass(frozen=True, eq=False)
class RefineResult:
    """Refined coordinates and OpenSim-style marker errors, per frame.

    Attributes:
        q: (T, n) all coordinates (dependents recomputed) in internal units (rad / m).
        marker_sq_error_total: (T,) sum of squared marker distances of the weighted markers
            present, m^2 (unweighted, as OpenSim reports it); NaN where no marker is present.
        marker_rms: (T,) RMS marker distance, m.
        marker_max: (T,) largest marker distance, m.
        iterations: (T,) Levenberg-Marquardt iterations used.
        converged: (T,) bool.
        objective: (T,) final value of the weighted objective.
        stages: timings and batched passes per stage (:class:`RefineStages`).
    """

    q: torch.Tensor
    marker_sq_error_total: torch.Tensor
    marker_rms: torch.Tensor
    marker_max: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    objective: torch.Tensor
    stages: RefineStages | None = None


# ---------------------------------------------------------------------------------------------
# Problem definition (pure tensor functions)


@dataclasses.dataclass(frozen=True, eq=False)
class _Problem:
    """One chunk of frames: everything the residual needs, in float64."""

    markers: torch.Tensor  # (B, M, 3), zeros where absent
    sqrt_w: torch.Tensor  # (B, M), 0 where absent
    weights: torch.Tensor  # (B, M) sqrt_w squared
    task_index: torch.Tensor  # (K,)
    task_sqrt_w: torch.Tensor  # (K,)
    task_values: torch.Tensor  # (B, K)
    free: torch.Tensor  # (F,) indices of the optimised coordinates
    lower: torch.Tensor  # (F,) -inf where unbounded
    upper: torch.Tensor  # (F,)
    group_of: torch.Tensor | None = None  # (F,) long: finite-difference group per column, -1: constant column
    pattern: torch.Tensor | None = None  # (R, F) bool: residual rows that depend on each column
    slopes: torch.Tensor | None = None  # (F, R) unweighted derivatives of the constant columns (0 elsewhere)
    targets: object | None = None  # markers and weights checked once by Skeleton.marker_targets
    # The compiled kernel's model and arrays (None: the torch loop solves)
    native_model: native.NativeModel | None = None
    native: native.NativeProblem | None = None

    def take(self, rows: torch.Tensor) -> _Problem:
        return dataclasses.replace(
            self, markers=self.markers[rows], sqrt_w=self.sqrt_w[rows], weights=self.weights[rows],
            task_values=self.task_values[rows], targets=None if self.targets is None else self.targets.take(rows),
            native=None if self.native is None else self.native.take(rows.numpy()),
        )


def _residual(sk: SkeletonLike, q_full: torch.Tensor, problem: _Problem, repeat: int = 1) -> torch.Tensor:
    """(B, repeat, 3M+K) weighted residual at q_full (B*repeat, n); frame b's poses are rows b*repeat..."""
    out = sk.forward(q_full)
    b = problem.markers.shape[0]
    markers = out.markers.view(b, repeat, *problem.markers.shape[1:])  # (B, repeat, M, 3)
    marker_res = (markers - problem.markers[:, None]) * problem.sqrt_w[:, None, :, None]
    q_used = out.q_full[:, problem.task_index].view(b, repeat, -1)
    task_res = (q_used - problem.task_values[:, None]) * problem.task_sqrt_w
    return torch.cat([marker_res.flatten(2), task_res], dim=2)


def _with_free(q_base: torch.Tensor, free: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    q = q_base.clone()
    q[:, free] = x
    return q


def _jacobian_analytic(
    sk: SkeletonLike, q_base: torch.Tensor, x: torch.Tensor, problem: _Problem, fd_step: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual (B, R) and exact Jacobian, transposed (B, F, R), from one ``sk.jacobians`` pass."""
    out = sk.jacobians(_with_free(q_base, problem.free, x), columns=problem.free)
    marker_res = (out.markers - problem.markers) * problem.sqrt_w[..., None]  # (B, M, 3)
    task_res = (out.q_full[:, problem.task_index] - problem.task_values) * problem.task_sqrt_w
    r = torch.cat([marker_res.flatten(1), task_res], dim=1)
    marker_jac = out.marker_jacobian * problem.sqrt_w[..., None, None]  # (B, M, 3, F)
    task_jac = out.coordinate_jacobian[:, problem.task_index] * problem.task_sqrt_w[:, None]  # (B, K, F)
    jac = torch.cat([marker_jac.flatten(1, 2), task_jac], dim=1)  # (B, R, F)
    return r, jac.transpose(1, 2)  # a view: bmm reads it transposed without a copy


def _jacobian_forward_ad(
    sk: SkeletonLike, q_base: torch.Tensor, x: torch.Tensor, problem: _Problem, fd_step: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual (B, R) and Jacobian, transposed (B, F, R), by forward-mode AD: one tangent per column."""
    b, f = x.shape
    q_rep = _with_free(q_base, problem.free, x).repeat_interleave(f, dim=0)  # (B*F, n)
    tangent = torch.zeros_like(q_rep)
    rows = torch.arange(b * f)
    tangent[rows, problem.free.repeat(b)] = 1.0
    r, jr = torch.func.jvp(lambda q: _residual(sk, q, problem, repeat=f), (q_rep,), (tangent,))
    return r[:, 0], jr


def _jacobian_finite_difference(
    sk: SkeletonLike, q_base: torch.Tensor, x: torch.Tensor, problem: _Problem, fd_step: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual (B, R) and forward-difference Jacobian, transposed (B, F, R), from one forward pass.

    Coordinates that share no residual row (right leg, left leg, ...) are perturbed together
    (``problem.group_of``), so a pass holds B x (groups + 1) poses instead of B x (F + 1).
    """
    b, f = x.shape
    group_of = problem.group_of if problem.group_of is not None else torch.arange(f)
    varying = group_of >= 0
    g = int(group_of.max()) + 1 if varying.any() else 0
    perturb = torch.zeros(g, f, dtype=x.dtype)
    perturb[group_of[varying], torch.nonzero(varying).flatten()] = fd_step
    q0 = _with_free(q_base, problem.free, x)
    q_rep = q0[:, None, :].repeat(1, g + 1, 1)  # (B, G+1, n)
    q_rep[:, 1:, problem.free] += perturb
    r_all = _residual(sk, q_rep.view(b * (g + 1), -1), problem, repeat=g + 1)  # (B, G+1, R)
    r = r_all[:, 0]
    diff = (r_all[:, 1:] - r[:, None]) / fd_step  # (B, G, R)
    jac = diff[:, group_of.clamp_min(0)]  # (B, F, R)
    if problem.pattern is not None:
        jac = jac * problem.pattern.T
    if not varying.all():  # constant columns (root translations): known slopes times row weights
        row_weight = torch.cat([problem.sqrt_w.repeat_interleave(3, dim=1), problem.task_sqrt_w.expand(b, -1)], dim=1)
        jac[:, ~varying] = problem.slopes[~varying] * row_weight[:, None, :]
    return r, jac


@dataclasses.dataclass(frozen=True, eq=False)
class _Structure:
    """What the residual's Jacobian looks like, probed once per problem.

    pattern: (R, F) bool, rows that depend on each free coordinate.
    constant: (F,) bool, columns whose unweighted derivative is the same in every pose
        (translations of the root along ground axes): no finite differences needed for them.
    slopes: (F, R) those derivatives (zero for the other columns).
    """

    pattern: torch.Tensor
    constant: torch.Tensor
    slopes: torch.Tensor


def _probe_structure(sk: SkeletonLike, free: torch.Tensor, task_index: torch.Tensor) -> _Structure:
    """Finite steps at the default pose and two random poses.

    Rows that do not depend on a coordinate are bit-identical, so the pattern is exact; a column
    counts as constant only if its slopes agree to 1e-9 in all three poses.
    """
    default = sk.coordinate_defaults.detach().cpu().double()
    gen = torch.Generator().manual_seed(0)
    noise = 0.3 * torch.rand((2, default.shape[0]), generator=gen, dtype=torch.float64)
    poses = torch.cat([default[None], default + noise])  # (P, n)
    p, f, step = poses.shape[0], free.numel(), 1e-3
    q = poses.repeat_interleave(f + 1, dim=0).view(p, f + 1, -1)
    q[:, 1:, free] += step * torch.eye(f, dtype=torch.float64)
    out = sk.forward(q.view(p * (f + 1), -1))
    markers = out.markers.reshape(p, f + 1, -1)  # (P, F+1, 3M)
    tasks = out.q_full[:, task_index].reshape(p, f + 1, -1)
    rows = torch.cat([markers, tasks], dim=2)
    slopes = (rows[:, 1:] - rows[:, :1]) / step  # (P, F, R)
    pattern = (rows[:, 1:] != rows[:, :1]).any(dim=0).T  # (R, F)
    constant = ((slopes - slopes[:1]).abs().amax(dim=(0, 2)) < 1e-9) & pattern.any(dim=0)
    return _Structure(pattern, constant, slopes[0] * constant[:, None])


def _colour_columns(pattern: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """(F,) group per column (-1 for ``skip`` columns), greedy: columns in one group share no row."""
    f = pattern.shape[1]
    order = [j for j in torch.argsort(pattern.sum(dim=0), descending=True).tolist() if not skip[j]]
    group_of = torch.full((f,), -1, dtype=torch.long)
    rows_of_group: list[torch.Tensor] = []
    for j in order:
        col = pattern[:, j]
        for gi, used in enumerate(rows_of_group):
            if not (used & col).any():
                rows_of_group[gi] = used | col
                group_of[j] = gi
                break
        else:
            group_of[j] = len(rows_of_group)
            rows_of_group.append(col.clone())
    return group_of


JacobianFn = Callable[[SkeletonLike, torch.Tensor, torch.Tensor, _Problem, float], tuple[torch.Tensor, torch.Tensor]]
# Residual (B, R) and transposed Jacobian (B, F, R) at the free coordinates x (B, F).
JACOBIANS: dict[str, JacobianFn] = {
    "analytic": _jacobian_analytic,
    "forward_ad": _jacobian_forward_ad,
    "finite_difference": _jacobian_finite_difference,
}


@dataclasses.dataclass(frozen=True, eq=False)
class _Linearised:
    """Gauss-Newton model of the objective at B points: ``cost`` (B,) = r^T r, ``gradient``
    (B, F) = J^T r, ``hessian`` (B, F, F) = J^T J (J = d r / d x)."""

    cost: torch.Tensor
    gradient: torch.Tensor
    hessian: torch.Tensor

    def take(self, rows: torch.Tensor) -> _Linearised:
        return _Linearised(self.cost[rows], self.gradient[rows], self.hessian[rows])

    def where(self, pick: torch.Tensor, other: _Linearised) -> _Linearised:
        """Rows of ``other`` where ``pick`` (B,) bool, else of ``self``."""
        return _Linearised(torch.where(pick, other.cost, self.cost),
                           torch.where(pick.unsqueeze(1), other.gradient, self.gradient),
                           torch.where(pick.view(-1, 1, 1), other.hessian, self.hessian))


def _from_residuals(r: torch.Tensor, jac_t: torch.Tensor) -> _Linearised:
    """Normal equations from a residual (B, R) and transposed Jacobian (B, F, R)."""
    return _Linearised((r * r).sum(dim=1), torch.bmm(jac_t, r.unsqueeze(-1)).squeeze(-1),
                       torch.bmm(jac_t, jac_t.transpose(1, 2)))


def _linearise_moments(
    sk: SkeletonLike, q_base: torch.Tensor, x: torch.Tensor, problem: _Problem, fd_step: float
) -> _Linearised:
    """Marker rows by ``Skeleton.normal_equations`` (no Jacobian formed), plus the coordinate tasks."""
    targets = problem.targets if problem.targets is not None else sk.marker_targets(problem.markers, problem.weights)
    tasks = problem.task_index.numel() > 0
    out = sk.normal_equations(_with_free(q_base, problem.free, x), targets, columns=problem.free,
                              with_coordinate_jacobian=tasks)
    if problem.task_index.numel() == 0:
        return _Linearised(out.cost, out.gradient, out.hessian)
    task_res = (out.q_full[:, problem.task_index] - problem.task_values) * problem.task_sqrt_w  # (B, K)
    cost = out.cost + (task_res * task_res).sum(dim=1)
    if out.coordinate_jacobian.stride(0) == 0:  # no couplers: one (K, F) matrix for all frames
        task_jac = out.coordinate_jacobian[0, problem.task_index] * problem.task_sqrt_w[:, None]
        return _Linearised(cost, out.gradient + task_res @ task_jac, out.hessian + task_jac.t() @ task_jac)
    task_jac = out.coordinate_jacobian[:, problem.task_index] * problem.task_sqrt_w[:, None]  # (B, K, F)
    jac_t = task_jac.transpose(1, 2)
    return _Linearised(cost, out.gradient + torch.bmm(jac_t, task_res.unsqueeze(-1)).squeeze(-1),
                       out.hessian + torch.bmm(jac_t, task_jac))


def _through_jacobian(kind: str) -> Callable[..., _Linearised]:
    def linearise(sk: SkeletonLike, q_base: torch.Tensor, x: torch.Tensor, problem: _Problem, fd_step: float) -> _Linearised:
        return _from_residuals(*JACOBIANS[kind](sk, q_base, x, problem, fd_step))
    return linearise


LineariseFn = Callable[[SkeletonLike, torch.Tensor, torch.Tensor, _Problem, float], _Linearised]
# RefineConfig.jacobian -> how the normal equations at x (B, F) are formed.
LINEARISERS: dict[str, LineariseFn] = {
    "analytic": _linearise_moments,
    "analytic_jacobian": _through_jacobian("analytic"),
    "forward_ad": _through_jacobian("forward_ad"),
    "finite_difference": _through_jacobian("finite_difference"),
}


# ---------------------------------------------------------------------------------------------
# One Levenberg-Marquardt step with an active set


def _active_set(x: torch.Tensor, grad: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """(B, F) bool: variables held at a bound because the gradient pushes them outside."""
    eps = 1e-12
    return ((x <= lower + eps) & (grad > 0)) | ((x >= upper - eps) & (grad < 0))


def _gradient_small(lin: _Linearised, x: torch.Tensor, start_cost: torch.Tensor, problem: _Problem,
                    config: RefineConfig) -> torch.Tensor:
    """(B,) bool: OpenSim's convergence test at x (B, F), where it applies (see RefineConfig.gradient_tol).

    max |projected gradient| / sum of marker weights <= ``gradient_tol``: the gradient J^T r
    (B, F) is OpenSim's marker-goal gradient times the total weight of the frame's present
    markers; components held at a bound do not count. ``start_cost`` (B,): the objective at
    each frame's start.
    """
    if config.gradient_tol <= 0:
        return torch.zeros(x.shape[0], dtype=torch.bool)
    held = _active_set(x, lin.gradient, problem.lower, problem.upper)
    projected = torch.where(held, 0.0, lin.gradient).abs().amax(dim=1)
    total = problem.weights.sum(dim=1)
    return ((projected <= config.gradient_tol * total) & (start_cost <= config.gradient_start_ratio * lin.cost)
            & (lin.cost >= config.gradient_min_rms ** 2 * total))


def _lm_step(lin: _Linearised, x: torch.Tensor, damping: torch.Tensor, problem: _Problem) -> torch.Tensor:
    """Projected damped Gauss-Newton step; returns the trial point (B, F) inside the bounds."""
    grad, hess = lin.gradient, lin.hessian
    held = _active_set(x, grad, problem.lower, problem.upper)
    keep = (~held).to(x.dtype)
    diag = torch.diagonal(hess, dim1=1, dim2=2)
    # Marquardt scaling, plus a floor so coordinates no residual depends on stay put.
    scale = damping[:, None] * (diag + 1e-9 * diag.amax(dim=1, keepdim=True) + 1e-12)
    # Held variables: their rows and columns cleared, 1 on the diagonal (a zero step).
    system = hess * (keep[:, :, None] * keep[:, None, :])
    torch.diagonal(system, dim1=1, dim2=2).add_(scale * keep + held.to(x.dtype))
    rhs = -grad * keep
    # The system is positive definite (damping > 0): Cholesky is ~1.5-2x faster than an LU
    # solve here. Should a factorisation still fail (round-off), that frame takes the step the
    # damping tends to, rhs / diagonal, instead of a garbage one (no host sync needed).
    factor, info = torch.linalg.cholesky_ex(system)
    step = torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)
    fallback = rhs / torch.diagonal(system, dim1=1, dim2=2)
    step = torch.where((info == 0).unsqueeze(1), step, fallback)
    return torch.clamp(x + step, problem.lower, problem.upper)


# ---------------------------------------------------------------------------------------------
# Driver


def _target_default(sk: SkeletonLike, j: int, task, values: dict[str, np.ndarray] | None) -> torch.Tensor:
    return sk.coordinate_defaults.detach().cpu().double()[j].reshape(1)


def _target_manual(sk: SkeletonLike, j: int, task, values: dict[str, np.ndarray] | None) -> torch.Tensor:
    return torch.tensor([float(task.value)], dtype=torch.float64)


def _target_from_file(sk: SkeletonLike, j: int, task, values: dict[str, np.ndarray] | None) -> torch.Tensor:
    if values is None or task.name not in values:
        raise InputError(f"coordinate task {task.name!r} takes values from a file that has no such column")
    return torch.as_tensor(values[task.name], dtype=torch.float64)


# IKCoordinateTask value_type -> (1,) or (T,) target in internal units.
TARGET_SOURCES: dict[str, Callable[..., torch.Tensor]] = {
    "default_value": _target_default,
    "manual_value": _target_manual,
    "from_file": _target_from_file,
}


def coordinate_targets(
    sk: SkeletonLike, tasks: Sequence, values: dict[str, np.ndarray] | None = None
) -> CoordinateTargets:
    """Coordinate targets from IK tasks (objects with name, weight, apply, value_type, value).

    ``default_value`` uses the model default, ``manual_value`` the task's value (internal units),
    ``from_file`` the (T,) array in ``values[name]``. Tasks on locked coordinates are dropped, as
    in OpenSim.
    """
    names = list(sk.coordinate_names)
    index, weights, cols = [], [], []
    for task in tasks:
        if not getattr(task, "apply", True) or task.weight == 0:
            continue
        if task.name not in names:
            raise InputError(f"coordinate task {task.name!r} names no coordinate of the model")
        if task.value_type not in TARGET_SOURCES:
            raise InputError(f"coordinate task {task.name!r}: unknown value_type {task.value_type!r}; "
                             f"expected one of {sorted(TARGET_SOURCES)}")
        j = names.index(task.name)
        if bool(sk.coordinate_locked[j]):
            continue
        cols.append(TARGET_SOURCES[task.value_type](sk, j, task, values))
        index.append(j)
        weights.append(float(task.weight))
    if not index:
        empty = torch.zeros(0, dtype=torch.float64)
        return CoordinateTargets(torch.zeros(0, dtype=torch.long), empty, empty)
    length = max(c.shape[0] for c in cols)
    values_t = torch.stack([c.expand(length) for c in cols], dim=-1)
    if length == 1:
        values_t = values_t[0]
    return CoordinateTargets(torch.tensor(index), torch.tensor(weights, dtype=torch.float64), values_t)


def _free_and_bounds(sk: SkeletonLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    locked = sk.coordinate_locked.bool().cpu()
    dependent = sk.coordinate_dependent.bool().cpu()
    free = torch.nonzero(~locked & ~dependent).flatten()
    ranges = sk.coordinate_ranges.detach().cpu().double()
    clamped = sk.coordinate_clamped.bool().cpu()
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    lower = torch.where(clamped, ranges[:, 0], -inf)[free]
    upper = torch.where(clamped, ranges[:, 1], inf)[free]
    return free, lower, upper


def _build_problem(
    sk: SkeletonLike, markers: torch.Tensor, weights: torch.Tensor, targets: CoordinateTargets | None,
    probe: bool = True, marker_targets: bool = True,
) -> _Problem:
    """The chunk-independent problem; ``probe``: also the residual's sparsity structure, which
    only the finite-difference Jacobian reads (it costs a forward pass of ~3 (F + 1) poses);
    ``marker_targets``: also Skeleton.marker_targets, which only the torch loop reads."""
    t = markers.shape[0]
    present = ~torch.isnan(markers).any(dim=-1)
    sqrt_w = torch.sqrt(weights.clamp_min(0.0))[None].expand(t, -1) * present
    free, lower, upper = _free_and_bounds(sk)
    if targets is None or targets.index.numel() == 0:
        k_index = torch.zeros(0, dtype=torch.long)
        k_w = torch.zeros(0, dtype=torch.float64)
        k_values = torch.zeros(t, 0, dtype=torch.float64)
    else:
        k_index, k_w = targets.index, torch.sqrt(targets.weights)
        k_values = targets.values.expand(t, -1) if targets.values.ndim == 1 else targets.values
    clean = torch.nan_to_num(markers, nan=0.0)
    problem = _Problem(
        markers=clean, sqrt_w=sqrt_w, weights=sqrt_w * sqrt_w, task_index=k_index,
        task_sqrt_w=k_w, task_values=k_values, free=free, lower=lower, upper=upper,
        targets=sk.marker_targets(clean, sqrt_w * sqrt_w) if marker_targets else None,
    )
    if not probe:
        return problem
    structure = _probe_structure(sk, free, k_index)
    return dataclasses.replace(problem, group_of=_colour_columns(structure.pattern, structure.constant),
                               pattern=structure.pattern, slopes=structure.slopes)


@dataclasses.dataclass(frozen=True, eq=False)
class _Solved:
    """q (B, n) with free coordinates optimised; iterations, converged, objective: (B,);
    passes: batched linearisations it took; report: (B, 3) marker report at q where the
    compiled kernel made it (see native.NativeSolved), else None."""

    q: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    cost: torch.Tensor
    passes: int = 0
    report: torch.Tensor | None = None


def _solve_chunk(sk: SkeletonLike, q0: torch.Tensor, problem: _Problem, config: RefineConfig,
                 reference: torch.Tensor | None = None) -> _Solved:
    """Levenberg-Marquardt on all frames of ``q0`` (B, n); frames leave the batch when done.
    ``reference`` (B, F), NaN rows for none: free coordinates at which a frame also stops
    (within ``config.same_minimum``, see :func:`_temporal_sweeps`)."""
    linearise = LINEARISERS[config.jacobian]
    b = q0.shape[0]
    x = torch.clamp(q0[:, problem.free], problem.lower, problem.upper)
    cost = torch.zeros(b, dtype=torch.float64)
    iterations = torch.full((b,), config.max_iters, dtype=torch.long)
    converged = torch.zeros(b, dtype=torch.bool)
    # State of the frames still iterating, compact (all of them take a step per iteration):
    # rows, their x, normal equations, damping, base pose, problem and reference.
    rows, x_a, q_a, sub, ref = torch.arange(b), x.clone(), q0, problem, reference
    lin = linearise(sk, q_a, x_a, sub, config.fd_step)
    damping = torch.full((b,), config.initial_damping, dtype=torch.float64)
    start_cost = lin.cost  # see RefineConfig.gradient_start_ratio
    passes = 1
    for it in range(config.max_iters):
        trial = _lm_step(lin, x_a, damping, sub)
        lin_t = linearise(sk, q_a, trial, sub, config.fd_step)
        passes += 1
        accept = lin_t.cost <= lin.cost
        step = (trial - x_a).abs().amax(dim=1)
        x_a = torch.where(accept.unsqueeze(1), trial, x_a)
        lin = lin.where(accept, lin_t)
        damping = torch.where(accept, damping * config.damping_down,
                              (damping * config.damping_up).clamp_min(config.reject_damping))
        flat = _gradient_small(lin, x_a, start_cost, sub, config)
        done = (accept & ((step < config.tol) | flat)) | (damping > config.max_damping)
        if ref is not None:  # NaN references compare False
            done |= accept & ((trial - ref).abs().amax(dim=1) < config.same_minimum)
        if bool(done.any()):  # finished frames leave the batch
            finished = rows[done]
            x[finished], cost[finished] = x_a[done], lin.cost[done]
            iterations[finished], converged[finished] = it + 1, True
            keep = ~done
            rows, x_a, lin, damping = rows[keep], x_a[keep], lin.take(keep), damping[keep]
            if rows.numel() == 0:
                break
            q_a, sub, start_cost = q0[rows], problem.take(rows), start_cost[keep]
            ref = None if reference is None else reference[rows]
    if rows.numel():  # out of iterations
        x[rows], cost[rows] = x_a, lin.cost
    return _Solved(_with_free(q0, problem.free, x), iterations, converged, cost, passes)


def _native_settings(config: RefineConfig) -> np.ndarray:
    """The stopping and damping settings in the order native.solve reads them."""
    return np.array([config.tol, config.gradient_tol, config.gradient_min_rms, config.gradient_start_ratio,
                     config.initial_damping, config.damping_up, config.damping_down, config.reject_damping,
                     config.max_damping, config.same_minimum], dtype=np.float64)


def _solve_native(q0: torch.Tensor, problem: _Problem, config: RefineConfig,
                  reference: torch.Tensor | None = None) -> _Solved:
    """All frames by the compiled per-frame kernel. ``passes``: the batched torch loop's count
    for the same iterations (1 + the most iterations of any frame), for comparable stage reports."""
    out = native.solve(problem.native_model, q0.numpy(), problem.native, _native_settings(config), config.max_iters,
                       None if reference is None else reference.numpy())
    iterations = torch.from_numpy(out.iterations)
    passes = 1 + int(iterations.max()) if iterations.numel() else 0
    return _Solved(torch.from_numpy(out.q), iterations, torch.from_numpy(out.converged),
                   torch.from_numpy(out.cost), passes, torch.from_numpy(out.report))


def _solve(sk: SkeletonLike, q0: torch.Tensor, problem: _Problem, config: RefineConfig,
           reference: torch.Tensor | None = None) -> _Solved:
    """All frames, in chunks of ``config.chunk_frames`` (the compiled kernel: all at once)."""
    if problem.native is not None:
        return _solve_native(q0, problem, config, reference)
    pieces = []
    for start in range(0, q0.shape[0], config.chunk_frames):
        rows = torch.arange(start, min(start + config.chunk_frames, q0.shape[0]))
        pieces.append(_solve_chunk(sk, q0[rows], problem.take(rows), config,
                                   None if reference is None else reference[rows]))
    tensors = [f.name for f in dataclasses.fields(_Solved) if f.name not in ("passes", "report")]
    return _Solved(*(torch.cat([getattr(p, f) for p in pieces]) for f in tensors),
                   passes=sum(p.passes for p in pieces))


def _suspicious(cost: np.ndarray, converged: np.ndarray, ratio: float) -> np.ndarray:
    """(T,) frames not converged, or whose objective (T,) exceeds a neighbour's by ``ratio``.

    At lab and video frame rates the objective changes little from frame to frame, so a jump
    marks a frame that fell into another local minimum than its neighbours. (numpy: these
    few whole-trial checks run once per refinement, where torch's per-operator cost showed.)
    """
    neighbour = np.full_like(cost, np.inf)
    neighbour[1:] = np.minimum(neighbour[1:], cost[:-1])
    neighbour[:-1] = np.minimum(neighbour[:-1], cost[1:])
    return ~converged | (cost > ratio * neighbour + 1e-12)


def _wrapped(d: torch.Tensor) -> torch.Tensor:
    """|angle difference| wrapped to [0, pi]."""
    d = torch.remainder(d.abs(), 2 * torch.pi)
    return torch.minimum(d, 2 * torch.pi - d)


def _jumps(q: np.ndarray, rotational: np.ndarray, limit: float) -> np.ndarray:
    """(T,) frames next to a jump of a rotational coordinate larger than ``limit`` (rad)."""
    out = np.zeros(q.shape[0], dtype=bool)
    if not rotational.any() or q.shape[0] < 2:
        return out
    d = np.remainder(np.abs(q[1:, rotational] - q[:-1, rotational]), 2 * np.pi)
    big = np.minimum(d, 2 * np.pi - d).max(axis=1) > limit
    out[1:] |= big
    out[:-1] |= big
    return out


def _preferred(
    cost_new: torch.Tensor, cost_old: torch.Tensor, q_new: torch.Tensor, q_old: torch.Tensor,
    anatomy: _Anatomy, config: RefineConfig,
) -> torch.Tensor:
    """(N,) take the new answer: a lower objective, or the same objective nearer the default pose.

    Equal objectives happen when Euler angles have two sets for one pose (tilt + 180 deg, ...);
    the set nearer the model's default pose is the anatomical one, and the rule is a total order,
    so frames cannot swap back and forth.
    """
    lower = cost_new < cost_old * (1 - config.improvement) - 1e-15
    same = (cost_new - cost_old).abs() <= config.improvement * cost_old + 1e-15

    def distance(q: torch.Tensor) -> torch.Tensor:
        return _wrapped(q[:, anatomy.rotational] - anatomy.default[anatomy.rotational]).square().sum(dim=1)

    # A different Euler set differs by ~pi somewhere; 0.1 rad^2 ignores two runs to one minimum.
    nearer = distance(q_new) < distance(q_old) - 0.1
    return lower | (same & nearer)


@dataclasses.dataclass(frozen=True, eq=False)
class _Anatomy:
    """rotational: (n,) bool, free rotational coordinates; default: (n,) the model's default pose."""

    rotational: torch.Tensor
    default: torch.Tensor


def _neighbour_pairs(retry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(targets, sources): each frame flagged in ``retry`` (T,) bool from both neighbours."""
    t = retry.shape[0]
    targets, sources = [], []
    for shift in (1, -1):
        tgt = np.arange(max(shift, 0), t + min(shift, 0))
        tgt = tgt[retry[tgt]]
        targets.append(tgt)
        sources.append(tgt - shift)
    return np.concatenate(targets), np.concatenate(sources)


def _reach_pairs(changed: list[int], frames: int, reach: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, sources) long: every frame within ``reach`` of a changed frame (sorted list),
    from the nearest changed frame on each side (at most two candidates per frame, as from its
    two neighbours); changed frames themselves are offered their changed neighbours' answers."""
    pairs = []
    for k, j in enumerate(changed):
        left = changed[k - 1] if k else -reach - 1  # beyond the neighbouring change: its frames
        right = changed[k + 1] if k + 1 < len(changed) else frames + reach
        pairs += [(i, j) for i in range(max(j - reach, left, 0), j)]
        pairs += [(i, j) for i in range(j + 1, min(j + reach, right, frames - 1) + 1)]
    index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
    return index[:, 0], index[:, 1]


def _temporal_sweeps(sk: SkeletonLike, solved: _Solved, problem: _Problem, config: RefineConfig
                     ) -> tuple[_Solved, tuple[int, int, int]]:
    """Re-solve doubtful frames from a neighbouring frame's answer; keep what is preferred.

    Batched stand-in for OpenSim's frame-to-frame warm start: a better minimum (or a more
    anatomical Euler set of the same pose) spreads up to ``sweep_reach`` frames per sweep into
    a run of frames stuck elsewhere. Doubtful: not converged, an objective above a neighbour's, or a jump of
    more than ``max_jump`` to a neighbour. Only frames within ``sweep_reach`` of a change are
    retried, each from the changed frame's answer. Also returns (sweeps, re-solves, passes).
    """
    free = torch.zeros(solved.q.shape[1], dtype=torch.bool)
    free[problem.free] = True
    rotational = sk.coordinate_is_rotational.bool().cpu() & free
    q_np, free_np = solved.q.numpy(), problem.free.numpy()
    retry = (_suspicious(solved.cost.numpy(), solved.converged.numpy(), config.neighbour_cost_ratio)
             | _jumps(q_np, rotational.numpy(), config.max_jump))
    tgt, src = _neighbour_pairs(retry)
    # A neighbour's answer this close to the frame's own is a start inside the frame's basin:
    # re-solving from it can only return to the same minimum.
    apart = np.abs(q_np[tgt][:, free_np] - q_np[src][:, free_np]).max(axis=1, initial=0.0) > config.sweep_skip_radius
    if not apart.any():
        return solved, (0, 0, 0)
    tgt, src = torch.from_numpy(tgt[apart]), torch.from_numpy(src[apart])
    q, cost = solved.q.clone(), solved.cost.clone()
    iterations, converged = solved.iterations.clone(), solved.converged.clone()
    t = q.shape[0]
    anatomy = _Anatomy(rotational, sk.coordinate_defaults.detach().cpu().double())
    # A neighbour's answer is a close start: a candidate that needs many more steps is rarely
    # the better minimum, and bounding it keeps the small sweep batches cheap.
    sweep_config = dataclasses.replace(config, max_iters=min(config.max_iters, config.sweep_max_iters))
    rounds = candidates = passes = 0
    for _ in range(config.temporal_sweeps):
        if tgt.numel() == 0:
            break
        # A candidate heading into the frame's own (converged) minimum stops near it.
        reference = torch.where(converged[tgt, None], q[tgt][:, problem.free], float("nan"))
        trial = _solve(sk, q[src], problem.take(tgt), sweep_config, reference)
        rounds, candidates, passes = rounds + 1, candidates + tgt.numel(), passes + trial.passes
        iterations.index_add_(0, tgt, trial.iterations)
        # Candidates not preferred to the frame's answer as it was are not preferred to a better
        # one either; only the few others are compared one by one (several may share a target).
        better = _preferred(trial.cost, cost[tgt], trial.q, q[tgt], anatomy, config)
        changed = []
        for i in torch.nonzero(better).flatten().tolist():
            j = int(tgt[i])
            if bool(_preferred(trial.cost[i:i + 1], cost[j:j + 1], trial.q[i:i + 1], q[j:j + 1], anatomy, config)):
                q[j], cost[j], converged[j] = trial.q[i], trial.cost[i], trial.converged[i]
                changed.append(j)
        tgt, src = _reach_pairs(sorted(set(changed)), t, config.sweep_reach)
    return _Solved(q, iterations, converged, cost), (rounds, candidates, passes)


def marker_errors(
    sk: SkeletonLike, q: torch.Tensor, markers: torch.Tensor, weights: torch.Tensor,
    native_model: native.NativeModel | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """OpenSim's report over weighted, present markers: total squared (m^2), RMS (m), max (m); and q_full.
    ``native_model``: computed by the compiled kernel (float64; ``sk`` is then not used)."""
    used = (~torch.isnan(markers).any(dim=-1)) & (weights > 0)[None]
    if native_model is not None:
        report = native.marker_report(native_model, q.detach().cpu().double().numpy(), markers.numpy(), used.numpy())
        return tuple(torch.from_numpy(a) for a in report)
    out = sk.forward(q)
    q_full, model_markers = out.q_full, out.markers
    dist = torch.linalg.norm(model_markers - torch.nan_to_num(markers), dim=-1) * used
    count = used.sum(dim=1)
    total = (dist * dist).sum(dim=1)
    nan = torch.tensor(float("nan"), dtype=total.dtype)
    total = torch.where(count > 0, total, nan)
    rms = torch.sqrt(total / count.clamp_min(1))
    mx = torch.where(count > 0, dist.amax(dim=1), nan)
    return total, rms, mx, q_full


KERNELS = ("native", "torch")


def _report_after_sweeps(first: _Solved, q: torch.Tensor, markers: torch.Tensor, weights: torch.Tensor,
                         model: native.NativeModel) -> tuple[torch.Tensor, ...]:
    """marker_errors' outputs from the compiled solve's own report, recomputed only for the
    frames whose answer the temporal sweeps replaced (q (T, n): the answers after them)."""
    report, q_full = first.report.clone(), first.q.clone()
    changed = torch.nonzero((q != first.q).any(dim=1)).flatten()
    if changed.numel():
        *columns, q_changed = marker_errors(None, q[changed], markers[changed], weights, model)
        report[changed] = torch.stack(columns, dim=1)
        q_full[changed] = q_changed
    return report[:, 0], report[:, 1], report[:, 2], q_full


def _native_model(sk: SkeletonLike, config: RefineConfig) -> native.NativeModel | None:
    """The compiled kernel's model where it applies (see RefineConfig.kernel), else None."""
    if config.kernel != "native" or config.jacobian != "analytic" or not native.AVAILABLE:
        return None
    model = getattr(sk, "native_model", None)
    if model is None or sk.coordinate_ranges.device.type != "cpu":
        return None
    return model()


def _native_problem(model: native.NativeModel, problem: _Problem) -> native.NativeProblem:
    return native.NativeProblem(
        markers=problem.markers.numpy(), weights=problem.weights.contiguous().numpy(),
        task_index=problem.task_index.numpy().astype(np.int64), task_sqrt_w=problem.task_sqrt_w.numpy(),
        task_values=problem.task_values.contiguous().numpy(),
        structure=native.structure(model, problem.free.numpy().astype(np.int64)),
        lower=problem.lower.numpy(), upper=problem.upper.numpy(),
    )


def refine(
    sk: SkeletonLike,
    markers: torch.Tensor | np.ndarray,
    weights: torch.Tensor | np.ndarray,
    q0: torch.Tensor | np.ndarray,
    *,
    coordinate_tasks: CoordinateTargets | None = None,
    max_iters: int | None = None,
    tol: float | None = None,
    config: RefineConfig = RefineConfig(),
) -> RefineResult:
    """Minimise OpenSim's IK objective for every frame, all frames batched.

    Args:
        sk: the Skeleton (float64 recommended: the tolerances are micrometres).
        markers: (T, M, 3) metres in ground, columns in ``sk.marker_names`` order, NaN = absent
            (see :func:`align_markers`).
        weights: (M,) marker weights; 0 drops a marker.
        q0: (T, n) starting coordinates (rad / m), e.g. NeurIK's answer or the default pose.
            Locked coordinates are reset to their defaults, as OpenSim holds them.
        coordinate_tasks: optional coordinate targets (see :func:`coordinate_targets`).
        max_iters, tol: override ``config``.
    """
    config = dataclasses.replace(
        config,
        max_iters=config.max_iters if max_iters is None else max_iters,
        tol=config.tol if tol is None else tol,
    )
    if config.jacobian not in LINEARISERS:
        raise InputError(f"unknown jacobian {config.jacobian!r}; choose one of {sorted(LINEARISERS)}")
    if config.kernel not in KERNELS:
        raise InputError(f"unknown refinement kernel {config.kernel!r}; choose one of {sorted(KERNELS)}")
    markers_t = torch.as_tensor(markers, dtype=torch.float64)
    weights_t = torch.as_tensor(weights, dtype=torch.float64)
    q0_t = torch.as_tensor(q0, dtype=torch.float64).clone()
    _check_shapes(sk, markers_t, weights_t, q0_t)
    locked = sk.coordinate_locked.bool().cpu()
    q0_t[:, locked] = sk.coordinate_defaults.detach().cpu().double()[locked]
    threads = torch.get_num_threads()
    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return clock[-1] - clock[-2]

    sweeps = (0, 0, 0)
    try:
        if config.threads is not None and config.threads != threads:
            torch.set_num_threads(config.threads)
        with torch.no_grad():
            model = _native_model(sk, config)
            problem = _build_problem(sk, markers_t, weights_t, coordinate_tasks,
                                     probe=config.jacobian == "finite_difference", marker_targets=model is None)
            if model is not None:
                problem = dataclasses.replace(problem, native_model=model, native=_native_problem(model, problem))
            setup_s = lap()
            first = solved = _solve(sk, q0_t, problem, config)
            solve_s, solve_passes = lap(), solved.passes
            if config.temporal_sweeps > 0 and markers_t.shape[0] > 1:
                solved, sweeps = _temporal_sweeps(sk, solved, problem, config)
            sweeps_s = lap()
            q, iterations, converged = solved.q, solved.iterations, solved.converged
            if first.report is not None:
                total, rms, mx, q_full = _report_after_sweeps(first, q, markers_t, weights_t, model)
            else:
                total, rms, mx, q_full = marker_errors(sk, q, markers_t, weights_t, model)
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    stages = RefineStages(setup_s, solve_s, solve_passes, sweeps_s, *sweeps, report_s=lap())
    return RefineResult(
        q=q_full.detach(), marker_sq_error_total=total, marker_rms=rms, marker_max=mx,
        iterations=iterations, converged=converged, objective=solved.cost, stages=stages,  # cost at q
    )


def _check_shapes(sk: SkeletonLike, markers: torch.Tensor, weights: torch.Tensor, q0: torch.Tensor) -> None:
    m, n = len(sk.marker_names), len(sk.coordinate_names)
    if markers.ndim == 3 and markers.shape[0] == 0:
        raise InputError("no frames to refine")
    if markers.ndim != 3 or markers.shape[1:] != (m, 3):
        raise InputError(f"markers must be (T, {m}, 3) in the skeleton's marker order, got {tuple(markers.shape)}")
    if weights.shape != (m,):
        raise InputError(f"marker weights must be ({m},), got {tuple(weights.shape)}")
    if bool(torch.isinf(markers).any()):
        raise InputError("markers contain infinite values; mark a marker absent in a frame with NaN")
    if not bool(torch.isfinite(weights).all()):
        raise InputError("marker weights must be finite numbers (0 drops a marker)")
    if q0.shape != (markers.shape[0], n):
        raise InputError(f"q0 must be ({markers.shape[0]}, {n}), got {tuple(q0.shape)}")


def align_markers(
    sk: SkeletonLike, names: Sequence[str], xyz: np.ndarray, weights: dict[str, float]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Put trial markers into the skeleton's marker order.

    Args:
        names: the trial's M' marker names; xyz: (T, M', 3) metres, NaN = absent.
        weights: ``{marker: weight}``; markers without a weight get 0 (ignored, as in OpenSim).
    Returns:
        xyz (T, M, 3) in ``sk.marker_names`` order (NaN for model markers absent from the trial),
        weights (M,), and the weighted names that the model does not have (to warn about).
    """
    index = {n: i for i, n in enumerate(names)}
    out = np.full((xyz.shape[0], len(sk.marker_names), 3), np.nan)
    w = np.zeros(len(sk.marker_names))
    for k, name in enumerate(sk.marker_names):
        if name in index and weights.get(name, 0.0) > 0:
            out[:, k] = xyz[:, index[name]]
            w[k] = weights[name]
    model = set(sk.marker_names)
    unknown = [n for n in weights if n not in model and weights[n] > 0]
    return out, w, unknown
