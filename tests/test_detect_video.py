"""The video front end end to end: MediaPipe on the real video, plugins through the CLI,
bad input, a detector that raises, a video with nobody in it."""
from __future__ import annotations

import logging
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from opensim_biopose import hookimpl
from opensim_biopose.cli.main import main
from opensim_biopose.detect.frontend import DetectConfig, detect_video
from opensim_biopose.detect.keypoint_file import load_keypoints, save_keypoints
from opensim_biopose.detect.overlay import LEFT_COLOUR, RIGHT_COLOUR, contact_sheet
from opensim_biopose.detect.types import Detector, FrameDetection, KeypointLayout
from opensim_biopose.errors import InputError
from opensim_biopose.plugins import add_plugin, reset_registry

VIDEO = ("videos", "pose2sim_singleperson_cam01.mp4")
# The default test: 30 frames (0.5 s) at a 640 px longer side keeps it to a few seconds.
QUICK = DetectConfig(max_side=640, max_frames=30)


@pytest.fixture(scope="module")
def real() -> tuple[Path, object]:
    path = shared_path(*VIDEO)
    return path, detect_video(path, "mediapipe", QUICK)


def test_mediapipe_finds_the_subject_upright(real) -> None:  # type: ignore[no-untyped-def]
    _, seq = real
    assert seq.num_frames == 30 and seq.image_size == (1080, 1920)
    assert seq.detection_rate >= 0.98
    lay = seq.layout
    y = {n: seq.xy[:, lay.index(n), 1] for n in ("nose", "left_hip", "right_hip", "left_ankle", "right_ankle")}
    hips = (y["left_hip"] + y["right_hip"]) / 2
    ankles = (y["left_ankle"] + y["right_ankle"]) / 2
    # upright in image y (down): nose above hips above ankles, by a body-sized margin
    assert (y["nose"] < hips - 150).all() and (hips < ankles - 150).all()
    # the subject walks towards the camera: his left hip is on the image's right, every frame
    x = seq.xy[..., 0]
    assert (x[:, lay.index("left_hip")] > x[:, lay.index("right_hip")] + 20).all()
    assert seq.meta["left_right_swaps_fixed"] == "0"
    # pixels of the full-resolution frame even though detection ran at 640 px
    assert 0 < np.nanmin(seq.xy[..., 0]) and np.nanmax(seq.xy[..., 0]) < 1080
    # metric world landmarks: a standing adult's hip-to-nose distance is 0.5-0.9 m
    w = seq.world_xyz
    hip_w = (w[:, lay.index("left_hip")] + w[:, lay.index("right_hip")]) / 2
    torso = np.linalg.norm(w[:, lay.index("nose")] - hip_w, axis=-1)
    assert 0.5 < np.median(torso) < 0.9
    assert "metres" in lay.world_frame


def test_overlay_keypoints_inside_person_box(real) -> None:  # type: ignore[no-untyped-def]
    path, seq = real
    sheet = contact_sheet(seq, path)
    assert len(sheet.tiles) == 6
    for tile in sheet.tiles:
        box, xy = tile.box, tile.xy[np.isfinite(tile.xy).all(axis=1)]
        assert len(xy) >= 25
        margin = 0.05 * (box[3] - box[1])       # the segmentation box hugs the body outline
        inside = ((xy[:, 0] > box[0] - margin) & (xy[:, 0] < box[2] + margin)
                  & (xy[:, 1] > box[1] - margin) & (xy[:, 1] < box[3] + margin))
        assert inside.mean() >= 0.95
        # the drawn dots are really on the sheet, in the side's colour
        k = seq.layout.index("left_knee")
        if np.isfinite(tile.xy[k]).all():
            x, yy = np.round(tile.xy[k]).astype(int)
            assert np.abs(sheet.image[yy, x].astype(int) - LEFT_COLOUR).max() < 40
        k = seq.layout.index("right_knee")
        if np.isfinite(tile.xy[k]).all():
            x, yy = np.round(tile.xy[k]).astype(int)
            assert np.abs(sheet.image[yy, x].astype(int) - RIGHT_COLOUR).max() < 40


