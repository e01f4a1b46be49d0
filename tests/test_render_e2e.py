"""Rendered ground truth end to end: the shipped demo clip, the oracle IK of rendered markers, and
the pipeline on a short rendered clip against it (loose bounds; figures in benchmarks/bench_rendered.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from opensim_biopose.demo import DEMO_METADATA, DEMO_VIDEO, load_truth

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def anny():
    pytest.importorskip("anny")
    from opensim_biopose.body.anny_model import AnnyBody
    from opensim_biopose.body.markers import load_marker_set

    return AnnyBody(), load_marker_set("anny-pig53")


def test_shipped_demo_video_matches_its_metadata() -> None:
    import cv2

    truth = load_truth(DEMO_METADATA)
    assert DEMO_VIDEO.stat().st_size <= 2_000_000
    cap = cv2.VideoCapture(str(DEMO_VIDEO))
    try:
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    assert frames == len(truth.times) == truth.markers.shape[0] and fps == pytest.approx(truth.fps)
    assert size == (truth.camera["width"], truth.camera["height"])
    assert truth.markers.shape[1:] == (53, 3)
    assert 1.4 < truth.stature_m < 2.0 and np.nanmax(truth.markers[..., 1]) < truth.stature_m
    # markers stand on the floor (heels a few cm up) and project inside the image
    assert 0.0 <= np.nanmin(truth.markers[..., 1]) < 0.1
    ext = np.asarray(truth.camera["world_to_camera"])
    cam = truth.markers @ ext[:3, :3].T + ext[:3, 3]
    u = truth.camera["fx"] * cam[..., 0] / cam[..., 2] + truth.camera["cx"]
    v = truth.camera["fy"] * cam[..., 1] / cam[..., 2] + truth.camera["cy"]
    assert (u > 0).all() and (u < size[0]).all() and (v > 0).all() and (v < size[1]).all()


def test_mediapipe_detects_the_person_in_every_demo_frame() -> None:
    pytest.importorskip("mediapipe")
    from opensim_biopose.detect import detect_video

    seq = detect_video(DEMO_VIDEO)
    assert seq.num_frames == 105 and seq.detected.all()


def test_oracle_ik_of_rendered_markers_recovers_the_body_motion(anny) -> None:
    """The truth chain: mesh virtual markers -> scaled default model -> IK. The marker residual is
    the mesh/model placement disagreement, and the knee and hip ranges are the body's."""
    from opensim_biopose.render.motions import motion_pose, sample_adult_shapes
    from opensim_biopose.render.scene import pose_sequence
    from opensim_biopose.render.truth import oracle_ik

    body, markers = anny
    times = torch.arange(24, dtype=torch.float32) / 24.0 * (1 / 0.9)       # one gait stride
    motion = motion_pose("gait", body, times)
    seq = pose_sequence(body, motion, sample_adult_shapes(body, 1, seed=5)[0], markers)
    oracle = oracle_ik(seq.marker_names, seq.markers)
    assert np.nanmax(oracle.marker_rms_m) < 0.012
    names = list(oracle.coordinate_names)
    knee = np.degrees(oracle.q[:, names.index("knee_angle_r")])
    hip = np.degrees(oracle.q[:, names.index("hip_flexion_r")])
    anny_knee = np.degrees(motion.pose[:, body.pose_joint_names.index("lowerleg01.R"), 0].numpy())
    anny_hip = -np.degrees(motion.pose[:, body.pose_joint_names.index("upperleg01.R"), 0].numpy())
    assert np.ptp(knee) == pytest.approx(np.ptp(anny_knee), abs=8.0)
    assert np.ptp(hip) == pytest.approx(np.ptp(anny_hip), abs=8.0)
    assert np.corrcoef(knee, anny_knee)[0, 1] > 0.97 and np.corrcoef(hip, anny_hip)[0, 1] > 0.97


def test_pipeline_on_a_short_rendered_side_view_is_near_the_oracle(anny, tmp_path) -> None:
    from opensim_biopose.render.offscreen import gl_unavailable_reason

    reason = gl_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    pytest.importorskip("mediapipe")
    from opensim_biopose.detect.frontend import DetectConfig
    from opensim_biopose.pipeline import PipelineConfig, ReportStageConfig, SolverConfig, SubjectConfig, run_pipeline
    from opensim_biopose.render.clip import ClipSpec, render_clip
    from opensim_biopose.render.motions import sample_adult_shapes
    from opensim_biopose.render.truth import OPENCAP_DOFS, dof_rmse_deg, oracle_ik
    from opensim_biopose.render.video import write_video

    body, markers = anny
    clip = render_clip(body, markers, sample_adult_shapes(body, 1, seed=11)[0],
                       ClipSpec(motion="gait", view="side", seconds=10 / 30))
    video = tmp_path / "gait_side.mp4"
    write_video(clip.frames, video, clip.spec.fps)
    # A calibrated camera and a measured stature, as in a lab (OpenCap asks for the height too).
    config = PipelineConfig(detect=DetectConfig(focal_length_px=clip.rig.intrinsics.focal_px),
                            subject=SubjectConfig(height_m=clip.stature_m),
                            solver=SolverConfig(train=False), report=ReportStageConfig(enabled=False))
    result = run_pipeline(video, config)
    oracle = oracle_ik(clip.sequence.marker_names, clip.sequence.markers)
    assert result.num_frames == 10 and tuple(result.coordinate_names) == oracle.coordinate_names
    rmse = dof_rmse_deg(oracle.coordinate_names, result.q, oracle.q, OPENCAP_DOFS)
    # Loose: the benchmark measures ~6 deg mean on 45 deg gait; a sign or side error gives 20+.
    assert np.mean(list(rmse.values())) < 12.0, rmse
    assert rmse["knee_angle"] < 20.0 and rmse["hip_flexion"] < 20.0, rmse
    assert all(math.isfinite(v) for v in rmse.values())
