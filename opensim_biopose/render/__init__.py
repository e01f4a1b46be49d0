"""Offscreen rendering of a body model in motion: videos with exact ground truth.

Stages, each usable alone:

- :mod:`.cameras` — camera rigs (side, front, 45 deg) placed around the subject: pure numpy.
- :mod:`.texture` — a generated clothes-like colouring of the mesh (shirt, trousers, shoes,
  skin, hair) and a checkered floor / plain wall backdrop: pure numpy.
- :mod:`.motions` — a motion library (gait, squat, sit-to-stand, arm raises) as body-model
  pose sequences, and sampled adult body shapes: pure torch.
- :mod:`.scene` — poses the body, puts it on the floor in OpenSim ground and reads the
  virtual markers off the same mesh (the ground truth of the rendered clip).
- :mod:`.offscreen` — the thin OpenGL part (pyrender, EGL on a headless CPU machine).
- :mod:`.video` — frames to an .mp4 file, atomically.
- :mod:`.clip` — all of the above for one clip: :func:`render_clip` (BGR frames + intrinsics + truth).
- :mod:`.truth` — the oracle IK of a clip's true virtual markers and the pipeline's error metrics.

The world frame of every rendered scene is OpenSim ground (X anterior, Y up, Z the
subject's right, metres) with the floor at Y = 0.
"""
from __future__ import annotations

from opensim_biopose.render.cameras import VIEWS, CameraRig, camera_rig, look_at
from opensim_biopose.render.clip import ClipSpec, RenderedClip, render_clip
from opensim_biopose.render.motions import MOTIONS, motion_pose, sample_adult_shapes
from opensim_biopose.render.video import write_video

__all__ = ["VIEWS", "CameraRig", "camera_rig", "look_at", "ClipSpec", "RenderedClip", "render_clip",
           "MOTIONS", "motion_pose", "sample_adult_shapes", "write_video"]