@pytest.mark.slow
def test_mediapipe_whole_video_full_resolution() -> None:
    seq = detect_video(shared_path(*VIDEO), "mediapipe")
    assert seq.num_frames == 100 and seq.detection_rate >= 0.98


# --- generated videos and test plugins ---------------------------------------------------


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def square_video(path: Path, n: int = 12) -> np.ndarray:
    """A 30 px white square moving 4 px/frame right on black; returns its centres (T, 2) px."""
    frames, centres = [], []
    for i in range(n):
        f = np.zeros((120, 200, 3), np.uint8)
        x0 = 20 + 4 * i
        f[40:70, x0:x0 + 30] = 255
        frames.append(f)
        centres.append((x0 + 14.5, 54.5))
    write_video(path, frames)
    return np.array(centres)


class SquareDetector(Detector):
    """Finds the bright blob: its centre and top-left / bottom-right corners."""

    layout = KeypointLayout("square", ("centre", "top_left", "bottom_right"))

    def __init__(self, fail_on: tuple[int, ...] = ()) -> None:
        self.fail_on, self.calls = fail_on, 0

    def detect(self, frame_bgr: np.ndarray, time: float) -> FrameDetection | None:
        self.calls += 1
        if self.calls - 1 in self.fail_on:
            raise RuntimeError("simulated plugin bug")
        ys, xs = np.nonzero(frame_bgr[..., 1] > 128)
        if xs.size == 0:
            return None
        tl, br = np.array([xs.min(), ys.min()], float), np.array([xs.max(), ys.max()], float)
        return FrameDetection(time, np.stack([(tl + br) / 2, tl, br]), np.ones(3), np.concatenate([tl, br + 1]))


def square_plugin(name: str, **options: object) -> types.SimpleNamespace:
    def register_detectors(register):  # type: ignore[no-untyped-def]
        register(name, lambda **o: SquareDetector(**{**options, **o}))
    return types.SimpleNamespace(__name__=f"{name}_plugin", register_detectors=hookimpl(register_detectors))


@pytest.fixture
def fresh_registry():  # type: ignore[no-untyped-def]
    reset_registry()
    yield
    reset_registry()


def test_in_process_plugin_drives_detect_cli(tmp_path: Path, fresh_registry: None) -> None:
    centres = square_video(tmp_path / "sq.mp4")
    add_plugin(square_plugin("square"))
    out = tmp_path / "sq.json"
    assert main(["detect", str(tmp_path / "sq.mp4"), "--out", str(out), "--detector", "square",
                 "--focal-px", "1681"]) == 0
    seq = load_keypoints(out)
    assert seq.detected.all() and seq.meta["detector"] == "square"
    assert seq.focal_length_px == 1681.0
    np.testing.assert_allclose(seq.xy[2:-2, 0], centres[2:-2], atol=1.5)   # px, codec blur
    np.testing.assert_allclose(seq.times[1], 0.04, atol=1e-3)


ENTRY_POINT_MODULE = '''
import numpy as np
from opensim_biopose import hookimpl
from opensim_biopose.detect.types import Detector, FrameDetection, KeypointLayout


class Brightest(Detector):
    layout = KeypointLayout("brightest", ("spot",))

    def detect(self, frame, time):
        g = frame[..., 1].astype(float)
        if g.max() < 128:
            return None
        y, x = np.unravel_index(np.argmax(g), g.shape)
        ys, xs = np.nonzero(g > 128)
        centre = np.array([[xs.mean(), ys.mean()]])
        return FrameDetection(time, centre, np.ones(1), np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1.0]))


@hookimpl
def register_detectors(register):
    register("brightest-spot", lambda **o: Brightest())
'''


