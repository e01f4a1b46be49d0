"""Camera rigs around a subject in OpenSim ground: pure functions, no OpenGL.

World = OpenSim ground (X anterior, Y up, Z the subject's right, metres). Camera frame =
OpenCV (x image right, y image down, z along the optical axis), as in
:mod:`opensim_biopose.mesh.camera`. Cameras are level (no pitch, no roll): the pipeline
assumes a level camera when it turns camera coordinates into ground.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from opensim_biopose.errors import InputError
from opensim_biopose.mesh.camera import PinholeCamera

# View name -> camera azimuth (deg) about the vertical, from the subject's anterior (+X)
# towards the subject's right (+Z): "front" looks at the face, "side" at the right side.
VIEWS: dict[str, float] = {"front": 0.0, "45deg": 45.0, "side": 90.0}


@dataclass(frozen=True)
class CameraRig:
    """A level pinhole camera looking at the subject.

    ``intrinsics``: focal length and principal point in pixels (image origin top-left).
    ``extrinsics``: (4, 4) world (OpenSim ground) -> camera (OpenCV) homogeneous transform.
    ``width``, ``height``: image size in pixels.
    """

    view: str
    intrinsics: PinholeCamera
    extrinsics: np.ndarray
    width: int
    height: int

    @property
    def position(self) -> np.ndarray:
        """(3,) camera centre in world, metres."""
        r, t = self.extrinsics[:3, :3], self.extrinsics[:3, 3]
        return -r.T @ t

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points, metres -> (..., 2) pixels."""
        cam = points @ self.extrinsics[:3, :3].T + self.extrinsics[:3, 3]
        z = np.maximum(cam[..., 2:3], 1e-6)
        k = self.intrinsics
        return np.concatenate([k.focal_px * cam[..., 0:1] / z + k.cx, k.focal_px * cam[..., 1:2] / z + k.cy], -1)

    def to_dict(self) -> dict:
        """JSON-ready description (metres, pixels)."""
        k = self.intrinsics
        return {"view": self.view, "width": self.width, "height": self.height,
                "fx": k.focal_px, "fy": k.focal_px, "cx": k.cx, "cy": k.cy,
                "world_to_camera": self.extrinsics.tolist(),
                "world": "OpenSim ground: X anterior, Y up, Z subject's right, metres, floor at Y=0",
                "camera": "OpenCV: x image right, y image down, z forward"}


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """(4, 4) world -> OpenCV camera transform of a camera at ``eye`` looking at ``target`` (metres)."""
    forward = np.asarray(target, float) - np.asarray(eye, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise InputError("look_at: the viewing direction is parallel to 'up'; the camera roll is undefined")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])                 # rows: camera axes in world
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = -rot @ np.asarray(eye, float)
    return out


def distance_for_height(focal_px: float, subject_height_m: float, fraction: float, image_height: int) -> float:
    """Camera distance (m) at which a subject of ``subject_height_m`` spans ``fraction`` of the image height."""
    return focal_px * subject_height_m / (fraction * image_height)


def camera_rig(view: str | float, centre: np.ndarray, *, width: int = 480, height: int = 640,
               focal_px: float = 700.0, subject_height_m: float = 1.75, fill: float = 0.72,
               camera_height_m: float | None = None) -> CameraRig:
    """A level camera at azimuth ``view`` (a :data:`VIEWS` name or degrees) around ``centre``.

    ``centre``: (3,) world point the camera aims at horizontally (the subject's mean position,
    metres). The distance makes a standing subject fill ``fill`` of the image height, and the
    camera sits at half the subject's height so that the body is centred vertically.
    """
    if isinstance(view, str):
        if view not in VIEWS:
            raise InputError(f"unknown camera view {view!r}; choose one of {', '.join(VIEWS)} or give degrees")
        azimuth, name = VIEWS[view], view
    else:
        azimuth, name = float(view), f"{float(view):g}deg"
    if width <= 0 or height <= 0 or focal_px <= 0:
        raise InputError(f"camera: image size {width}x{height} and focal {focal_px} px must be positive")
    cam_y = subject_height_m / 2.0 if camera_height_m is None else camera_height_m
    distance = distance_for_height(focal_px, subject_height_m, fill, height)
    a = math.radians(azimuth)
    target = np.array([centre[0], cam_y, centre[2]], dtype=float)
    eye = target + distance * np.array([math.cos(a), 0.0, math.sin(a)])
    return CameraRig(name, PinholeCamera(float(focal_px), width / 2.0, height / 2.0), look_at(eye, target),
                     width, height)
