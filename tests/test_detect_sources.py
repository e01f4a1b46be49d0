"""Precomputed keypoint sources (biopose-precomputed): OpenPose JSON, COCO JSON, .trc."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from opensim_biopose.cli.main import main
from opensim_biopose.detect.frontend import DetectConfig, detect_video
from opensim_biopose.detect.keypoint_file import load_keypoints
from opensim_biopose.detect.layouts import COCO17, OPENPOSE_BODY25
from opensim_biopose.detect.postprocess import PostprocessConfig
from opensim_biopose.errors import InputError

FPS = 30.0
UNFILTERED = DetectConfig(postprocess=PostprocessConfig(filter=False))


def walker(t: float, num_kp: int, x0: float = 400.0, scale: float = 1.0) -> np.ndarray:
    """(K, 2) pixels: a column of keypoints 10 px apart, drifting 60 px/s to the right."""
    k = np.arange(num_kp)
    return np.stack([x0 + 60 * t + 0 * k, 200 + 10 * scale * k], axis=1)


def flat(xy: np.ndarray, conf: float = 0.9) -> list[float]:
    return np.concatenate([xy, np.full((len(xy), 1), conf)], axis=1).ravel().tolist()


def write_openpose(folder: Path, frames: int = 12) -> np.ndarray:
    """OpenPose BODY_25 files; a small bystander in every frame, the walker missing in frame 5,
    keypoint 3 zeroed (OpenPose's 'not found') in frame 7. Returns the walker's truth (T, 25, 2)."""
    folder.mkdir()
    truth = np.stack([walker(i / FPS, 25) for i in range(frames)])
    for i in range(frames):
        bystander = {"pose_keypoints_2d": flat(walker(0, 25, x0=50, scale=0.3), 0.8)}
        people = [bystander]
        if i != 5:
            kp = flat(truth[i])
            if i == 7:
                kp[9:12] = [0.0, 0.0, 0.0]
            people.insert(i % 2, {"pose_keypoints_2d": kp})
        (folder / f"clip_{i:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    return truth


def test_openpose_json_picks_walker_and_fills_dropouts(tmp_path: Path) -> None:
    truth = write_openpose(tmp_path / "op")
    seq = detect_video(tmp_path / "op", "openpose-json", UNFILTERED)
    assert seq.layout == OPENPOSE_BODY25 and seq.num_frames == 12
    assert not seq.detected[5] and seq.detected.sum() == 11
    assert seq.interpolated[5].all() and seq.interpolated[7, 3]   # 1-frame gaps filled
    np.testing.assert_allclose(seq.xy, truth, atol=1e-6)           # linear motion: exact
    np.testing.assert_allclose(seq.times[1], 1 / FPS)


def test_openpose_fps_option_and_errors(tmp_path: Path) -> None:
    write_openpose(tmp_path / "op", frames=4)
    seq = detect_video(tmp_path / "op", "openpose-json", DetectConfig(detector_options={"fps": 50.0}))
    np.testing.assert_allclose(np.diff(seq.times), 0.02)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .json"):
        detect_video(tmp_path / "empty", "openpose-json")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "f_keypoints.json").write_text("{not json")
    with pytest.raises(InputError, match="f_keypoints.json"):
        detect_video(bad, "openpose-json")
    (bad / "f_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 30}]}))
    with pytest.raises(InputError, match="30 values"):
        detect_video(bad, "openpose-json")


def test_coco_results_and_dataset(tmp_path: Path) -> None:
    truth = np.stack([walker(i / FPS, 17) for i in range(6)])
    results = [{"image_id": 100 + i, "category_id": 1, "keypoints": flat(truth[i], 0.95), "score": 0.9}
               for i in range(6)]
    (tmp_path / "res.json").write_text(json.dumps(results))
    seq = detect_video(tmp_path / "res.json", "coco-json", UNFILTERED)
    assert seq.layout == COCO17 and seq.detected.all()
    np.testing.assert_allclose(seq.xy, truth, atol=1e-6)
    np.testing.assert_allclose(seq.confidence, 0.95)

    anns = [{"id": i, "image_id": i + 1, "keypoints": flat(truth[i], 2), "bbox": [300, 150, 300, 300]}
            for i in range(6) if i != 2]
    dataset = {"images": [{"id": i + 1, "width": 960, "height": 540} for i in range(6)],
               "annotations": anns, "categories": [{"id": 1, "keypoints": list(COCO17.keypoint_names)}]}
    (tmp_path / "gt.json").write_text(json.dumps(dataset))
    seq = detect_video(tmp_path / "gt.json", "coco-json", UNFILTERED)
    assert seq.image_size == (960, 540) and seq.detected.tolist() == [True, True, False, True, True, True]
    np.testing.assert_allclose(seq.xy[2], truth[2], atol=1e-6)      # interpolated
    np.testing.assert_allclose(seq.boxes[0], [300, 150, 600, 450])
    (tmp_path / "odd.json").write_text(json.dumps({"something": 1}))
    with pytest.raises(InputError, match="not COCO"):
        detect_video(tmp_path / "odd.json", "coco-json")


TRC_NAMES = ("Hip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "RBigToe")


def write_trc(path: Path, xyz: np.ndarray, units: str, rate: float = 60.0) -> None:
    """A Pose2Sim-style .trc (tab separated, marker names in the header)."""
    t, m = xyz.shape[:2]
    lines = [f"PathFileType\t4\t(X/Y/Z)\t{path.name}",
             "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
             f"{rate:g}\t{rate:g}\t{t}\t{m}\t{units}\t{rate:g}\t1\t{t}",
             "Frame#\tTime\t" + "\t\t\t".join(TRC_NAMES) + "\t\t",
             "\t\t" + "\t".join(f"X{i + 1}\tY{i + 1}\tZ{i + 1}" for i in range(m)), ""]
    for i in range(t):
        lines.append(f"{i + 1}\t{i / rate:.6f}\t" + "\t".join(f"{v:.6f}" for v in xyz[i].ravel()))
    path.write_text("\n".join(lines) + "\n")


def test_trc_pixels_y_up_are_flipped_and_named(tmp_path: Path) -> None:
    t = np.arange(20) / 60.0
    image_xy = np.stack([walker(ti, len(TRC_NAMES)) for ti in t])
    xyz = np.concatenate([image_xy * [1, -1], np.zeros((20, len(TRC_NAMES), 1))], axis=2)   # Sports2D y-up
    write_trc(tmp_path / "kp_px.trc", xyz, "px")
    seq = detect_video(tmp_path / "kp_px.trc", "trc-keypoints", UNFILTERED)
    assert seq.layout.keypoint_names[:4] == ("mid_hip", "right_hip", "right_knee", "right_ankle")
    assert seq.layout.keypoint_names[-1] == "right_big_toe"
    np.testing.assert_allclose(seq.xy, image_xy, atol=1e-4)
    assert seq.fps == pytest.approx(60.0)


def test_trc_metres_go_to_world(tmp_path: Path) -> None:
    xyz = np.random.default_rng(1).normal(0, 0.5, (10, len(TRC_NAMES), 3)) + [0, 1, 0]
    write_trc(tmp_path / "kp_mm.trc", xyz * 1000, "mm", rate=100)
    seq = detect_video(tmp_path / "kp_mm.trc", "trc-keypoints", UNFILTERED)
    np.testing.assert_allclose(seq.world_xyz, xyz, atol=1e-5)       # metres
    assert seq.detected.all() and np.isnan(seq.xy).all()
    (tmp_path / "bad.trc").write_text("hello\n")
    with pytest.raises(InputError, match="bad.trc"):
        detect_video(tmp_path / "bad.trc", "trc-keypoints")


def test_detect_cli_with_keypoint_source(tmp_path: Path) -> None:
    truth = write_openpose(tmp_path / "op")
    out = tmp_path / "kp.npz"
    assert main(["detect", str(tmp_path / "op"), "--detector", "openpose-json", "--out", str(out)]) == 0
    seq = load_keypoints(out)
    assert seq.detected.sum() == 11
    # a straight-line drift passes the low-pass unchanged (well inside the run, px)
    np.testing.assert_allclose(seq.xy[3:9], truth[3:9], atol=0.5)
    assert (tmp_path / "kp_overlay.png").stat().st_size > 0
