"""Pure tensor glue between marker windows, the network and coordinates (no nn.Modules).

``window_features`` expresses a window of ground-frame markers in per-frame reference
frames (see :mod:`.frames`); ``frame_features`` does the same for one-frame windows without
the window machinery (per-frame networks at inference); ``decode`` turns network outputs back
into coordinates and a root pose in ground.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from opensim_biopose.neurik.frames import (
    estimate_heading, kabsch, project_to_rotation, rotation_6d_to_matrix, to_frame, window_origin, yaw_matrix,
)
from opensim_biopose.neurik.layout import ModelLayout, RootPose
from opensim_biopose.neurik.model import NeurIKOutput


_SLACK = 1.05


@dataclasses.dataclass(frozen=True, eq=False)
class WindowInput:
    """Network input for B windows of T frames.

    Attributes:
        relative: (B, T, M, 3) markers in each frame's reference frame minus their centroid (m), 0 where missing.
        visible: (B, T, M) bool.
        centroid: (B, T, 3) that centroid (m), 0 for empty frames.
        frame: the per-frame reference frames in ground, rotation (B, T, 3, 3), position (B, T, 3) m.
    """

    relative: Tensor
    visible: Tensor
    centroid: Tensor
    frame: RootPose


def _heading_frame(markers: Tensor, visible: Tensor, layout: ModelLayout) -> RootPose:
    """Window-constant frame: heading about Y and horizontal origin, (B, T, ...)."""
    b, t = markers.shape[:2]
    if layout.has_root:
        h = layout.heading_markers
        ref = layout.heading_reference.to(markers.dtype)
        psi = estimate_heading(markers[:, :, h], visible[:, :, h], ref)
        origin = window_origin(markers[:, :, h], visible[:, :, h])
        has_h = visible[:, :, h].any(2).any(1, keepdim=True)
        origin = torch.where(has_h, origin, window_origin(markers, visible))
    else:
        psi = markers.new_zeros(b)
        origin = markers.new_zeros(b, 3)
    return RootPose(yaw_matrix(psi)[:, None].expand(b, t, 3, 3), origin[:, None].expand(b, t, 3))


def _root_frame(markers: Tensor, visible: Tensor, layout: ModelLayout) -> RootPose:
    """Root pose fitted to the root markers per frame; frames with < 3 of them borrow the
    window's mean fitted pose, windows without any borrow the heading frame."""
    h = layout.heading_markers
    rot, pos, ok = kabsch(markers[:, :, h], visible[:, :, h], layout.root_reference)
    w = ok.to(markers.dtype)
    n = w.sum(1).clamp_min(1.0)
    mean_rot = project_to_rotation((rot * w[..., None, None]).sum(1) / n[:, None, None] + 1e-9)
    mean_pos = (pos * w[..., None]).sum(1) / n[:, None]
    fallback = _heading_frame(markers, visible, layout)
    any_ok = ok.any(1)[:, None]
    fb_rot = torch.where(any_ok[..., None, None], mean_rot[:, None], fallback.rotation)
    fb_pos = torch.where(any_ok[..., None], mean_pos[:, None], fallback.position)
    return RootPose(torch.where(ok[..., None, None], rot, fb_rot), torch.where(ok[..., None], pos, fb_pos))


def window_features(markers: Tensor, visible: Tensor, layout: ModelLayout) -> WindowInput:
    """markers: (B, T, M, 3) ground frame, metres (anything where not visible); visible: (B, T, M) bool."""
    markers = torch.nan_to_num(markers)
    frame = _root_frame(markers, visible, layout) if layout.rigid_root else _heading_frame(markers, visible, layout)
    local = to_frame(markers, frame.rotation, frame.position)
    w = visible.to(markers.dtype).unsqueeze(-1)
    centroid = (local * w).sum(2) / w.sum(2).clamp_min(1.0)
    relative = (local - centroid.unsqueeze(2)) * w
    return WindowInput(relative, visible, centroid, frame)


