"""A generated clothes-like colouring of a body mesh and a backdrop: pure numpy.

No colour texture ships with Anny, and a grey body on a grey background is not detected by
MediaPipe at all. Colouring each vertex by the bone that moves it most gives clothes that
follow the body: a striped shirt on the trunk and upper arms, trousers on the pelvis and legs,
shoes on the feet, skin on the forearms, hands, neck and face, hair on the back and top of the
head. Slight per-vertex noise stands in for fabric and skin texture.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Garment of each bone, by the bone name's prefix (first match wins, checked in order).
_GARMENT_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("upperarm", "shirt"), ("shoulder", "shirt"), ("clavicle", "shirt"), ("spine", "shirt"),
    ("root", "trousers"), ("pelvis", "trousers"), ("upperleg", "trousers"), ("lowerleg", "trousers"),
    ("foot", "shoes"), ("toe", "shoes"),
)
GARMENTS: tuple[str, ...] = ("skin", "hair", "shirt", "trousers", "shoes")


@dataclass(frozen=True)
class Palette:
    """RGB colours (0-255) of the garments. Defaults: saturated, distinct, not grey."""

    # Contrasting colours on upper and lower body help a detector separate hips from wrists.
    skin: tuple[int, int, int] = (224, 172, 140)
    hair: tuple[int, int, int] = (60, 40, 28)
    shirt: tuple[int, int, int] = (200, 50, 45)
    shirt_stripe: tuple[int, int, int] = (245, 235, 220)
    trousers: tuple[int, int, int] = (40, 60, 130)
    shoes: tuple[int, int, int] = (30, 30, 30)
    # Stripe period along the body axis (m): a few centimetres reads as fabric, not as limbs.
    stripe_period_m: float = 0.06
    # Per-vertex brightness noise (fraction): breaks up flat shading like fabric weave.
    noise: float = 0.06


def garment_of_bone(bone: str) -> str:
    """The garment covering a bone's skin (``"skin"`` when none)."""
    for prefix, garment in _GARMENT_BY_PREFIX:
        if bone.startswith(prefix):
            return garment
    return "skin"


