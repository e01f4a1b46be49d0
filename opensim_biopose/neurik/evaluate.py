"""Accuracy of NeurIK (unrefined) against a reference IK motion, OpenCap-style.

The figure is the mean absolute difference (degrees) over the 12 rotational degrees of
freedom OpenCap reports (Uhlrich et al., PLOS Comput Biol 2023): pelvis tilt/list/rotation,
hip flexion/adduction/rotation, knee, ankle, subtalar, lumbar extension/bending/rotation,
left and right averaged; a DoF absent from the model is skipped.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from opensim_biopose.io.mot import read_mot
from opensim_biopose.io.trc import read_trc

# DoF -> coordinate names it averages (left/right).
OPENCAP_DOFS: dict[str, tuple[str, ...]] = {
    "pelvis_tilt": ("pelvis_tilt",), "pelvis_list": ("pelvis_list",), "pelvis_rotation": ("pelvis_rotation",),
    "hip_flexion": ("hip_flexion_r", "hip_flexion_l"), "hip_adduction": ("hip_adduction_r", "hip_adduction_l"),
    "hip_rotation": ("hip_rotation_r", "hip_rotation_l"), "knee_angle": ("knee_angle_r", "knee_angle_l"),
    "ankle_angle": ("ankle_angle_r", "ankle_angle_l"), "subtalar_angle": ("subtalar_angle_r", "subtalar_angle_l"),
    "lumbar_extension": ("lumbar_extension",), "lumbar_bending": ("lumbar_bending",),
    "lumbar_rotation": ("lumbar_rotation",),
}


@dataclasses.dataclass(frozen=True)
class TrialAccuracy:
    """Per-DoF mean absolute difference (deg) and their mean; frames compared; solve time (s)."""

    per_dof_deg: dict[str, float]
    mean_deg: float
    frames: int
    solve_seconds: float


def _wrap_deg(d: np.ndarray) -> np.ndarray:
    return (d + 180.0) % 360.0 - 180.0


def compare_to_reference(q: np.ndarray, times: np.ndarray, names, reference_mot: str | os.PathLike[str],
                         rotational) -> TrialAccuracy:
    """Compare (T, n) rad coordinates at ``times`` with the reference .mot at the same times."""
    ref = read_mot(reference_mot, rotational)
    idx = [int(np.argmin(np.abs(times - t))) for t in ref.times]
    keep = np.abs(times[idx] - ref.times) < 1e-4
    per: dict[str, float] = {}
    for dof, coords in OPENCAP_DOFS.items():
        errs = []
        for c in coords:
            if c in names and c in ref.names:
                a = np.degrees(q[np.array(idx)[keep], list(names).index(c)])
                b = np.degrees(ref.column(c)[keep])
                if np.ptp(b) == 0.0 and np.all(b == 0.0) and np.ptp(a) == 0.0:
                    continue  # locked at zero in both: not a DoF of this model
                errs.append(np.abs(_wrap_deg(a - b)).mean())
        if errs:
            per[dof] = float(np.mean(errs))
    return TrialAccuracy(per, float(np.mean(list(per.values()))), int(keep.sum()), 0.0)


def evaluate_trial(neurik, trc_path: str | os.PathLike[str], reference_mot: str | os.PathLike[str]) -> TrialAccuracy:
    """Solve a TRC trial with ``neurik`` (a NeurIK) and compare with the reference motion."""
    data = read_trc(trc_path)
    t0 = time.perf_counter()
    res = neurik.solve(data.names, data.xyz, data.times)
    seconds = time.perf_counter() - t0
    acc = compare_to_reference(res.q.numpy(), data.times, res.coordinate_names, reference_mot, neurik.sk)
    return dataclasses.replace(acc, solve_seconds=seconds)
