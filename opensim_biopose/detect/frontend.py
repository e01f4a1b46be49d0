"""The video front end: video (or precomputed keypoints) -> one person's cleaned keypoints.

:func:`detect_video` is what the pipeline calls. ``detector_name`` is looked up among
registered detectors (run on every frame of a video) and keypoint sources (read files
another tool wrote); both then go through the same person selection and post-processing.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time as _time
from collections.abc import Iterable, Iterator
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
from opensim_biopose.io.video import VideoFrame, VideoReader
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
    # Frames decoded ahead by a second thread while the detector works (OpenCV's decoder and
    # MediaPipe's graph release the GIL): a 1080p H.264 frame takes ~4.5 ms to decode, a fifth of
    # the detector's time, and hides behind it on a second core. Bounded so memory holds a few
    # frames (6 MB each at 1080p) whatever the video's length; 0 decodes in the detector's thread.
    prefetch_frames: int = 4
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


@dataclass
class FrontEndTiming:
    """Seconds spent in the detector alone, waiting for decoded frames (decoding not hidden by the
    prefetch thread) and in the whole front end, and frames handled."""

    detector_s: float = 0.0
    decode_wait_s: float = 0.0
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
                     progress=config.progress) as reader, \
            contextlib.closing(prefetched(reader, config.prefetch_frames)) as frames:   # joined before the close
        info = reader.info
        wait = _time.perf_counter()
        for frame in frames:
            timing.decode_wait_s += _time.perf_counter() - wait
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
            wait = _time.perf_counter()
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


_END = object()     # the producer's last item: the video has no more frames


def prefetched(frames: Iterable[VideoFrame], depth: int) -> Iterator[VideoFrame]:
    """``frames`` decoded by a producer thread, at most ``depth`` ahead of the consumer.

    The same frames in the same order; an exception raised while decoding (an InputError for a
    video without a decodable frame) is raised here, in the consumer. Leaving the loop early stops
    and joins the producer, so the reader can be closed right after. ``depth`` 0: no thread.
    """
    if depth <= 0:
        yield from frames
        return
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    return
            put(_END)
        except BaseException as exc:            # handed to the consumer, which raises it
            put(exc)

    worker = threading.Thread(target=produce, name="biopose-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()


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
