"""Readers of keypoints written by other tools, as :class:`KeypointSource` objects.

Every reader returns :class:`DetectionFrames` (everyone in every frame, pixels in the
upright image, missing keypoints NaN with confidence 0); the front end then picks one
person and post-processes exactly as for a video detector.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from opensim_biopose.detect.layouts import BLAZEPOSE33, COCO17, HALPE26, OPENPOSE_BODY25
from opensim_biopose.detect.types import DetectionFrames, FrameDetection, KeypointLayout, KeypointSource
from opensim_biopose.errors import InputError

# OpenPose-format JSON carries no layout name: the keypoint count tells which one.
LAYOUT_BY_COUNT: dict[int, KeypointLayout] = {
    l.num_keypoints: l for l in (OPENPOSE_BODY25, COCO17, HALPE26, BLAZEPOSE33)
}


@dataclass(frozen=True)
class SourceConfig:
    """Options shared by the keypoint sources (``DetectConfig.detector_options``)."""

    # Frame rate for formats without times (OpenPose/COCO JSON); 30 fps is the commonest
    # camera rate. Ignored when ``video`` is given or the file has times (.trc).
    fps: float | None = None
    # (width, height) of the video frames, pixels. JSON keypoints do not say; without it
    # (or ``video``) the size is estimated as the keypoints' extent.
    image_size: tuple[int, int] | None = None
    # The video the keypoints were computed on: fps and size come from its container.
    video: str | None = None


DEFAULT_FPS = 30.0


def _video_fps_size(config: SourceConfig) -> tuple[float | None, tuple[int, int] | None]:
    if config.video is None:
        return config.fps, (tuple(config.image_size) if config.image_size else None)  # type: ignore[return-value]
    from opensim_biopose.io.video import VideoReader

    with VideoReader(config.video) as reader:
        return reader.info.fps or config.fps, (reader.info.width, reader.info.height)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"keypoint file {path} is not readable JSON ({exc}); check the file") from exc


def keypoint_box(xy: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """x0, y0, x1, y1 around the keypoints with confidence > 0, padded on each side by 10% of
    the larger extent (so a side-on, thin skeleton still gets a usable box); NaN if none."""
    pts = xy[(conf > 0) & np.isfinite(xy).all(axis=1)]
    if len(pts) == 0:
        return np.full(4, np.nan)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.1 * max(float((hi - lo).max()), 1.0)
    return np.concatenate([lo - pad, hi + pad])


def _detection(flat: list[float] | np.ndarray, num_kp: int, time: float, source: Path,
               conf_scale: float = 1.0, box: np.ndarray | None = None) -> FrameDetection:
    """One person from a flat [x0, y0, c0, x1, ...] list; c == 0 (or x = y = 0) is missing."""
    arr = np.asarray(flat, float)
    if arr.size != 3 * num_kp:
        raise InputError(f"{source}: a person has {arr.size} keypoint values, expected {3 * num_kp}")
    arr = arr.reshape(num_kp, 3)
    xy, conf = arr[:, :2].copy(), np.clip(arr[:, 2] * conf_scale, 0.0, 1.0)
    missing = (conf <= 0) | ((xy == 0).all(axis=1))
    xy[missing], conf[missing] = np.nan, 0.0
    return FrameDetection(time=time, xy=xy, confidence=conf,
                          box=box if box is not None else keypoint_box(xy, conf))


def _estimated_size(people: list[list[FrameDetection]]) -> tuple[int, int]:
    pts = np.concatenate([d.xy for frame in people for d in frame] or [np.full((1, 2), np.nan)])
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        return (0, 0)        # no 2D at all (metric .trc): size unknown
    hi = pts.max(axis=0)
    return (int(np.ceil(hi[0])) + 1, int(np.ceil(hi[1])) + 1)


def _frames(layout: KeypointLayout, people: list[list[FrameDetection]], fps: float,
            size: tuple[int, int] | None, source: Path) -> DetectionFrames:
    meta = {"keypoint_source": str(source)}
    if size is None:
        size = _estimated_size(people)
        meta["image_size"] = "estimated from the keypoints' extent"
    return DetectionFrames(layout=layout, times=np.arange(len(people)) / fps, people=people,
                           image_size=size, fps=fps, meta=meta)


class OpenPoseJsonSource(KeypointSource):
    """A folder of OpenPose ``*_keypoints.json`` files (one per frame, name order), or one file.

    Each file: ``{"people": [{"pose_keypoints_2d": [x, y, c, ...]}, ...]}``, pixels. The
    layout follows the keypoint count (25 BODY_25, 17 COCO, 26 HALPE, 33 BlazePose), as
    Pose2Sim writes all of them in this format.
    """

    layout = OPENPOSE_BODY25

    def __init__(self, config: SourceConfig = SourceConfig()) -> None:
        self.config = config

    def _files(self, path: Path) -> list[Path]:
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if not files:
            raise InputError(f"OpenPose keypoint folder {path} holds no .json file")
        return files

    def read(self, path: Path) -> DetectionFrames:
        files = self._files(Path(path))
        fps, size = _video_fps_size(self.config)
        fps = fps or DEFAULT_FPS
        people: list[list[FrameDetection]] = []
        layout: KeypointLayout | None = None
        for t, file in enumerate(files):
            data = _load_json(file)
            persons = data.get("people") if isinstance(data, dict) else None
            if persons is None:
                raise InputError(f"{file} is not OpenPose output: it has no 'people' list")
            frame = []
            for person in persons:
                flat = person.get("pose_keypoints_2d") or []
                if not flat:
                    continue
                if layout is None:
                    layout = _layout_for(len(flat), file)
                frame.append(_detection(flat, layout.num_keypoints, t / fps, file))
            people.append(frame)
        self.layout = layout or OPENPOSE_BODY25
        return _frames(self.layout, people, fps, size, Path(path))


def _layout_for(num_values: int, file: Path) -> KeypointLayout:
    if num_values % 3 or num_values // 3 not in LAYOUT_BY_COUNT:
        known = ", ".join(f"{n} ({l.name})" for n, l in LAYOUT_BY_COUNT.items())
        raise InputError(f"{file}: {num_values} values in pose_keypoints_2d; expected 3 x one of {known}")
    return LAYOUT_BY_COUNT[num_values // 3]


class CocoJsonSource(KeypointSource):
    """COCO person keypoints in one JSON file; frames are images in ``image_id`` order.

    Either a results list ``[{"image_id", "keypoints": [x, y, score, ...], "bbox"?}]``
    (score used as confidence, clipped to [0, 1]) or a dataset dict with ``images``,
    ``annotations`` (visibility flag v: 0 missing, 1 occluded -> 0.5, 2 visible -> 1) and
    optionally ``categories[0].keypoints`` naming the keypoints.
    """

    layout = COCO17

    def __init__(self, config: SourceConfig = SourceConfig()) -> None:
        self.config = config

    def read(self, path: Path) -> DetectionFrames:
        path = Path(path)
        data = _load_json(path)
        if isinstance(data, list):
            annotations, image_ids, conf_scale = data, None, 1.0
        elif isinstance(data, dict) and "annotations" in data:
            annotations, conf_scale = data["annotations"], 0.5       # v in {0, 1, 2}
            image_ids = sorted(img["id"] for img in data.get("images", [])) or None
            self.layout = _coco_layout(data, path)
        else:
            raise InputError(f"{path} is not COCO keypoints: expected a results list or a dict with 'annotations'")
        fps, size = _video_fps_size(self.config)
        fps = fps or DEFAULT_FPS
        if size is None and isinstance(data, dict) and data.get("images"):
            first = data["images"][0]
            size = (int(first["width"]), int(first["height"])) if "width" in first else None
        try:
            ids = image_ids or sorted({a["image_id"] for a in annotations})
            frame_of = {image_id: t for t, image_id in enumerate(ids)}
            people: list[list[FrameDetection]] = [[] for _ in ids]
            for a in annotations:
                t = frame_of[a["image_id"]]
                box = _xywh_to_box(a["bbox"]) if "bbox" in a else None
                people[t].append(_detection(a["keypoints"], self.layout.num_keypoints, t / fps, path,
                                            conf_scale, box))
        except (KeyError, TypeError) as exc:
            raise InputError(f"{path}: malformed COCO keypoint entry (missing {exc}); "
                             "each needs 'image_id' and 'keypoints'") from exc
        return _frames(self.layout, people, fps, size, path)


def _coco_layout(data: dict[str, Any], path: Path) -> KeypointLayout:
    cats = data.get("categories") or []
    names = cats[0].get("keypoints") if cats else None
    if not names or [n.lower() for n in names] == list(COCO17.keypoint_names):
        return COCO17
    return KeypointLayout(name=f"coco:{path.stem}", keypoint_names=tuple(_snake(n) for n in names))


def _xywh_to_box(bbox: list[float]) -> np.ndarray:
    x, y, w, h = (float(v) for v in bbox)
    return np.array([x, y, x + w, y + h])


# Pose2Sim / Sports2D marker names -> the shared snake_case names of detect.layouts.
_SPECIAL_NAMES = {"hip": "mid_hip", "chest": "neck"}


def _snake(name: str) -> str:
    """'RBigToe' -> 'right_big_toe', 'LHip' -> 'left_hip', 'Hip' -> 'mid_hip', 'Nose' -> 'nose'."""
    side = ""
    m = re.match(r"^([RL])(?=[A-Z])", name)
    if m:
        side = "right_" if m.group(1) == "R" else "left_"
        name = name[1:]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().replace(" ", "_")
    if not side:
        snake = _SPECIAL_NAMES.get(snake, snake)
    return side + snake


class TrcKeypointSource(KeypointSource):
    """Pose2Sim / Sports2D keypoints in a ``.trc`` file, read with OpenSim's TRC adapter.

    Marker names from the header become keypoint names ('RKnee' -> 'right_knee').
    ``Units`` px/pixel(s): X, Y are image pixels; Sports2D writes Y pointing up
    (negated image y), so a file whose median Y is negative is flipped back to y down.
    Metric units (m, cm, mm): the points are 3D in the file's frame; they go to
    ``world_xyz`` in metres and the 2D ``xy`` stays NaN.
    """

    layout = COCO17

    def __init__(self, config: SourceConfig = SourceConfig()) -> None:
        self.config = config

    def read(self, path: Path) -> DetectionFrames:
        path = Path(path)
        table, units = _read_trc_table(path)
        names = [str(n) for n in table.getColumnLabels()]
        times = np.array(list(table.getIndependentColumn()), float)
        flat = table.flatten()      # keep the owners alive while numpy reads the matrix
        matrix = flat.getMatrix()
        values = np.array(matrix.to_numpy(), float, copy=True).reshape(len(times), len(names), 3)
        if units in _PIXEL_UNITS and np.nanmedian(values[..., 1]) < 0:
            values[..., 1] *= -1.0   # y-up pixels (Sports2D) -> image y down
        self.layout = KeypointLayout(name=f"trc:{path.stem}", keypoint_names=tuple(_snake(n) for n in names),
                                     world_frame=None if units in _PIXEL_UNITS else f"{path.name} lab frame, metres")
        fps = _trc_rate(table, times) or self.config.fps or DEFAULT_FPS
        people = [[self._detection(values[t], times[t], units)] for t in range(len(times))]
        people = [[d for d in frame if np.isfinite(d.confidence).any() and d.confidence.any()] for frame in people]
        frames = _frames(self.layout, people, fps, _video_fps_size(self.config)[1], path)
        frames.times = times
        frames.meta["trc_units"] = units
        return frames

    def _detection(self, points: np.ndarray, time: float, units: str) -> FrameDetection:
        valid = np.isfinite(points).all(axis=1) & ~(points == 0).all(axis=1)
        conf = valid.astype(float)
        if units in _PIXEL_UNITS:
            xy = points[:, :2].copy()
            xy[~valid] = np.nan
            return FrameDetection(time=float(time), xy=xy, confidence=conf, box=keypoint_box(xy, conf))
        from opensim_biopose.io.trc import UNIT_SCALE

        world = points * UNIT_SCALE[units]
        world[~valid] = np.nan
        xy = np.full((len(points), 2), np.nan)
        return FrameDetection(time=float(time), xy=xy, confidence=conf, box=np.full(4, np.nan), world_xyz=world)


_PIXEL_UNITS = ("px", "pixel", "pixels")


def _read_trc_table(path: Path) -> tuple[Any, str]:
    """The file as an ``opensim.TimeSeriesTableVec3`` and its (lower-case) unit."""
    import opensim as osim

    if not path.is_file():
        raise InputError(f"keypoint file {path} does not exist or is not a file")
    with open(path, "rb") as fh:
        if not fh.readline(4096).startswith(b"PathFileType"):
            raise InputError(f"keypoint file {path} is not a .trc file (first line should start with 'PathFileType')")
    try:
        table = osim.TimeSeriesTableVec3(str(path))
    except RuntimeError as exc:
        raise InputError(f"OpenSim could not read keypoint file {path}: {str(exc).strip().splitlines()[0]}") from exc
    units = table.getTableMetaDataAsString("Units").strip().lower() if table.hasTableMetaDataKey("Units") else "m"
    from opensim_biopose.io.trc import UNIT_SCALE

    if units not in _PIXEL_UNITS and units not in UNIT_SCALE:
        raise InputError(f"{path}: unknown Units {units!r}; expected px or one of {sorted(UNIT_SCALE)}")
    return table, units



def _trc_rate(table: Any, times: np.ndarray) -> float | None:
    """The header's DataRate, else the median time step's rate; None if neither exists."""
    if table.hasTableMetaDataKey("DataRate"):
        try:
            return float(table.getTableMetaDataAsString("DataRate"))
        except ValueError:
            pass
    return 1.0 / float(np.median(np.diff(times))) if len(times) > 1 else None
