"""The NeurIK network: markers of a sliding window -> coordinates, root pose, segment scales.

Per frame, each marker (reference-frame position relative to the frame's centroid, plus a
visibility bit) is projected by weights that belong to that marker's index in the
checkpoint's marker order (a learned per-marker embedding; a missing marker contributes
only its "missing" bias), summed, and passed through an MLP. A temporal transformer encoder
with learned positional embeddings mixes the frames of the window. Heads regress

* the directly predicted coordinates, as pre-tanh values mapped onto their ranges,
* the root body's orientation (continuous 6D representation) and position (m) relative
  to each frame's reference frame (see :mod:`.frames`),
* per-segment log scale factors (one per window).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclasses.dataclass(frozen=True)
class NeurIKConfig:
    """Shape of the network. Defaults: ~0.5 M parameters (~2 MB), fast enough to train on a CPU."""

    n_markers: int
    n_predicted: int                      # directly regressed coordinates
    n_bodies: int                         # segments with scale factors
    window: int = 16                      # frames per window (0.13-0.6 s): enough context for smoothing; short
                                          # windows give more independent poses per training step
    d_model: int = 160                    # width of frame features
    frame_layers: int = 2                 # residual MLP blocks per frame after the marker projection
    temporal_layers: int = 2              # transformer encoder layers across the window
    heads: int = 4
    ff_mult: int = 2                      # transformer feed-forward width = ff_mult * d_model
    predict_root: bool = True             # False for a model without a floating base
    predict_scales: bool = True           # False where the model is already subject-scaled


@dataclasses.dataclass(frozen=True, eq=False)
class NeurIKOutput:
    """Network outputs for (B, T) frames.

    Attributes:
        coords: (B, T, P) predicted coordinates before the tanh onto their ranges (see features.decode).
        root_6d: (B, T, 6) root orientation relative to the reference frame (6D), or None.
        root_position: (B, T, 3) root position in the reference frame (m), or None.
        log_scales: (B, NB, 3) log segment scale factors, or None.
    """

    coords: Tensor
    root_6d: Tensor | None
    root_position: Tensor | None
    log_scales: Tensor | None


class _Residual(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.ff(self.norm(x))


class NeurIKNet(nn.Module):
    """See module docstring. Inputs come from :func:`window_features`."""

    def __init__(self, cfg: NeurIKConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        # Per-marker projection: weights indexed by the marker's slot (its learned identity).
        self.marker_proj = nn.Parameter(torch.randn(cfg.n_markers, 4, d) * (1.0 / (4 * cfg.n_markers) ** 0.5))
        self.centroid_proj = nn.Linear(3, d)
        self.frame = nn.Sequential(*[_Residual(d) for _ in range(cfg.frame_layers)])
        self.time_embedding = nn.Parameter(torch.zeros(cfg.window, d))
        # temporal_layers = 0: a per-frame network (each frame answered from its own markers).
        layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.ff_mult * d, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.temporal = (nn.TransformerEncoder(layer, cfg.temporal_layers, enable_nested_tensor=False)
                         if cfg.temporal_layers else None)
        self.norm = nn.LayerNorm(d)
        self.coord_head = nn.Linear(d, cfg.n_predicted)
        self.root_head = nn.Linear(d, 9) if cfg.predict_root else None
        self.scale_head = nn.Linear(d, cfg.n_bodies * 3) if cfg.predict_scales else None
        if self.root_head is not None:
            with torch.no_grad():   # start at the reference frame itself (identity, zero offset)
                self.root_head.weight.mul_(0.1)
                self.root_head.bias.copy_(torch.tensor([1, 0, 0, 0, 1, 0, 0, 0, 0.0]))
        if self.scale_head is not None:
            with torch.no_grad():
                self.scale_head.weight.mul_(0.1)
                self.scale_head.bias.zero_()

    def forward(self, relative: Tensor, visible: Tensor, centroid: Tensor) -> NeurIKOutput:
        """relative: (B, T, M, 3) m, visible: (B, T, M) bool, centroid: (B, T, 3) m (reference frame, see features.window_features)."""
        feats = torch.cat([relative, visible.unsqueeze(-1).to(relative.dtype)], -1)    # (B,T,M,4)
        x = torch.einsum("btmc,mcd->btd", feats, self.marker_proj) + self.centroid_proj(centroid)
        x = self.frame(x)
        if self.temporal is not None:
            x = self.temporal(x + self.time_embedding[: x.shape[1]])
        x = self.norm(x)
        root = self.root_head(x) if self.root_head is not None else None
        scales = 0.1 * self.scale_head(x.mean(1)).reshape(x.shape[0], -1, 3) if self.scale_head is not None else None
        return NeurIKOutput(
            coords=self.coord_head(x),
            root_6d=root[..., :6] if root is not None else None,
            root_position=root[..., 6:] if root is not None else None,
            log_scales=scales,
        )


def build_neurik(cfg: NeurIKConfig) -> NeurIKNet:
    """Factory for the network described by ``cfg``."""
    return NeurIKNet(cfg)


# ---- per-frame inference ----------------------------------------------------------------------
#
# A network with one-frame windows and no temporal layers answers each frame from its own markers.
# Inference then needs none of the module machinery: the weights are gathered once into plain
# tensors (:class:`FrameWeights`) and :func:`run_frames` runs the same arithmetic as
# ``NeurIKNet.forward`` on (T, ...) frames, in the same summation order, so it gives the same
# float32 numbers (tests/test_neurik_frames.py) at a fraction of the per-call overhead.


@dataclasses.dataclass(frozen=True, eq=False)
class _Block:
    """One residual block: LayerNorm (weight, bias (d,)), then Linear (2d, d) -> GELU -> Linear (d, 2d)."""

    norm_weight: Tensor
    norm_bias: Tensor
    norm_eps: float
    w1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor


@dataclasses.dataclass(frozen=True, eq=False)
class FrameWeights:
    """A per-frame NeurIKNet's weights as plain float32 tensors (no autograd), gathered once.

    Attributes:
        marker: (4 M, d) the per-marker projection with rows ordered (channel, marker), channels
            x, y, z, visible: the order in which ``torch.einsum`` contracts ``btmc,mcd->btd`` (one bmm).
        centroid_weight, centroid_bias: (d, 3), (d,).
        blocks: the residual MLP blocks.
        norm_weight, norm_bias, norm_eps: the final LayerNorm.
        heads: (weight, bias) of the coordinate head (P, d), the root head (9, d) or None and the
            scale head (3 NB, d) or None. Each runs as its own product, as in NeurIKNet.forward:
            a stacked product may round differently where the BLAS picks kernels by output width.
    """

    marker: Tensor
    centroid_weight: Tensor
    centroid_bias: Tensor
    blocks: tuple[_Block, ...]
    norm_weight: Tensor
    norm_bias: Tensor
    norm_eps: float
    coord_head: tuple[Tensor, Tensor]
    root_head: tuple[Tensor, Tensor] | None
    scale_head: tuple[Tensor, Tensor] | None


def is_per_frame(cfg: NeurIKConfig) -> bool:
    """True when the network answers each frame from its own markers alone (window 1, no temporal layers)."""
    return cfg.window == 1 and cfg.temporal_layers == 0


def frame_weights(net: NeurIKNet) -> FrameWeights:
    """Gather a per-frame network's weights (see :func:`is_per_frame`) for :func:`run_frames`."""
    if not is_per_frame(net.cfg):
        raise ValueError(f"frame_weights needs a per-frame network (window 1, no temporal layers), got {net.cfg}")

    def plain(t: Tensor) -> Tensor:
        return t.detach().to(torch.float32).contiguous()

    d = net.cfg.d_model
    blocks = tuple(_Block(plain(b.norm.weight), plain(b.norm.bias), b.norm.eps, plain(b.ff[0].weight),
                          plain(b.ff[0].bias), plain(b.ff[2].weight), plain(b.ff[2].bias)) for b in net.frame)

    def head(linear: nn.Linear | None) -> tuple[Tensor, Tensor] | None:
        return (plain(linear.weight), plain(linear.bias)) if linear is not None else None

    return FrameWeights(
        marker=plain(net.marker_proj.permute(1, 0, 2).reshape(4 * net.cfg.n_markers, d)),
        centroid_weight=plain(net.centroid_proj.weight),
        centroid_bias=plain(net.centroid_proj.bias),
        blocks=blocks,
        norm_weight=plain(net.norm.weight),
        norm_bias=plain(net.norm.bias),
        norm_eps=net.norm.eps,
        coord_head=head(net.coord_head),
        root_head=head(net.root_head),
        scale_head=head(net.scale_head),
    )


