"""Pure tensor glue between marker windows, the network and coordinates (no nn.Modules).

``window_features`` normalises a window of ground-frame markers into the network's input;
``decode`` turns network outputs back into coordinates and a root pose in ground.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from opensim_biopose.neurik.frames import (
    estimate_heading, from_canonical, rotation_6d_to_matrix, rotation_from_canonical, to_canonical, window_origin,
)
from opensim_biopose.neurik.layout import ModelLayout, RootPose
from opensim_biopose.neurik.model import NeurIKOutput


@dataclasses.dataclass(frozen=True, eq=False)
class WindowInput:
    """Network input for B windows of T frames.

    Attributes:
        relative: (B, T, M, 3) canonical-frame marker positions minus the frame centroid (m), 0 where missing.
        visible: (B, T, M) bool.
        centroid: (B, T, 3) canonical-frame centroid of the visible markers (m), 0 for empty frames.
        psi: (B,) heading of each window (rad); origin: (B, 3) its horizontal origin (m, Y = 0).
    """

    relative: Tensor
    visible: Tensor
    centroid: Tensor
    psi: Tensor
    origin: Tensor


def window_features(markers: Tensor, visible: Tensor, layout: ModelLayout) -> WindowInput:
    """markers: (B, T, M, 3) ground frame, metres (anything where not visible); visible: (B, T, M) bool."""
    b = markers.shape[0]
    markers = torch.nan_to_num(markers)
    if layout.has_root:
        h = layout.heading_markers
        ref = layout.heading_reference.to(markers.dtype)
        psi = estimate_heading(markers[:, :, h], visible[:, :, h], ref)
        origin = window_origin(markers[:, :, h], visible[:, :, h])
        fallback = window_origin(markers, visible)          # no root marker visible in the window
        has_h = visible[:, :, h].any(2).any(1, keepdim=True)
        origin = torch.where(has_h, origin, fallback)
    else:
        psi = markers.new_zeros(b)
        origin = markers.new_zeros(b, 3)
    canon = to_canonical(markers, psi, origin)
    w = visible.to(markers.dtype).unsqueeze(-1)
    centroid = (canon * w).sum(2) / w.sum(2).clamp_min(1.0)
    relative = (canon - centroid.unsqueeze(2)) * w
    return WindowInput(relative, visible, centroid, psi, origin)


@dataclasses.dataclass(frozen=True, eq=False)
class Decoded:
    """Network outputs in physical units.

    Attributes:
        q: (B, T, n) all coordinates (rad / m); root coordinates at their defaults (see root_*).
        root_canonical: root body pose in the canonical frame, (B, T, 3, 3) and (B, T, 3) m, or None.
        root_ground: the same in ground, or None.
        scales: (B, NB, 3) segment scale factors, or None.
    """

    q: Tensor
    root_canonical: RootPose | None
    root_ground: RootPose | None
    scales: Tensor | None


def decode(out: NeurIKOutput, inp: WindowInput, layout: ModelLayout) -> Decoded:
    """Map network outputs to coordinates, root poses and scale factors."""
    b, t, _ = out.coords.shape
    dtype = out.coords.dtype
    q = layout.default_q.to(dtype).expand(b, t, -1).clone()
    q[..., layout.predicted] = layout.centre.to(dtype) + layout.half_span.to(dtype) * out.coords
    if out.root_6d is not None and layout.has_root:
        rot_c = rotation_6d_to_matrix(out.root_6d)
        canon = RootPose(rot_c, out.root_position)
        ground = RootPose(rotation_from_canonical(rot_c, inp.psi.to(dtype)),
                          from_canonical(out.root_position, inp.psi.to(dtype), inp.origin.to(dtype)))
    else:
        canon = ground = None
    scales = torch.exp(out.log_scales) if out.log_scales is not None else None
    return Decoded(q, canon, ground, scales)
