"""Keypoint post-processing on synthetic trajectories with known truth (pixels, seconds, Hz)."""
from __future__ import annotations

import numpy as np
import pytest

from opensim_biopose.detect.postprocess import (
    PostprocessConfig,
    cutoff_for,
    fill_gaps,
    link_tracks,
    postprocess,
    select_person,
)
from opensim_biopose.detect.types import DetectionFrames, FrameDetection, KeypointLayout, KeypointSequence
from opensim_biopose.errors import InputError

LAYOUT = KeypointLayout("two", ("a", "b"))
FPS = 60.0


def sequence(xy: np.ndarray, conf: np.ndarray | None = None, fps: float = FPS) -> KeypointSequence:
    t = xy.shape[0]
    conf = np.ones(xy.shape[:2]) if conf is None else conf
    return KeypointSequence(layout=LAYOUT, times=np.arange(t) / fps, xy=xy, confidence=conf,
                            detected=np.ones(t, bool), image_size=(640, 480), fps=fps)


def gait_like(t: np.ndarray) -> np.ndarray:
    """A 1 Hz, 50 px swing (a stride) around (320, 240): (T, 2, 2) pixels for two keypoints."""
    base = np.stack([320 + 50 * np.sin(2 * np.pi * t), 240 + 20 * np.cos(2 * np.pi * t)], axis=-1)
    return np.stack([base, base + 30], axis=1)


def test_cutoff_rule() -> None:
    cfg = PostprocessConfig()
    assert cutoff_for(60, cfg) == pytest.approx(6.0)
    assert cutoff_for(30, cfg) == pytest.approx(6.0)
    assert cutoff_for(10, cfg) == pytest.approx(4.0)          # 80% of the 5 Hz Nyquist


def test_short_gap_filled_long_gap_flagged() -> None:
    t = np.arange(120) / FPS
    truth = gait_like(t)
    xy = truth.copy()
    xy[30:40, 0] = np.nan            # 10 frames = 0.167 s: filled
    xy[60:90, 1] = np.nan            # 30 frames = 0.5 s: stays missing
    out = postprocess(sequence(xy), PostprocessConfig(filter=False))
    assert out.interpolated[30:40, 0].all() and not out.interpolated[:, 1].any()
    err = np.linalg.norm(out.xy[30:40, 0] - truth[30:40, 0], axis=-1)
    # a chord across 11 frame steps of a 1 Hz, 50 px swing sags at most A (2 pi f dt)^2 / 8
    assert err.max() < 50 * (2 * np.pi * 11 / FPS) ** 2 / 8   # ~8 px
    assert np.isnan(out.xy[60:90, 1]).all() and (out.confidence[60:90, 1] == 0).all()


def test_gap_limit_at_twelve_frames_is_0_2_s() -> None:
    values = np.arange(40.0)[:, None].repeat(2, 1)
    values[10:22] = np.nan           # exactly 12 frames at 60 fps
    filled, mask = fill_gaps(values, np.arange(40) / FPS, 0.2)
    assert mask.sum() == 12
    np.testing.assert_allclose(filled[10:22, 0], np.arange(10, 22))
    values[10:23] = np.nan           # 13 frames: too long
    _, mask = fill_gaps(values, np.arange(40) / FPS, 0.2)
    assert mask.sum() == 0


def test_lowpass_removes_jitter_keeps_motion() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(240) / FPS
    truth = gait_like(t)
    noisy = truth + rng.normal(0, 3.0, truth.shape)           # 3 px detector jitter
    out = postprocess(sequence(noisy))
    inner = slice(20, -20)
    raw_rms = np.sqrt(np.mean((noisy[inner] - truth[inner]) ** 2))
    filt_rms = np.sqrt(np.mean((out.xy[inner] - truth[inner]) ** 2))
    # white noise through a 6 Hz low-pass at 60 fps keeps ~sqrt(6 / 30) = 0.45 of its RMS
    assert filt_rms < 0.55 * raw_rms
    # zero phase: the filtered swing peaks when the truth does (within a frame)
    peak_truth = np.argmax(truth[60:120, 0, 0])
    peak_filt = np.argmax(out.xy[60:120, 0, 0])
    assert abs(peak_truth - peak_filt) <= 1
    assert out.meta["lowpass_hz"] == "6"


def test_low_confidence_outlier_pulls_less() -> None:
    t = np.arange(180) / FPS
    truth = gait_like(t)
    xy = truth.copy()
    xy[90, 0, 0] += 60.0                                       # a 60 px glitch
    conf = np.ones((180, 2))
    trusted = postprocess(sequence(xy, conf.copy()))
    conf[90, 0] = 0.35                                         # the detector doubted it
    doubted = postprocess(sequence(xy, conf))
    pull_trusted = abs(trusted.xy[90, 0, 0] - truth[90, 0, 0])
    pull_doubted = abs(doubted.xy[90, 0, 0] - truth[90, 0, 0])
    assert pull_doubted < 0.5 * pull_trusted


