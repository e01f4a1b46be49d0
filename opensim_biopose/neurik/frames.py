"""Pure tensor math for NeurIK's reference frames (no nn.Modules here).

Frames: OpenSim ground is Y-up, metres. Each frame of a window gets a *reference frame*:
the root body's pose fitted rigidly to its markers (:func:`kabsch`) when the root carries at
least three markers, else the window's *canonical frame* (ground rotated about Y by the
window's heading ``psi`` and shifted horizontally to its marker centroid ``origin``, Y = 0).
The network sees markers in that frame and predicts the root pose relative to it, which makes
it independent of where the subject stands and which way it faces.
"""
from __future__ import annotations

import torch
from torch import Tensor


def yaw_matrix(psi: Tensor) -> Tensor:
    """Rotation about ground Y by ``psi`` (...,) rad -> (..., 3, 3)."""
    c, s = torch.cos(psi), torch.sin(psi)
    zero, one = torch.zeros_like(psi), torch.ones_like(psi)
    rows = (torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1), torch.stack([-s, zero, c], -1))
    return torch.stack(rows, -2)


def rotation_6d_to_matrix(x: Tensor) -> Tensor:
    """Continuous 6D rotation representation (..., 6) -> rotation matrix (..., 3, 3).

    The 6 numbers are the first two columns before Gram-Schmidt (Zhou et al., CVPR 2019,
    "On the continuity of rotation representations in neural networks").
    """
    a, b = x[..., 0:3], x[..., 3:6]
    c0 = torch.nn.functional.normalize(a, dim=-1)
    b = b - (c0 * b).sum(-1, keepdim=True) * c0
    c1 = torch.nn.functional.normalize(b, dim=-1)
    c2 = torch.linalg.cross(c0, c1, dim=-1)
    return torch.stack([c0, c1, c2], -1)


