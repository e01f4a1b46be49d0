"""Mesh backends: keypoints of one person over a video -> a body mesh per frame.

The result, :class:`MeshFit`, is in OpenSim's ground frame (X anterior at the first frame,
Y up, Z right, metres), ready for virtual markers -> .trc.
"""
from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opensim_biopose.detect.types import KeypointSequence


@dataclass(frozen=True)
class FitQuality:
    """Per-frame quality of a fit, all (T,).

    ``reprojection_px``: confidence-weighted mean distance (pixels) between the detector's
    keypoints and the fitted body's; NaN where the frame had too few keypoints.
    ``normalized``: the same divided by the person's size in pixels (the keypoints' bounding-box
    diagonal, median over the video). ``limit_excess_deg``: the largest excess of a pose joint
    beyond its soft limits. ``interpolated``: the frame had too few keypoints and its parameters
    were interpolated (held at the ends) from its neighbours. ``plausible``: a detected frame
    whose residual and limit excess are within the config's thresholds.
    """

    reprojection_px: np.ndarray
    normalized: np.ndarray
    limit_excess_deg: np.ndarray
    interpolated: np.ndarray
    plausible: np.ndarray


@dataclass(frozen=True, eq=False)
class MeshFit:
    """A body fitted over a video. T frames, V vertices, M virtual markers, P pose joints.

    ``vertices``: (T, V, 3) float32 metres, OpenSim ground, or None when not kept.
    ``markers``: (T, M, 3) metres, OpenSim ground, named ``marker_names``.
    ``shape``: (S,) body-model shape parameters (one body for the whole video), ``shape_names``.
    ``pose``: (T, P, 3) body-model pose rotation vectors, radians.
    ``ground_from_camera``: (3, 3) rotation and ``ground_offset`` (3,) m with
    ``p_ground = R @ p_camera + offset``; ground Y is the vertical found by the fit (camera
    pitch/roll), X the subject's heading in the first fitted frame, the floor at Y = 0.
    """

    body_model: str
    times: np.ndarray
    fps: float
    shape: np.ndarray
    shape_names: tuple[str, ...]
    pose: np.ndarray
    marker_set: str
    marker_names: tuple[str, ...]
    markers: np.ndarray
    vertices: np.ndarray | None
    ground_from_camera: np.ndarray
    ground_offset: np.ndarray
    focal_px: float
    quality: FitQuality
    # (M, 3) metres: the virtual markers of the fitted body in the model's rest pose, in OpenSim
    # axes, feet on Y = 0, centred over the origin; a "static trial" for scaling.
    rest_markers: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.times.shape[0])

    def marker_data(self):
        """The virtual markers as :class:`opensim_biopose.io.trc.MarkerData` (metres, ground)."""
        from opensim_biopose.io.trc import MarkerData

        return MarkerData(times=self.times.astype(np.float64), names=self.marker_names,
                          xyz=self.markers.astype(np.float64), rate=float(self.fps))

    def write_trc(self, path: str | os.PathLike[str]) -> Path:
        """Write the virtual markers as a .trc (metres, OpenSim ground, DataRate = video fps), atomically."""
        from opensim_biopose.io.trc import write_trc

        return write_trc(path, self.marker_data())


class MeshBackend(abc.ABC):
    """Keypoints of one person over a whole video -> :class:`MeshFit`."""

    name: str

    @abc.abstractmethod
    def fit(self, keypoints: KeypointSequence) -> MeshFit:
        """Fit the body to the whole sequence (shape once, pose per frame)."""
