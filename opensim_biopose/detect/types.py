"""Detector interface and the data it returns.

Pixel coordinates: origin at the top-left of the *upright* image (rotation metadata
already applied), x to the right, y down, in pixels. Metric 3D landmarks, when a detector
has them, are in metres in the detector's own frame, stated by ``KeypointLayout.world_frame``.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class KeypointLayout:
    """Names of a detector's keypoints, in output order, and its 3D frame convention."""

    name: str                     # e.g. "blazepose33", "coco17", "openpose_body25"
    keypoint_names: tuple[str, ...]
    # Convention of FrameDetection.world_xyz, e.g. "hip-centred, x left->right of image,
    # y down, z away from camera, metres" (MediaPipe). None when the detector has no 3D.
    world_frame: str | None = None

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def index(self, name: str) -> int:
        return self.keypoint_names.index(name)

    def indices(self, names: tuple[str, ...] | list[str]) -> list[int]:
        """Indices of ``names`` that this layout has (names it lacks are skipped)."""
        return [self.keypoint_names.index(n) for n in names if n in self.keypoint_names]


@dataclass(frozen=True)
class FrameDetection:
    """One person in one frame. Arrays have K = layout.num_keypoints rows.

    ``xy``: (K, 2) pixels; ``confidence``: (K,) in [0, 1] (the detector's own score,
    e.g. MediaPipe's visibility);
    ``box``: (4,) x0, y0, x1, y1 pixels; ``world_xyz``: (K, 3) metres or None.
    A frame with no person is represented by ``None`` in a sequence, never by zeros.
    """

    time: float
    xy: np.ndarray
    confidence: np.ndarray
    box: np.ndarray
    world_xyz: np.ndarray | None = None


@dataclass
class KeypointSequence:
    """Keypoints of one person over a video, dense arrays with NaN where missing.

    ``xy``: (T, K, 2) pixels, NaN where missing; ``confidence``: (T, K), 0 where missing;
    ``world_xyz``: (T, K, 3) metres or None; ``times``: (T,) seconds; ``detected``: (T,) bool.
    ``image_size``: (width, height) of the upright frames; ``fps``: nominal frame rate.
    """

    layout: KeypointLayout
    times: np.ndarray
    xy: np.ndarray
    confidence: np.ndarray
    detected: np.ndarray
    image_size: tuple[int, int]
    fps: float
    world_xyz: np.ndarray | None = None
    boxes: np.ndarray | None = None          # (T, 4) pixels, NaN where missing
    focal_length_px: float | None = None     # from metadata when known
    meta: dict[str, str] = field(default_factory=dict)
    # (T, K) bool: True where post-processing filled a short dropout by interpolation.
    # Longer dropouts stay NaN (confidence 0): ``np.isnan(xy[..., 0])`` flags them.
    interpolated: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.times.shape[0])

    @property
    def detection_rate(self) -> float:
        """Fraction of frames in which the person was detected (0 for an empty video)."""
        return float(self.detected.mean()) if self.num_frames else 0.0


@dataclass
class DetectionFrames:
    """Everyone a detector or keypoint source found, frame by frame, before one person is chosen.

    ``times``: (T,) seconds; ``people[t]``: the detections of frame t (empty list: nobody);
    ``image_size``: (width, height) of the upright frames, pixels; ``fps``: nominal rate;
    ``failed_frames``: indices of frames where the detector raised (treated as nobody).
    """

    layout: KeypointLayout
    times: np.ndarray
    people: list[list[FrameDetection]]
    image_size: tuple[int, int]
    fps: float
    failed_frames: list[int] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)


class Detector(abc.ABC):
    """A person/keypoint detector. Streaming: one frame at a time, state kept for tracking."""

    layout: KeypointLayout

    @abc.abstractmethod
    def detect(self, frame_bgr: np.ndarray, time: float) -> FrameDetection | None:
        """Detect the person in one upright BGR uint8 frame (H, W, 3); None if nobody is found."""

    def detect_people(self, frame_bgr: np.ndarray, time: float) -> list[FrameDetection]:
        """Every person in the frame. Multi-person detectors override this; the default
        wraps :meth:`detect`. The front end tracks people and picks one (``select_person``)."""
        found = self.detect(frame_bgr, time)
        return [] if found is None else [found]

    def reset(self) -> None:
        """Forget tracking state before a new video. Default: nothing to forget."""

    def close(self) -> None:
        """Release resources (model handles). Default: nothing to release."""


class KeypointSource(abc.ABC):
    """Keypoints computed elsewhere (another detector's files), read as one sequence.

    Registered through ``register_keypoint_sources``; ``--detector NAME`` picks a source
    exactly like a detector, and its output goes through the same person selection and
    post-processing.
    """

    layout: KeypointLayout

    @abc.abstractmethod
    def read(self, path: Path) -> DetectionFrames:
        """Read every person of every frame at ``path`` (a file or folder, per source).

        Pixels in the upright image; raises :class:`opensim_biopose.errors.InputError`
        naming ``path`` when it is missing or unusable. The front end then picks one
        person and post-processes, exactly as for a video detector.
        """