def test_below_min_confidence_is_missing() -> None:
    xy = gait_like(np.arange(60) / FPS)
    conf = np.ones((60, 2))
    conf[:, 1] = 0.1
    out = postprocess(sequence(xy, conf))
    assert np.isnan(out.xy[:, 1]).all() and np.isfinite(out.xy[:, 0]).all()


def det(cx: float, cy: float, size: float, t: float) -> FrameDetection:
    """A person of box side ``size`` px centred at (cx, cy)."""
    xy = np.array([[cx, cy - size / 4], [cx, cy + size / 4]])
    return FrameDetection(t, xy, np.ones(2), np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]))


def two_people(frames: int = 30) -> DetectionFrames:
    """A large walker drifting right near the edge and a small one standing at the centre;
    the detector lists them in a different order every frame."""
    people = []
    for i in range(frames):
        t = i / FPS
        big = det(80 + 2 * i, 240, 200, t)
        small = det(320, 240, 60, t)
        people.append([big, small] if i % 2 else [small, big])
    return DetectionFrames(LAYOUT, np.arange(frames) / FPS, people, (640, 480), FPS)


@pytest.mark.parametrize(("rule", "expected_x0"), [("largest", 80.0), ("central", 320.0)])
def test_select_person_rules(rule: str, expected_x0: float) -> None:
    seq = select_person(two_people(), rule)
    assert seq.detected.all()
    assert seq.xy[0, 0, 0] == pytest.approx(expected_x0)
    # the same person throughout: x moves by 2 px/frame for the walker, 0 for the stander
    steps = np.diff(seq.xy[:, 0, 0])
    np.testing.assert_allclose(steps, 2.0 if rule == "largest" else 0.0)
    assert seq.meta["people_tracks"] == "2"


def test_tracks_survive_a_missed_frame() -> None:
    frames = two_people()
    frames.people[10] = [p for p in frames.people[10] if p.box[2] - p.box[0] < 100]   # walker missed
    tracks = link_tracks(frames.people)
    assert len(tracks) == 2
    walker = max(tracks, key=lambda tr: np.nanmax(tr.boxes()[:, 2] - tr.boxes()[:, 0]))
    assert walker.detections[10] is None and walker.frames_seen == 29


def test_nobody_gives_empty_valid_sequence() -> None:
    frames = DetectionFrames(LAYOUT, np.arange(5) / FPS, [[] for _ in range(5)], (640, 480), FPS)
    seq = select_person(frames)
    assert seq.xy.shape == (5, 2, 2) and np.isnan(seq.xy).all()
    assert not seq.detected.any() and seq.detection_rate == 0.0


def test_unknown_selection_rule() -> None:
    with pytest.raises(InputError, match="largest"):
        select_person(two_people(), "tallest")


STICK = KeypointLayout("stick", ("nose", "left_hip", "right_hip", "left_knee", "right_knee",
                                 "left_ankle", "right_ankle"))


def walking_stick(frames: int, separation: float) -> np.ndarray:
    """(T, 7, 2) px: a figure walking right at 2 px/frame; left and right points
    ``separation`` px apart (+ for left), the ankles swinging by +-20 px."""
    t = np.arange(frames)
    base = np.array([[0, 0], [1, 200], [-1, 200], [1, 300], [-1, 300], [1, 400], [-1, 400]], float)
    xy = np.repeat(base[None], frames, axis=0)
    side = base[:, 0].copy()
    xy[..., 0] = 300 + 2 * t[:, None] + side * separation / 2
    swing = 20 * np.sin(2 * np.pi * t / 30)
    xy[:, 5, 0] += swing
    xy[:, 6, 0] -= swing
    return xy


def stick_sequence(xy: np.ndarray) -> KeypointSequence:
    t = xy.shape[0]
    return KeypointSequence(layout=STICK, times=np.arange(t) / FPS, xy=xy, confidence=np.ones(xy.shape[:2]),
                            detected=np.ones(t, bool), image_size=(640, 480), fps=FPS)


def test_left_right_swap_is_undone() -> None:
    truth = walking_stick(60, separation=40)
    xy = truth.copy()
    left, right = [1, 3, 5], [2, 4, 6]
    xy[20:24, left + right] = truth[20:24, right + left]      # the detector mislabels 4 frames
    out = postprocess(stick_sequence(xy), PostprocessConfig(filter=False))
    np.testing.assert_allclose(out.xy, truth)
    assert out.meta["left_right_swaps_fixed"] == "4"


def test_majority_labelling_wins() -> None:
    truth = walking_stick(30, separation=40)
    xy = truth.copy()
    xy[0, [1, 3, 5, 2, 4, 6]] = truth[0, [2, 4, 6, 1, 3, 5]]   # only the first frame is wrong
    out = postprocess(stick_sequence(xy), PostprocessConfig(filter=False))
    np.testing.assert_allclose(out.xy, truth)


def test_crossing_ankles_are_not_swapped() -> None:
    # side view: left and right nearly overlap, the ankles cross every half stride
    truth = walking_stick(90, separation=4)
    out = postprocess(stick_sequence(truth.copy()), PostprocessConfig(filter=False))
    np.testing.assert_allclose(out.xy, truth)
    assert out.meta["left_right_swaps_fixed"] == "0"
