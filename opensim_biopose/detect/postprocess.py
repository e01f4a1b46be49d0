"""Keypoint post-processing: pick one person, fill short dropouts, low-pass filter.

Pure numpy/scipy on dense arrays; no detector or video code here.

* Person selection: detections are linked into tracks frame to frame by box overlap
  (IoU), then one track is kept by a selection rule from :data:`SELECTION_RULES`
  ("largest" mean box area, "central" mean box centre closest to the image centre,
  "longest" most frames).
* Left/right swaps: a frame whose left_*/right_* labels, mirrored, sit much closer to the
  previous frame (cost ratio < ``swap_ratio``) is swapped back; if that would flip most of
  the clip, the detector's own labelling is kept instead (it is right more often than not).
* Gap filling: a keypoint missing for at most ``max_gap_s`` seconds between two valid
  samples is filled by linear interpolation (flagged in ``interpolated``); longer gaps,
  and gaps at the start or end, stay NaN with confidence 0.
* Filtering: zero-phase Butterworth low-pass (``scipy.signal.filtfilt``), confidence-
  weighted as a normalised filter: ``filt(w * x) / filt(w)``, so a low-confidence sample
  pulls the curve less than a confident one. Each run of valid samples is filtered on its
  own (NaN gaps split runs). Cutoff rule: ``min(cutoff_hz, nyquist_fraction * fs / 2)``,
  i.e. 6 Hz at any camera rate of 15 fps or more, and 80% of Nyquist below that.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import signal

from opensim_biopose.detect.types import DetectionFrames, FrameDetection, KeypointSequence


@dataclass(frozen=True)
class PostprocessConfig:
    """How keypoints are cleaned after detection."""

    # Samples under this confidence are treated as missing: MediaPipe's visibility falls
    # below ~0.3 for occluded limbs whose positions are then guesses.
    min_confidence: float = 0.3
    # Dropouts up to 0.2 s (12 frames at 60 fps) are bridged: shorter than a gait phase,
    # so linear interpolation cannot invent a step; longer gaps stay NaN and flagged.
    max_gap_s: float = 0.2
    # 6 Hz: the usual low-pass cutoff for walking kinematics, from residual analysis
    # of gait marker data (Winter, Biomechanics and Motor Control of Human Movement, 2009).
    cutoff_hz: float = 6.0
    # Keep the cutoff below Nyquist at low frame rates (fs/2 * 0.8).
    nyquist_fraction: float = 0.8
    # 4th-order Butterworth run forwards and backwards (filtfilt): zero phase lag.
    filter_order: int = 4
    # Set False to get gap-filled but unfiltered keypoints.
    filter: bool = True
    # Undo frames where the detector swapped the body's left and right (MediaPipe does in
    # some views): swap back when the mirrored labels are much closer to the previous frame.
    fix_swaps: bool = True
    # "Much closer": a real swap costs about twice the left-right separation against ~0
    # for the mirrored labels; legs crossing cost about the same both ways, so 0.5 keeps them.
    swap_ratio: float = 0.5
    # Which track to keep when several people appear: a key of SELECTION_RULES.
    person: str = "largest"
    # Two detections in consecutive frames belong to one track above this box IoU.
    track_iou: float = 0.3


# ---------------------------------------------------------------------------- tracking


@dataclass
class Track:
    """One person followed over frames: ``detections[t]`` or None where not seen."""

    detections: list[FrameDetection | None]

    def boxes(self) -> np.ndarray:
        """(T, 4) x0, y0, x1, y1 pixels, NaN where not seen."""
        return np.array([d.box if d is not None else np.full(4, np.nan) for d in self.detections], float)

    @property
    def frames_seen(self) -> int:
        return sum(d is not None for d in self.detections)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes (0 when either is degenerate or NaN)."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def link_tracks(people: list[list[FrameDetection]], iou_threshold: float = 0.3,
                max_missing: int = 30) -> list[Track]:
    """Greedily link per-frame detections into tracks by IoU with each track's last box.

    A track not seen for more than ``max_missing`` frames is closed. When no frame holds
    more than one person (single-person detectors) everything is one track.
    """
    num_frames = len(people)
    if max((len(f) for f in people), default=0) <= 1:
        return [Track([f[0] if f else None for f in people])] if any(people) else []
    tracks: list[Track] = []
    last_seen: list[int] = []
    for t, found in enumerate(people):
        open_ids = [i for i, seen in enumerate(last_seen) if t - seen <= max_missing]
        pairs = sorted(((box_iou(tracks[i].detections[last_seen[i]].box, d.box), i, j)
                        for i in open_ids for j, d in enumerate(found)), reverse=True)
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        for iou, i, j in pairs:
            if iou < iou_threshold or i in used_tracks or j in used_dets:
                continue
            tracks[i].detections[t] = found[j]
            last_seen[i] = t
            used_tracks.add(i)
            used_dets.add(j)
        for j, d in enumerate(found):
            if j not in used_dets:
                dets: list[FrameDetection | None] = [None] * num_frames
                dets[t] = d
                tracks.append(Track(dets))
                last_seen.append(t)
    return tracks


def _largest(track: Track, image_size: tuple[int, int]) -> float:
    b = track.boxes()
    return float(np.nansum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))   # area x frames seen


def _central(track: Track, image_size: tuple[int, int]) -> float:
    b = track.boxes()
    centre = np.array(image_size, float) / 2
    dist = np.linalg.norm((b[:, :2] + b[:, 2:]) / 2 - centre, axis=1) / np.linalg.norm(centre)
    return float(np.nansum(1.0 - dist))                                      # closeness x frames seen


def _longest(track: Track, image_size: tuple[int, int]) -> float:
    return float(track.frames_seen)


#: Selection rule name -> score (higher wins) of a track in an image of (width, height).
SELECTION_RULES: dict[str, Callable[[Track, tuple[int, int]], float]] = {
    "largest": _largest,
    "central": _central,
    "longest": _longest,
}


def select_person(frames: DetectionFrames, rule: str = "largest", iou_threshold: float = 0.3) -> KeypointSequence:
    """Track everyone in ``frames`` and return the track that ``rule`` scores highest as a
    dense :class:`KeypointSequence` (NaN/0 where not seen). No person at all -> an empty
    but valid sequence (``detected`` all False)."""
    if rule not in SELECTION_RULES:
        from opensim_biopose.errors import InputError
        raise InputError(f"unknown person selection rule {rule!r}; choose one of {', '.join(SELECTION_RULES)}")
    tracks = link_tracks(frames.people, iou_threshold)
    score = SELECTION_RULES[rule]
    best = max(tracks, key=lambda tr: score(tr, frames.image_size), default=None)
    chosen = best.detections if best is not None else [None] * len(frames.people)
    seq = _dense_sequence(frames, chosen)
    seq.meta["people_tracks"] = str(len(tracks))
    seq.meta["person_rule"] = rule
    return seq


def _dense_sequence(frames: DetectionFrames, chosen: list[FrameDetection | None]) -> KeypointSequence:
    num_frames, num_kp = len(chosen), frames.layout.num_keypoints
    xy = np.full((num_frames, num_kp, 2), np.nan)
    conf = np.zeros((num_frames, num_kp))
    boxes = np.full((num_frames, 4), np.nan)
    has_world = any(d is not None and d.world_xyz is not None for d in chosen)
    world = np.full((num_frames, num_kp, 3), np.nan) if has_world else None
    for t, d in enumerate(chosen):
        if d is None:
            continue
        xy[t], conf[t], boxes[t] = d.xy, d.confidence, d.box
        if world is not None and d.world_xyz is not None:
            world[t] = d.world_xyz
    meta = dict(frames.meta)
    if frames.failed_frames:
        meta["failed_frames"] = ",".join(map(str, frames.failed_frames))
    return KeypointSequence(
        layout=frames.layout, times=np.asarray(frames.times, float), xy=xy, confidence=conf,
        detected=np.array([d is not None for d in chosen], bool), image_size=frames.image_size,
        fps=frames.fps, world_xyz=world, boxes=boxes, meta=meta,
    )


# ---------------------------------------------------------------------------- left/right swaps


def mirror_pairs(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (left, right) of keypoints named ``left_<x>`` / ``right_<x>``."""
    index = {n: i for i, n in enumerate(names)}
    pairs = [(i, index["right_" + n[5:]]) for n, i in index.items()
             if n.startswith("left_") and "right_" + n[5:] in index]
    return np.array([p[0] for p in pairs], int), np.array([p[1] for p in pairs], int)


