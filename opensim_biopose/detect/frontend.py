"""The video front end: video (or precomputed keypoints) -> one person's cleaned keypoints.

:func:`detect_video` is what the pipeline calls. ``detector_name`` is looked up among
registered detectors (run on every frame of a video) and keypoint sources (read files
another tool wrote); both then go through the same person selection and post-processing.
"""
from __future__ import annotations

import logging
import os
import time as _time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from opensim_biopose.detect.postprocess import PostprocessConfig, postprocess, select_person
from opensim_biopose.detect.types import (
    DetectionFrames,
    Detector,
    FrameDetection,
    KeypointSequence,
    KeypointSource,
)
from opensim_biopose.errors import BioPoseError, InputError
from opensim_biopose.io.video import VideoReader
from opensim_biopose.plugins import Registry, get_registry

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "mediapipe"


@dataclass(frozen=True)
class DetectConfig:
    """How the front end runs; built once by the CLI."""

    detector: str = DEFAULT_DETECTOR
    # Options passed to the detector/source factory (e.g. {"image_size": (1080, 1920)}).
    detector_options: dict[str, Any] = field(default_factory=dict)
    # Longer image side fed to the detector, pixels. None: full resolution. BlazePose
    # works on a 256x256 crop, so frames beyond ~1000 px only cost decoding time.
    max_side: int | None = None
    # Stop after this many frames (None: whole video); for quick looks and tests.
    max_frames: int | None = None
    progress: bool = False
    # Camera focal length in pixels of the full-resolution frame, when known (calibration);
    # None lets the mesh stage estimate it from the image size. Containers rarely carry it.
    focal_length_px: float | None = None
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


@dataclass
class FrontEndTiming:
    """Seconds spent in the detector alone and in the whole front end, and frames handled."""

    detector_s: float = 0.0
    total_s: float = 0.0
    frames: int = 0


def create_front_end(name: str, registry: Registry | None = None, **options: Any) -> Detector | KeypointSource:
    """Instantiate the detector or keypoint source registered as ``name``.

    Unknown name -> :class:`InputError` listing every available name (and broken plugins).
    """
    registry = registry or get_registry()
    for kind in ("detectors", "keypoint_sources"):
        if name in registry.entries[kind]:
            entry = registry.get(kind, name)
            try:
                return entry.factory(**options)
            except Exception as exc:   # a plugin's constructor: name the plugin, not a traceback
                raise BioPoseError(f"detector {name!r} (plugin {entry.plugin} {entry.version}) could not "
                                   f"start: {type(exc).__name__}: {exc}") from exc
    available = sorted([*registry.entries["detectors"], *registry.entries["keypoint_sources"]])
    raise InputError(f"unknown detector {name!r}; available: {', '.join(available) or 'none'}"
                     f"{registry.failure_hint()}")


def run_detector(detector: Detector, path: str | os.PathLike[str], config: DetectConfig,
                 timing: FrontEndTiming | None = None) -> DetectionFrames:
    """Run ``detector`` on every frame of the video at ``path``.

    A frame on which the detector raises counts as "nobody found"; the run goes on, and
    the failure is reported once, at the end (count and first error; also in ``meta``).
    A detector that fails on every frame is broken: :class:`BioPoseError` naming it.
    """
    timing = timing or FrontEndTiming()
    people, times, failed = [], [], []
    first_error: str | None = None
    detector.reset()
    scale = 1.0
    with VideoReader(path, max_side=config.max_side, max_frames=config.max_frames,
                     progress=config.progress) as reader:
        info = reader.info
        for frame in reader:
            scale = frame.scale
            t0 = _time.perf_counter()
            try:
                found = detector.detect_people(frame.image, frame.time)
            except Exception as exc:   # a plugin bug on one frame must not lose the video
                found = []
                failed.append(frame.index)
                if first_error is None:
                    first_error = f"frame {frame.index}: {type(exc).__name__}: {exc}"
            timing.detector_s += _time.perf_counter() - t0
            people.append([_unscale(d, scale) for d in found])
            times.append(frame.time)
    if failed and len(failed) == len(times):
        raise BioPoseError(f"detector {type(detector).__name__} failed on every frame of {path}; "
                           f"first error at {first_error}")
    if failed:
        log.warning("detector %s failed on %d of %d frames (marked missing); first error at %s",
                    type(detector).__name__, len(failed), len(times), first_error)
    meta = {"video": str(Path(path)), "rotation_deg": str(info.rotation_deg), "detector_scale": f"{scale:.4g}"}
    if first_error is not None:
        meta["detector_error"] = first_error
    return DetectionFrames(layout=detector.layout, times=np.asarray(times, float), people=people,
                           image_size=(info.width, info.height), fps=info.fps, failed_frames=failed, meta=meta)


def _unscale(det: FrameDetection, scale: float) -> FrameDetection:
    """Detections made on a shrunk frame, back in full-resolution pixels."""
    if scale == 1.0:
        return det
    return replace(det, xy=det.xy / scale, box=det.box / scale)


def detect_video(path: str | os.PathLike[str], detector_name: str | None = None,
                 config: DetectConfig = DetectConfig(), registry: Registry | None = None,
                 timing: FrontEndTiming | None = None) -> KeypointSequence:
    """One person's cleaned keypoints from a video (or a keypoint source's files).

    ``path``: a video for a detector; a file/folder for a keypoint source.
    ``detector_name`` overrides ``config.detector``. Returns a :class:`KeypointSequence`
    in full-resolution upright pixels; nobody in any frame -> an empty but valid sequence
    (``detected`` all False). Bad input -> :class:`InputError` naming it.
    """
    timing = timing or FrontEndTiming()
    name = detector_name or config.detector
    t0 = _time.perf_counter()
    front = create_front_end(name, registry, **config.detector_options)
    try:
        frames = _frames_from(front, Path(path), config, timing)
    finally:
        if isinstance(front, Detector):
            front.close()
    seq = select_person(frames, config.postprocess.person, config.postprocess.track_iou)
    seq.meta["detector"] = name
    if config.focal_length_px is not None:
        seq.focal_length_px = float(config.focal_length_px)
    if seq.detected.any():
        seq = postprocess(seq, config.postprocess)
    timing.total_s += _time.perf_counter() - t0
    timing.frames += seq.num_frames
    return seq


def _frames_from(front: Detector | KeypointSource, path: Path, config: DetectConfig,
                 timing: FrontEndTiming) -> DetectionFrames:
    if isinstance(front, KeypointSource):
        if not path.exists():
            raise InputError(f"keypoint input {path} does not exist; check the path")
        frames = front.read(path)
        if config.max_frames is not None:
            frames.times = frames.times[:config.max_frames]
            frames.people = frames.people[:config.max_frames]
        return frames
    return run_detector(front, path, config, timing)
