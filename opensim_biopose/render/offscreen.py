"""The thin OpenGL part: pyrender draws coloured meshes from a :class:`CameraRig`, offscreen.

On a headless machine pyrender needs EGL (Mesa's software rasteriser works on CPU, ~20-40 ms
a 640x480 frame). ``PYOPENGL_PLATFORM`` defaults to ``egl`` here unless the user set it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from opensim_biopose.errors import InputError
from opensim_biopose.render.cameras import CameraRig
from opensim_biopose.render.texture import FlatMesh, vertex_normals

# OpenCV camera axes (x right, y down, z forward) -> OpenGL's (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class RenderConfig:
    """Lighting of the scene."""

    # A key light from the camera and a fill from above-behind: the body reads as a solid
    # without shadows, which pyrender's software path renders slowly.
    key_light: float = 3.0
    fill_light: float = 1.5
    # Ambient keeps faces turned away from both lights from going black.
    ambient: float = 0.35
    background_rgb: tuple[int, int, int] = (190, 205, 215)


@functools.lru_cache(maxsize=1)
def gl_unavailable_reason() -> str | None:
    """None when offscreen OpenGL works here; otherwise why not (for skips and error messages)."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        import pyrender
    except ImportError as exc:
        return f"pyrender is not installed (pip install 'opensim-biopose[render]'): {exc}"
    try:
        renderer = pyrender.OffscreenRenderer(8, 8)
        renderer.delete()
    except Exception as exc:  # noqa: BLE001 - any GL/EGL failure means "not available"
        return (f"offscreen OpenGL ({os.environ['PYOPENGL_PLATFORM']}) is unavailable: {exc!r}; on Debian/Ubuntu "
                "install libegl1 libegl-mesa0 libgl1-mesa-dri")
    return None


def _mesh(pyrender, mesh: FlatMesh, smooth: bool):
    """A pyrender mesh with per-vertex colours and normals (positions in world metres)."""
    positions = mesh.positions.astype(np.float32)
    colours = np.concatenate([mesh.colours, np.full((len(positions), 1), 255, np.uint8)], 1) / 255.0
    normals = vertex_normals(positions.astype(np.float64), mesh.faces).astype(np.float32)
    material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0), metallicFactor=0.0,
                                                  roughnessFactor=0.9)
    prim = pyrender.Primitive(positions=positions, normals=normals, color_0=colours.astype(np.float32),
                              indices=mesh.faces.astype(np.uint32), material=material)
    return pyrender.Mesh([prim], is_visible=True) if smooth else pyrender.Mesh([prim])


class OffscreenRenderer:
    """Renders a body mesh over a fixed backdrop from one camera; ``render`` returns BGR uint8 frames.

    The backdrop is drawn once (colour and depth) and each frame draws the body alone, then keeps
    the body's pixels where it is nearer than the backdrop. Without shadows the body and the
    backdrop do not light each other, so this equals drawing both every frame, several times
    faster: Mesa's software rasteriser pays per shaded pixel, and the backdrop fills the image.
    """

    def __init__(self, rig: CameraRig, backdrop: tuple[FlatMesh, ...] = (), config: RenderConfig = RenderConfig()):
        reason = gl_unavailable_reason()
        if reason is not None:
            raise InputError(reason)
        import pyrender

        self._pyrender = pyrender
        self.rig = rig
        self._renderer = pyrender.OffscreenRenderer(rig.width, rig.height)
        backdrop_scene = self._lit_scene(config)
        for part in backdrop:
            backdrop_scene.add(_mesh(pyrender, part, smooth=False))
        colour, depth = self._renderer.render(backdrop_scene)
        self._backdrop_bgr = np.ascontiguousarray(colour[..., ::-1])
        self._backdrop_depth = np.where(depth > 0, depth, np.inf)          # 0 = nothing drawn there
        self._scene = self._lit_scene(config)
        self._body_node = None

    def _lit_scene(self, config: RenderConfig):
        """An empty scene with this rig's camera and the lights."""
        pyrender = self._pyrender
        k = self.rig.intrinsics
        bg = np.array(config.background_rgb) / 255.0
        scene = pyrender.Scene(bg_color=(*bg, 0.0), ambient_light=(config.ambient,) * 3)
        pose = np.linalg.inv(self.rig.extrinsics) @ _CV_TO_GL                 # camera -> world, GL axes
        scene.add(pyrender.IntrinsicsCamera(k.focal_px, k.focal_px, k.cx, k.cy, znear=0.05, zfar=50.0), pose=pose)
        scene.add(pyrender.DirectionalLight(intensity=config.key_light), pose=pose)
        above = np.eye(4)
        above[:3, :3] = _rotation_towards(np.array([0.3, -1.0, 0.2]))
        scene.add(pyrender.DirectionalLight(intensity=config.fill_light), pose=above)
        return scene

    def render(self, body: FlatMesh) -> np.ndarray:
        """(H, W, 3) uint8 BGR image of ``body`` (world metres) in front of the backdrop."""
        if self._body_node is not None:
            self._scene.remove_node(self._body_node)
        self._body_node = self._scene.add(_mesh(self._pyrender, body, smooth=True))
        rgba, depth = self._renderer.render(self._scene, flags=self._pyrender.RenderFlags.RGBA)
        # Alpha is the body's coverage (edges are antialiased): blend there, except where the
        # backdrop (the stool) is nearer than the body.
        frame = self._backdrop_bgr.copy()
        rows, cols = np.nonzero(rgba[..., 3].any(axis=1))[0], np.nonzero(rgba[..., 3].any(axis=0))[0]
        if rows.size == 0:
            return frame
        box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]             # blend only around the body
        hidden = (depth[box] > 0) & (depth[box] >= self._backdrop_depth[box])
        alpha = np.where(hidden[..., None], 0.0, rgba[box][..., 3:4] / 255.0)
        blend = alpha * rgba[box][..., 2::-1] + (1.0 - alpha) * self._backdrop_bgr[box]
        frame[box] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        return frame

    def close(self) -> None:
        """Free the GL context."""
        self._renderer.delete()

    def __enter__(self) -> OffscreenRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rotation_towards(direction: np.ndarray) -> np.ndarray:
    """(3, 3) rotation whose -Z axis (a pyrender light's direction) points along ``direction``."""
    z = -direction / np.linalg.norm(direction)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)