def test_entry_point_plugin_drives_detect_cli(tmp_path: Path, fresh_registry: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "biopose_spot.py").write_text(ENTRY_POINT_MODULE)
    info = site / "biopose_spot-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: biopose-spot\nVersion: 1.2.0\n")
    (info / "entry_points.txt").write_text("[opensim_biopose]\nspot = biopose_spot\n")
    monkeypatch.syspath_prepend(str(site))
    centres = square_video(tmp_path / "sq.mp4")
    out = tmp_path / "spot.npz"
    assert main(["detect", str(tmp_path / "sq.mp4"), "--out", str(out), "--detector", "brightest-spot"]) == 0
    seq = load_keypoints(out)
    assert seq.layout.keypoint_names == ("spot",)
    np.testing.assert_allclose(seq.xy[2:-2, 0], centres[2:-2], atol=1.5)


def test_detector_raising_mid_video(tmp_path: Path, fresh_registry: None,
                                    caplog: pytest.LogCaptureFixture) -> None:
    centres = square_video(tmp_path / "sq.mp4", n=20)
    add_plugin(square_plugin("flaky", fail_on=(5, 6, 15)))
    with caplog.at_level(logging.WARNING):
        seq = detect_video(tmp_path / "sq.mp4", "flaky")
    assert seq.num_frames == 20
    assert seq.detected.tolist() == [i not in (5, 6, 15) for i in range(20)]
    reports = [r for r in caplog.records if "simulated plugin bug" in r.getMessage()]
    assert len(reports) == 1 and "3 of 20 frames" in reports[0].getMessage()
    assert seq.meta["failed_frames"] == "5,6,15"
    # the short dropouts were bridged: the square's centre is still tracked there (px)
    np.testing.assert_allclose(seq.xy[[5, 6, 15], 0], centres[[5, 6, 15]], atol=2.0)


def test_detector_broken_on_every_frame_or_at_start(tmp_path: Path, fresh_registry: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    square_video(tmp_path / "sq.mp4", n=4)
    add_plugin(square_plugin("always-fails", fail_on=tuple(range(10))))
    out = tmp_path / "kp.npz"
    assert main(["detect", str(tmp_path / "sq.mp4"), "--out", str(out), "--detector", "always-fails"]) == 2
    assert "failed on every frame" in capsys.readouterr().err and not out.exists()
    add_plugin(square_plugin("bad-options", colour="green"))    # SquareDetector has no such option
    assert main(["detect", str(tmp_path / "sq.mp4"), "--out", str(out), "--detector", "bad-options"]) == 2
    err = capsys.readouterr().err
    assert "'bad-options' (plugin bad-options_plugin local) could not start" in err and not out.exists()


def test_video_with_nobody(tmp_path: Path, fresh_registry: None, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (160, 240, 3), dtype=np.uint8), (9, 9), 0) for _ in range(8)]
    video = write_video(tmp_path / "empty_room.mp4", frames)
    out = tmp_path / "none.json"
    assert main(["detect", str(video), "--out", str(out)]) == 3
    assert "no person found" in capsys.readouterr().err
    seq = load_keypoints(out)
    assert seq.num_frames == 8 and not seq.detected.any()
    assert seq.xy.shape == (8, 33, 2) and np.isnan(seq.xy).all()
    assert (tmp_path / "none_overlay.png").exists()


