"""NeurIK inference: a trained network bound to a Skeleton, solving whole trials.

``NeurIK.solve`` maps markers by name onto the checkpoint's marker order, runs the network
over overlapping sliding windows, blends the windows (Hann weights), converts the root pose
back to root coordinates and returns every coordinate of the model in OpenSim internal
units (rad / m). A per-frame network (one-frame windows, no temporal layers: the lab
checkpoints) skips the window machinery: it runs on all frames at once with its weights gathered
at load (:func:`.model.run_frames`), and its outputs are decoded into coordinates by one compiled
loop (:mod:`.native`). Its coordinates are the windowed path's: translations to the bit, rotations
to the float32 rounding of the root rotation (~1e-5 deg); tests/test_neurik_frames.py holds them.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from opensim_biopose.errors import CheckpointError, InputError
from opensim_biopose.neurik import native
from opensim_biopose.neurik.checkpoint import CheckpointMeta, load_checkpoint
from opensim_biopose.neurik.features import (
    CoordinateRanges, decode, frame_features, point_in_ground, window_features,
)
from opensim_biopose.neurik.frames import project_to_rotation, rotation_6d_to_matrix
from opensim_biopose.neurik.layout import ModelLayout, RootPose, build_layout, solve_root_coordinates
from opensim_biopose.neurik.model import NeurIKNet, build_neurik, frame_weights, is_per_frame, run_frames

log = logging.getLogger(__name__)

# Frames (windows x window length) pushed through the network at once: bounds memory on long
# trials. Counted in frames, not windows, so that short windows (the lab checkpoints' window is
# one frame) run a whole trial in one batch: per-call overhead, not arithmetic, is their cost.
_WINDOW_FRAMES = 4096
# Frames per root-coordinate solve (each frame tries a grid of starts).
_ROOT_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class NeurIKStages:
    """Wall seconds of :meth:`NeurIK.solve`'s stages: the network over the windows (features,
    network, decoding, blending; per-frame networks: features and network) and the coordinates
    (range clamps and root-coordinate solve; per-frame networks: also the decoding); ``total_s``
    is the whole call."""

    windows_s: float
    root_s: float
    total_s: float


@dataclasses.dataclass(frozen=True, eq=False)
class NeurIKResult:
    """Unrefined NeurIK answer for one trial.

    Attributes:
        q: (T, n) every coordinate of the Skeleton, rad / m (dependent ones filled by its constraints).
        coordinate_names: n names, in the Skeleton's order.
        times: (T,) seconds.
        scales: (NB, 3) segment scale factors (x, y, z of each body frame) or None when the
            network does not predict them.
        markers_used: checkpoint markers that were found in the input.
        empty_frames: (T,) bool, frames without any usable marker (their q is interpolated).
        stages: where the time went (:class:`NeurIKStages`).
    """

    q: Tensor
    coordinate_names: tuple[str, ...]
    times: np.ndarray
    scales: Tensor | None
    markers_used: tuple[str, ...]
    empty_frames: np.ndarray
    stages: NeurIKStages | None = None


def check_compatible(meta: CheckpointMeta, sk, path: str | os.PathLike[str]) -> None:
    """Raise CheckpointError unless the checkpoint was trained for this Skeleton."""
    coords = tuple(sk.coordinate_names)
    if meta.coordinate_names != coords:
        extra = sorted(set(meta.coordinate_names) - set(coords))
        missing = sorted(set(coords) - set(meta.coordinate_names))
        raise CheckpointError(
            f"NeurIK checkpoint {path} was trained for another model ({meta.model_file or 'unknown file'}): "
            f"coordinates differ (only in checkpoint: {extra[:6]}, only in model: {missing[:6]}); "
            "train one for this model with `opensim-biopose train-neurik --model MODEL.osim --out CKPT`")
    absent = [m for m in meta.marker_names if m not in set(sk.marker_names)]
    if absent:
        raise CheckpointError(f"NeurIK checkpoint {path} expects markers {absent[:8]} that the model lacks; "
                              "train one for this marker set with `opensim-biopose train-neurik`")
    if meta.model_hash != sk.model_hash:
        raise CheckpointError(
            f"NeurIK checkpoint {path} was trained for a model with hash {meta.model_hash[:12]} "
            f"({meta.model_file or 'unknown file'}) but this model's hash is {sk.model_hash[:12]} "
            "(segment dimensions, joints or markers differ); train one for this model with "
            "`opensim-biopose train-neurik --model MODEL.osim --out CKPT`")


def _hann(w: int) -> Tensor:
    return 0.05 + torch.sin(math.pi * (torch.arange(w, dtype=torch.float64) + 0.5) / w) ** 2


def _window_starts(t: int, w: int, stride: int) -> list[int]:
    if t <= w:
        return [0]
    starts = list(range(0, t - w + 1, stride))
    if starts[-1] != t - w:
        starts.append(t - w)
    return starts


def _interpolate_empty(q: Tensor, empty: np.ndarray, times: np.ndarray) -> Tensor:
    if not empty.any():
        return q
    good = ~empty
    qn = q.numpy().copy()
    for j in range(qn.shape[1]):
        qn[empty, j] = np.interp(times[empty], times[good], qn[good, j])
    return torch.from_numpy(qn)


@dataclasses.dataclass(frozen=True, eq=False)
class _Decoded:
    """The network's answer in physical units: q_pred (T, P) float64 predicted coordinates (rad / m),
    root: root body pose in ground (float64) or None, scales: (NB, 3) or None."""

    q_pred: Tensor
    root: RootPose | None
    scales: Tensor | None


@dataclasses.dataclass(frozen=True, eq=False)
class _FrameOutputs:
    """A per-frame network's raw answer for T frames, float32.

    Attributes:
        q_pred: (T, P) predicted coordinates (rad / m), before the range clamps.
        root_6d: (T, 6) root orientation in each frame's reference frame (6D), or None.
        frame_rotation: (T, 3, 3) the reference frames (reference-to-ground), or None.
        ground_position: (T, 3) the root body position in ground (m), or None.
        log_scales: (T, NB, 3) each frame's log segment scale factors, or None.
        scales: (NB, 3) the trial's segment scale factors (float64), or None.
    """

    q_pred: Tensor
    root_6d: Tensor | None
    frame_rotation: Tensor | None
    ground_position: Tensor | None
    log_scales: Tensor | None
    scales: Tensor | None = None

    @classmethod
    def cat(cls, parts: list[_FrameOutputs]) -> _FrameOutputs:
        """Consecutive chunks of frames joined (before the scale factors' mean)."""
        def joined(name: str) -> Tensor | None:
            values = [getattr(p, name) for p in parts]
            return torch.cat(values) if values[0] is not None else None

        return cls(*(joined(name) for name in ("q_pred", "root_6d", "frame_rotation", "ground_position",
                                                "log_scales")))


@dataclasses.dataclass(frozen=True, eq=False)
class _Bounds:
    """Coordinate defaults and range clamps in the Skeleton's dtype, converted once.

    Attributes:
        default_q: (n,) default coordinates, clamped to their ranges where the model clamps them.
        lower_predicted, upper_predicted: (P,) bounds of the predicted coordinates, -inf / +inf
            where unclamped (rad / m).
    """

    default_q: Tensor
    lower_predicted: Tensor
    upper_predicted: Tensor

    @classmethod
    def of(cls, layout: ModelLayout, dtype: torch.dtype) -> _Bounds:
        inf = torch.full_like(layout.lower, math.inf)
        lower = torch.where(layout.clamped, layout.lower, -inf).to(dtype)
        upper = torch.where(layout.clamped, layout.upper, inf).to(dtype)
        default = layout.default_q.to(dtype).clamp(lower, upper)
        return cls(default, lower[layout.predicted].clone(), upper[layout.predicted].clone())


class NeurIK:
    """A trained NeurIK network for one Skeleton and marker list."""

    def __init__(self, net: NeurIKNet, sk, layout: ModelLayout, meta: CheckpointMeta) -> None:
        self.net = net.eval()
        self.sk = sk
        self.layout = layout
        self.meta = meta
        # Gathered once: a per-frame network runs on plain tensors (see model.run_frames).
        self.frame_weights = frame_weights(net) if is_per_frame(net.cfg) else None
        self._marker_slot = {m: k for k, m in enumerate(layout.marker_names)}
        self._bounds = _Bounds.of(layout, sk.marker_offsets.dtype)
        self._ranges = CoordinateRanges.of(layout, torch.float32)   # the network's dtype
        self._decoder = (native.frame_decoder(layout, self._bounds.default_q, self._bounds.lower_predicted,
                                              self._bounds.upper_predicted)
                         if self.frame_weights is not None else None)

    @classmethod
    def load(cls, ckpt_path: str | os.PathLike[str], sk) -> NeurIK:
        """Load a checkpoint for ``sk``; CheckpointError if corrupt or trained for another model/markers."""
        tensors, meta = load_checkpoint(ckpt_path)
        check_compatible(meta, sk, ckpt_path)
        layout = build_layout(sk, meta.marker_names)
        net = build_neurik(meta.config)
        prefix = "net."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"NeurIK checkpoint {ckpt_path} does not match its own config ({exc}); "
                                  "it is corrupt: retrain it") from exc
        return cls(net, sk, layout, meta)

    @property
    def marker_names(self) -> tuple[str, ...]:
        return self.layout.marker_names

    def _map_markers(self, names: Sequence[str], xyz: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
        index = {n: i for i, n in enumerate(names)}
        known = self._marker_slot
        unknown = [n for n in names if n not in known]
        if unknown:
            log.warning("NeurIK ignores %d markers it was not trained with: %s", len(unknown), ", ".join(unknown[:10]))
        used = tuple(m for m in self.layout.marker_names if m in index)
        if not used:
            raise InputError(
                f"none of the input markers {list(names)[:8]} is known to this NeurIK checkpoint "
                f"(it reads {list(self.layout.marker_names)[:8]}...); rename the markers or train for this set")
        columns = [index[m] for m in used]
        if len(used) == len(known):   # every checkpoint marker present: one gather
            return xyz[:, columns], used
        out = np.full((xyz.shape[0], len(known), 3), np.nan, dtype=np.float64)
        out[:, [known[m] for m in used]] = xyz[:, columns]
        return out, used

    @torch.no_grad()
    def _run_windows(self, markers: Tensor, visible: Tensor, stride: int) -> _Decoded:
        t = markers.shape[0]
        w = self.meta.config.window
        idx_all = torch.arange(max(t, w)).clamp_max(t - 1)     # short trials: repeat the last frame
        starts = _window_starts(max(t, w), w, stride)
        hann = _hann(w)
        lay = self.layout
        acc_q = torch.zeros(t, lay.predicted.numel(), dtype=torch.float64)
        acc_r = torch.zeros(t, 3, 3, dtype=torch.float64)
        acc_p = torch.zeros(t, 3, dtype=torch.float64)
        acc_w = torch.zeros(t, dtype=torch.float64)
        scales, scale_w = None, 0.0
        per_chunk = max(1, _WINDOW_FRAMES // w)
        offsets = torch.arange(w)
        for c0 in range(0, len(starts), per_chunk):
            chunk = torch.tensor(starts[c0:c0 + per_chunk])
            frames = idx_all[chunk[:, None] + offsets]                              # (S, W)
            inp = window_features(markers[frames], visible[frames], lay)
            out = self.net(inp.relative, inp.visible, inp.centroid)
            dec = decode(out, inp, lay)
            weight = hann.unsqueeze(0) * visible[frames].any(-1).double().add(1e-3)  # (S, W)
            flat_f, flat_w = frames.flatten(), weight.flatten()
            acc_w.index_add_(0, flat_f, flat_w)
            acc_q.index_add_(0, flat_f, dec.q[..., lay.predicted].double().flatten(0, 1) * flat_w[:, None])
            if dec.root_ground is not None:
                acc_r.index_add_(0, flat_f, dec.root_ground.rotation.double().flatten(0, 1) * flat_w[:, None, None])
                acc_p.index_add_(0, flat_f, dec.root_ground.position.double().flatten(0, 1) * flat_w[:, None])
            if dec.scales is not None:
                n_vis = visible[frames].double().sum((1, 2))                       # (S,)
                s = (dec.scales.double().log() * n_vis[:, None, None]).sum(0)
                scales = s if scales is None else scales + s
                scale_w += float(n_vis.sum())
        acc_w = acc_w.clamp_min(1e-12)
        q_pred = acc_q / acc_w[:, None]
        root = RootPose(project_to_rotation(acc_r / acc_w[:, None, None]), acc_p / acc_w[:, None])
        scales = torch.exp(scales / max(scale_w, 1e-12)) if scales is not None else None
        return _Decoded(q_pred, root, scales)

    @torch.no_grad()
    def _run_frames(self, markers: Tensor, visible: Tensor, stride: int) -> _FrameOutputs:
        """``_run_windows`` for a per-frame network, before decoding: every frame is its own window,
        so there is nothing to blend (the windowed path's weighted mean of one value is that value).
        Frames go through in the windowed path's chunks (_WINDOW_FRAMES), which bound memory on long
        trials. The float32 steps of the decoding are done here, in the windowed path's own
        operations (see :mod:`.native`): the predicted coordinates and the root position in ground.
        ``stride`` is ignored."""
        t = markers.shape[0]
        parts = [self._frames_chunk(markers[i:i + _WINDOW_FRAMES], visible[i:i + _WINDOW_FRAMES])
                 for i in range(0, t, _WINDOW_FRAMES)]
        out = parts[0] if len(parts) == 1 else _FrameOutputs.cat(parts)
        if out.log_scales is not None:  # the windowed path's mean over windows, weighted by markers seen
            n_vis = visible.double().sum(1)                                                # (T,)
            total = (torch.exp(out.log_scales).double().log() * n_vis[:, None, None]).sum(0)
            out = dataclasses.replace(out, scales=torch.exp(total / max(float(n_vis.sum()), 1e-12)))
        return out

    def _frames_chunk(self, markers: Tensor, visible: Tensor) -> _FrameOutputs:
        """:meth:`_run_frames` on (T, M, 3) / (T, M) frames, without the scale factors' mean."""
        lay = self.layout
        inp = frame_features(markers, visible, lay)
        out = run_frames(self.frame_weights, inp.relative[:, 0], inp.visible[:, 0], inp.centroid[:, 0])
        root_6d = position = rotation = None
        if out.root_6d is not None and lay.has_root:
            frame = RootPose(inp.frame.rotation[:, 0], inp.frame.position[:, 0])            # (T, 3, 3), (T, 3)
            rotation, position = frame.rotation, point_in_ground(out.root_position[:, 0], frame)
            root_6d = out.root_6d[:, 0]
        return _FrameOutputs(self._ranges(out.coords[:, 0]), root_6d, rotation, position, out.log_scales)

    def _window_coordinates(self, answer: _Decoded) -> Tensor:
        """(T, n) coordinates in the Skeleton's dtype: defaults, clamped predictions, solved root."""
        bounds = self._bounds
        q = bounds.default_q.expand(answer.q_pred.shape[0], -1).clone()
        q[:, self.layout.predicted] = answer.q_pred.to(q.dtype).clamp(bounds.lower_predicted, bounds.upper_predicted)
        return self._solve_root(q, answer.root) if self.layout.has_root else q

    def _solve_root(self, q: Tensor, root: RootPose) -> Tensor:
        """q (T, n) with its root coordinates putting the root body at ``root`` (in ground)."""
        rot, pos = root.rotation.to(q.dtype), root.position.to(q.dtype)
        # The closed form takes any number of frames; Gauss-Newton's grid of starts is chunked.
        chunk = q.shape[0] if self.layout.root_closed_form is not None else _ROOT_CHUNK
        return torch.cat([solve_root_coordinates(self.sk, q[i:i + chunk], self.layout,
                                                 RootPose(rot[i:i + chunk], pos[i:i + chunk]))
                          for i in range(0, q.shape[0], chunk)])

    def _frame_coordinates(self, out: _FrameOutputs) -> Tensor:
        """:meth:`_window_coordinates` of a per-frame network's raw outputs: one compiled loop
        (see :mod:`.native`; Gauss-Newton root solves stay in torch), or torch where numba is absent."""
        has_root = out.root_6d is not None
        if not native.AVAILABLE:
            root = None
            if has_root:
                root = RootPose((out.frame_rotation @ rotation_6d_to_matrix(out.root_6d)).double(),
                                out.ground_position.double())
            return self._window_coordinates(_Decoded(out.q_pred.double(), root, None))
        arrays = (out.root_6d, out.frame_rotation, out.ground_position) if has_root else (None, None, None)
        q, rotation = native.decode_frames(self._decoder, out.q_pred.numpy(),
                                           *(a.numpy() if a is not None else None for a in arrays))
        q = torch.from_numpy(q).to(self.sk.marker_offsets.dtype)
        if has_root and self.layout.root_closed_form is None:
            q = self._solve_root(q, RootPose(torch.from_numpy(rotation), out.ground_position))
        return q

    def _runner(self, inference: str) -> _Inference:
        """The network runner for ``inference`` ("auto": "frames" for a per-frame network, else "windows")."""
        if inference == "auto":
            inference = "frames" if self.frame_weights is not None else "windows"
        if inference not in INFERENCE:
            raise InputError(f"unknown NeurIK inference {inference!r}; use one of {['auto', *INFERENCE]}")
        if inference == "frames" and self.frame_weights is None:
            raise InputError(f"NeurIK inference 'frames' needs a per-frame network (window 1, no temporal layers); "
                             f"this checkpoint has window {self.meta.config.window} and "
                             f"{self.meta.config.temporal_layers} temporal layers: use 'windows' or 'auto'")
        return INFERENCE[inference]

    def solve(self, marker_names: Sequence[str], xyz, times, *, stride: int | None = None,
              inference: str = "auto") -> NeurIKResult:
        """Coordinates for a marker trial.

        Args:
            marker_names: M names of the columns of ``xyz`` (matched by name; unknown ones ignored with a warning).
            xyz: (T, M, 3) marker positions in metres, OpenSim ground frame (Y up); NaN = missing.
            times: (T,) seconds.
            stride: frames between window starts (default: half a window).
            inference: how the network runs over the trial, a key of :data:`INFERENCE` or "auto"
                (per-frame networks: "frames", the fast path; others: "windows").
        Returns:
            NeurIKResult with q (T, n) in rad / m for every coordinate, and scale factors.
        """
        begin = time.perf_counter()
        runner = self._runner(inference)
        xyz = np.asarray(xyz.detach().cpu() if isinstance(xyz, Tensor) else xyz, dtype=np.float64)
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if xyz.ndim != 3 or xyz.shape[2] != 3 or xyz.shape[1] != len(marker_names):
            raise InputError(f"marker array must be (T, {len(marker_names)}, 3) for {len(marker_names)} names, "
                             f"got {xyz.shape}")
        if xyz.shape[0] == 0 or times.shape[0] != xyz.shape[0]:
            raise InputError(f"need one time per frame and at least one frame: {times.shape[0]} times for "
                             f"{xyz.shape[0]} frames")
        mapped, used = self._map_markers(marker_names, xyz)
        # A marker is usable where all three coordinates are finite (their sum is; summing three
        # strided views is ~10x faster than .all(-1) over a length-3 axis).
        visible_np = np.isfinite(mapped[..., 0] + mapped[..., 1] + mapped[..., 2])
        empty = ~visible_np.any(1)
        if empty.all():
            raise InputError("no frame of the marker trial has any usable (non-NaN) marker that NeurIK knows")
        markers_np = mapped.astype(np.float32)
        markers_np[~visible_np] = 0.0
        markers, visible = torch.from_numpy(markers_np), torch.from_numpy(visible_np)
        w = self.meta.config.window
        # Inference mode skips autograd's bookkeeping on every operator (~0.1 ms of a lab trial);
        # the results are cloned out of it so that callers may modify them in place.
        with torch.inference_mode():
            windows_start = time.perf_counter()
            answer = runner.network(self, markers, visible, stride or max(1, w // 2))
            root_start = time.perf_counter()
            q = runner.coordinates(self, answer)
            root_end = time.perf_counter()
            q = _interpolate_empty(q, empty, times)                             # q: the Skeleton's dtype
            # dependent coordinates follow their couplers (scaling does not change them)
            q_full = self.sk.fill_dependent(q).double()
        scales = answer.scales.clone() if answer.scales is not None else None
        q_full = q_full.clone()
        stages = NeurIKStages(root_start - windows_start, root_end - root_start, time.perf_counter() - begin)
        return NeurIKResult(q_full, tuple(self.sk.coordinate_names), times, scales, used, empty, stages)


@dataclasses.dataclass(frozen=True)
class _Inference:
    """How NeurIK.solve runs the network over a trial (``network``) and turns its answer into
    (T, n) coordinates in the Skeleton's dtype (``coordinates``)."""

    network: Callable
    coordinates: Callable


# "windows" blends overlapping sliding windows (any network, and the reference the fast path is
# tested against); "frames" runs a per-frame network on all frames at once without the window
# machinery and decodes its outputs in one compiled loop (the same answer, see the module docstring).
INFERENCE: dict[str, _Inference] = {
    "windows": _Inference(NeurIK._run_windows, NeurIK._window_coordinates),
    "frames": _Inference(NeurIK._run_frames, NeurIK._frame_coordinates),
}
