"""benchmarks/bench_ik.py's wide-range start comparison on a few frames (real model, real checkpoint).

The fast wide-range motion is made on the gait2354 subject01 model, so the committed
gait2354_walk1 NeurIK checkpoint applies; refinement started from NeurIK must reach the exact
synthetic pose and need fewer iterations than refinement from the default pose.
"""
from __future__ import annotations

import sys

import pytest
import torch

from conftest import ROOT, shared_path

sys.path.insert(0, str(ROOT / "benchmarks"))
torch.set_num_threads(1)


def test_neurik_start_converges_on_wide_range_motion_in_fewer_iterations(monkeypatch):
    shared_path("opensim", "trials", "gait2354_walk1", "subject01_Setup_IK.xml")
    import bench_ik

    weights = bench_ik.default_neurik_weights(["gait2354_walk1"])
    if not weights:
        pytest.skip("tests/checkpoints/gait2354_walk1.safetensors is absent")
    monkeypatch.setattr(bench_ik, "NEURIK_WEIGHTS", weights)
    outcomes = {o.label: o for o in bench_ik.wide_range_starts(frames=24, rate=120.0)}
    neurik, default = outcomes["NeurIK"], outcomes["default pose"]
    assert neurik.converged.all()
    assert not neurik.failed.any()  # marker RMS < 1 mm and OpenCap DoFs within 5 deg of the truth
    assert neurik.dof_err_deg.max() < 0.1  # degrees: exact markers, so the refined pose is the true one
    assert neurik.iterations.mean() < default.iterations.mean()


def test_default_start_on_wide_range_motion_reaches_the_true_pose(monkeypatch):
    """From the default pose, 120 frames of the fast wide-range motion: the temporal sweeps must
    carry the right minimum into every frame. They compare objectives between frames, which are
    ~0 on these exact markers, so they need the answers converged tightly: with refine's tol at
    1e-4 instead of 1e-5, 85 of these frames ended in wrong minima."""
    shared_path("opensim", "trials", "gait2354_walk1", "subject01_Setup_IK.xml")
    import bench_ik

    monkeypatch.setattr(bench_ik, "NEURIK_WEIGHTS", {})
    monkeypatch.setattr(bench_ik, "_neurik", lambda *args: None)  # the default-pose start only
    (default,) = bench_ik.wide_range_starts(frames=120, rate=120.0)
    assert default.label == "default pose"
    assert default.converged.all()
    assert not default.failed.any()  # marker RMS < 1 mm and OpenCap DoFs within 5 deg of the truth
