"""What a synthetic window teaches NeurIK to answer: its generating pose, or OpenSim IK's answer.

A synthetic window is drawn from coordinates ``q`` on a randomly scaled copy of the model, with
marker placement offsets and noise. Two targets are registered in :data:`TARGETS`:

* ``"fk"`` keeps the generating coordinates, scale factors and offset-free markers: the network
  learns to see through scaling and marker error. Right where nothing else will fit the model
  to the markers afterwards and the scale factors are wanted (the default video model).
* ``"ik"`` replaces them by OpenSim IK's answer to the markers the network sees: the bounded
  weighted least squares ``argmin_q sum_i w_i ||x_i(q) - m_i||^2 + sum_j w_j (q_j - v_j)^2`` on
  the *given* (unscaled) model with the setup's marker and coordinate tasks, missing markers
  skipped (:func:`opensim_biopose.neurik.refine.refine`, warm-started at the generating pose),
  with scale factors 1. OpenSim IK's answer is a deterministic function of the observed
  markers, so nothing in the target is irreducible: offsets, scales and noise only widen the
  input distribution. Right for lab models already scaled to the subject, where NeurIK stands
  in for the InverseKinematicsTool and is judged against it.

Units: rad / m, ground frame Y-up, before the window is placed in the lab.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from opensim_biopose.neurik.layout import ModelLayout
from opensim_biopose.neurik.refine import CoordinateTargets, RefineConfig, refine


@dataclasses.dataclass(frozen=True)
class IKTargetConfig:
    """How the ``"ik"`` target is solved."""

    # Levenberg-Marquardt steps from the generating pose. Mean distance from the 50-step answer
    # over the OpenCap DoFs on synthetic lab batches (SUBJECT_SCALED): 4 steps 0.08 deg (gait2354)
    # / 0.36 deg (Rajagopal), 8 steps 0.03 / 0.22 deg, at ~0.7 / 1.3 ms per frame on one core.
    iterations: int = 8
    # The window's frames are solved independently (the temporal sweeps of refine() fix frames
    # stuck in another minimum; from the generating pose there are none worth the cost).
    temporal_sweeps: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class Targets:
    """Training targets of B windows of T frames (model frame, before placement).

    Attributes:
        q: (B, T, n) coordinates (rad / m), ``q_full`` as the Skeleton reports them.
        clean_markers: (B, T, M, 3) the model's markers at ``q`` with ``log_scales`` (m).
        body_transforms: (B, T, NB, 4, 4) ground <- body at ``q``.
        log_scales: (B, NB, 3) natural log of the segment scale factors.
    """

    q: Tensor
    clean_markers: Tensor
    body_transforms: Tensor
    log_scales: Tensor


class IKTargets:
    """OpenSim IK's answer to observed synthetic markers on the base model (see module docstring).

    Args:
        sk: the base Skeleton (float64: refine's tolerances are micrometres).
        layout: the network's layout (marker order of the windows).
        marker_weights: (M,) IK weights of ``layout.marker_names``.
        coordinate_tasks: the setup's coordinate tasks, or None.
    """

    def __init__(self, sk, layout: ModelLayout, marker_weights: Tensor, coordinate_tasks: CoordinateTargets | None,
                 cfg: IKTargetConfig = IKTargetConfig()) -> None:
        self.sk = sk.to(dtype=torch.float64)
        self.layout = layout
        self.weights = torch.zeros(len(sk.marker_names), dtype=torch.float64)
        self.weights[layout.marker_index] = torch.as_tensor(marker_weights, dtype=torch.float64)
        self.tasks = coordinate_tasks
        self.cfg = cfg

    def __call__(self, observed: Tensor, visible: Tensor, fk: Targets) -> Targets:
        """observed: (B, T, M, 3) m, visible: (B, T, M) bool; ``fk`` holds the generating pose."""
        b, t, m, _ = observed.shape
        n_all = len(self.sk.marker_names)
        markers = torch.full((b * t, n_all, 3), float("nan"), dtype=torch.float64)
        seen = torch.where(visible.unsqueeze(-1), observed, torch.nan).reshape(b * t, m, 3).double()
        markers[:, self.layout.marker_index] = seen
        res = refine(self.sk, markers, self.weights, fk.q.reshape(b * t, -1).double(),
                     coordinate_tasks=self.tasks, max_iters=self.cfg.iterations,
                     config=RefineConfig(temporal_sweeps=self.cfg.temporal_sweeps))
        out = self.sk.forward(res.q)
        dtype = observed.dtype
        clean = out.markers[:, self.layout.marker_index].reshape(b, t, m, 3).to(dtype)
        tf = out.body_transforms.reshape(b, t, *out.body_transforms.shape[1:]).to(dtype)
        return Targets(res.q.reshape(b, t, -1).to(dtype), clean, tf, torch.zeros_like(fk.log_scales))


def _fk(ctx: TargetContext) -> None:
    return None


def _ik(ctx: TargetContext) -> IKTargets:
    return IKTargets(ctx.sk, ctx.layout, ctx.marker_weights, ctx.coordinate_tasks, ctx.ik)


@dataclasses.dataclass(frozen=True, eq=False)
class TargetContext:
    """What a target factory may use: base Skeleton, layout, (M,) marker weights, coordinate tasks."""

    sk: object
    layout: ModelLayout
    marker_weights: Tensor
    coordinate_tasks: CoordinateTargets | None
    ik: IKTargetConfig = IKTargetConfig()


# Registry: target name -> factory of the retargeting step (None: keep the generating pose).
TARGETS: dict[str, Callable[[TargetContext], IKTargets | None]] = {"fk": _fk, "ik": _ik}
