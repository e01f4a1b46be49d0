"""BlazePose through MediaPipe's legacy ``solutions.pose`` graph, offline.

Only ``model_complexity=1`` is used: its ``pose_landmark_full.tflite`` ships inside the
mediapipe 0.10.14 wheel, while complexities 0 and 2 download weights on first use.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from opensim_biopose.detect.layouts import BLAZEPOSE33
from opensim_biopose.detect.types import Detector, FrameDetection

# The only complexity whose weights ship in the wheel (0 and 2 download at run time).
MODEL_COMPLEXITY = 1


@dataclass(frozen=True)
class MediaPipeConfig:
    """Options of the ``mediapipe`` detector (``DetectConfig.detector_options``)."""

    # MediaPipe's own defaults: 0.5 for finding a person and for keeping the track.
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    # MediaPipe's landmark smoothing is a causal filter; the front end's zero-phase
    # filter does this better afterwards, but the tracker's crop benefits from it.
    smooth_landmarks: bool = True
    # Person box from MediaPipe's segmentation mask instead of the padded keypoints. Off: the mask
    # is warped back to full resolution and scanned every frame, 14 + 5 ms of a 1080x1920 frame's
    # 38 ms (landmarks identical either way; measured on the shared real video), and the box only
    # links detections between frames and frames the report's overlays.
    segmentation_box: bool = False
    # With segmentation_box: pixels above this mask probability count as the person.
    mask_threshold: float = 0.5
    # Video: track the person between frames (static_image_mode=False). True treats
    # every frame as an unrelated image (slower, no temporal prior).
    static_images: bool = False


class MediaPipeDetector(Detector):
    """One person per frame: 33 BlazePose landmarks, world landmarks and a mask box."""

    layout = BLAZEPOSE33

    def __init__(self, config: MediaPipeConfig = MediaPipeConfig()) -> None:
        self.config = config
        self._pose = None
        self._warm = False   # the first process() call prints native start-up notices

    def _graph(self):  # type: ignore[no-untyped-def]
        if self._pose is None:
            os.environ.setdefault("GLOG_minloglevel", "2")   # keep MediaPipe's C++ log quiet
            import mediapipe as mp

            c = self.config
            self._pose = mp.solutions.pose.Pose(
                static_image_mode=c.static_images, model_complexity=MODEL_COMPLEXITY,
                smooth_landmarks=c.smooth_landmarks, enable_segmentation=c.segmentation_box,
                min_detection_confidence=c.min_detection_confidence,
                min_tracking_confidence=c.min_tracking_confidence,
            )
        return self._pose

    def detect(self, frame_bgr: np.ndarray, time: float) -> FrameDetection | None:
        """Landmarks of the person in an upright BGR uint8 (H, W, 3) frame; None if nobody."""
        if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR uint8 (H, W, 3) frame, got {frame_bgr.dtype} {frame_bgr.shape}")
        height, width = frame_bgr.shape[:2]
        quiet = _native_stderr_silenced() if not self._warm else contextlib.nullcontext()
        with quiet, warnings.catch_warnings():   # protobuf 4 deprecation notice raised inside mediapipe
            warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
            result = self._graph().process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        self._warm = True
        if result.pose_landmarks is None:
            return None
        lm = result.pose_landmarks.landmark
        xy = np.array([[p.x * width, p.y * height] for p in lm], float)
        conf = np.clip(np.array([p.visibility for p in lm], float), 0.0, 1.0)
        world = None
        if result.pose_world_landmarks is not None:
            world = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark], float)
        box = _mask_box(result.segmentation_mask, self.config.mask_threshold) if self.config.segmentation_box else None
        if box is None:
            box = _keypoint_box(xy, conf)
        return FrameDetection(time=time, xy=xy, confidence=conf, box=box, world_xyz=world)

    def reset(self) -> None:
        self.close()   # a fresh graph forgets the previous video's track

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None
        self._warm = False


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: TFLite/absl print INFO/WARNING start-up lines
    ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires ...") from C++,
    out of reach of Python logging. Python exceptions still surface after the block."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):   # stderr replaced (pytest capture, IDEs)
        fd = 2
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _mask_box(mask: np.ndarray | None, threshold: float) -> np.ndarray | None:
    """x0, y0, x1, y1 pixels of the mask's pixels above ``threshold``; None if none are."""
    if mask is None:
        return None
    ys, xs = np.nonzero(mask > threshold)
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def _keypoint_box(xy: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """Box around the visible keypoints, padded on each side by 10% of its larger extent."""
    pts = xy[conf > 0.5] if (conf > 0.5).sum() >= 2 else xy
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.1 * max(float((hi - lo).max()), 1.0)
    return np.concatenate([lo - pad, hi + pad])
