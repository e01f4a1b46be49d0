"""A contact sheet: keypoints and person box drawn on frames sampled across the video.

For a person to check a detection at a glance: left-side keypoints blue, right-side red,
midline green, the person box yellow, frames without a person labelled "no person".
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from opensim_biopose.detect.layouts import SKELETON_EDGES
from opensim_biopose.detect.types import KeypointSequence
from opensim_biopose.io.atomic import atomic_path

# BGR colours.
LEFT_COLOUR = (255, 96, 0)
RIGHT_COLOUR = (0, 0, 255)
MID_COLOUR = (0, 200, 0)
BOX_COLOUR = (0, 255, 255)


@dataclass(frozen=True)
class OverlayConfig:
    """Contact sheet layout."""

    tiles: int = 6             # sampled frames: enough to see a gait cycle at a glance
    columns: int = 3
    tile_height: int = 480     # pixels; keypoints stay distinguishable, sheet stays < 1 MB
    min_confidence: float = 0.3   # keypoints below this are not drawn (as post-processing)


@dataclass(frozen=True)
class OverlayTile:
    """One sampled frame on the sheet: where it sits and where its keypoints were drawn.

    ``xy``: (K, 2) sheet pixels of the drawn keypoints (NaN: not drawn); ``box``: (4,)
    sheet pixels of the person box (NaN: no person).
    """

    frame_index: int
    origin: tuple[int, int]
    scale: float
    xy: np.ndarray
    box: np.ndarray


@dataclass(frozen=True)
class ContactSheet:
    """``image``: (H, W, 3) BGR uint8 sheet; ``tiles``: what was drawn where."""

    image: np.ndarray
    tiles: list[OverlayTile]


def sample_frames(num_frames: int, tiles: int) -> list[int]:
    """``tiles`` frame indices evenly spread over ``num_frames`` (all of them when fewer)."""
    if num_frames <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, min(tiles, num_frames))})


def _colour(name: str) -> tuple[int, int, int]:
    if name.startswith("left_") or name.endswith("_left"):
        return LEFT_COLOUR
    if name.startswith("right_") or name.endswith("_right"):
        return RIGHT_COLOUR
    return MID_COLOUR


def _frames(video: Path | None, indices: list[int], seq: KeypointSequence) -> dict[int, np.ndarray]:
    """The sampled frames from the video, or grey canvases when there is no readable video."""
    if video is not None:
        from opensim_biopose.errors import InputError
        from opensim_biopose.io.video import read_frames_at

        try:
            return {i: f.image for i, f in read_frames_at(video, indices).items()}
        except InputError:
            pass
    width, height = seq.image_size if min(seq.image_size) > 0 else (640, 480)
    return {i: np.full((height, width, 3), 96, np.uint8) for i in indices}


def draw_tile(frame: np.ndarray, seq: KeypointSequence, t: int, height: int,
              min_confidence: float) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Frame ``t`` shrunk to ``height`` with keypoints/box drawn; returns (tile, scale, xy, box)."""
    scale = height / frame.shape[0]
    tile = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    names = seq.layout.keypoint_names
    xy = seq.xy[t] * scale
    drawn = np.isfinite(xy).all(axis=1) & (seq.confidence[t] >= min_confidence)
    xy = np.where(drawn[:, None], xy, np.nan)
    box = seq.boxes[t] * scale if seq.boxes is not None else np.full(4, np.nan)
    if not seq.detected[t]:
        cv2.putText(tile, "no person", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 255), 2)
        return tile, scale, xy, np.full(4, np.nan)
    if np.isfinite(box).all():
        cv2.rectangle(tile, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), BOX_COLOUR, 2)
    for a, b in SKELETON_EDGES:
        if a in names and b in names and drawn[names.index(a)] and drawn[names.index(b)]:
            pa, pb = xy[names.index(a)], xy[names.index(b)]
            cv2.line(tile, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), (255, 255, 255), 1, cv2.LINE_AA)
    for k in np.flatnonzero(drawn):
        cv2.circle(tile, (int(round(xy[k, 0])), int(round(xy[k, 1]))), 4, _colour(names[k]), -1)
    cv2.putText(tile, f"t={seq.times[t]:.2f}s", (10, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (255, 255, 255), 1)
    return tile, scale, xy, box


def contact_sheet(seq: KeypointSequence, video: str | os.PathLike[str] | None,
                  config: OverlayConfig = OverlayConfig()) -> ContactSheet:
    """Draw ``seq`` on frames sampled from ``video`` (grey canvases if None/unreadable)."""
    indices = sample_frames(seq.num_frames, config.tiles)
    frames = _frames(Path(video) if video is not None else None, indices, seq)
    if not indices:
        return ContactSheet(np.full((config.tile_height, config.tile_height, 3), 96, np.uint8), [])
    drawn = [(i, *draw_tile(frames[i], seq, i, config.tile_height, config.min_confidence))
             for i in indices if i in frames]
    width = max(d[1].shape[1] for d in drawn)
    rows = -(-len(drawn) // config.columns)
    sheet = np.zeros((rows * config.tile_height, config.columns * width, 3), np.uint8)
    tiles = []
    for n, (i, tile, scale, xy, box) in enumerate(drawn):
        ox, oy = (n % config.columns) * width, (n // config.columns) * config.tile_height
        sheet[oy:oy + tile.shape[0], ox:ox + tile.shape[1]] = tile
        offset = np.array([ox, oy], float)
        tiles.append(OverlayTile(i, (ox, oy), scale, xy + offset, box + np.tile(offset, 2)))
    return ContactSheet(sheet, tiles)


def write_contact_sheet(path: str | os.PathLike[str], sheet: ContactSheet) -> Path:
    """Write the sheet as an image (format from the suffix, e.g. .png/.jpg), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), sheet.image):
            from opensim_biopose.errors import InputError
            raise InputError(f"cannot write overlay image {path}; use a .png or .jpg name")
    return path
