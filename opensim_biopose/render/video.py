"""Frames to an .mp4 file with OpenCV, atomically (no partial file on failure)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from opensim_biopose.errors import InputError
from opensim_biopose.io.atomic import atomic_path

# MPEG-4 Part 2: pip's opencv wheels ship an FFmpeg without a software H.264 encoder (asking
# for "avc1" only tries a hardware encoder and logs errors), and every decoder reads mp4v.
CODECS: tuple[str, ...] = ("mp4v",)


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: float) -> str:
    """Write (H, W, 3) uint8 BGR ``frames`` to ``path`` (.mp4) at ``fps``; returns the codec used."""
    import cv2

    frames = list(frames)
    if not frames:
        raise InputError(f"write_video: no frames to write to {path}")
    height, width = frames[0].shape[:2]
    with atomic_path(path) as tmp:
        for codec in CODECS:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), float(fps), (width, height))
            if writer.isOpened():
                break
            writer.release()
        else:
            raise InputError(f"OpenCV cannot encode any of {CODECS} into {Path(path).name}")
        for frame in frames:
            if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                writer.release()
                raise InputError(f"write_video: frames must all be ({height}, {width}, 3) uint8 BGR")
            writer.write(frame)
        writer.release()
    return codec
