"""Keypoint-driven body fitting (mesh backend ``"keypoint-fit"``, the default).

One body shape for the whole video, and per frame a pose, a global orientation and a
translation in the camera frame, fitted to the detector's 2D keypoints through a pinhole
camera (the primary observation), plus its metric 3D landmarks when it has them (a noisy
cue: root-relative, with one free scale for the whole video, as MediaPipe's are 4-10% too
large). Priors: L2 pose prior and soft joint limits, temporal smoothness of the 3D keypoints,
shape regularisation towards the average body, an upright body, feet on one floor plane. One
camera pitch and roll per video are fitted with them and define OpenSim's vertical. All frames
are fitted at once (L-BFGS by default) on CPU.

Two stages: (1) rigid — template bodies (the rest pose and a few leg flexions, each leg on its
own) are turned and moved to match each frame's keypoints without the arms, from several
initial headings (cheap: no mesh evaluation); with metric 3D landmarks their hip-centred shape
takes part (2D alone let a deep-crouch template win a gait frame, half a metre too near the
camera, and the fit of all frames ended 12 cm off in depth); per frame the best template and
heading are kept and start stage 2; (2) full — pose, shape, orientation, translation and camera
tilt together, through the mesh (only the ~1k vertices the keypoints read are skinned).

Frames with too few confident keypoints are not fitted: their parameters are linear
interpolations of the nearest fitted frames (held at the ends), and they are flagged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from opensim_biopose.body.base import BodyModel, VertexRegressor
from opensim_biopose.body.frames import to_opensim_ground
from opensim_biopose.body.markers import VirtualMarkerSet
from opensim_biopose.body.rotations import axis_angle_to_matrix
from opensim_biopose.detect.types import KeypointSequence
from opensim_biopose.errors import InputError
from opensim_biopose.mesh.base import FitQuality, MeshBackend, MeshFit
from opensim_biopose.mesh.camera import (CAMERA_FROM_GROUND, PinholeCamera, camera_from_level, ground_from_camera,
                                         project)
from opensim_biopose.mesh.synthetic import ROLES

# Keypoints that touch the floor (by name suffix) for the floor-contact term.
FOOT_SUFFIXES = ("_heel", "_foot_index", "_big_toe", "_small_toe", "_ankle")

# Arm keypoints: the rigid stage leaves them out, as the arms move the most against the rest
# pose and say the least about where the body is.
ARM_KEYPOINTS = tuple(f"{side}_{part}" for side in ("left", "right")
                      for part in ("elbow", "wrist", "pinky", "index", "thumb"))

# Keypoints without which the torso cannot be placed.
CORE_KEYPOINTS = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")


@dataclass(frozen=True)
class KeypointFitConfig:
    """Options of the keypoint fit. Weights are relative to the 2D term (1)."""

    # MediaPipe's visibility below ~0.3 is mostly a guess of an occluded point.
    min_confidence: float = 0.3
    # Fewer confident keypoints than this and a frame is interpolated instead of fitted.
    min_keypoints: int = 6
    # Keypoints the layout and the body model must share (core ones included) to fit at all.
    min_shared_keypoints: int = 8
    rigid_iterations: int = 60
    # Leg poses the rigid stage tries besides the rest pose, on each leg: (hip, knee) flexion in
    # degrees, feet flat. A crouched body placed as the standing rest pose starts too far away
    # (it looks small) and the floor term then holds its knees straight: bench_fit --squat's
    # deepest frame reached knee 57 of 105 deg. Half and deep flexion cover squats, sitting and
    # gait's swing leg (knee 103; rendered bench, side + 45 deg views: 12-DoF 7.5 -> 5.2 deg).
    leg_templates: tuple[tuple[float, float], ...] = ((45.0, 60.0), (90.0, 100.0))
    # A flexed template replaces the rest pose only where it leaves at most this share of the rest
    # pose's rigid residual: near-standing frames keep the neutral start (at 1.0 every gait frame
    # took a half-flexed leg, and a 2D-only SMPL round trip ended at 81 instead of 20 mm). 0.75-0.85
    # are alike on the rendered bench (5.1-5.2 deg); at 0.8 bench_fit's 2D-only mean is 30.8 mm
    # (0.75: 33.3) and the pitched-camera vertical is found within 2.3 deg (0.85: 4.5).
    template_margin: float = 0.8
    # Objective evaluations of the full stage (L-BFGS) or Adam steps.
    iterations: int = 300
    learning_rate: float = 0.03
    # "lbfgs" or "adam" (see OPTIMIZERS); the problem is smooth and full-batch, which suits L-BFGS.
    optimizer: str = "lbfgs"
    # Headings tried in the rigid stage: 8 covers front, back and both profiles with margin.
    yaw_candidates: int = 8
    # Robust (pseudo-Huber) scales: detectors place keypoints within ~1-2% of body size;
    # MediaPipe's 3D bones drift +-2 cm frame to frame.
    robust_2d: float = 0.02            # fraction of the person's size in pixels
    robust_3d_m: float = 0.05
    weight_3d: float = 0.3
    # Pose prior (per-axis stiffness from the body model): strong enough to settle a 2D-only
    # view's depth ambiguities (0.005 -> 0.1 took the 2D-only benchmark from 37.7 to 32.7 mm);
    # the legs' flexion axes are nearly free in the body model's weights, so this does not stiffen
    # hip/knee flexion (deep squats need the flexed starts of leg_templates: bench_fit --squat).
    weight_pose: float = 0.1
    weight_limits: float = 10.0
    # Smoothness: squared 3D keypoint accelerations over this scale (m/s^2). Feet reach
    # ~10-20 m/s^2 in walking; 45 m/s^2 lets such motion through while damping jitter
    # (it equals 5 cm per frame^2 at 30 fps, where the weight was tuned).
    smooth_accel_mps2: float = 45.0
    weight_smooth: float = 0.2
    # People stand roughly upright: penalise sin^2 of the body's tilt from the vertical (it
    # removes the lean-towards-the-camera ambiguity). The vertical is the camera's, turned by one
    # pitch and roll for the whole video, which are fitted (phone and tripod cameras look down).
    weight_upright: float = 1.0
    estimate_camera_tilt: bool = True
    # Feet touch the floor: each frame's lowest foot keypoint lies on one ground plane (robust
    # scale robust_3d_m, so flight phases of running cost little). It pins the camera pitch.
    weight_floor: float = 0.5
    # Strong enough that limb proportions do not absorb depth ambiguities of a monocular view.
    weight_shape: float = 0.5
    # A frame whose mean residual exceeds 5% of the body size, or a joint 15 deg beyond its
    # limits, is flagged implausible (good fits sit at the detector's 1-2%).
    max_normalized_residual: float = 0.05
    max_limit_excess_deg: float = 15.0
    keep_vertices: bool = True
    # Frames per mesh evaluation when writing the outputs (bounds memory).
    chunk: int = 64
    # During optimisation each keypoint reads at most this many vertices (its largest
    # regressor weights): the fit then skins ~1k of Anny's 13.7k vertices.
    max_vertices_per_keypoint: int = 32


@dataclass(frozen=True)
class Observations:
    """Detector data matched to the body's keypoints. T frames, K matched keypoints.

    ``xy``: (T, K, 2) px (0 where missing); ``weight``: (T, K) confidence, 0 where missing or
    below threshold; ``world``: (T, K, 3) m, camera-aligned axes, or None; ``world_weight``:
    (T, K); ``valid``: (T,) frames with enough keypoints; ``size_px``: person size in pixels.
    """

    names: tuple[str, ...]
    xy: torch.Tensor
    weight: torch.Tensor
    world: torch.Tensor | None
    world_weight: torch.Tensor | None
    valid: np.ndarray
    size_px: float


def match_keypoints(sequence: KeypointSequence, body: BodyModel,
                    config: KeypointFitConfig) -> tuple[np.ndarray, VertexRegressor]:
    """Indices of the layout's keypoints that ``body`` declares, and their regressor.

    Raises InputError listing the mapping that is needed when too few match.
    """
    declared = set(body.keypoint_names)
    names = sequence.layout.keypoint_names
    shared = [i for i, n in enumerate(names) if n in declared]
    missing_core = [n for n in CORE_KEYPOINTS if n not in {names[i] for i in shared}]
    if len(shared) < config.min_shared_keypoints or missing_core:
        unmapped = [n for n in names if n not in declared]
        raise InputError(
            f"keypoint layout {sequence.layout.name!r} cannot drive body model {body.name!r}: they share "
            f"{len(shared)} keypoint names (need {config.min_shared_keypoints} including "
            f"{', '.join(CORE_KEYPOINTS)}). Add correspondences for {', '.join(unmapped[:20])} to the "
            f"body model's keypoint table (opensim_biopose/body/data/), or rename the layout's "
            "keypoints to the shared snake_case names of opensim_biopose.detect.layouts"
        )
    regressor = body.keypoint_regressor().subset(tuple(names[i] for i in shared))
    return np.asarray(shared), regressor


def prepare_observations(sequence: KeypointSequence, columns: np.ndarray, names: tuple[str, ...],
                         config: KeypointFitConfig) -> Observations:
    """Select the matched columns, zero the missing ones, find the fit-able frames."""
    check_sequence(sequence)
    xy = np.asarray(sequence.xy, dtype=np.float64)[:, columns]
    conf = np.asarray(sequence.confidence, dtype=np.float64)[:, columns]
    finite = np.isfinite(xy).all(axis=2)
    detected = np.asarray(sequence.detected, dtype=bool)[:, None]
    weight = np.where(finite & detected & (conf >= config.min_confidence), conf, 0.0)
    valid = (weight > 0).sum(axis=1) >= config.min_keypoints
    if not valid.any():
        raise InputError(
            f"no frame of the keypoint sequence has {config.min_keypoints} keypoints with confidence "
            f">= {config.min_confidence}; was a person visible? (check the detector output)"
        )
    xy = np.where(weight[..., None] > 0, np.nan_to_num(xy), 0.0)
    size_px = _person_size_px(xy, weight, valid)
    world = world_weight = None
    if sequence.world_xyz is not None:
        w = np.asarray(sequence.world_xyz, dtype=np.float64)[:, columns]
        ok = np.isfinite(w).all(axis=2) & (weight > 0)
        world = torch.tensor(np.where(ok[..., None], np.nan_to_num(w), 0.0), dtype=torch.float32)
        world_weight = torch.tensor(np.where(ok, weight, 0.0), dtype=torch.float32)
    return Observations(names, torch.tensor(xy, dtype=torch.float32), torch.tensor(weight, dtype=torch.float32),
                        world, world_weight, valid, size_px)


def check_sequence(seq: KeypointSequence) -> None:
    """InputError unless the arrays have the shapes :class:`KeypointSequence` documents."""
    t, k = seq.num_frames, seq.layout.num_keypoints
    expected = {"xy": (t, k, 2), "confidence": (t, k), "detected": (t,)}
    if seq.world_xyz is not None:
        expected["world_xyz"] = (t, k, 3)
    for name, shape in expected.items():
        got = tuple(np.shape(getattr(seq, name)))
        if got != shape:
            raise InputError(f"keypoint sequence ({seq.layout.name}, {t} frames, {k} keypoints): {name} has "
                             f"shape {got}, expected {shape}")
    if t == 0:
        raise InputError("keypoint sequence has no frames")


def _person_size_px(xy: np.ndarray, weight: np.ndarray, valid: np.ndarray) -> float:
    sizes = []
    for t in np.flatnonzero(valid):
        pts = xy[t][weight[t] > 0]
        sizes.append(float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0))))
    return max(float(np.median(sizes)), 1.0)


def interpolation_matrix(valid: np.ndarray) -> torch.Tensor:
    """(T, Tv) matrix W with ``params_all = W @ params_valid``.

    Fitted frames copy their own parameters; a gap interpolates linearly between the fitted
    frames around it; frames before the first / after the last fitted frame hold its value.
    """
    idx = np.flatnonzero(valid)
    t_all = np.arange(valid.shape[0])
    w = np.zeros((valid.shape[0], idx.shape[0]))
    pos = np.searchsorted(idx, t_all)
    for t in t_all:
        j = pos[t]
        if j < idx.shape[0] and idx[j] == t:
            w[t, j] = 1.0
        elif j == 0:
            w[t, 0] = 1.0
        elif j == idx.shape[0]:
            w[t, -1] = 1.0
        else:
            a, b = idx[j - 1], idx[j]
            alpha = (t - a) / (b - a)
            w[t, j - 1], w[t, j] = 1.0 - alpha, alpha
    return torch.tensor(w, dtype=torch.float32)


def pseudo_huber(residual: torch.Tensor, delta: float) -> torch.Tensor:
    """Elementwise robust cost, ~ (r/delta)^2 / 2 for small r, ~ |r|/delta for large r."""
    return torch.sqrt(1.0 + (residual / delta) ** 2) - 1.0


def reprojection_cost(pred_px: torch.Tensor, obs: Observations, config: KeypointFitConfig) -> torch.Tensor:
    """Scalar: confidence-weighted robust 2D error, residuals as a fraction of the person's size."""
    r = (pred_px - obs.xy) / obs.size_px
    cost = pseudo_huber(r, config.robust_2d).sum(-1)
    return (cost * obs.weight).sum() / obs.weight.sum().clamp(min=1e-6)


