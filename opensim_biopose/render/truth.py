"""Ground truth of a rendered clip and the errors of the pipeline against it.

The "oracle" of a clip is what a perfect front end would hand to the solver: the rendered mesh's
own virtual markers (anny-pig53, OpenSim ground). The oracle IK is the pipeline's own subject
scaling (ScaleTool-style factors + marker registration) and refinement applied to those markers,
then refined once more to a tight tolerance. Against it:

- the front end's error: the pipeline's virtual markers vs the oracle markers (mm), and
- the end-to-end error: the pipeline's coordinates vs the oracle IK, per DoF (deg, mm).

Degrees are reported with left and right averaged, as in OpenCap's validation
(Uhlenbrock et al. 2023, PLOS Comput Biol, "OpenCap": 12 lower-body/trunk DoFs).
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from opensim_biopose.errors import InputError

# The 12 DoFs of OpenCap's kinematic validation; names without side are bilateral (_r/_l averaged).
OPENCAP_DOFS: tuple[str, ...] = (
    "pelvis_tilt", "pelvis_list", "pelvis_rotation", "hip_flexion", "hip_adduction", "hip_rotation",
    "knee_angle", "ankle_angle", "subtalar_angle", "lumbar_extension", "lumbar_bending", "lumbar_rotation",
)
ARM_DOFS: tuple[str, ...] = ("arm_flex", "arm_add", "arm_rot", "elbow_flex", "pro_sup")
PELVIS_TRANSLATIONS: tuple[str, ...] = ("pelvis_tx", "pelvis_ty", "pelvis_tz")
# Markers whose centroid is the pelvis centre for root-relative marker errors.
PELVIS_MARKERS: tuple[str, ...] = ("RASI", "LASI", "RPSI", "LPSI")


@dataclass(frozen=True, eq=False)
class OracleIK:
    """IK of the true virtual markers on the scaled default model.

    q: (T, n) rad / m in ``coordinate_names`` order; marker_rms_m: (T,) residual of the weighted
    markers (placement disagreement between mesh and model, after marker registration);
    scale: overall scale factor of the model to the body.
    """

    coordinate_names: tuple[str, ...]
    q: np.ndarray
    marker_rms_m: np.ndarray
    scale: float


def oracle_ik(names: Sequence[str], markers: np.ndarray, tol: float = 1e-7) -> OracleIK:
    """Scale the default model to ``markers`` (T, M, 3) m named ``names``, solve IK to ``tol`` (rad / m)."""
    from opensim_biopose.kinematics import Skeleton
    from opensim_biopose.neurik.refine import align_markers, marker_errors, refine
    from opensim_biopose.pipeline import (PipelineConfig, SolverConfig, SubjectConfig, SubjectMarkers,
                                          fit_scaled_model, load_generic_model)
    from opensim_biopose.scaling import measure_scale_factors

    if markers.ndim != 3 or markers.shape[1:] != (len(names), 3):
        raise InputError(f"oracle markers must be (T, {len(names)}, 3) metres, got {markers.shape}")
    model = load_generic_model(SubjectConfig())
    factors = measure_scale_factors(model.skeleton, names, markers)
    subject = SubjectMarkers(tuple(names), markers.astype(np.float64), 1.0)
    q0 = model.skeleton.coordinate_defaults.double().expand(markers.shape[0], -1).numpy().copy()
    config = PipelineConfig(solver=SolverConfig(train=False, refine=True))
    with tempfile.TemporaryDirectory(prefix="biopose_oracle_") as work:
        solved = fit_scaled_model(model, factors, subject, q0, config, Path(work))
        path = Path(work) / "oracle_scaled.osim"
        path.write_text(solved.xml)
        sk = Skeleton.from_osim(path, dtype=torch.float64)
    xyz, w, _ = align_markers(sk, names, markers.astype(np.float64), model.weights)
    res = refine(sk, xyz, w, torch.as_tensor(solved.q), tol=tol, max_iters=200)
    _, rms, _, q_full = marker_errors(sk, res.q, torch.from_numpy(xyz), torch.from_numpy(w))
    return OracleIK(tuple(sk.coordinate_names), q_full.numpy(), rms.numpy(), factors.overall)


def _columns(names: Sequence[str], dof: str) -> list[int]:
    """Columns of a DoF: itself, or its _r and _l coordinates."""
    if dof in names:
        return [list(names).index(dof)]
    cols = [list(names).index(f"{dof}_{s}") for s in ("r", "l") if f"{dof}_{s}" in names]
    if not cols:
        raise InputError(f"coordinate {dof!r} (or {dof}_r/_l) is not among the model's coordinates")
    return cols


def dof_rmse_deg(names: Sequence[str], q_pred: np.ndarray, q_true: np.ndarray,
                 dofs: Sequence[str] = OPENCAP_DOFS) -> dict[str, float]:
    """RMSE over frames (deg) of each DoF between (T, n) rad coordinate arrays; L/R RMSEs averaged."""
    out = {}
    for dof in dofs:
        cols = _columns(names, dof)
        diff = np.degrees(q_pred[:, cols] - q_true[:, cols])
        out[dof] = float(np.mean(np.sqrt(np.nanmean(diff ** 2, axis=0))))
    return out


def pelvis_translation_error_mm(names: Sequence[str], q_pred: np.ndarray, q_true: np.ndarray) -> float:
    """RMS (mm) of the 3D pelvis position difference after removing the constant horizontal offset.

    The pipeline's ground origin is its own (only the floor, Y = 0, and the heading are shared), so
    the horizontal mean offset is not an error of the motion; the vertical one is.
    """
    cols = [list(names).index(n) for n in PELVIS_TRANSLATIONS]
    diff = q_pred[:, cols] - q_true[:, cols]
    diff[:, [0, 2]] -= np.nanmean(diff[:, [0, 2]], axis=0)
    return float(1000.0 * np.sqrt(np.nanmean(np.sum(diff ** 2, axis=1))))


def _mirror_name(name: str) -> str:
    """RASI <-> LASI; names without a side stay."""
    if len(name) > 1 and name[0] in "RL" and name[1:].isupper():
        return ("L" if name[0] == "R" else "R") + name[1:]
    return name


def left_right_swap_share(names_pred: Sequence[str], pred: np.ndarray, names_true: Sequence[str],
                          truth: np.ndarray) -> float:
    """Fraction of frames whose pelvis-centred markers fit the truth better with left and right swapped.

    A monocular front end that confuses the near and far limb (side views) shows up here.
    """
    common = [n for n in names_true if n in names_pred and _mirror_name(n) in names_pred]
    t = truth[:, [list(names_true).index(n) for n in common]]
    p = pred[:, [list(names_pred).index(n) for n in common]]
    swapped = pred[:, [list(names_pred).index(_mirror_name(n)) for n in common]]
    pel = [common.index(n) for n in PELVIS_MARKERS]
    t = t - t[:, pel].mean(axis=1, keepdims=True)
    p = p - p[:, pel].mean(axis=1, keepdims=True)
    swapped = swapped - swapped[:, pel].mean(axis=1, keepdims=True)
    limbs = [i for i, n in enumerate(common) if _mirror_name(n) != n]
    straight = np.linalg.norm(p - t, axis=-1)[:, limbs].mean(axis=1)
    crossed = np.linalg.norm(swapped - t, axis=-1)[:, limbs].mean(axis=1)
    return float(np.mean(crossed < straight))


def root_relative_marker_error_mm(names_pred: Sequence[str], pred: np.ndarray, names_true: Sequence[str],
                                  truth: np.ndarray) -> float:
    """Mean per-marker distance (mm) with each frame's pelvis-marker centroid subtracted from both.

    ``pred``, ``truth``: (T, M, 3) metres in OpenSim ground; only markers present in both count.
    """
    common = [n for n in names_true if n in names_pred]
    p = pred[:, [list(names_pred).index(n) for n in common]]
    t = truth[:, [list(names_true).index(n) for n in common]]
    pel = [common.index(n) for n in PELVIS_MARKERS]
    p = p - p[:, pel].mean(axis=1, keepdims=True)
    t = t - t[:, pel].mean(axis=1, keepdims=True)
    return float(1000.0 * np.nanmean(np.linalg.norm(p - t, axis=-1)))
