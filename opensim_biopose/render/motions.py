"""A motion library for rendered clips: body-model pose sequences with a known root motion.

Every motion is a pure function of time returning a :class:`Motion`: the pose vector of the
body model (Anny's :data:`~opensim_biopose.body.anny_model.POSE_BONES`, axis-angle, rad), a
forward tilt of the whole body (rad, about the subject's left axis) and where the body is held
in place ("feet" keeps the feet still on the floor, "pelvis" walks on a treadmill).

Sign conventions (Anny, rotations about the rest-aligned X axis = the subject's left): a negative
angle swings a downward-pointing segment forwards (hip flexion < 0, ankle dorsiflexion < 0) and an
upward-pointing one backwards; knee flexion > 0.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from opensim_biopose.body.base import BodyModel
from opensim_biopose.errors import InputError
from opensim_biopose.mesh.synthetic import gait_pose


@dataclass(frozen=True)
class Motion:
    """pose: (T, P, 3) rad; tilt: (T,) forward lean of the whole body (rad); anchor: "feet" | "pelvis".

    ``seat``: the scene gets a stool under the lowest seated pelvis (sit-to-stand).
    """

    pose: torch.Tensor
    tilt: torch.Tensor
    anchor: str
    seat: bool = False


def _cycle(times: torch.Tensor, period_s: float) -> torch.Tensor:
    """(T,) 0 -> 1 -> 0 smoothly over each period (raised cosine)."""
    return 0.5 * (1.0 - torch.cos(2.0 * math.pi * times / period_s))


class _PoseWriter:
    """Writes named joints of a (T, P, 3) pose tensor."""

    def __init__(self, body: BodyModel, frames: int) -> None:
        self.names = body.pose_joint_names
        self.pose = torch.zeros(frames, len(self.names), 3)

    def put(self, joint: str, axis: int, value: torch.Tensor | float) -> None:
        if joint not in self.names:
            raise InputError(f"motion library: body model has no pose joint {joint!r} (Anny joints expected)")
        self.pose[:, self.names.index(joint), axis] = value


def _legs_flexed(w: _PoseWriter, hip: torch.Tensor, knee: torch.Tensor, tilt: torch.Tensor) -> None:
    """Flex both legs with the feet flat: thigh forward ``hip`` (rad, absolute), knee ``knee`` (rad).

    The whole body leans forward by ``tilt``, so the hip's local flexion adds the lean back, and
    the foot undoes the shank's absolute inclination (hip - knee) to stay flat on the floor.
    """
    for side in ("L", "R"):
        w.put(f"upperleg01.{side}", 0, -(hip + tilt))
        w.put(f"lowerleg01.{side}", 0, knee)
        w.put(f"foot.{side}", 0, hip - knee)


def gait(body: BodyModel, times: torch.Tensor) -> Motion:
    """Treadmill walking (0.9 strides/s): hips +-25 deg, knees 5-60 deg, arm swing, trunk twist."""
    return Motion(gait_pose(body, times), torch.zeros_like(times), "pelvis")


def squat(body: BodyModel, times: torch.Tensor, period_s: float = 2.4) -> Motion:
    """Bodyweight squats: thighs to 80 deg, knees to 105 deg, 20 deg pelvis lean, arms forward."""
    w = _PoseWriter(body, times.shape[0])
    s = _cycle(times, period_s)
    tilt = 0.35 * s
    _legs_flexed(w, 1.40 * s, 1.83 * s, tilt)
    w.put("spine02", 0, 0.15 * s)
    for side in ("L", "R"):
        w.put(f"upperarm01.{side}", 0, -1.2 * s)
    return Motion(w.pose, tilt, "feet")


def sit_to_stand(body: BodyModel, times: torch.Tensor, period_s: float = 3.2) -> Motion:
    """Rising from a seat (thighs horizontal, knees 90 deg) and sitting back down, trunk lean at seat-off."""
    w = _PoseWriter(body, times.shape[0])
    seated = 1.0 - _cycle(times, period_s)                   # starts seated
    lean = 0.2 * seated + 0.45 * torch.sin(math.pi * seated) ** 2
    _legs_flexed(w, 1.50 * seated, 1.57 * seated, lean)
    w.put("spine02", 0, 0.1 * torch.sin(math.pi * seated) ** 2)
    for side in ("L", "R"):
        w.put(f"upperarm01.{side}", 0, -0.5 * torch.sin(math.pi * seated) ** 2)
    return Motion(w.pose, lean, "feet", seat=True)


def arm_raises(body: BodyModel, times: torch.Tensor, period_s: float = 1.8) -> Motion:
    """Both arms raised forwards to ~140 deg, then sideways to ~90 deg above the rest A-pose, alternately."""
    w = _PoseWriter(body, times.shape[0])
    s = _cycle(times, period_s)
    forward = (torch.floor(times / period_s) % 2 == 0).float()
    for side, sign in (("L", -1.0), ("R", 1.0)):
        w.put(f"upperarm01.{side}", 0, -2.4 * s * forward)
        w.put(f"upperarm01.{side}", 1, sign * 1.2 * s * (1 - forward))
    return Motion(w.pose, torch.zeros_like(times), "feet")


MOTIONS: dict[str, Callable[[BodyModel, torch.Tensor], Motion]] = {
    "gait": gait, "squat": squat, "sit_to_stand": sit_to_stand, "arm_raises": arm_raises,
}


def motion_pose(name: str, body: BodyModel, times: torch.Tensor) -> Motion:
    """The library motion ``name`` sampled at ``times`` (T,) seconds."""
    if name not in MOTIONS:
        raise InputError(f"unknown motion {name!r}; choose one of {', '.join(MOTIONS)}")
    return MOTIONS[name](body, times)


# Adult phenotype ranges (Anny's 0-1 scales). Age 0.5-0.85 is adulthood on Anny's age scale
# (0.5 is a young adult); height stays in 0.3-0.7 where the rig's joints follow the skin
# (DESIGN.md); the rest span typical bodies without extremes.
ADULT_RANGES: dict[str, tuple[float, float]] = {
    "gender": (0.0, 1.0), "age": (0.5, 0.85), "muscle": (0.3, 0.7), "weight": (0.3, 0.7),
    "height": (0.3, 0.7), "proportions": (0.3, 0.7),
}


def sample_adult_shapes(body: BodyModel, count: int, seed: int = 0) -> torch.Tensor:
    """(count, S) phenotype vectors of adult bodies, uniform in :data:`ADULT_RANGES` (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    lo = torch.tensor([ADULT_RANGES.get(n, (0.5, 0.5))[0] for n in body.shape_names])
    hi = torch.tensor([ADULT_RANGES.get(n, (0.5, 0.5))[1] for n in body.shape_names])
    return lo + (hi - lo) * torch.rand(count, len(lo), generator=gen)
