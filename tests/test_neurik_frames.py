"""NeurIK's per-frame inference ("frames": one-frame windows without the window machinery) must
give the windowed path's answer: on the committed lab checkpoints and real lab trials, and on a
random per-frame network that also predicts segment scales."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from conftest import ROOT, shared_path
from opensim_biopose.errors import InputError
from opensim_biopose.neurik import NeurIK, default_config, native
from opensim_biopose.neurik.checkpoint import CheckpointMeta
from opensim_biopose.neurik.frames import kabsch
from opensim_biopose.neurik.layout import build_layout
from opensim_biopose.neurik.model import build_neurik, frame_weights, run_frames

torch.set_num_threads(1)

TRIALS = {"gait2354_walk1": "subject01_Setup_IK.xml", "rajagopal_walk": "ik_setup_walk.xml"}
# The bar for "outputs unchanged": rotations in degrees, translations in metres.
MAX_DEG = 1e-4
MAX_M = 1e-7
SLICE_S = 0.5   # seconds of each trial: enough frames (60-100) to cover a gait phase, small runtime


def _trial(name: str):
    from opensim_biopose.cli.ik_cmd import job_from_setup, prepare_trial
    from opensim_biopose.io.ik_setup import read_ik_setup
    from opensim_biopose.kinematics import Skeleton

    setup = read_ik_setup(shared_path("opensim", "trials", name, TRIALS[name]))
    sk = Skeleton.from_osim(setup.model_file, dtype=torch.float64)
    trial = prepare_trial(job_from_setup(setup, time_range=(0.5, 0.5 + SLICE_S)), sk)
    names = [sk.marker_names[i] for i in trial.used]
    return sk, names, trial.xyz[:, trial.used].copy(), trial.times


def _gap(a: torch.Tensor, b: torch.Tensor, rotational: torch.Tensor) -> tuple[float, float]:
    """Largest |a - b| over rotational coordinates (deg, wrapped) and translational ones (m)."""
    d = (a - b).double()
    deg = torch.rad2deg(torch.atan2(torch.sin(d[:, rotational]), torch.cos(d[:, rotational]))).abs().max()
    metres = d[:, ~rotational].abs().max() if bool((~rotational).any()) else torch.tensor(0.0)
    return float(deg), float(metres)


@pytest.mark.parametrize("name", list(TRIALS))
def test_frames_path_matches_windows_path_on_lab_trials(name: str, monkeypatch) -> None:
    checkpoint = ROOT / "tests" / "checkpoints" / f"{name}.safetensors"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} is absent")
    sk, names, xyz, times = _trial(name)
    nk = NeurIK.load(checkpoint, sk)
    assert nk.frame_weights is not None, "the lab checkpoints are per-frame networks"
    # Missing markers exercise the fallbacks: root markers gone in some frames (fewer than 3
    # left: the heading frame), scattered gaps, a marker missing throughout, an empty frame.
    root_markers = [names.index(nk.marker_names[int(k)]) for k in nk.layout.heading_markers]
    xyz[4:9, root_markers[:-2]] = np.nan
    xyz[12:15, ::3] = np.nan
    xyz[:, names.index(nk.marker_names[-1])] = np.nan
    xyz[20] = np.nan
    rotational = sk.coordinate_is_rotational.bool()
    windows = nk.solve(names, xyz, times, inference="windows")
    frames = nk.solve(names, xyz, times, inference="frames")
    auto = nk.solve(names, xyz, times)
    monkeypatch.setattr(native, "AVAILABLE", False)                         # decoding with torch
    frames_torch = nk.solve(names, xyz, times, inference="frames")
    for label, q in (("compiled", frames.q), ("torch", frames_torch.q)):
        deg, metres = _gap(q, windows.q, rotational)
        assert deg <= MAX_DEG and metres <= MAX_M, f"{name}: frames ({label}) vs windows {deg:.2e} deg, {metres:.2e} m"
    assert torch.equal(auto.q, frames.q)                                    # "auto" takes the fast path
    keep = [i for i, n in enumerate(names) if n != nk.marker_names[0]]       # a checkpoint marker not given
    short = [nk.solve([names[i] for i in keep], xyz[:, keep], times, inference=k).q for k in ("windows", "frames")]
    deg, metres = _gap(short[1], short[0], rotational)
    assert deg <= MAX_DEG and metres <= MAX_M, f"{name}, a marker short: {deg:.2e} deg, {metres:.2e} m"
    assert np.array_equal(frames.empty_frames, windows.empty_frames) and bool(frames.empty_frames[20])
    assert frames.markers_used == windows.markers_used
    # The answer is a pose, not noise: the knees move through the gait cycle by tens of degrees.
    knee = [i for i, c in enumerate(sk.coordinate_names) if c.startswith("knee_angle")][0]
    assert math.degrees(float(frames.q[:, knee].max() - frames.q[:, knee].min())) > 10.0


def test_frames_path_on_a_trial_longer_than_one_network_batch():
    """Frames go through in the windowed path's chunks (api._WINDOW_FRAMES): a trial longer than one
    chunk gets the same answer, and each repetition of a frame the same coordinates."""
    from opensim_biopose.neurik import api

    checkpoint = ROOT / "tests" / "checkpoints" / "gait2354_walk1.safetensors"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} is absent")
    sk, names, xyz, times = _trial("gait2354_walk1")
    nk = NeurIK.load(checkpoint, sk)
    reps = api._WINDOW_FRAMES // xyz.shape[0] + 2
    long_xyz = np.tile(xyz, (reps, 1, 1))
    long_times = np.arange(long_xyz.shape[0]) / 100.0
    assert long_xyz.shape[0] > api._WINDOW_FRAMES
    windows = nk.solve(names, long_xyz, long_times, inference="windows")
    frames = nk.solve(names, long_xyz, long_times, inference="frames")
    deg, metres = _gap(frames.q, windows.q, sk.coordinate_is_rotational.bool())
    assert deg <= MAX_DEG and metres <= MAX_M, f"{deg:.2e} deg, {metres:.2e} m"
    once = nk.solve(names, xyz, times).q
    deg, metres = _gap(frames.q[-xyz.shape[0]:], once, sk.coordinate_is_rotational.bool())
    assert deg <= MAX_DEG and metres <= MAX_M


@pytest.fixture(scope="module")
def gait_sk():
    from opensim_biopose.kinematics import Skeleton

    return Skeleton.from_osim(shared_path("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim"))


def _random_neurik(sk, markers, closed_form: bool = True, **overrides) -> NeurIK:
    torch.manual_seed(0)
    cfg = default_config(sk, markers, d_model=48, frame_layers=2, **overrides)
    net = build_neurik(cfg)
    if net.scale_head is not None:
        with torch.no_grad():   # the scale head starts near zero: give it weights that matter
            net.scale_head.weight.normal_(0.0, 0.3)
    layout = build_layout(sk, markers)
    if not closed_form:    # as for a floating base without the closed form: Gauss-Newton root solve
        layout = dataclasses.replace(layout, root_closed_form=None)
    meta = CheckpointMeta(tuple(sk.coordinate_names), tuple(markers), (1.0,) * len(markers), sk.model_hash, cfg, {})
    return NeurIK(net, sk, layout, meta)


def _walk(sk, markers, frames: int = 40) -> np.ndarray:
    """(T, M, 3) markers of a moving, turning model (m)."""
    q = sk.coordinate_defaults.double().repeat(frames, 1)
    s = torch.linspace(0.0, 1.0, frames, dtype=torch.float64)
    for name, amplitude in (("knee_angle_r", -1.0), ("hip_flexion_l", 0.6), ("pelvis_rotation", 2.5),
                            ("pelvis_tx", 1.5), ("pelvis_tilt", 0.2)):
        q[:, sk.coordinate_index(name)] += amplitude * s
    with torch.no_grad():
        return sk.to(dtype=torch.float64).forward(q).markers[:, sk.marker_index(markers)].numpy().copy()


def test_run_frames_is_the_network_forward_with_every_head(gait_sk):
    markers = list(gait_sk.marker_names)[:20]
    nk = _random_neurik(gait_sk, markers, window=1, predict_scales=True)
    g = torch.Generator().manual_seed(1)
    t, m = 30, len(markers)
    relative = 0.3 * torch.randn(t, m, 3, generator=g)
    visible = torch.rand(t, m, generator=g) > 0.2
    relative = relative * visible.unsqueeze(-1)
    centroid = torch.randn(t, 3, generator=g)
    with torch.no_grad():
        ref = nk.net(relative[:, None], visible[:, None], centroid[:, None])
        out = run_frames(frame_weights(nk.net), relative, visible, centroid)
    for a, b in ((out.coords, ref.coords), (out.root_6d, ref.root_6d), (out.root_position, ref.root_position),
                 (out.log_scales, ref.log_scales)):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert float(ref.log_scales.std()) > 0.01    # the scale head is exercised, not a constant


def test_frames_path_matches_windows_path_with_scales(gait_sk):
    markers = list(gait_sk.marker_names)[:25]
    nk = _random_neurik(gait_sk, markers, window=1, predict_scales=True)
    xyz = _walk(gait_sk, markers)
    xyz[5:8, :6] = np.nan
    times = np.arange(xyz.shape[0]) / 100.0
    windows = nk.solve(markers, xyz, times, inference="windows")
    frames = nk.solve(markers, xyz, times, inference="frames")
    deg, metres = _gap(frames.q, windows.q, gait_sk.coordinate_is_rotational.bool())
    assert deg <= MAX_DEG and metres <= MAX_M, f"{deg:.2e} deg, {metres:.2e} m"
    torch.testing.assert_close(frames.scales, windows.scales, rtol=1e-9, atol=0.0)
    assert float((windows.scales.log()).abs().max()) > 0.01   # scale factors away from 1


def test_frames_path_matches_windows_path_with_gauss_newton_root(gait_sk):
    markers = list(gait_sk.marker_names)[:25]
    nk = _random_neurik(gait_sk, markers, closed_form=False, window=1, predict_scales=False)
    xyz = _walk(gait_sk, markers, frames=20)
    times = np.arange(xyz.shape[0]) / 100.0
    windows = nk.solve(markers, xyz, times, inference="windows")
    frames = nk.solve(markers, xyz, times, inference="frames")
    deg, metres = _gap(frames.q, windows.q, gait_sk.coordinate_is_rotational.bool())
    assert deg <= MAX_DEG and metres <= MAX_M, f"{deg:.2e} deg, {metres:.2e} m"


def test_frames_inference_needs_a_per_frame_network(gait_sk):
    markers = list(gait_sk.marker_names)[:12]
    windowed = _random_neurik(gait_sk, markers, window=4, temporal_layers=1, heads=2)
    assert windowed.frame_weights is None
    xyz = _walk(gait_sk, markers, frames=6)
    times = np.arange(6) / 100.0
    with pytest.raises(InputError, match="per-frame network"):
        windowed.solve(markers, xyz, times, inference="frames")
    with pytest.raises(InputError, match="unknown NeurIK inference"):
        windowed.solve(markers, xyz, times, inference="fastest")
    assert windowed.solve(markers, xyz, times).q.shape == (6, gait_sk.num_coordinates)
    with pytest.raises(ValueError, match="per-frame"):
        frame_weights(windowed.net)


def test_kabsch_without_weights_when_every_marker_is_seen():
    """kabsch drops its all-1 weights when every marker is seen; the weighted path (here forced by
    an extra, unseen marker) must give the same pose on real root markers."""
    sk, names, xyz, _ = _trial("rajagopal_walk")
    markers = [names.index(n) for n in ("R.ASIS", "L.ASIS", "R.PSIS", "L.PSIS")]
    points = torch.from_numpy(xyz[:, markers]).float()[None]                   # (1, T, 4, 3)
    reference = points[0, 0] - points[0, 0].mean(0)                             # a rigid cluster
    seen = torch.ones(points.shape[:3], dtype=torch.bool)
    rot, pos, ok = kabsch(points, seen, reference)
    padded = torch.cat([points, torch.full_like(points[:, :, :1], float("nan"))], 2)
    rot_w, pos_w, ok_w = kabsch(padded, torch.cat([seen, ~seen[:, :, :1]], 2), torch.cat([reference, reference[:1]]))
    assert bool(ok.all()) and torch.equal(ok, ok_w)
    torch.testing.assert_close(rot, rot_w, rtol=0, atol=1e-6)
    torch.testing.assert_close(pos, pos_w, rtol=0, atol=1e-6)
    # and it is the pose: the cluster moves through the lab, the first frame is the reference itself
    assert float((rot[0, 0] - torch.eye(3)).abs().max()) < 1e-5
    assert float((pos[0, -1] - pos[0, 0]).norm()) > 0.3


def test_bench_neurik_times_both_paths_on_the_same_answer():
    """benchmarks/bench_neurik.py: both inference paths timed on a lab trial, same coordinates."""
    import sys

    shared_path("opensim", "trials", "gait2354_walk1", "subject01_Setup_IK.xml")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_neurik

    loaded = bench_neurik._trial("gait2354_walk1")
    if loaded is None:
        pytest.skip("tests/checkpoints/gait2354_walk1.safetensors is absent")
    sk, nk, names, xyz, times = loaded
    timings = bench_neurik._time(nk, names, xyz, times, repeats=1)
    assert set(timings) == set(bench_neurik.INFERENCES)
    for t in timings.values():
        assert 0.0 < t.net_s < t.total_s and 0.0 < t.root_s < t.total_s
        assert t.q.shape == (len(times), sk.num_coordinates)
    deg, metres = bench_neurik._gap(sk, timings["frames"].q, timings["windows"].q)
    assert deg <= MAX_DEG and metres <= MAX_M