def run_frames(w: FrameWeights, relative: Tensor, visible: Tensor, centroid: Tensor) -> NeurIKOutput:
    """``NeurIKNet.forward`` of a per-frame network on T frames, each its own one-frame window.

    Args:
        relative: (T, M, 3) float32 markers in each frame's reference frame minus their centroid (m).
        visible: (T, M) bool.
        centroid: (T, 3) float32 (m).
    Returns:
        NeurIKOutput with the window axis of length 1: coords (T, 1, P), root_6d (T, 1, 6),
        root_position (T, 1, 3), log_scales (T, NB, 3).
    """
    t = relative.shape[0]
    feats = torch.cat([relative.transpose(1, 2), visible.unsqueeze(1).to(relative.dtype)], 1).reshape(t, -1)
    # einsum's own product for btmc,mcd->btd: one (1, T, 4M) @ (1, 4M, d) bmm in (channel, marker) order
    x = torch.bmm(feats[None], w.marker[None])[0] + F.linear(centroid, w.centroid_weight, w.centroid_bias)
    d = x.shape[-1]
    for b in w.blocks:
        h = F.linear(F.layer_norm(x, (d,), b.norm_weight, b.norm_bias, b.norm_eps), b.w1, b.b1)
        x = x + F.linear(F.gelu(h), b.w2, b.b2)
    x = F.layer_norm(x, (d,), w.norm_weight, w.norm_bias, w.norm_eps)
    root = F.linear(x, *w.root_head).unsqueeze(1) if w.root_head is not None else None    # (T, 1, 9)
    # The window mean of one frame is the frame itself.
    scales = 0.1 * F.linear(x, *w.scale_head).reshape(t, -1, 3) if w.scale_head is not None else None
    return NeurIKOutput(
        coords=F.linear(x, *w.coord_head).unsqueeze(1),
        root_6d=root[..., :6] if root is not None else None,
        root_position=root[..., 6:] if root is not None else None,
        log_scales=scales,
    )
