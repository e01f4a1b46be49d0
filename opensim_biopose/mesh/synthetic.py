"""Synthetic keypoint videos with exact truth: a body walks a known gait-like motion in front
of a known camera; its keypoints are projected, noised, and optionally given MediaPipe-like
metric 3D landmarks (too large by a few percent, jittered). Used by tests and benchmarks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from opensim_biopose.body.base import BodyModel
from opensim_biopose.body.rotations import axis_angle_to_matrix
from opensim_biopose.detect.types import KeypointLayout, KeypointSequence
from opensim_biopose.mesh.camera import CAMERA_FROM_GROUND, PinholeCamera, camera_from_level, project

# Motion roles -> pose joint names per body model family. Both Anny and SMPL have +X to the
# subject's left, so a rotation about X means the same in both: negative swings a downward
# segment forwards (hip flexion), positive bends the knee.
ROLES: dict[str, dict[str, str]] = {
    "anny": {"l_hip": "upperleg01.L", "r_hip": "upperleg01.R", "l_knee": "lowerleg01.L",
             "r_knee": "lowerleg01.R", "l_ankle": "foot.L", "r_ankle": "foot.R",
             "l_shoulder": "upperarm01.L", "r_shoulder": "upperarm01.R", "l_elbow": "lowerarm01.L",
             "r_elbow": "lowerarm01.R", "trunk": "spine02"},
    "smpl": {"l_hip": "left_hip", "r_hip": "right_hip", "l_knee": "left_knee", "r_knee": "right_knee",
             "l_ankle": "left_ankle", "r_ankle": "right_ankle", "l_shoulder": "left_shoulder",
             "r_shoulder": "right_shoulder", "l_elbow": "left_elbow", "r_elbow": "right_elbow",
             "trunk": "spine2"},
}


@dataclass(frozen=True)
class SyntheticTrial:
    """Truth and observations. ``vertices_camera``: (T, V, 3) m; ``keypoints``: the detector view."""

    keypoints: KeypointSequence
    vertices_camera: torch.Tensor
    keypoints_camera: torch.Tensor
    pose: torch.Tensor
    shape: torch.Tensor
    camera: PinholeCamera
    up_camera: torch.Tensor         # (3,) the true vertical in the camera frame


def gait_pose(body: BodyModel, times: torch.Tensor, cadence_hz: float = 0.9) -> torch.Tensor:
    """(T, P, 3) a walking-like motion: hips +-25 deg, knees 5-60 deg, arms swinging, trunk twist."""
    roles = ROLES["anny" if body.name == "anny" else "smpl"]
    names = body.pose_joint_names
    phase = 2 * math.pi * cadence_hz * times
    pose = torch.zeros(times.shape[0], len(names), 3)

    def put(role: str, axis: int, value: torch.Tensor) -> None:
        pose[:, names.index(roles[role]), axis] = value

    for side, shift in (("l", 0.0), ("r", math.pi)):
        s = torch.sin(phase + shift)
        put(f"{side}_hip", 0, -0.44 * s)
        put(f"{side}_knee", 0, 0.09 + 0.48 * (1 - torch.cos(phase + shift + 0.6)))
        put(f"{side}_ankle", 0, 0.15 * torch.sin(phase + shift + 1.2))
        put(f"{side}_shoulder", 0, 0.35 * s)
        put(f"{side}_elbow", 0, -0.35 - 0.2 * torch.sin(phase + shift))
    put("trunk", 2, 0.12 * torch.sin(phase))
    return pose


def make_trial(body: BodyModel, layout: KeypointLayout, shape: torch.Tensor, *, frames: int = 8,
               fps: float = 30.0, heading_deg: float = 30.0, turn_deg_s: float = 20.0,
               distance_m: float = 4.5, noise_px: float = 4.0, world: bool = False,
               world_scale: float = 1.07, world_jitter_m: float = 0.02,
               image_size: tuple[int, int] = (1920, 1080), focal_px: float = 1500.0,
               pitch_deg: float = 0.0, seed: int = 0) -> SyntheticTrial:
    """Render a trial. ``heading_deg``: 0 faces the camera, 90 shows the subject's left side.
    ``pitch_deg``: the camera looks down by this much (raised to keep the subject in view).

    2D noise is Gaussian with ``noise_px`` standard deviation; the 3D landmarks (``world``)
    are hip-centred, ``world_scale`` times too large and jittered uniformly by +-``world_jitter_m``.
    """
    gen = torch.Generator().manual_seed(seed)
    times = torch.arange(frames, dtype=torch.float32) / fps
    pose = gait_pose(body, times)
    regressor = body.keypoint_regressor()
    names = layout.keypoint_names
    cols = [i for i, n in enumerate(names) if n in regressor.names]
    reg = regressor.subset(tuple(names[i] for i in cols))
    camera = PinholeCamera.for_image(*image_size, focal_px=focal_px)
    canonical = torch.tensor(CAMERA_FROM_GROUND) @ body.frame.matrix()
    heading = torch.deg2rad(heading_deg + turn_deg_s * times)
    rot = axis_angle_to_matrix(heading[:, None] * torch.tensor([0.0, -1.0, 0.0])) @ canonical   # (T, 3, 3)
    raise_m = distance_m * math.tan(math.radians(pitch_deg))
    transl = torch.stack([-0.6 + 0.9 * times, torch.full_like(times, 0.1 + raise_m), distance_m + 0.3 * times], dim=1)
    tilt = camera_from_level(torch.tensor(math.radians(pitch_deg)), torch.tensor(0.0))
    with torch.no_grad():
        verts = (body(pose, shape[None]).vertices @ rot.transpose(1, 2) + transl[:, None]) @ tilt.T
        kps = reg.positions(verts)
        px = project(kps, camera) + noise_px * torch.randn(kps.shape[:2] + (2,), generator=gen)
    t, k = frames, len(names)
    xy = np.full((t, k, 2), np.nan)
    xy[:, cols] = px.numpy()
    conf = np.zeros((t, k))
    conf[:, cols] = 0.9
    world_xyz = None
    if world:
        hips = [reg.names.index("left_hip"), reg.names.index("right_hip")]
        rel = kps - kps[:, hips].mean(dim=1, keepdim=True)
        jitter = (torch.rand(rel.shape, generator=gen) * 2 - 1) * world_jitter_m
        world_xyz = np.full((t, k, 3), np.nan)
        world_xyz[:, cols] = (rel * world_scale + jitter).numpy()
    seq = KeypointSequence(layout=layout, times=times.numpy().astype(np.float64), xy=xy, confidence=conf,
                           detected=np.ones(t, dtype=bool), image_size=image_size, fps=fps,
                           world_xyz=world_xyz, focal_length_px=focal_px)
    return SyntheticTrial(seq, verts, kps, pose, shape, camera, tilt @ torch.tensor([0.0, -1.0, 0.0]))


def make_posed_trial(body: BodyModel, layout: KeypointLayout, shape: torch.Tensor, pose: torch.Tensor,
                     times: torch.Tensor, *, heading_deg: float = 90.0, distance_m: float = 4.5,
                     noise_px: float = 4.0, image_size: tuple[int, int] = (1920, 1080),
                     focal_px: float = 1500.0, seed: int = 0) -> SyntheticTrial:
    """A body performing ``pose`` (T, P, 3) rad at ``times`` (T,) s in place, its feet held on the
    floor (the heels' and toes' lowest point keeps the first frame's height), seen by a level camera
    ``distance_m`` away; ``heading_deg`` 90 shows the subject's left side. 2D keypoints only."""
    gen = torch.Generator().manual_seed(seed)
    regressor = body.keypoint_regressor()
    names = layout.keypoint_names
    cols = [i for i, n in enumerate(names) if n in regressor.names]
    reg = regressor.subset(tuple(names[i] for i in cols))
    feet = [i for i, n in enumerate(reg.names) if n.endswith(("_heel", "_foot_index"))]
    camera = PinholeCamera.for_image(*image_size, focal_px=focal_px)
    rot = axis_angle_to_matrix(torch.tensor([0.0, -math.radians(heading_deg), 0.0])) @ torch.tensor(
        CAMERA_FROM_GROUND) @ body.frame.matrix()
    down = torch.tensor([0.0, 1.0, 0.0])                                   # camera y points down
    with torch.no_grad():
        verts = body(pose, shape[None]).vertices @ rot.T + torch.tensor([0.0, 0.1, distance_m])
        lowest = reg.positions(verts)[:, feet] @ down                      # (T, F) m below the axis
        drop = lowest.amax(dim=1)
        verts = verts - (drop - drop[0])[:, None, None] * down
        kps = reg.positions(verts)
        px = project(kps, camera) + noise_px * torch.randn(kps.shape[:2] + (2,), generator=gen)
    t, k = pose.shape[0], len(names)
    xy = np.full((t, k, 2), np.nan)
    xy[:, cols] = px.numpy()
    conf = np.zeros((t, k))
    conf[:, cols] = 0.9
    fps = float((t - 1) / (times[-1] - times[0])) if t > 1 else 30.0
    seq = KeypointSequence(layout=layout, times=times.numpy().astype(np.float64), xy=xy, confidence=conf,
                           detected=np.ones(t, dtype=bool), image_size=image_size, fps=fps,
                           focal_length_px=focal_px)
    return SyntheticTrial(seq, verts, kps, pose, shape, camera, -down)


def vertex_errors(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Mean per-vertex error (metres) of (T, V, 3) meshes in one frame: absolute, after per-frame
    centroid alignment, and after per-frame Procrustes (rotation, translation, scale)."""
    absolute = (pred - truth).norm(dim=-1).mean().item()
    pc, tc = pred - pred.mean(1, keepdim=True), truth - truth.mean(1, keepdim=True)
    centred = (pc - tc).norm(dim=-1).mean().item()
    aligned = procrustes_align(pc, tc)
    return {"absolute": absolute, "centred": centred, "procrustes": (aligned - tc).norm(dim=-1).mean().item()}


def procrustes_align(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(T, N, 3) centred ``source`` rotated and scaled per frame onto centred ``target`` (Umeyama)."""
    cov = target.transpose(1, 2) @ source                           # (T, 3, 3)
    u, s, vt = torch.linalg.svd(cov)
    d = torch.sign(torch.det(u @ vt))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=1))
    r = u @ fix @ vt
    scale = (s * torch.diagonal(fix, dim1=1, dim2=2)).sum(1) / (source ** 2).sum((1, 2))
    return scale[:, None, None] * source @ r.transpose(1, 2)