def find_left_right_swaps(xy: np.ndarray, left: np.ndarray, right: np.ndarray,
                          ratio: float = 0.5, min_pairs: int = 3) -> np.ndarray:
    """(T,) bool: frames whose left/right labels are swapped relative to the clip's majority.

    ``xy``: (T, K, 2) pixels, NaN where missing. Frame t is compared with the last frame
    seen before it (after its own correction); a frame needs ``min_pairs`` pairs seen in
    both to be judged.
    """
    num_frames = xy.shape[0]
    swapped = np.zeros(num_frames, bool)
    if left.size == 0:
        return swapped
    prev = np.full((left.size * 2, 2), np.nan)
    for t in range(num_frames):
        cur = np.concatenate([xy[t, left], xy[t, right]])
        mirrored = np.concatenate([xy[t, right], xy[t, left]])
        ok = np.isfinite(cur).all(axis=1) & np.isfinite(prev).all(axis=1)
        if ok.sum() >= 2 * min_pairs:
            keep = np.linalg.norm(cur[ok] - prev[ok], axis=1).sum()
            swap = np.linalg.norm(mirrored[ok] - prev[ok], axis=1).sum()
            swapped[t] = swap < ratio * keep
        now = mirrored if swapped[t] else cur
        prev = np.where(np.isfinite(now), now, prev)
    if swapped.sum() > num_frames / 2:   # the first frame was the odd one out
        swapped = ~swapped
    return swapped


