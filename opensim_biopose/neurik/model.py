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
