"""NeurIK training targets: OpenSim IK's answer to synthetic markers ("ik"), the replay pool.

Real gait2354 lab model and IK setup; the "ik" target is checked against OpenSim's own
InverseKinematicsTool on the same synthetic markers.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from conftest import shared_path
from opensim_biopose.cli.train_cmd import setup_marker_weights
from opensim_biopose.io.ik_setup import read_coordinate_tasks
from opensim_biopose.neurik.layout import build_layout
from opensim_biopose.neurik.refine import coordinate_targets
from opensim_biopose.neurik.synth import SUBJECT_SCALED, SyntheticMotion, WindowPool
from opensim_biopose.neurik.targets import IKTargetConfig, IKTargets, Targets

torch.set_num_threads(1)

TRIAL = ("opensim", "trials", "gait2354_walk1")
# Lab-like windows without gaps (OpenSim and refine() skip missing markers alike, but a window
# missing a foot's markers has no unique answer to compare).
GAIT = dataclasses.replace(SUBJECT_SCALED, window=6, fps_range=(60.0, 60.0), pattern_weights=(("gait", 1.0),),
                           missing_marker_prob=0.0, dropout_prob=0.0, missing_frame_prob=0.0)


@pytest.fixture(scope="module")
def lab():
    from opensim_biopose.kinematics import Skeleton

    model = shared_path(*TRIAL, "subject01_simbody.osim")
    setup = shared_path(*TRIAL, "subject01_Setup_IK.xml")
    sk = Skeleton.from_osim(model)
    weights = setup_marker_weights(str(setup))
    names = [m for m in weights if weights[m] > 0 and m in sk.marker_names]
    tasks = coordinate_targets(sk, [t for t in read_coordinate_tasks(setup) if t.apply])
    return sk, model, setup, names, [weights[m] for m in names], tasks


def _synth(lab, cfg, iterations: int | None):
    sk, _, _, names, w, tasks = lab
    sk32 = sk.to(dtype=torch.float32)
    layout = build_layout(sk32, names)
    retarget = IKTargets(sk, layout, torch.tensor(w), tasks, IKTargetConfig(iterations=iterations)) if iterations else None
    return SyntheticMotion(sk32, layout, cfg, marker_weights=torch.tensor(w), retarget=retarget,
                           held=(tasks.index, tasks.values)), layout


def _deg(a: torch.Tensor) -> float:
    return math.degrees(float(a.abs().mean()))


def test_clean_markers_give_back_the_generating_pose(lab):
    clean = dataclasses.replace(GAIT, global_scale=0.0, body_scale=0.0, axis_scale=0.0, offset_std=0.0,
                                large_offset_prob=0.0, noise_std_range=(0.0, 0.0))
    fk, layout = _synth(lab, clean, None)
    ik, _ = _synth(lab, clean, 4)
    a, b = fk.sample(4, torch.Generator().manual_seed(3)), ik.sample(4, torch.Generator().manual_seed(3))
    pred = layout.predicted
    assert _deg(a.q[..., pred] - b.q[..., pred]) < 0.01
    assert float((b.clean_markers - b.markers).norm(dim=-1).max()) < 1e-3      # m, target markers = observed


def test_ik_target_lowers_the_ik_objective_of_offset_markers(lab):
    sk, _, _, names, w, tasks = lab
    fk, layout = _synth(lab, GAIT, None)
    a = fk.sample(4, torch.Generator().manual_seed(5))
    model = sk.forward(a.q.reshape(-1, a.q.shape[-1]).double()).markers[:, layout.marker_index]
    g = torch.Generator().manual_seed(1)
    offsets = 0.015 * torch.randn(1, len(names), 3, generator=g, dtype=torch.float64)       # m, systematic
    observed = (model + offsets).reshape(*a.markers.shape).float()
    visible = torch.ones(observed.shape[:3], dtype=torch.bool)
    ik = IKTargets(sk, layout, torch.tensor(w), tasks, IKTargetConfig(iterations=8))
    out = ik(observed, visible, Targets(a.q, a.clean_markers, torch.zeros(0), a.log_scales))
    wt = torch.tensor(w, dtype=torch.float64)

    def objective(markers):
        return ((markers.double() - observed.double()).norm(dim=-1) ** 2 * wt).sum(-1)

    assert bool((objective(out.clean_markers) < objective(model.reshape(observed.shape))).all())
    rot = layout.predicted[layout.rotational[layout.predicted]]
    assert _deg(a.q[..., rot] - out.q[..., rot]) > 0.3          # 15 mm offsets bend IK's answer by degrees
    assert float(out.log_scales.abs().max()) == 0.0             # IK on the given model: no scaling


def test_ik_target_matches_opensim_inverse_kinematics(lab, tmp_path):
    from opensim_biopose.io.mot import read_mot
    from opensim_biopose.io.opensim_tools import run_ik_tool
    from opensim_biopose.io.trc import MarkerData, write_trc

    sk, model, setup, names, _, _ = lab
    ik, layout = _synth(lab, GAIT, 30)
    batch = ik.sample(1, torch.Generator().manual_seed(11))
    times = np.arange(GAIT.window) / 60.0
    trc = write_trc(tmp_path / "synthetic.trc", MarkerData(times, tuple(names), batch.markers[0].double().numpy(), 60.0))
    mot = run_ik_tool(model, trc, tmp_path / "ik.mot", setup=setup, accuracy=1e-6)
    ref = read_mot(mot, sk)
    rot = [int(j) for j in layout.predicted[layout.rotational[layout.predicted]]]
    cols = np.stack([ref.column(sk.coordinate_names[j]) for j in rot], -1)
    diff = np.degrees(np.abs(cols - batch.q[0][:, rot].double().numpy()))
    assert diff.mean() < 0.1, diff.mean(0)


def test_pool_refreshes_its_oldest_windows_and_draws_batches(lab):
    fk, _ = _synth(lab, GAIT, None)
    g = torch.Generator().manual_seed(0)
    pool = WindowPool(fk, size=10, refresh=3, g=g, chunk_frames=4 * GAIT.window)
    before = pool.data.q.clone()
    batch = pool.draw(5, g)
    assert batch.markers.shape == (5, GAIT.window, len(lab[3]), 3) and batch.root.rotation.shape[:2] == (5, GAIT.window)
    changed = (pool.data.q != before).flatten(1).any(1)
    assert changed.tolist() == [True] * 3 + [False] * 7
    pool.draw(5, g)
    assert pool.next == 6
