"""Batched refinement reproduces OpenSim's InverseKinematicsTool (accuracy 1e-6) on real lab trials."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import shared_path
from opensim_biopose.cli.ik_cmd import job_from_setup, prepare_trial
from opensim_biopose.errors import InputError
from opensim_biopose.io.ik_setup import read_ik_setup
from opensim_biopose.io.mot import CoordinateData, compare_dofs, read_mot
from opensim_biopose.neurik.refine import RefineConfig, marker_errors, refine

torch.set_num_threads(1)

TRIALS = {
    # name: (folder, setup, start of the default test's 0.3 s slice)
    "gait2354_walk1": ("gait2354_walk1", "subject01_Setup_IK.xml", 0.4),
    "rajagopal_walk": ("rajagopal_walk", "ik_setup_walk.xml", 0.0),
}
# Tolerances of the task: OpenCap's 12 DoFs within 0.1 deg of OpenSim at accuracy 1e-6, and a
# marker RMS no worse than OpenSim's own by more than 0.5 mm.
MAX_MEAN_DOF_DIFF_DEG = 0.1
MAX_RMS_EXCESS_M = 0.5e-3

_SKELETONS: dict[str, object] = {}


def _skeleton(model_path):
    from opensim_biopose.kinematics import Skeleton

    key = str(model_path)
    if key not in _SKELETONS:
        _SKELETONS[key] = Skeleton.from_osim(model_path, dtype=torch.float64)
    return _SKELETONS[key]


def _check_trial(name: str, seconds: float | None, init: str) -> None:
    folder, setup_name, start = TRIALS[name]
    setup = read_ik_setup(shared_path("opensim", "trials", folder, setup_name))
    reference_path = shared_path("opensim", "trials", folder, "reference_ik_acc1e-6.mot")
    sk = _skeleton(setup.model_file)
    time_range = (start, start + seconds) if seconds else None
    trial = prepare_trial(job_from_setup(setup, time_range=time_range), sk)
    reference = read_mot(reference_path, sk)
    rows = [int(np.argmin(np.abs(reference.times - t))) for t in trial.times]
    assert np.abs(reference.times[rows] - trial.times).max() < 1e-3
    q_ref = torch.from_numpy(reference.select(sk.coordinate_names).values[rows])

    if init == "default":
        q0 = sk.coordinate_defaults.double().expand(len(trial.times), -1)
    else:  # a start a few degrees / centimetres off, as from a network
        gen = torch.Generator().manual_seed(0)
        q0 = q_ref + torch.randn(q_ref.shape, generator=gen, dtype=torch.float64) * 0.05
    result = refine(sk, trial.xyz, trial.weights, q0, coordinate_tasks=trial.targets)

    ours = CoordinateData(trial.times, tuple(sk.coordinate_names), result.q.numpy())
    comparison = compare_dofs(ours, CoordinateData(trial.times, tuple(sk.coordinate_names), q_ref.numpy()))
    assert len(comparison.per_dof_deg) >= 9, comparison.per_dof_deg
    assert comparison.mean_deg <= MAX_MEAN_DOF_DIFF_DEG, comparison.per_dof_deg

    xyz, w = torch.from_numpy(trial.xyz), torch.from_numpy(trial.weights)
    _, rms_opensim, _, _ = marker_errors(sk, q_ref, xyz, w)  # OpenSim's answer, our FK
    assert float(result.marker_rms.mean()) <= float(rms_opensim.mean()) + MAX_RMS_EXCESS_M
    assert 0.005 < float(rms_opensim.mean()) < 0.05  # sanity: lab marker errors are mm to cm
    assert bool(result.converged.all())


@pytest.mark.parametrize("name", list(TRIALS))
def test_refine_from_a_perturbed_start_matches_opensim_on_a_short_slice(name: str) -> None:
    _check_trial(name, 0.3, init="perturbed")


def test_refine_from_the_default_pose_matches_opensim_on_a_short_slice() -> None:
    # Rajagopal from the default pose needs the full trial: on a 0.1 s slice every frame settles
    # in the same neighbouring minimum (lumbar rotation ~2 deg off) and no frame can correct it.
    _check_trial("gait2354_walk1", 0.1, init="default")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRIALS))
def test_refine_matches_opensim_on_the_full_trial(name: str) -> None:
    _check_trial(name, None, init="default")


def test_refine_respects_bounds_locks_and_ignores_absent_markers() -> None:
    setup = read_ik_setup(shared_path("opensim", "trials", "gait2354_walk1", "subject01_Setup_IK.xml"))
    sk = _skeleton(setup.model_file)
    trial = prepare_trial(job_from_setup(setup, time_range=(0.5, 0.55)), sk)
    xyz = trial.xyz.copy()
    full = refine(sk, xyz, trial.weights, sk.coordinate_defaults.double().expand(len(trial.times), -1))
    # Knock a marker out in one frame: that frame still solves, with one marker fewer counted.
    used = trial.used
    xyz[1, used[0]] = np.nan
    gappy = refine(sk, xyz, trial.weights, full.q)
    assert bool(gappy.converged.all())
    assert not torch.isnan(gappy.q).any()
    moved = torch.rad2deg((gappy.q[1] - full.q[1]).abs()).max()
    assert moved < 5.0  # one of ~30 markers missing changes the pose by a few degrees at most

    # A bound placed right through the unconstrained answer holds exactly.
    ranges = sk.coordinate_ranges.clone()
    clamped = sk.coordinate_clamped.clone()
    knee = list(sk.coordinate_names).index("knee_angle_r")
    bound = float(full.q[:, knee].mean())
    below = full.q[:, knee] < bound
    assert below.any() and (~below).any()
    try:
        sk.coordinate_ranges[knee] = torch.tensor([bound, math.pi / 2], dtype=sk.coordinate_ranges.dtype)
        sk.coordinate_clamped[knee] = True
        bounded = refine(sk, trial.xyz, trial.weights, full.q)
    finally:
        sk.coordinate_ranges.copy_(ranges)
        sk.coordinate_clamped.copy_(clamped)
    assert float(bounded.q[:, knee].min()) >= bound - 1e-12
    assert torch.allclose(bounded.q[below, knee], torch.full_like(bounded.q[below, knee], bound))
    assert bool((bounded.marker_rms[below] >= full.marker_rms[below] - 1e-9).all())


def test_refine_config_selects_the_jacobian_and_all_agree() -> None:
    setup = read_ik_setup(shared_path("opensim", "trials", "gait2354_walk1", "subject01_Setup_IK.xml"))
    sk = _skeleton(setup.model_file)
    trial = prepare_trial(job_from_setup(setup, time_range=(0.8, 0.84)), sk)
    q0 = sk.coordinate_defaults.double().expand(len(trial.times), -1)
    a = refine(sk, trial.xyz, trial.weights, q0, config=RefineConfig(jacobian="forward_ad"))
    b = refine(sk, trial.xyz, trial.weights, q0, config=RefineConfig(jacobian="finite_difference"))
    c = refine(sk, trial.xyz, trial.weights, q0)  # analytic, the default
    d = refine(sk, trial.xyz, trial.weights, q0, config=RefineConfig(jacobian="analytic_jacobian"))
    assert torch.rad2deg((a.q - b.q).abs()).max() < 1e-3
    assert torch.rad2deg((a.q - c.q).abs()).max() < 1e-3
    assert torch.rad2deg((d.q - c.q).abs()).max() < 1e-6  # the same normal equations, formed two ways
    # Stage accounting: without sweeps, one batched pass per iteration of the slowest frame + 1.
    e = refine(sk, trial.xyz, trial.weights, q0, config=RefineConfig(temporal_sweeps=0))
    assert e.stages.solve_passes == int(e.iterations.max()) + 1
    assert e.stages.sweep_rounds == e.stages.sweep_passes == 0 and e.stages.solve_s > 0


def test_analytic_residual_jacobian_equals_forward_ad_with_coupled_tasks() -> None:
    """Marker rows and coordinate-task rows (a task on a coupled coordinate included) per column."""
    from opensim_biopose.neurik.refine import LINEARISERS, CoordinateTargets, JACOBIANS, _build_problem

    sk = _skeleton(shared_path("opensim", "models", "Rajagopal2016.osim"))
    gen = torch.Generator().manual_seed(1)
    frames, m = 3, len(sk.marker_names)
    lo, hi = sk.coordinate_ranges.double().unbind(1)
    q = lo + (hi - lo) * torch.rand(frames, len(lo), generator=gen, dtype=torch.float64)
    markers = sk.forward(q).markers + 0.01 * torch.randn(frames, m, 3, generator=gen, dtype=torch.float64)
    markers[0, 3] = float("nan")
    dependent = int(torch.nonzero(sk.coordinate_dependent)[0])
    tasks = CoordinateTargets(
        torch.tensor([dependent, sk.coordinate_index("hip_flexion_r")]),
        torch.tensor([2.0, 0.5], dtype=torch.float64), torch.tensor([0.1, 0.2], dtype=torch.float64),
    )
    problem = _build_problem(sk, markers, torch.rand(m, generator=gen, dtype=torch.float64), tasks)
    x = q[:, problem.free]
    r_a, jac_a = JACOBIANS["analytic"](sk, q, x, problem, 1e-7)
    r_f, jac_f = JACOBIANS["forward_ad"](sk, q, x, problem, 1e-7)
    assert torch.allclose(r_a, r_f, atol=1e-14)
    assert (jac_a - jac_f).abs().max() < 1e-10 * jac_f.abs().max()
    assert jac_a[:, :, -2].abs().max() > 0.1  # the coupled coordinate's task row depends on its independent
    # The solver's default: normal equations from marker moments plus the task rows, no Jacobian.
    moments = LINEARISERS["analytic"](sk, q, x, problem, 1e-7)
    reference = LINEARISERS["forward_ad"](sk, q, x, problem, 1e-7)
    assert torch.allclose(moments.cost, reference.cost, rtol=1e-12, atol=0)
    assert (moments.gradient - reference.gradient).abs().max() < 1e-10 * reference.gradient.abs().max()
    assert (moments.hessian - reference.hessian).abs().max() < 1e-10 * reference.hessian.abs().max()


def test_coordinate_tasks_pull_coordinates_to_manual_and_file_values() -> None:
    from opensim_biopose.io.ik_setup import CoordinateTask
    from opensim_biopose.neurik.refine import coordinate_targets

    setup = read_ik_setup(shared_path("opensim", "trials", "gait2354_walk1", "subject01_Setup_IK.xml"))
    sk = _skeleton(setup.model_file)
    trial = prepare_trial(job_from_setup(setup, time_range=(0.6, 0.65)), sk)
    t = len(trial.times)
    ramp = np.linspace(-0.2, 0.2, t)  # rad, a time-varying target "from a file"
    tasks = [
        CoordinateTask("lumbar_rotation", 1e6, True, "manual_value", 0.1),
        CoordinateTask("hip_rotation_r", 1e6, True, "from_file"),
        CoordinateTask("knee_angle_r", 1e6, False, "manual_value", 0.0),  # apply=false: ignored
    ]
    targets = coordinate_targets(sk, tasks, {"hip_rotation_r": ramp})
    q0 = sk.coordinate_defaults.double().expand(t, -1)
    free = refine(sk, trial.xyz, trial.weights, q0)
    pinned = refine(sk, trial.xyz, trial.weights, q0, coordinate_tasks=targets)
    names = list(sk.coordinate_names)
    lumbar, hip, knee = (names.index(n) for n in ("lumbar_rotation", "hip_rotation_r", "knee_angle_r"))
    assert torch.rad2deg((pinned.q[:, lumbar] - 0.1).abs()).max() < 0.05
    assert torch.rad2deg((pinned.q[:, hip] - torch.from_numpy(ramp)).abs()).max() < 0.05
    assert torch.rad2deg((pinned.q[:, knee] - free.q[:, knee]).abs()).max() < 5.0  # not pinned to 0
    assert bool((pinned.objective > free.objective).all())  # the tasks cost something
    with pytest.raises(InputError, match="unknown value_type"):
        coordinate_targets(sk, [CoordinateTask("knee_angle_r", 1.0, True, "guess")])


def test_refine_from_the_default_pose_follows_a_turning_subject_without_flipped_angles() -> None:
    """Exact synthetic markers of a subject turning through 235 deg while swaying: every frame
    must come out with the anatomical angle set, not an Euler-equivalent one (same pose, pelvis
    tilt + 180 deg, ...). Without the sweeps' jump check 17 of these 90 frames came out flipped."""
    setup = read_ik_setup(shared_path("opensim", "trials", "gait2354_walk1", "subject01_Setup_IK.xml"))
    sk = _skeleton(setup.model_file)
    frames, rate = 90, 60.0
    t = torch.arange(frames, dtype=torch.float64) / rate
    q = sk.coordinate_defaults.double().expand(frames, -1).clone()
    names = list(sk.coordinate_names)
    wave = torch.sin(2 * math.pi * 1.0 * t)
    for name, amplitude in (("hip_flexion_r", 0.8), ("hip_flexion_l", -0.8), ("pelvis_tilt", 0.3),
                            ("pelvis_list", 0.24), ("lumbar_bending", 0.3), ("hip_adduction_r", 0.3),
                            ("hip_rotation_l", 0.5)):
        q[:, names.index(name)] += amplitude * wave
    q[:, names.index("pelvis_rotation")] = torch.linspace(-0.5, 3.6, frames, dtype=torch.float64)
    truth = sk.forward(q)
    weights = torch.tensor([setup.marker_weights().get(n, 0.0) for n in sk.marker_names], dtype=torch.float64)
    result = refine(sk, truth.markers, weights, sk.coordinate_defaults.double().expand(frames, -1))
    assert float(result.marker_rms.max()) < 1e-5  # 10 micrometres: every frame at a global optimum
    times = t.numpy()
    reference = CoordinateData(times, tuple(names), truth.q_full.numpy())
    per_frame = [
        compare_dofs(CoordinateData(times[i:i + 1], tuple(names), result.q.numpy()[i:i + 1]), reference).mean_deg
        for i in range(frames)
    ]
    assert max(per_frame) < 0.01


def test_sweeps_offer_each_change_to_the_frames_within_reach() -> None:
    """Each frame within reach of a changed frame gets a start from the nearest change on each
    side (at most two candidates), so a run of stuck frames is crossed reach frames per sweep."""
    from opensim_biopose.neurik.refine import _reach_pairs

    changed, frames, reach = [3, 4, 15], 20, 3
    targets, sources = _reach_pairs(changed, frames, reach)
    pairs = list(zip(targets.tolist(), sources.tolist()))
    assert len(set(pairs)) == len(pairs)
    assert all(abs(t - s) <= reach and s in changed and 0 <= t < frames for t, s in pairs)
    assert max(targets.tolist().count(t) for t in set(targets.tolist())) <= 2
    near = {t for c in changed for t in range(c - reach, c + reach + 1) if 0 <= t < frames and t != c}
    assert set(targets.tolist()) == near | {3, 4}  # adjacent changes are offered to each other