def _swap_frames(a: np.ndarray, frames: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """Swap keypoints ``left`` <-> ``right`` (axis 1) of ``a`` in place at ``frames``."""
    rows = np.flatnonzero(frames)[:, None]
    a[rows, left], a[rows, right] = a[rows, right], a[rows, left].copy()


# ---------------------------------------------------------------------------- gaps


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index runs where the 1-D bool ``mask`` is True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def fill_gaps(values: np.ndarray, times: np.ndarray, max_gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate interior NaN runs lasting at most ``max_gap_s``.

    ``values``: (T, ...) with NaN where missing (a sample is missing when any of its
    trailing components is NaN); ``times``: (T,) seconds. Returns the filled copy and a
    (T,) bool mask of filled samples. The gap's duration is measured between the valid
    samples on either side, minus one frame step, so at 60 fps 12 missing frames = 0.2 s.
    """
    out = values.copy()
    flat = out.reshape(len(times), -1)
    missing = np.isnan(flat).any(axis=1)
    filled = np.zeros(len(times), bool)
    for start, stop in _runs(missing):
        if start == 0 or stop == len(times):
            continue                        # no valid sample on one side: leave it
        step = (times[stop] - times[start - 1]) / (stop - start + 1)
        if times[stop] - times[start - 1] - step > max_gap_s + 1e-9:
            continue
        w = (times[start:stop] - times[start - 1]) / (times[stop] - times[start - 1])
        flat[start:stop] = flat[start - 1] + w[:, None] * (flat[stop] - flat[start - 1])
        filled[start:stop] = True
    return out, filled


# ---------------------------------------------------------------------------- filtering


def cutoff_for(fps: float, config: PostprocessConfig) -> float:
    """The low-pass cutoff (Hz) used at sampling rate ``fps``: see the module docstring."""
    return min(config.cutoff_hz, config.nyquist_fraction * fps / 2.0)


def lowpass_weighted(values: np.ndarray, weights: np.ndarray, fps: float, config: PostprocessConfig) -> np.ndarray:
    """Confidence-weighted zero-phase Butterworth low-pass of (T, C) ``values``.

    ``weights``: (T,) >= 0. NaN rows split the signal into runs filtered separately;
    runs too short for filtfilt's edge padding (< 4 samples) are returned unchanged.
    """
    b, a = signal.butter(config.filter_order, cutoff_for(fps, config), fs=fps)
    out = values.copy()
    valid = ~np.isnan(values).any(axis=1)
    for start, stop in _runs(valid):
        n = stop - start
        if n < 4:
            continue
        pad = min(3 * max(len(a), len(b)), n - 1)
        w = np.clip(weights[start:stop], 1e-3, None)[:, None]
        num = signal.filtfilt(b, a, w * values[start:stop], axis=0, padlen=pad)
        den = signal.filtfilt(b, a, w, axis=0, padlen=pad)
        plain = signal.filtfilt(b, a, values[start:stop], axis=0, padlen=pad)
        # the normalised filter is undefined where the filtered weight nears zero
        out[start:stop] = np.where(den > 0.05, num / np.where(den > 0.05, den, 1.0), plain)
    return out


def effective_fps(times: np.ndarray, nominal: float) -> float:
    """Sampling rate from the median frame step (variable-frame-rate safe); nominal if < 2 frames."""
    steps = np.diff(times)
    steps = steps[steps > 0]
    return float(1.0 / np.median(steps)) if steps.size else nominal


def postprocess(seq: KeypointSequence, config: PostprocessConfig = PostprocessConfig()) -> KeypointSequence:
    """Drop low-confidence samples, undo left/right swaps, fill short gaps, low-pass filter;
    returns a new sequence.

    Applied per keypoint to ``xy`` (pixels) and, when present, ``world_xyz`` (metres).
    ``confidence`` of a filled sample is the smaller of its neighbours'.
    """
    xy = seq.xy.copy()
    conf = seq.confidence.copy()
    low = conf < config.min_confidence
    xy[low] = np.nan
    world = None if seq.world_xyz is None else seq.world_xyz.copy()
    missing = low | np.isnan(xy).any(axis=-1)
    if world is not None:
        world[low] = np.nan
        missing &= np.isnan(world).any(axis=-1)     # 3D-only keypoints (metric .trc) keep confidence
    conf[missing] = 0.0
    swaps = 0
    if config.fix_swaps:
        left, right = mirror_pairs(seq.layout.keypoint_names)
        swapped = find_left_right_swaps(xy, left, right, config.swap_ratio)
        for a in (xy, conf, world):
            if a is not None:
                _swap_frames(a, swapped, left, right)
        swaps = int(swapped.sum())
    fps = effective_fps(seq.times, seq.fps)
    interpolated = np.zeros(conf.shape, bool)
    for k in range(seq.layout.num_keypoints):
        xy[:, k], filled = fill_gaps(xy[:, k], seq.times, config.max_gap_s)
        conf[:, k] = _fill_confidence(conf[:, k], filled)
        interpolated[:, k] = filled
        if world is not None:
            world[:, k], _ = fill_gaps(world[:, k], seq.times, config.max_gap_s)
        if config.filter and fps > 0:
            xy[:, k] = lowpass_weighted(xy[:, k], conf[:, k], fps, config)
            if world is not None:
                world[:, k] = lowpass_weighted(world[:, k], conf[:, k], fps, config)
    meta = dict(seq.meta)
    meta["lowpass_hz"] = f"{cutoff_for(fps, config):.3g}" if config.filter and fps > 0 else "off"
    meta["max_gap_s"] = f"{config.max_gap_s:g}"
    meta["left_right_swaps_fixed"] = str(swaps)
    return replace(seq, xy=xy, confidence=conf, world_xyz=world, interpolated=interpolated, meta=meta)


def _fill_confidence(conf: np.ndarray, filled: np.ndarray) -> np.ndarray:
    out = conf.copy()
    for start, stop in _runs(filled):
        out[start:stop] = min(conf[start - 1], conf[stop])
    return out
