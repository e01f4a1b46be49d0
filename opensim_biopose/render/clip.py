"""Render a clip: a library motion of a body shape from one camera rig, with its ground truth."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from opensim_biopose.body.base import BodyModel
from opensim_biopose.body.markers import VirtualMarkerSet
from opensim_biopose.render.cameras import CameraRig, camera_rig
from opensim_biopose.render.motions import motion_pose
from opensim_biopose.render.offscreen import OffscreenRenderer, RenderConfig
from opensim_biopose.render.scene import PosedSequence, body_colours, pose_sequence, standing_height
from opensim_biopose.render.texture import FlatMesh, backdrop_wall, checker_floor


@dataclass(frozen=True)
class ClipSpec:
    """What to render."""

    motion: str = "gait"
    view: str = "side"
    # 3.5 s at 30 fps: three gait strides, a squat and a half; short enough for CPU rendering.
    seconds: float = 3.5
    fps: float = 30.0
    # Portrait, like a phone held upright: a standing person fills the frame's height.
    width: int = 480
    height: int = 640
    # ~38 deg horizontal field of view: a phone's main camera cropped to portrait.
    focal_px: float = 700.0
    # Fraction of the image height a standing subject fills: large enough for the detector,
    # with room for raised arms and a walking stride.
    fill: float = 0.72
    render: RenderConfig = field(default_factory=RenderConfig)


@dataclass(frozen=True)
class RenderedClip:
    """frames: (T, H, W, 3) uint8 BGR; times: (T,) s; shape: (S,) phenotypes; truth in ``sequence``."""

    spec: ClipSpec
    frames: np.ndarray
    times: np.ndarray
    rig: CameraRig
    sequence: PosedSequence
    shape: np.ndarray
    # Seconds spent in OpenGL (scene setup + all frames), for throughput figures.
    render_s: float = 0.0
    # Standing height of the body (m), as a lab measures it (the pipeline's optional height_m).
    stature_m: float = 0.0


def clip_times(spec: ClipSpec) -> torch.Tensor:
    """(T,) frame times (s)."""
    return torch.arange(int(round(spec.seconds * spec.fps)), dtype=torch.float32) / spec.fps


def render_clip(body: BodyModel, markers: VirtualMarkerSet, shape: torch.Tensor, spec: ClipSpec = ClipSpec(),
                colour_seed: int = 0) -> RenderedClip:
    """Pose ``body`` (phenotypes ``shape`` (S,)) through ``spec.motion`` and render it from ``spec.view``."""
    times = clip_times(spec)
    seq = pose_sequence(body, motion_pose(spec.motion, body, times), shape, markers)
    rig = camera_rig(spec.view, seq.centre, width=spec.width, height=spec.height, focal_px=spec.focal_px,
                     subject_height_m=seq.stature, fill=spec.fill)
    colours = body_colours(body, seed=colour_seed)
    backdrop = (checker_floor(seq.centre), backdrop_wall(rig.position, seq.centre), *seq.props)
    t0 = time.perf_counter()
    with OffscreenRenderer(rig, backdrop, spec.render) as renderer:
        frames = np.stack([renderer.render(FlatMesh(v, seq.faces, colours)) for v in seq.vertices])
    render_s = time.perf_counter() - t0
    return RenderedClip(spec, frames, times.numpy().astype(np.float64), rig, seq, shape.numpy(), render_s,
                        standing_height(body, shape))
