"""Detector interface and the data it returns.

Pixel coordinates: origin at the top-left of the *upright* image (rotation metadata
already applied), x to the right, y down, in pixels. Metric 3D landmarks, when a detector
has them, are in metres in the detector's own frame, stated by ``KeypointLayout.world_frame``.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class FrameDetection:
    """One person in one frame. Arrays have K = layout.num_keypoints rows.

    ``xy``: (K, 2) pixels; ``confidence``: (K,) in [0, 1] (visibility x presence);
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

    @property
    def num_frames(self) -> int:
        return int(self.times.shape[0])


class Detector(abc.ABC):
    """A person/keypoint detector. Streaming: one frame at a time, state kept for tracking."""

    layout: KeypointLayout

    @abc.abstractmethod
    def detect(self, frame_bgr: np.ndarray, time: float) -> FrameDetection | None:
        """Detect the person in one upright BGR uint8 frame (H, W, 3); None if nobody is found."""

    def reset(self) -> None:
        """Forget tracking state before a new video. Default: nothing to forget."""

    def close(self) -> None:
        """Release resources (model handles). Default: nothing to release."""
