"""Pinhole camera and the camera -> OpenSim ground transform: pure functions.

Camera frame (OpenCV): x to the image's right, y down the image, z along the optical axis
(away from the camera), metres; pixels with the origin at the top-left of the upright image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from opensim_biopose.body.rotations import rotation_about_y
from opensim_biopose.errors import InputError

# OpenSim ground axes in the camera frame for a level camera and a subject facing it:
# ground X (the subject's anterior) = towards the camera (-z), ground Y (up) = -y,
# ground Z (the subject's right) = image left (-x). Columns are the ground axes.
CAMERA_FROM_GROUND = ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0), (-1.0, 0.0, 0.0))

# Focal length when the video carries none: 0.9 x the longer image side, i.e. a ~58 deg
# field of view across it, between phone main cameras (~65-70 deg) and the lab camera of
# the shared Pose2Sim demo (1681 px for 1920 px, ~59 deg). Depth and body size absorb
# the error together, so a rough value costs little in the root-relative pose.
DEFAULT_FOCAL_FACTOR = 0.9


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics in pixels; no distortion."""

    focal_px: float
    cx: float
    cy: float

    @staticmethod
    def for_image(width: int, height: int, focal_px: float | None = None) -> PinholeCamera:
        """Principal point at the image centre; focal length given or estimated from the size."""
        if width <= 0 or height <= 0:
            raise InputError(f"keypoint sequence: image size must be positive, got {width}x{height}")
        if focal_px is not None and not (math.isfinite(focal_px) and focal_px > 0):
            raise InputError(f"keypoint sequence: focal length {focal_px} px is not a positive number; "
                             "leave it unset to estimate it from the image size")
        focal = focal_px if focal_px else DEFAULT_FOCAL_FACTOR * max(width, height)
        return PinholeCamera(float(focal), width / 2.0, height / 2.0)

    @property
    def fov_deg(self) -> float:
        """Field of view across 2*cx pixels."""
        return math.degrees(2.0 * math.atan(self.cx / self.focal_px))


def project(points: torch.Tensor, camera: PinholeCamera, min_depth: float = 0.05) -> torch.Tensor:
    """(..., 3) camera-frame points, metres -> (..., 2) pixels. Depth clamped at ``min_depth``."""
    z = points[..., 2:3].clamp(min=min_depth)
    uv = points[..., :2] / z
    return torch.stack([camera.focal_px * uv[..., 0] + camera.cx,
                        camera.focal_px * uv[..., 1] + camera.cy], dim=-1)


def camera_from_level(pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(3, 3) rotation from a level camera's frame to a camera pitched (about its x axis, positive
    looks down) and rolled (about its optical axis) by the given angles, radians."""
    cp, sp, cr, sr = torch.cos(pitch), torch.sin(pitch), torch.cos(roll), torch.sin(roll)
    one, zero = torch.ones_like(pitch), torch.zeros_like(pitch)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp]).reshape(3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one]).reshape(3, 3)
    return rz @ rx


def ground_from_camera(facing_camera: torch.Tensor, tilt: torch.Tensor | None = None) -> torch.Tensor:
    """(3, 3) rotation taking camera-frame vectors to OpenSim ground.

    ``facing_camera``: (3,) the subject's anterior direction in the camera frame (first frame);
    the result turns it to ground +X (its vertical part is ignored). ``tilt``: (3, 3) the camera's
    pitch/roll (:func:`camera_from_level`); None: a level camera, ground Y up = -camera y.
    """
    c = torch.tensor(CAMERA_FROM_GROUND, dtype=facing_camera.dtype)
    if tilt is not None:
        c = tilt @ c
    f = c.T @ facing_camera
    yaw = torch.atan2(-f[2], f[0])          # f = (cos yaw, ., -sin yaw) in the xz-plane
    return rotation_about_y(-yaw) @ c.T