def world_cost(pred_cam: torch.Tensor, obs: Observations, log_scale: torch.Tensor,
               hips: tuple[int, int], config: KeypointFitConfig) -> torch.Tensor:
    """Scalar: robust root-relative 3D error against the detector's metric landmarks.

    Both sides are taken relative to the hip midpoint; the landmarks are divided by one
    learnt scale for the whole video (their size is biased, their shape is the cue).
    """
    assert obs.world is not None and obs.world_weight is not None
    pred = pred_cam - pred_cam[:, list(hips)].mean(dim=1, keepdim=True)
    seen = obs.world - obs.world[:, list(hips)].mean(dim=1, keepdim=True)
    r = pred - seen * torch.exp(-log_scale)
    cost = pseudo_huber(r, config.robust_3d_m).sum(-1)
    return (cost * obs.world_weight).sum() / obs.world_weight.sum().clamp(min=1e-6)


def limit_excess(pose: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """(T, P, 3) radians beyond the soft limits (0 inside them)."""
    return torch.relu(lower - pose) + torch.relu(pose - upper)


def frame_steps(times: np.ndarray, fps: float) -> torch.Tensor:
    """(T-1,) seconds between consecutive frames at ``times`` (T,) s; ``1 / fps`` where the times do
    not increase. A video fitted at a reduced rate (``--fit-rate``) has steps of several frames."""
    dt = np.diff(np.asarray(times, dtype=np.float64))
    return torch.tensor(np.where(np.isfinite(dt) & (dt > 0), dt, 1.0 / fps), dtype=torch.float32)


def smoothness_cost(points: torch.Tensor, steps: torch.Tensor, config: KeypointFitConfig) -> torch.Tensor:
    """Scalar: mean squared acceleration of (T, K, 3) points (metres; ``steps`` (T-1,) seconds
    between frames, see :func:`frame_steps`), in units of ``config.smooth_accel_mps2``.

    Second differences over the real steps: with ``1 / fps`` steps on a video fitted at every
    sixth frame the accelerations came out 36x too large and the fit was smoothed flat."""
    if points.shape[0] < 3:
        return points.new_zeros(())
    velocity = (points[1:] - points[:-1]) / steps[:, None, None]                          # m/s
    acc = (velocity[1:] - velocity[:-1]) / (0.5 * (steps[1:] + steps[:-1]))[:, None, None]  # m/s^2
    return ((acc / config.smooth_accel_mps2) ** 2).sum(-1).mean()


class KeypointFit(MeshBackend):
    """The default mesh backend; see the module docstring."""

    name = "keypoint-fit"

    def __init__(self, body: BodyModel, marker_set: VirtualMarkerSet | None = None,
                 config: KeypointFitConfig = KeypointFitConfig()) -> None:
        marker_set = marker_set if marker_set is not None else keypoints_as_markers(body)
        if marker_set.body_model != body.name:
            raise InputError(
                f"marker set {marker_set.name!r} is defined on body model {marker_set.body_model!r}, "
                f"not on {body.name!r}; pick a marker set of that body model"
            )
        self.body = body
        self.marker_set = marker_set
        self.config = config
        # Body canonical frame -> camera frame of a level camera facing the subject.
        self._canonical = torch.tensor(CAMERA_FROM_GROUND) @ body.frame.matrix()
        limits = body.pose_limits()
        big = math.radians(360.0)
        lower = [[math.radians(a) for a in limits[n].lower] if n in limits else [-big] * 3
                 for n in body.pose_joint_names]
        upper = [[math.radians(a) for a in limits[n].upper] if n in limits else [big] * 3
                 for n in body.pose_joint_names]
        self._lower, self._upper = torch.tensor(lower), torch.tensor(upper)

    # ----------------------------------------------------------------------------- public
    def fit(self, keypoints: KeypointSequence) -> MeshFit:
        """Fit shape once and pose per frame; see :class:`MeshFit` for the frames and units."""
        cfg = self.config
        columns, regressor = match_keypoints(keypoints, self.body, cfg)
        obs = prepare_observations(keypoints, columns, regressor.names, cfg)
        width, height = keypoints.image_size
        camera = PinholeCamera.for_image(width, height, keypoints.focal_length_px)
        interp = interpolation_matrix(obs.valid)
        valid_t = torch.tensor(np.flatnonzero(obs.valid))

        rot0, transl0, pose0 = self._rigid_init(regressor, obs, valid_t, camera)
        fps = float(keypoints.fps) if keypoints.fps and keypoints.fps > 0 else 30.0
        steps = frame_steps(keypoints.times, fps)
        params = self._full_fit(regressor, obs, interp, camera, rot0, transl0, pose0, steps)
        return self._finish(keypoints, regressor, obs, interp, camera, params)

    # ----------------------------------------------------------------------------- posing
    def _camera_points(self, body_points: torch.Tensor, rot: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
        """(T, N, 3) body-frame points -> camera frame, orientation (T, 3) rot-vec, transl (T, 3) m."""
        r = axis_angle_to_matrix(rot) @ self._canonical                       # (T, 3, 3)
        return body_points @ r.transpose(1, 2) + transl[:, None, :]

    def _shape(self, raw: torch.Tensor) -> torch.Tensor:
        lo, hi = self.body.shape_bounds
        return lo + (hi - lo) * torch.sigmoid(raw)

    def _shape_raw(self, shape: torch.Tensor) -> torch.Tensor:
        lo, hi = self.body.shape_bounds
        u = ((shape - lo) / (hi - lo)).clamp(1e-4, 1 - 1e-4)
        return torch.log(u / (1 - u))

    # ----------------------------------------------------------------------------- stage 1
    def _rigid_init(self, regressor: VertexRegressor, obs: Observations, valid_t: torch.Tensor,
                    camera: PinholeCamera) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per fitted frame, the best of the rigid placements of each template body (rest pose and
        ``leg_templates``) from ``yaw_candidates`` headings: orientation (Tv, 3), translation (Tv, 3),
        and the template's pose (Tv, P, 3) to start the full stage from."""
        cfg = self.config
        body = self.body
        templates = self._templates()                                                # (N, P, 3)
        with torch.no_grad():
            kps = regressor.positions(body(templates, body.neutral_shape[None]).vertices)   # (N, K, 3)
        xy, w = obs.xy[valid_t], obs.weight[valid_t]
        w = _without_arms(w, obs.names, cfg.min_keypoints)
        tv, n_yaw, n_tpl = int(valid_t.shape[0]), cfg.yaw_candidates, templates.shape[0]
        n_cand = n_tpl * n_yaw
        transl = torch.cat([_initial_translation(r @ self._canonical.T, xy, w, camera) for r in kps])  # (N*Tv, 3)
        yaws = torch.arange(n_yaw, dtype=torch.float32) * (2 * math.pi / n_yaw)
        up = torch.tensor([0.0, -1.0, 0.0])
        # candidate c = (template i, yaw j) occupies rows (i * n_yaw + j) * tv ... + tv
        rot = (yaws[:, None] * up).repeat_interleave(tv, dim=0).repeat(n_tpl, 1).clone().requires_grad_(True)
        tr = transl.reshape(n_tpl, 1, tv, 3).expand(n_tpl, n_yaw, tv, 3).reshape(-1, 3).clone().requires_grad_(True)
        pts = kps.repeat_interleave(n_yaw * tv, dim=0)                               # (C*Tv, K, 3)
        xy_rep, w_rep = xy.repeat(n_cand, 1, 1), w.repeat(n_cand, 1)
        world = self._rigid_world(kps[0], obs, valid_t)
        hips = [obs.names.index("left_hip"), obs.names.index("right_hip")]

        def per_candidate() -> torch.Tensor:
            cam = self._camera_points(pts, rot, tr)
            px = project(cam, camera)
            cost = (pseudo_huber((px - xy_rep) / obs.size_px, cfg.robust_2d).sum(-1) * w_rep).sum(-1)
            if world is None:
                return cost
            seen, seen_w = world
            r = cam - cam[:, hips].mean(dim=1, keepdim=True) - seen.repeat(n_cand, 1, 1)
            return cost + cfg.weight_3d * (pseudo_huber(r, cfg.robust_3d_m).sum(-1) * seen_w.repeat(n_cand, 1)).sum(-1)

        opt = torch.optim.Adam([rot, tr], lr=0.05)
        for _ in range(cfg.rigid_iterations):
            opt.zero_grad()
            per_candidate().sum().backward()
            opt.step()
        with torch.no_grad():
            cost = per_candidate().reshape(n_tpl, n_yaw, tv)
            rest_cost = cost[0].amin(dim=0)                                           # (Tv,)
            cost[1:] = torch.where(cost[1:] < cfg.template_margin * rest_cost, cost[1:], torch.inf)
            best = cost.reshape(n_cand, tv).argmin(dim=0)                             # (Tv,)
            pick = best * tv + torch.arange(tv)
        return rot.detach()[pick], tr.detach()[pick], templates[best // n_yaw]

    def _rigid_world(self, rest: torch.Tensor, obs: Observations,
                     valid_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The metric landmarks of the fitted frames for the rigid stage, or None without them:
        hip-centred and brought to the template body's size (Tv, K, 3) m, and their weights (Tv, K),
        the arms left out as in the 2D term. ``rest``: (K, 3) the rest template's keypoints.

        Their scale is one per video, the median ratio of the torso (hip centre to shoulder
        centre), which no leg template changes; the full stage then fits it finely."""
        if obs.world is None or obs.world_weight is None:
            return None
        names = obs.names
        hips = [names.index("left_hip"), names.index("right_hip")]
        shoulders = [names.index("left_shoulder"), names.index("right_shoulder")]
        seen = obs.world[valid_t] - obs.world[valid_t][:, hips].mean(dim=1, keepdim=True)   # (Tv, K, 3)
        weight = _without_arms(obs.world_weight[valid_t], names, self.config.min_keypoints)
        weight = weight * (weight[:, hips] > 0).all(dim=1, keepdim=True)              # no hip centre, no cue
        torso_seen = seen[:, shoulders].mean(dim=1).norm(dim=-1)                          # (Tv,)
        torso_rest = (rest[shoulders].mean(dim=0) - rest[hips].mean(dim=0)).norm()
        core = (weight[:, hips + shoulders] > 0).all(dim=1)
        if not core.any():
            return None
        scale = float((torso_seen[core] / torso_rest).median())
        return seen / max(scale, 1e-3), weight

    def _templates(self) -> torch.Tensor:
        """(N, P, 3) the rest pose and every combination of the ``leg_templates`` (and the rest
        pose) on the left and right leg that this body's joints can express."""
        legs = [(0.0, 0.0)] + [(math.radians(h), math.radians(k)) for h, k in self.config.leg_templates]
        poses = [flexed_legs_pose(self.body, left, right) for left in legs for right in legs]
        found = [p for p in poses if p is not None]
        return torch.stack(found) if found else self.body.zero_pose(1)

    # ----------------------------------------------------------------------------- stage 2
    def _full_fit(self, regressor: VertexRegressor, obs: Observations, interp: torch.Tensor,
                  camera: PinholeCamera, rot0: torch.Tensor, transl0: torch.Tensor, pose0: torch.Tensor,
                  steps: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, body = self.config, self.body
        vertex_ids, regressor = regressor.sparsified(cfg.max_vertices_per_keypoint).compact()
        pose = pose0.clone().requires_grad_(True)
        rot = rot0.clone().requires_grad_(True)
        transl = transl0.clone().requires_grad_(True)
        shape_raw = self._shape_raw(body.neutral_shape)[None].clone().requires_grad_(True)
        log_scale = torch.zeros((), requires_grad=True)
        tilt = torch.zeros(2, requires_grad=True)                                   # camera pitch, roll (rad)
        floor = torch.zeros((), requires_grad=True)                                 # ground height along up (m)
        feet = [i for i, n in enumerate(obs.names) if n.endswith(FOOT_SUFFIXES)]
        hips = (obs.names.index("left_hip"), obs.names.index("right_hip"))
        prior_w = body.pose_prior_weights()[None]                             # (1, P, 3)
        lo, hi = body.shape_bounds
        neutral_u = (body.neutral_shape - lo) / (hi - lo)
        params = [pose, rot, transl, shape_raw] + ([log_scale] if obs.world is not None else [])
        if cfg.estimate_camera_tilt:
            params.append(tilt)
        if feet and cfg.weight_floor > 0:
            params.append(floor)
        with torch.no_grad():      # start the floor at the initial bodies' feet
            pts0 = self._keypoints_camera(regressor, interp, pose, rot, transl, self._shape(shape_raw), vertex_ids)
            if feet:
                floor.fill_(float((pts0[:, feet] @ self._up(tilt)).amin(dim=1).median()))

        def objective() -> torch.Tensor:
            shape = self._shape(shape_raw)
            pts = self._keypoints_camera(regressor, interp, pose, rot, transl, shape, vertex_ids)  # (T, K, 3)
            loss = reprojection_cost(project(pts, camera), obs, cfg)
            if obs.world is not None:
                loss = loss + cfg.weight_3d * world_cost(pts, obs, log_scale, hips, cfg)
            loss = loss + cfg.weight_pose * (prior_w * pose ** 2).sum((1, 2)).mean()
            loss = loss + cfg.weight_limits * (limit_excess(pose, self._lower, self._upper) ** 2).sum((1, 2)).mean()
            loss = loss + cfg.weight_smooth * smoothness_cost(pts, steps, cfg)
            up = self._up(tilt)
            loss = loss + cfg.weight_upright * self._tilt_cost(rot, up)
            if feet and cfg.weight_floor > 0:
                lowest = -torch.logsumexp(-(pts[:, feet] @ up) / 0.01, dim=1) * 0.01   # soft minimum (m)
                loss = loss + cfg.weight_floor * pseudo_huber(lowest - floor, cfg.robust_3d_m).mean()
            u = (shape - lo) / (hi - lo)
            return loss + cfg.weight_shape * ((u - neutral_u) ** 2).sum()

        OPTIMIZERS[cfg.optimizer](params, objective, cfg)
        return {"pose": pose.detach(), "rot": rot.detach(), "transl": transl.detach(), "tilt": tilt.detach(),
                "shape": self._shape(shape_raw).detach()[0]}

    def _keypoints_camera(self, regressor: VertexRegressor, interp: torch.Tensor, pose: torch.Tensor,
                          rot: torch.Tensor, transl: torch.Tensor, shape: torch.Tensor,
                          vertex_ids: torch.Tensor) -> torch.Tensor:
        """(T, K, 3) camera-frame keypoints of all frames from the fitted frames' parameters;
        ``regressor`` indexes into ``vertex_ids``."""
        pose_all, rot_all, transl_all = _expand(interp, pose), _expand(interp, rot), _expand(interp, transl)
        verts = self.body(pose_all, shape, vertex_ids=vertex_ids).vertices
        return self._camera_points(regressor.positions(verts), rot_all, transl_all)

    @staticmethod
    def _up(tilt: torch.Tensor) -> torch.Tensor:
        """(3,) the ground's up direction in the camera frame for a camera pitch/roll ``tilt`` (2,)."""
        return camera_from_level(tilt[0], tilt[1]) @ torch.tensor([0.0, -1.0, 0.0])

    def _tilt_cost(self, rot: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """Mean sin^2 of the angle between the body's up axis and the ground's up (camera frame)."""
        up_body = self.body.frame.matrix().T @ torch.tensor([0.0, 1.0, 0.0])
        body_up = (axis_angle_to_matrix(rot) @ self._canonical) @ up_body          # (Tv, 3)
        return torch.linalg.cross(body_up, up.expand_as(body_up)).pow(2).sum(-1).mean()

    # ----------------------------------------------------------------------------- outputs
    def _finish(self, keypoints: KeypointSequence, regressor: VertexRegressor, obs: Observations,
                interp: torch.Tensor, camera: PinholeCamera, params: dict[str, torch.Tensor]) -> MeshFit:
        cfg, body = self.config, self.body
        pose_all = _expand(interp, params["pose"])
        rot_all, transl_all = _expand(interp, params["rot"]), _expand(interp, params["transl"])
        shape = params["shape"][None]
        verts_cam, kps_cam = [], []
        with torch.no_grad():
            for s in range(0, pose_all.shape[0], cfg.chunk):
                sl = slice(s, s + cfg.chunk)
                v = self._camera_points(body(pose_all[sl], shape).vertices, rot_all[sl], transl_all[sl])
                verts_cam.append(v)
            vertices = torch.cat(verts_cam)
            kps_cam = regressor.positions(vertices)
            tilt = camera_from_level(params["tilt"][0], params["tilt"][1])
            rotation, offset = self._ground_transform(vertices, rot_all, transl_all, obs.valid, tilt)
            vertices_ground = vertices @ rotation.T + offset
            markers = self.marker_set.positions(vertices_ground)
            quality = self._quality(project(kps_cam, camera), obs, pose_all)
            rest_markers = self._rest_markers(shape)
        return MeshFit(
            body_model=body.name, times=np.asarray(keypoints.times, dtype=np.float64), fps=float(keypoints.fps),
            shape=params["shape"].numpy(), shape_names=body.shape_names, pose=pose_all.numpy(),
            marker_set=self.marker_set.name, marker_names=self.marker_set.names,
            markers=markers.numpy().astype(np.float64),
            vertices=vertices_ground.numpy() if cfg.keep_vertices else None,
            ground_from_camera=rotation.numpy(), ground_offset=offset.numpy(),
            focal_px=camera.focal_px, quality=quality, rest_markers=rest_markers,
        )

    def _rest_markers(self, shape: torch.Tensor) -> np.ndarray:
        """(M, 3) markers of the fitted shape in the rest pose, OpenSim axes, feet on Y=0."""
        rest = to_opensim_ground(self.body(self.body.zero_pose(1), shape).vertices[0], self.body.frame)
        centre = rest.mean(dim=0)
        rest = rest - torch.stack([centre[0], rest[:, 1].min(), centre[2]])
        return self.marker_set.positions(rest[None])[0].numpy().astype(np.float64)

    def _ground_transform(self, vertices: torch.Tensor, rot: torch.Tensor, transl: torch.Tensor,
                          valid: np.ndarray, tilt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground: Y up along the fitted camera tilt, +X the subject's heading at the first fitted
        frame, floor at Y=0, origin under the body origin at that frame."""
        first = int(np.flatnonzero(valid)[0])
        anterior_body = self.body.frame.matrix().T @ torch.tensor([1.0, 0.0, 0.0])
        facing = axis_angle_to_matrix(rot[first]) @ self._canonical @ anterior_body
        rotation = ground_from_camera(facing, tilt)
        ground = vertices @ rotation.T
        floor = torch.quantile(ground[..., 1].amin(dim=1), 0.05)       # robust lowest point
        start = rotation @ transl[first]
        offset = torch.stack([-start[0], -floor, -start[2]])
        return rotation, offset

    def _quality(self, pred_px: torch.Tensor, obs: Observations, pose: torch.Tensor) -> FitQuality:
        cfg = self.config
        dist = (pred_px - obs.xy).norm(dim=-1)
        wsum = obs.weight.sum(dim=1)
        reproj = ((dist * obs.weight).sum(dim=1) / wsum.clamp(min=1e-6)).numpy()
        reproj = np.where(obs.valid, reproj, np.nan)
        normalized = reproj / obs.size_px
        excess = np.degrees(limit_excess(pose, self._lower, self._upper).amax(dim=(1, 2)).numpy())
        plausible = obs.valid & (np.nan_to_num(normalized, nan=np.inf) <= cfg.max_normalized_residual) \
            & (excess <= cfg.max_limit_excess_deg)
        return FitQuality(reprojection_px=reproj, normalized=normalized, limit_excess_deg=excess,
                          interpolated=~obs.valid, plausible=plausible)


def _run_adam(params: list[torch.Tensor], objective, cfg: KeypointFitConfig) -> None:
    opt = torch.optim.Adam(params, lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.iterations, 1),
                                                       eta_min=cfg.learning_rate * 0.05)
    for _ in range(cfg.iterations):
        opt.zero_grad()
        objective().backward()
        opt.step()
        sched.step()


def _run_lbfgs(params: list[torch.Tensor], objective, cfg: KeypointFitConfig) -> None:
    """L-BFGS with a strong-Wolfe line search; ``iterations`` bounds the objective evaluations."""
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=cfg.iterations, max_eval=cfg.iterations,
                            history_size=20, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)


# The full stage's optimisers, by KeypointFitConfig.optimizer.
OPTIMIZERS = {"adam": _run_adam, "lbfgs": _run_lbfgs}


def _without_arms(weight: torch.Tensor, names: tuple[str, ...], min_keypoints: int) -> torch.Tensor:
    """(T, K) confidences with the arm keypoints zeroed, in frames that keep ``min_keypoints``."""
    keep = torch.tensor([n not in ARM_KEYPOINTS for n in names], dtype=weight.dtype)
    enough = ((weight * keep) > 0).sum(dim=1, keepdim=True) >= min_keypoints
    return torch.where(enough, weight * keep, weight)


def flexed_legs_pose(body: BodyModel, left: tuple[float, float],
                     right: tuple[float, float]) -> torch.Tensor | None:
    """(P, 3) each thigh flexed forward and each knee bent by its (hip, knee) angles (rad), the
    feet turned back flat (ankle hip - knee); None if the body has no such named joints."""
    roles = ROLES["anny" if body.name == "anny" else "smpl"]
    names = body.pose_joint_names
    pose = body.zero_pose(1)[0]
    for side, (hip, knee) in (("l", left), ("r", right)):
        joints = [roles[f"{side}_{j}"] for j in ("hip", "knee", "ankle")]
        if not all(j in names for j in joints):
            return None
        for joint, angle in zip(joints, (-hip, knee, hip - knee)):
            pose[names.index(joint), 0] = angle
    return pose


def _expand(interp: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """(Tv, ...) fitted-frame parameters -> (T, ...) all frames via the interpolation matrix."""
    return (interp @ params.reshape(params.shape[0], -1)).reshape(interp.shape[0], *params.shape[1:])


def _initial_translation(rest_cam: torch.Tensor, xy: torch.Tensor, weight: torch.Tensor,
                         camera: PinholeCamera) -> torch.Tensor:
    """(Tv, 3) camera-frame translations that put the rest body's keypoints (K, 3) at the
    observed keypoints' centre, at the depth where their spread in pixels matches."""
    w = weight / weight.sum(dim=1, keepdim=True).clamp(min=1e-6)                # (Tv, K)
    centre_px = (w[..., None] * xy).sum(dim=1)                                   # (Tv, 2)
    spread_px = ((w * ((xy - centre_px[:, None]) ** 2).sum(-1)).sum(dim=1)).sqrt()
    centre_3d = (w[..., None] * rest_cam[None]).sum(dim=1)                       # (Tv, 3)
    spread_3d = ((w * ((rest_cam[None, :, :2] - centre_3d[:, None, :2]) ** 2).sum(-1)).sum(dim=1)).sqrt()
    depth = camera.focal_px * spread_3d / spread_px.clamp(min=1.0)
    x = (centre_px[:, 0] - camera.cx) / camera.focal_px * depth
    y = (centre_px[:, 1] - camera.cy) / camera.focal_px * depth
    return torch.stack([x, y, depth], dim=1) - torch.cat([centre_3d[:, :2], torch.zeros_like(depth)[:, None]], dim=1)


def build_keypoint_fit(body_model: str | BodyModel = "anny", marker_set: str | VirtualMarkerSet | None = None,
                       config: KeypointFitConfig | None = None, **options: object) -> KeypointFit:
    """Factory registered as mesh backend ``"keypoint-fit"``.

    ``body_model``/``marker_set``: instances or registry names (the marker set defaults to the
    body model's built-in one); ``options``: :class:`KeypointFitConfig` fields.
    """
    from opensim_biopose.plugins import get_registry

    registry = get_registry()
    body = registry.create("body_models", body_model) if isinstance(body_model, str) else body_model
    if marker_set is None:
        marker_set = DEFAULT_MARKER_SETS.get(body.name)
    markers = registry.create("marker_sets", marker_set) if isinstance(marker_set, str) else marker_set
    cfg = config if config is not None else KeypointFitConfig(**options)  # type: ignore[arg-type]
    return KeypointFit(body, markers, cfg)


def keypoints_as_markers(body: BodyModel) -> VirtualMarkerSet:
    """The body's detector-keypoint correspondences as a marker set (for models without one)."""
    reg = body.keypoint_regressor()
    return VirtualMarkerSet(name=f"{body.name}-keypoints", version=1, body_model=body.name,
                            num_vertices=body.num_vertices, names=reg.names,
                            descriptions=tuple(f"detector keypoint {n}" for n in reg.names), regressor=reg)


# The marker set a body model uses unless told otherwise (None: its keypoints).
DEFAULT_MARKER_SETS: dict[str, str] = {"anny": "anny-pig53"}

__all__ = ["KeypointFit", "KeypointFitConfig", "Observations", "build_keypoint_fit", "interpolation_matrix",
           "keypoints_as_markers", "match_keypoints"]