def matrix_to_rotation_6d(r: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns, the inverse of :func:`rotation_6d_to_matrix`."""
    return torch.cat([r[..., :, 0], r[..., :, 1]], -1)


def project_to_rotation(m: Tensor) -> Tensor:
    """Nearest rotation matrix (SVD) of (..., 3, 3) — used after averaging rotations."""
    u, _, vh = torch.linalg.svd(m)
    det = torch.linalg.det(u @ vh)
    fix = torch.ones_like(m[..., 0, :])
    fix[..., 2] = det
    return (u * fix.unsqueeze(-2)) @ vh


def estimate_heading(points: Tensor, visible: Tensor, reference: Tensor) -> Tensor:
    """Heading of each window from a 2D Procrustes fit in the horizontal (X, Z) plane.

    Args:
        points: (B, T, K, 3) heading markers in ground, metres (values where not visible are ignored).
        visible: (B, T, K) bool.
        reference: (K, 3) the same markers in the model's default pose facing +X.
    Returns:
        psi: (B,) rad such that ``points ≈ yaw_matrix(psi) @ reference`` (up to translation).
        Windows with fewer than two visible heading markers in every frame get psi = 0.
    """
    w = visible.to(points.dtype).unsqueeze(-1)                         # (B,T,K,1)
    n = w.sum(2, keepdim=True).clamp_min(1.0)                          # (B,T,1,1)
    p = torch.nan_to_num(points) * w
    p = (p - p.sum(2, keepdim=True) / n) * w
    ref = reference.to(points.dtype).expand_as(points) * w
    ref = (ref - ref.sum(2, keepdim=True) / n) * w
    a = (p[..., 0] * ref[..., 0] + p[..., 2] * ref[..., 2]).sum((1, 2))
    b = (p[..., 0] * ref[..., 2] - p[..., 2] * ref[..., 0]).sum((1, 2))
    return torch.atan2(b, a)


def window_origin(points: Tensor, visible: Tensor) -> Tensor:
    """Horizontal centroid of the visible points of each window, (B, T, K, 3) -> (B, 3), Y set to 0."""
    w = visible.to(points.dtype).unsqueeze(-1)
    total = (torch.nan_to_num(points) * w).sum((1, 2))
    origin = total / w.sum((1, 2)).clamp_min(1.0)
    return origin * origin.new_tensor([1.0, 0.0, 1.0])


def to_canonical(x: Tensor, psi: Tensor, origin: Tensor) -> Tensor:
    """Ground points (B, ..., 3) -> canonical frame of each window (psi (B,), origin (B, 3))."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (3,)
    r = yaw_matrix(psi).reshape(x.shape[0], *([1] * (x.dim() - 2)), 3, 3)
    return ((x - origin.reshape(shape)).unsqueeze(-2) @ r).squeeze(-2)


def from_canonical(x: Tensor, psi: Tensor, origin: Tensor) -> Tensor:
    """Inverse of :func:`to_canonical`."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (3,)
    r = yaw_matrix(psi).reshape(x.shape[0], *([1] * (x.dim() - 2)), 3, 3)
    return (x.unsqueeze(-2) @ r.transpose(-1, -2)).squeeze(-2) + origin.reshape(shape)


def rotation_to_canonical(r: Tensor, psi: Tensor) -> Tensor:
    """Body orientations (B, ..., 3, 3) in ground -> canonical frame: ``Ry(psi)^T R``."""
    y = yaw_matrix(psi).reshape(r.shape[0], *([1] * (r.dim() - 3)), 3, 3)
    return y.transpose(-1, -2) @ r


def rotation_from_canonical(r: Tensor, psi: Tensor) -> Tensor:
    """Inverse of :func:`rotation_to_canonical`."""
    y = yaw_matrix(psi).reshape(r.shape[0], *([1] * (r.dim() - 3)), 3, 3)
    return y @ r


def kabsch(points: Tensor, visible: Tensor, reference: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rigid pose of a marker cluster per frame (least squares, Kabsch/Umeyama without scale).

    Args:
        points: (B, T, K, 3) observed markers in ground (m); ignored where not visible.
        visible: (B, T, K) bool.
        reference: (K, 3) the same markers in the body frame (m).
    Returns:
        rotation (B, T, 3, 3) body-to-ground, position (B, T, 3) m with
        ``points ≈ reference @ rotation^T + position``, and ok (B, T) bool: >= 3 markers seen.
    """
    p = torch.nan_to_num(points)
    ref = reference.to(points.dtype).expand_as(points)
    if bool(visible.all()):  # every weight below would be 1: the same numbers without them
        k = points.shape[2]
        pc = p.sum(2, keepdim=True) / k
        ref = ref.contiguous()
        rc = ref.sum(2, keepdim=True) / k
        h = (ref - rc).transpose(-1, -2) @ (p - pc)                         # (B,T,3,3)
    else:
        w = visible.to(points.dtype).unsqueeze(-1)
        n = w.sum(2, keepdim=True).clamp_min(1.0)
        p = p * w
        pc = p.sum(2, keepdim=True) / n
        ref = ref * w
        rc = ref.sum(2, keepdim=True) / n
        h = ((ref - rc) * w).transpose(-1, -2) @ ((p - pc) * w)
    h = h + 1e-9 * torch.eye(3, dtype=points.dtype)
    u, _, vh = torch.linalg.svd(h)
    v, ut = vh.transpose(-1, -2), u.transpose(-1, -2)
    d = torch.linalg.det(v @ ut)                                             # -1: a reflection, flip v's last column
    rot = torch.cat([v[..., :2], v[..., 2:] * d[..., None, None]], -1) @ ut
    pos = pc.squeeze(2) - (rc.squeeze(2).unsqueeze(-2) @ rot.transpose(-1, -2)).squeeze(-2)
    ok = visible.sum(-1) >= 3
    return rot, pos, ok


def to_frame(x: Tensor, rotation: Tensor, position: Tensor) -> Tensor:
    """Ground points (B, T, M, 3) -> per-frame local frames (rotation (B, T, 3, 3), position (B, T, 3))."""
    return ((x - position.unsqueeze(2)).unsqueeze(-2) @ rotation.unsqueeze(2)).squeeze(-2)