def dominant_bones(weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(V, S) skinning weights and bone indices -> (V,) index of the most influential bone."""
    return indices[np.arange(indices.shape[0]), np.argmax(weights, axis=1)]


def clothes_colours(bone_names: Sequence[str], dominant: np.ndarray, rest_up: np.ndarray,
                    rest_back: np.ndarray, palette: Palette = Palette(), seed: int = 0) -> np.ndarray:
    """(V, 3) uint8 RGB per-vertex colours of a clothed body.

    ``dominant``: (V,) bone index per vertex; ``rest_up``: (V,) height of each vertex in the rest
    pose (m, any origin); ``rest_back``: (V,) posterior coordinate in the rest pose (m, any origin;
    hair covers the back and top of the head).
    """
    garments = np.array([garment_of_bone(b) for b in bone_names])[dominant]
    rgb = np.zeros((dominant.shape[0], 3), dtype=float)
    for name in GARMENTS:
        rgb[garments == name] = getattr(palette, name)
    shirt = garments == "shirt"
    stripe = (np.floor(rest_up / (palette.stripe_period_m / 2.0)) % 2 == 1) & shirt
    rgb[stripe] = palette.shirt_stripe
    head = np.array([b == "head" for b in bone_names])[dominant]
    if head.any():
        top = rest_up[head].max()
        hair = head & ((rest_up > top - 0.07) | ((rest_back > np.median(rest_back[head])) & (rest_up > top - 0.17)))
        rgb[hair] = palette.hair
    rng = np.random.default_rng(seed)
    rgb *= 1.0 + palette.noise * rng.standard_normal((rgb.shape[0], 1))
    return np.clip(rgb, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class FlatMesh:
    """A triangle mesh with per-vertex colours: positions (N, 3) m, faces (F, 3), colours (N, 3) uint8."""

    positions: np.ndarray
    faces: np.ndarray
    colours: np.ndarray


def checker_floor(centre: np.ndarray, half_size_m: float = 6.0, tile_m: float = 0.5,
                  colours: tuple[tuple[int, int, int], ...] = ((205, 200, 185), (120, 125, 110))) -> FlatMesh:
    """A checkered floor in the plane Y = 0 around ``centre`` (world, m); each tile has its own vertices."""
    n = int(round(2 * half_size_m / tile_m))
    x0, z0 = centre[0] - half_size_m, centre[2] - half_size_m
    pos, faces, cols = [], [], []
    for i in range(n):
        for j in range(n):
            a, b = x0 + i * tile_m, z0 + j * tile_m
            k = len(pos)
            pos += [(a, 0.0, b), (a + tile_m, 0.0, b), (a + tile_m, 0.0, b + tile_m), (a, 0.0, b + tile_m)]
            faces += [(k, k + 2, k + 1), (k, k + 3, k + 2)]     # counter-clockwise seen from above
            cols += [colours[(i + j) % 2]] * 4
    return FlatMesh(np.array(pos), np.array(faces), np.array(cols, dtype=np.uint8))


def backdrop_wall(camera_position: np.ndarray, centre: np.ndarray, behind_m: float = 3.0, width_m: float = 14.0,
                  height_m: float = 4.0, bands: int = 14,
                  colours: tuple[tuple[int, int, int], ...] = ((170, 190, 200), (150, 172, 185))) -> FlatMesh:
    """A vertical wall ``behind_m`` beyond ``centre`` as seen from the camera, in soft vertical bands."""
    view = np.array([centre[0] - camera_position[0], 0.0, centre[2] - camera_position[2]])
    view /= np.linalg.norm(view)
    across = np.cross(np.array([0.0, 1.0, 0.0]), view)
    base = np.array([centre[0], 0.0, centre[2]]) + behind_m * view - across * width_m / 2
    step = width_m / bands
    pos, faces, cols = [], [], []
    for i in range(bands):
        a, b = base + across * step * i, base + across * step * (i + 1)
        k = len(pos)
        pos += [a, b, b + [0, height_m, 0], a + [0, height_m, 0]]
        faces += [(k, k + 1, k + 2), (k, k + 2, k + 3)]
        cols += [colours[i % 2]] * 4
    mesh = FlatMesh(np.array(pos), np.array(faces), np.array(cols, dtype=np.uint8))
    return _facing(mesh, camera_position)


def box(lower: np.ndarray, upper: np.ndarray, colour: tuple[int, int, int] = (150, 105, 65),
        top_colour: tuple[int, int, int] = (175, 128, 82)) -> FlatMesh:
    """An axis-aligned box between world corners ``lower`` and ``upper`` (m), faces outwards (a stool)."""
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    centre = (lo + hi) / 2
    pos, faces, cols = [], [], []
    for axis in range(3):
        for side in (lo, hi):
            k = len(pos)
            u, v = [a for a in range(3) if a != axis]
            quad = []
            for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = np.empty(3)
                p[axis] = side[axis]
                p[u] = (lo, hi)[du][u]
                p[v] = (lo, hi)[dv][v]
                quad.append(p)
            pos += quad
            faces += [(k, k + 1, k + 2), (k, k + 2, k + 3)]
            cols += [top_colour if (axis == 1 and side is hi) else colour] * 4
    mesh = FlatMesh(np.array(pos), np.array(faces), np.array(cols, dtype=np.uint8))
    return _outwards(mesh, centre)


def _outwards(mesh: FlatMesh, centre: np.ndarray) -> FlatMesh:
    """Wind every face so that its normal points away from ``centre`` (a convex solid)."""
    tri = mesh.positions[mesh.faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inwards = np.einsum("fi,fi->f", normal, tri[:, 0] - centre) < 0
    faces = mesh.faces.copy()
    faces[inwards] = faces[inwards][:, ::-1]
    return FlatMesh(mesh.positions, faces, mesh.colours)


def _facing(mesh: FlatMesh, eye: np.ndarray) -> FlatMesh:
    """Flip the winding of faces whose front side points away from ``eye`` (single-sided culling)."""
    tri = mesh.positions[mesh.faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    away = np.einsum("fi,fi->f", normal, eye - tri[:, 0]) < 0
    faces = mesh.faces.copy()
    faces[away] = faces[away][:, ::-1]
    return FlatMesh(mesh.positions, faces, mesh.colours)


def vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) unit area-weighted vertex normals of a triangle mesh with (N, 3) positions."""
    tri = positions[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(positions)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