def test_unknown_detector_lists_available(tmp_path: Path, fresh_registry: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    square_video(tmp_path / "sq.mp4", n=3)
    out = tmp_path / "x.npz"
    assert main(["detect", str(tmp_path / "sq.mp4"), "--out", str(out), "--detector", "openpsoe"]) == 2
    err = capsys.readouterr().err
    assert "unknown detector 'openpsoe'" in err and "mediapipe" in err and "openpose-json" in err
    assert not out.exists()


def test_blocked_default_detector_is_named(tmp_path: Path, fresh_registry: None, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    square_video(tmp_path / "sq.mp4", n=3)
    monkeypatch.setenv("OPENSIM_BIOPOSE_BLOCK_PLUGINS", "biopose-mediapipe")
    assert main(["detect", str(tmp_path / "sq.mp4"), "--out", str(tmp_path / "kp.npz")]) == 2
    err = capsys.readouterr().err
    assert "unknown detector 'mediapipe'" in err and "openpose-json" in err


@pytest.mark.parametrize("content", [None, b"", b"\x00garbage" * 500])
def test_bad_video_exit_2_without_output(tmp_path: Path, content: bytes | None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "clip.mp4"
    if content is not None:
        video.write_bytes(content)
    out = tmp_path / "kp.npz"
    assert main(["detect", str(video), "--out", str(out)]) == 2
    assert "clip.mp4" in capsys.readouterr().err
    assert list(tmp_path.glob("kp*")) == []


def test_keypoint_file_round_trip(tmp_path: Path, fresh_registry: None) -> None:
    square_video(tmp_path / "sq.mp4", n=6)
    add_plugin(square_plugin("square"))
    seq = detect_video(tmp_path / "sq.mp4", "square")
    for suffix in (".npz", ".json"):
        back = load_keypoints(save_keypoints(tmp_path / f"kp{suffix}", seq))
        np.testing.assert_array_equal(back.xy, seq.xy)
        np.testing.assert_array_equal(back.interpolated, seq.interpolated)
        assert back.layout == seq.layout and back.image_size == seq.image_size and back.meta == seq.meta
    with pytest.raises(InputError, match="npz or .json"):
        save_keypoints(tmp_path / "kp.csv", seq)
    (tmp_path / "junk.json").write_text("[]")
    with pytest.raises(InputError, match="junk.json"):
        load_keypoints(tmp_path / "junk.json")


def test_detect_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["detect", "--help"])
    assert exc.value.code == 0
    assert "--detector" in capsys.readouterr().out


def test_mediapipe_segmentation_box_changes_only_the_box() -> None:
    """The segmentation mask (off by default: it halves MediaPipe's speed at 1080p) feeds only the
    person box: the landmarks are the same with it, and the keypoint box covers the mask's box."""
    from opensim_biopose.detect.postprocess import box_iou

    path = shared_path(*VIDEO)
    config = DetectConfig(max_side=640, max_frames=8)
    plain = detect_video(path, "mediapipe", config)
    masked = detect_video(path, "mediapipe", DetectConfig(max_side=640, max_frames=8,
                                                          detector_options={"segmentation_box": True}))
    assert plain.detected.all() and masked.detected.all()
    assert np.nanmax(np.abs(plain.xy - masked.xy)) < 0.5            # pixels of the 1080x1920 frame
    ious = [box_iou(a, b) for a, b in zip(plain.boxes, masked.boxes)]
    assert min(ious) > 0.6, ious


def test_prefetched_frames_are_the_readers_frames(tmp_path) -> None:
    """Decoding in the producer thread changes nothing the detector sees, keeps at most ``depth``
    frames queued, and leaving early stops the thread before the reader closes."""
    import threading

    from opensim_biopose.detect.frontend import prefetched
    from opensim_biopose.io.video import VideoReader

    video = tmp_path / "square.mp4"
    square_video(video, n=12)
    with VideoReader(video) as reader:
        direct = [(f.index, f.time, f.image.copy()) for f in reader]
    with VideoReader(video) as reader:
        ahead = [(f.index, f.time, f.image) for f in prefetched(reader, 2)]
    assert [(i, t) for i, t, _ in ahead] == [(i, t) for i, t, _ in direct]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(ahead, direct))

    produced: list[int] = []

    def counted():                                  # a source that records how far it was pulled
        for i in range(100):
            produced.append(i)
            yield i
    frames = prefetched(counted(), 3)
    assert next(frames) == 0
    frames.close()                                  # stops and joins the producer
    assert len(produced) <= 1 + 3 + 1               # taken + queued + the one blocked on a full queue
    assert not any(t.name == "biopose-decode" for t in threading.enumerate())


def test_prefetched_raises_the_decoders_error_in_the_consumer(tmp_path) -> None:
    from opensim_biopose.detect.frontend import prefetched

    def failing():
        yield 1
        raise InputError("video x has no decodable frame")
    got = []
    with pytest.raises(InputError, match="no decodable frame"):
        for item in prefetched(failing(), 2):
            got.append(item)
    assert got == [1]
