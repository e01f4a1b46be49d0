"""NeurIK synthetic data: ranges, forward kinematics, offsets, missing markers (real gait2354 model)."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import shared_path
from opensim_biopose.neurik.frames import estimate_heading, kabsch, rotation_6d_to_matrix, matrix_to_rotation_6d, yaw_matrix
from opensim_biopose.neurik.layout import build_layout
from opensim_biopose.neurik.synth import PATTERNS, SynthConfig, SyntheticMotion

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def gait_sk():
    from opensim_biopose.kinematics import Skeleton

    path = shared_path("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim")
    return Skeleton.from_osim(path).to(dtype=torch.float32)


@pytest.fixture(scope="module")
def raj_sk():
    from opensim_biopose.kinematics import Skeleton

    path = shared_path("opensim", "trials", "rajagopal_walk", "subject_scaled_walk.osim")
    return Skeleton.from_osim(path).to(dtype=torch.float32)


def _batch(sk, b=64, seed=0, **cfg):
    layout = build_layout(sk, list(sk.marker_names))
    synth = SyntheticMotion(sk, layout, SynthConfig(**cfg))
    return layout, synth.sample(b, torch.Generator().manual_seed(seed))


def test_layout_finds_floating_base_and_heading_markers(raj_sk):
    layout = build_layout(raj_sk, list(raj_sk.marker_names))
    names = [raj_sk.coordinate_names[i] for i in layout.root]
    assert sorted(names) == sorted(["pelvis_tilt", "pelvis_list", "pelvis_rotation", "pelvis_tx", "pelvis_ty", "pelvis_tz"])
    assert raj_sk.body_names[layout.root_body] == "pelvis"
    assert raj_sk.coordinate_names[layout.yaw_coordinate] == "pelvis_rotation"
    predicted = {raj_sk.coordinate_names[i] for i in layout.predicted}
    assert "knee_angle_r_beta" not in predicted and "subtalar_angle_r" not in predicted  # coupled, locked
    assert {"hip_flexion_r", "knee_angle_r", "lumbar_extension"} <= predicted


def test_sampled_coordinates_stay_in_clamped_ranges(raj_sk):
    layout, batch = _batch(raj_sk, b=96)
    q = batch.q
    lo, hi = layout.lower.float(), layout.upper.float()
    clamped = layout.clamped & ~torch.as_tensor(raj_sk.coordinate_dependent)
    assert bool(((q >= lo - 1e-6) | ~clamped).all()) and bool(((q <= hi + 1e-6) | ~clamped).all())
    locked = torch.as_tensor(raj_sk.coordinate_locked)
    assert torch.allclose(q[..., locked], layout.default_q[locked].float().expand_as(q[..., locked]))


def test_wide_coverage_includes_lumbar_extension_of_minus_18_degrees(raj_sk):
    _, batch = _batch(raj_sk, b=256)
    lumbar = batch.q[..., raj_sk.coordinate_index("lumbar_extension")].flatten() * 180 / math.pi
    near = ((lumbar - (-18.0)).abs() < 3.0).float().mean().item()
    assert near > 0.03, f"only {near:.1%} of frames within 3 deg of -18 deg lumbar extension"
    knee = batch.q[..., raj_sk.coordinate_index("knee_angle_r")].flatten() * 180 / math.pi
    assert knee.max() > 90.0 and knee.min() < 10.0


def test_lab_preset_gait_covers_each_lab_subjects_trunk_lean(gait_sk):
    import dataclasses

    from opensim_biopose.neurik.synth import SUBJECT_SCALED

    layout = build_layout(gait_sk, list(gait_sk.marker_names))
    cfg = dataclasses.replace(SUBJECT_SCALED, pattern_weights=(("gait", 1.0),))
    batch = SyntheticMotion(gait_sk, layout, cfg).sample(256, torch.Generator().manual_seed(0))
    lumbar = batch.q[..., gait_sk.coordinate_index("lumbar_extension")].flatten() * 180 / math.pi
    for lean in (-19.0, -10.0, 0.0):       # gait2354 lab subject, Rajagopal lab subject, upright
        near = ((lumbar - lean).abs() < 3.0).float().mean().item()
        assert near > 0.05, f"only {near:.1%} of gait frames within 3 deg of {lean} deg lumbar extension"


def test_clean_markers_are_rigid_motion_of_forward_kinematics(gait_sk):
    layout, batch = _batch(gait_sk, b=4, global_scale=0.0, body_scale=0.0, axis_scale=0.0)
    q = batch.q.reshape(-1, gait_sk.num_coordinates)
    fk = gait_sk.forward(q).markers[:, layout.marker_index].reshape(batch.clean_markers.shape)
    # Placement is a rigid motion per window: pairwise distances are unchanged (mm tolerance).
    def pairwise(x):
        x = x.double().flatten(0, 1)
        return (x.unsqueeze(1) - x.unsqueeze(2)).norm(dim=-1)
    assert (pairwise(fk) - pairwise(batch.clean_markers)).abs().max().item() < 1e-4


def test_offsets_are_systematic_and_noise_and_missing_markers_present(gait_sk):
    _, batch = _batch(gait_sk, b=64, noise_std_range=(0.0, 0.0), missing_marker_prob=0.1)
    diff = batch.markers - batch.clean_markers                             # (B,T,M,3), NaN where missing
    dist = diff.norm(dim=-1)
    typical = dist.nanmedian().item()
    assert 0.008 < typical < 0.03, f"median marker offset {typical * 1000:.1f} mm"
    # Constant over the window in the body frame: its length does not change over time.
    spread = (dist.nan_to_num(0).amax(1) - torch.where(dist.isnan(), 1e9, dist).amin(1)).clamp_min(0)
    assert spread.median().item() < 1e-4
    assert (~batch.visible).any() and bool(torch.isnan(batch.markers[~batch.visible]).all())
    assert bool(torch.isfinite(batch.markers[batch.visible]).all())


def test_every_pattern_produces_finite_markers(gait_sk):
    for name in PATTERNS:
        _, batch = _batch(gait_sk, b=8, pattern_weights=((name, 1.0),))
        assert bool(torch.isfinite(batch.clean_markers).all()), name


def test_heading_estimate_recovers_a_known_yaw():
    ref = torch.tensor([[0.0, 1.0, 0.12], [0.0, 1.0, -0.12], [-0.15, 1.05, 0.0]], dtype=torch.float64)
    for psi in (-2.5, -0.3, 0.0, 1.2, 3.0):
        pts = (ref @ yaw_matrix(torch.tensor(psi, dtype=torch.float64)).T + torch.tensor([2.0, 0.0, -1.0])).reshape(1, 1, 3, 3)
        est = estimate_heading(pts, torch.ones(1, 1, 3, dtype=torch.bool), ref)
        assert abs(math.remainder(est.item() - psi, 2 * math.pi)) < 1e-9


def test_kabsch_recovers_a_rigid_pose():
    ref = torch.tensor([[0.02, 0.03, 0.13], [0.03, 0.03, -0.13], [-0.17, 0.04, 0.0], [-0.1, 0.1, 0.05]], dtype=torch.float64)
    rot = yaw_matrix(torch.tensor(2.0, dtype=torch.float64)) @ torch.linalg.matrix_exp(
        torch.tensor([[0, -0.2, 0.1], [0.2, 0, -0.3], [-0.1, 0.3, 0]], dtype=torch.float64))
    pos = torch.tensor([1.0, 0.9, -2.0], dtype=torch.float64)
    pts = (ref @ rot.T + pos).reshape(1, 1, 4, 3)
    visible = torch.tensor([[[True, True, False, True]]])
    r, p, ok = kabsch(pts, visible, ref)
    assert bool(ok.all())
    assert torch.allclose(r[0, 0], rot, atol=1e-9) and torch.allclose(p[0, 0], pos, atol=1e-9)


def test_6d_rotation_round_trip():
    r = yaw_matrix(torch.tensor(0.7)) @ torch.linalg.matrix_exp(torch.tensor([[0, -0.3, 0.2], [0.3, 0, -0.1], [-0.2, 0.1, 0]]))
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(r)), r, atol=1e-6)


def test_low_weight_markers_get_larger_offsets(gait_sk):
    names = list(gait_sk.marker_names)
    layout = build_layout(gait_sk, names)
    weights = torch.ones(len(names))
    weights[: len(names) // 2] = 10.0
    synth = SyntheticMotion(gait_sk, layout, SynthConfig(noise_std_range=(0.0, 0.0), large_offset_prob=0.0,
                                                         missing_marker_prob=0.0, dropout_prob=0.0,
                                                         missing_frame_prob=0.0), marker_weights=weights)
    batch = synth.sample(32, torch.Generator().manual_seed(3))
    dist = (batch.markers - batch.clean_markers).norm(dim=-1)
    trusted, loose = dist[..., : len(names) // 2].median().item(), dist[..., len(names) // 2:].median().item()
    assert loose > 2.0 * trusted, (trusted, loose)


def test_gait_pattern_uses_each_models_sign_conventions(raj_sk, gait_sk):
    for sk, knee_sign in ((raj_sk, 1.0), (gait_sk, -1.0)):
        _, batch = _batch(sk, b=48, pattern_weights=(("gait", 1.0),))
        knee = batch.q[..., sk.coordinate_index("knee_angle_r")] * 180 / math.pi * knee_sign
        ankle = batch.q[..., sk.coordinate_index("ankle_angle_r")] * 180 / math.pi
        assert knee.max() > 45.0 and knee.min() > -10.0          # flexion up to ~60 deg in swing
        assert ankle.min() < -15.0 and ankle.max() < 20.0         # push-off plantarflexion, mild dorsiflexion