def frame_features(markers: Tensor, visible: Tensor, layout: ModelLayout) -> WindowInput:
    """:func:`window_features` of T one-frame windows, without the window machinery.

    Args:
        markers: (T, M, 3) ground frame, metres (anything where not visible); visible: (T, M) bool.
    Returns:
        WindowInput of (T, 1, ...) tensors, equal to ``window_features(markers[:, None], visible[:, None], layout)``.
        With one frame per window, a frame with < 3 root markers has no window mean to borrow
        and takes its own heading frame.
    """
    markers = torch.nan_to_num(markers)                                          # (T, M, 3)
    if layout.rigid_root:
        h = layout.heading_markers
        rot, pos, ok = kabsch(markers[:, None, h], visible[:, None, h], layout.root_reference)
        if not bool(ok.all()):  # all frames, as window_features does: reductions round by batch shape
            fallback = _heading_frame(markers[:, None], visible[:, None], layout)
            rot = torch.where(ok[..., None, None], rot, fallback.rotation)
            pos = torch.where(ok[..., None], pos, fallback.position)
        frame = RootPose(rot, pos)
    else:
        frame = _heading_frame(markers[:, None], visible[:, None], layout)
    # The windowed path's operations on the same shapes (a BLAS may round a differently shaped
    # product differently), without its window means.
    local = to_frame(markers[:, None], frame.rotation, frame.position)            # (T, 1, M, 3)
    if bool(visible.all()):  # every weight below would be 1: the same numbers without them
        centroid = local.sum(2) / visible.shape[1]
        relative = local - centroid.unsqueeze(2)
    else:
        w = visible[:, None].to(markers.dtype).unsqueeze(-1)
        centroid = (local * w).sum(2) / w.sum(2).clamp_min(1.0)
        relative = (local - centroid.unsqueeze(2)) * w
    return WindowInput(relative, visible[:, None], centroid, frame)


def target_in_frame(root: RootPose, frame: RootPose) -> RootPose:
    """A ground pose (B, T, ...) expressed in the reference frames."""
    rot = frame.rotation.transpose(-1, -2) @ root.rotation
    pos = ((root.position - frame.position).unsqueeze(-2) @ frame.rotation).squeeze(-2)
    return RootPose(rot, pos)


@dataclasses.dataclass(frozen=True, eq=False)
class Decoded:
    """Network outputs in physical units.

    Attributes:
        q: (B, T, n) all coordinates (rad / m); root coordinates at their defaults (see root_*).
        root_local: root body pose in the reference frames, (B, T, 3, 3) and (B, T, 3) m, or None.
        root_ground: the same in ground, or None.
        scales: (B, NB, 3) segment scale factors, or None.
    """

    q: Tensor
    root_local: RootPose | None
    root_ground: RootPose | None
    scales: Tensor | None


def decode(out: NeurIKOutput, inp: WindowInput, layout: ModelLayout) -> Decoded:
    """Map network outputs to coordinates, root poses and scale factors."""
    b, t, _ = out.coords.shape
    dtype = out.coords.dtype
    q = layout.default_q.to(dtype).expand(b, t, -1).clone()
    q[..., layout.predicted] = predicted_coordinates(out.coords, layout)
    if out.root_6d is not None and layout.has_root:
        local = RootPose(rotation_6d_to_matrix(out.root_6d), out.root_position)
        ground = root_in_ground(local, RootPose(inp.frame.rotation.to(dtype), inp.frame.position.to(dtype)))
    else:
        local = ground = None
    scales = torch.exp(out.log_scales) if out.log_scales is not None else None
    return Decoded(q, local, ground, scales)


@dataclasses.dataclass(frozen=True, eq=False)
class CoordinateRanges:
    """The map of network outputs onto the predicted coordinates' ranges, in one dtype.

    tanh keeps every prediction inside the coordinate's range (+5 % slack for values sitting
    on a bound): wide ranges otherwise admit a second Euler-angle solution with the same
    marker positions (hip flexion +180, adduction 180 - b, rotation +180) that the marker
    loss happily pulls predictions into.

    Attributes:
        centre: (P,) mid-range (rad / m); scale: (P,) slack times the half span.
    """

    centre: Tensor
    scale: Tensor

    @classmethod
    def of(cls, layout: ModelLayout, dtype: torch.dtype) -> CoordinateRanges:
        return cls(layout.centre.to(dtype), _SLACK * layout.half_span.to(dtype))

    def __call__(self, coords: Tensor) -> Tensor:
        """Network coordinate outputs (..., P) -> the predicted coordinates (..., P), rad / m."""
        return self.centre + self.scale * torch.tanh(coords)


def predicted_coordinates(coords: Tensor, layout: ModelLayout) -> Tensor:
    """Network coordinate outputs (..., P) -> the predicted coordinates (..., P), rad / m (see
    :class:`CoordinateRanges`)."""
    return CoordinateRanges.of(layout, coords.dtype)(coords)


def root_in_ground(local: RootPose, frame: RootPose) -> RootPose:
    """A pose in the reference frames (rotation (..., 3, 3), position (..., 3) m) -> ground."""
    return RootPose(frame.rotation @ local.rotation, point_in_ground(local.position, frame))


def point_in_ground(point: Tensor, frame: RootPose) -> Tensor:
    """Points (..., 3) in the reference frames (rotation (..., 3, 3), position (..., 3)) -> ground (m)."""
    return frame.position + (point.unsqueeze(-2) @ frame.rotation.transpose(-1, -2)).squeeze(-2)
