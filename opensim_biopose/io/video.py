"""Streamed video reading with OpenCV: upright BGR frames and container timestamps.

Frames come out upright: the container's rotation metadata (portrait phone videos) is
applied, by OpenCV itself when its backend supports ``CAP_PROP_ORIENTATION_AUTO`` and by
:func:`cv2.rotate` otherwise. Times are the container's presentation timestamps
(``CAP_PROP_POS_MSEC``), so variable-frame-rate videos keep their real timing; when a
backend reports no usable timestamps the frame index divided by the nominal fps is used.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from opensim_biopose.errors import InputError

log = logging.getLogger(__name__)

# Rotation metadata (degrees clockwise to display upright) -> cv2.rotate code.
_ROTATE_CODES: dict[int, int] = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video, for upright frames.

    ``width``/``height`` in pixels of the upright frame *before* any ``max_side`` scaling;
    ``fps`` nominal frames per second; ``frame_count`` the container's estimate (may be 0
    or approximate); ``rotation_deg`` the metadata rotation applied to frames.
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    rotation_deg: int


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: ``image`` (H, W, 3) BGR uint8 upright; ``time`` seconds from the start.

    ``scale`` is output pixels per original pixel (1.0 unless ``max_side`` shrank it).
    """

    index: int
    time: float
    image: np.ndarray
    scale: float


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"video {path} does not exist; check the path")
    if path.is_dir():
        raise InputError(f"video {path} is a folder; give a video file (mp4, mov, avi, ...)")
    if path.stat().st_size == 0:
        raise InputError(f"video {path} is empty (0 bytes); re-export or copy it again")


class VideoReader:
    """Iterate over a video's frames, streamed (one frame in memory at a time).

    ``max_side``: shrink frames so their longer side is at most this many pixels (None:
    full resolution); ``max_frames``: stop after this many frames; ``progress``: show a
    tqdm progress bar; ``backend_rotation``: let OpenCV apply rotation metadata (False:
    rotate with :func:`cv2.rotate` here, as on backends without orientation support).
    Use as a context manager or call :meth:`close`.

    Raises :class:`InputError` naming the file when it is missing, empty, not a video
    OpenCV can open, or has no decodable frame.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_side: int | None = None,
                 max_frames: int | None = None, progress: bool = False, backend_rotation: bool = True) -> None:
        self.path = Path(path)
        _check_file(self.path)
        self._max_side = max_side
        self._max_frames = max_frames
        self._progress = progress
        self._backend_rotation = backend_rotation
        self._cap = self._open()
        self._manual_rotation = self._setup_rotation(backend_rotation)
        self.info = self._read_info()
        self._used = False

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise InputError(f"video {self.path} cannot be opened: not a video OpenCV can decode "
                             "(corrupt or unsupported codec); convert it to H.264 mp4")
        return cap

    def _setup_rotation(self, backend: bool) -> int:
        """Ask OpenCV to apply rotation metadata; return the degrees we must rotate ourselves."""
        rotation = int(round(self._cap.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
        self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1 if backend else 0)
        auto = backend and self._cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 1
        self._rotation = rotation
        return 0 if auto else rotation

    def _read_info(self) -> VideoInfo:
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self._manual_rotation in (90, 270):
            w, h = h, w
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        count = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        return VideoInfo(self.path, w, h, fps if fps > 0 else 0.0, count, self._rotation)

    def _scale(self) -> float:
        longest = max(self.info.width, self.info.height)
        if self._max_side is None or longest <= self._max_side:
            return 1.0
        return self._max_side / longest

    def _upright(self, image: np.ndarray) -> np.ndarray:
        code = _ROTATE_CODES.get(self._manual_rotation)
        return image if code is None else cv2.rotate(image, code)

    def __iter__(self) -> Iterator[VideoFrame]:
        """Frames from the start (a second iteration re-opens the file)."""
        from tqdm import tqdm

        if self._used:
            self._cap.release()
            self._cap = self._open()
            self._setup_rotation(self._backend_rotation)
        self._used = True
        scale = self._scale()
        total = self.info.frame_count or None
        if self._max_frames is not None:
            total = min(total or self._max_frames, self._max_frames)
        bar = tqdm(total=total, unit="frame", desc=self.path.name, disable=not self._progress, leave=False)
        index, last_time = 0, -np.inf
        try:
            while self._max_frames is None or index < self._max_frames:
                ok, image = self._cap.read()
                if not ok or image is None:
                    break
                time = self._frame_time(index, last_time)
                image = self._upright(image)
                if scale != 1.0:
                    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                yield VideoFrame(index, time, image, scale)
                last_time = time
                index += 1
                bar.update(1)
        finally:
            bar.close()
        if index == 0:
            raise InputError(f"video {self.path} has no decodable frame (empty or corrupt stream)")
        expected = min(self.info.frame_count, self._max_frames or self.info.frame_count)
        if index < 0.9 * expected:
            log.warning("video %s ended after %d of %d frames: truncated or damaged stream?",
                        self.path, index, expected)

    def _frame_time(self, index: int, last_time: float) -> float:
        """Container timestamp of the frame just read; index/fps when the backend has none."""
        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        time = msec / 1000.0
        if np.isfinite(time) and time > last_time and (index == 0 or time > 0):
            return float(time)
        fps = self.info.fps or 30.0   # no fps at all: assume 30, the commonest camera rate
        return index / fps if index / fps > last_time else last_time + 1.0 / fps

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_frames_at(path: str | os.PathLike[str], indices: list[int], *,
                   max_side: int | None = None) -> dict[int, VideoFrame]:
    """The frames at ``indices`` (sorted internally), decoded in one streamed pass."""
    wanted = set(indices)
    out: dict[int, VideoFrame] = {}
    if not wanted:
        return out
    with VideoReader(path, max_side=max_side, max_frames=max(wanted) + 1) as reader:
        for frame in reader:
            if frame.index in wanted:
                out[frame.index] = frame
    return out
