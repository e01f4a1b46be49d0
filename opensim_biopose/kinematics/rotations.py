"""Pure batch-last rotation / rigid-transform math used by the forward kinematics.

Layout: the batch is the LAST dimension (rotations (..., 3, 3, B), points (..., 3, B)), so
every elementwise operation runs over contiguous batch rows. Transforms are ``[R | p]``
(..., 3, 4, B) or homogeneous (..., 4, 4, B); ``R_AB`` maps vectors in frame B to frame A and
``p_AB`` is B's origin in A, metres. Angles in radians. All functions are differentiable.
"""
from __future__ import annotations

import torch
from torch import Tensor


def rotation_factor_matrices(axis: Tensor) -> Tensor:
    """Constant parts of rotations about unit ``axis`` (..., 3) -> (3, ..., 3, 3):
    [k k^T, I - k k^T, [k]x] so that R(a) = F0 + cos(a) F1 + sin(a) F2."""
    outer = axis.unsqueeze(-1) * axis.unsqueeze(-2)
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(outer)
    kx, ky, kz = axis.unbind(-1)
    zero = torch.zeros_like(kx)
    cross = torch.stack(
        [torch.stack([zero, -kz, ky], -1), torch.stack([kz, zero, -kx], -1), torch.stack([-ky, kx, zero], -1)], -2
    )
    return torch.stack([outer, eye - outer, cross])


def matmul33(a: Tensor, b: Tensor) -> Tensor:
    """Batch-last 3x3 products: a, b (..., 3, 3, B) -> (..., 3, 3, B).

    Fused multiply-adds (addcmul): one operator per term, which is what counts at lab batch
    sizes, where each operator's fixed cost exceeds its arithmetic."""
    out = a[..., :, 0:1, :] * b[..., 0:1, :, :]
    out = torch.addcmul(out, a[..., :, 1:2, :], b[..., 1:2, :, :])
    return torch.addcmul(out, a[..., :, 2:3, :], b[..., 2:3, :, :])


def matvec3(r: Tensor, v: Tensor) -> Tensor:
    """Batch-last rotation of points: r (..., 3, 3, B), v (..., 3, B or 1) -> (..., 3, B)."""
    out = r[..., :, 0, :] * v[..., 0:1, :]
    out = torch.addcmul(out, r[..., :, 1, :], v[..., 1:2, :])
    return torch.addcmul(out, r[..., :, 2, :], v[..., 2:3, :])


def compose_rigid(parent: Tensor, local: Tensor) -> Tensor:
    """Batch-last [R | p] (..., 3, 4, B) times [r | t] (..., 3, 4, B) -> [R r | R t + p]."""
    out = parent[..., :, 0:1, :] * local[..., 0:1, :, :]
    out = torch.addcmul(out, parent[..., :, 1:2, :], local[..., 1:2, :, :])
    out = torch.addcmul(out, parent[..., :, 2:3, :], local[..., 2:3, :, :])
    out[..., :, 3, :] += parent[..., :, 3, :]
    return out
