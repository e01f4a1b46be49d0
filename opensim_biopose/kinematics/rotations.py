"""Pure tensor rotation / rigid-transform math used by the forward kinematics.

Conventions: a rotation ``R_AB`` (..., 3, 3) maps vectors expressed in frame B to frame A;
a transform ``(R_AB, p_AB)`` places B's origin at ``p_AB`` (metres, expressed in A).
Angles are radians. Every function is batched over leading dimensions and differentiable.
"""
from __future__ import annotations

import torch
from torch import Tensor


def axis_angle_matrix(axis: Tensor, angle: Tensor) -> Tensor:
    """Rotation matrices about unit ``axis`` (..., 3) by ``angle`` (...) radians -> (..., 3, 3).

    Rodrigues' formula, R = I cos(a) + sin(a) [k]x + (1 - cos(a)) k k^T; ``axis`` broadcasts
    against ``angle`` (e.g. axis (J, 3) with angle (B, J)).
    """
    axis, angle = torch.broadcast_tensors(axis, angle.unsqueeze(-1))
    cos = torch.cos(angle[..., 0])[..., None, None]
    sin = torch.sin(angle[..., 0])[..., None, None]
    kx, ky, kz = axis.unbind(-1)
    zero = torch.zeros_like(kx)
    cross = torch.stack(
        [
            torch.stack([zero, -kz, ky], -1),
            torch.stack([kz, zero, -kx], -1),
            torch.stack([-ky, kx, zero], -1),
        ],
        -2,
    )
    outer = axis.unsqueeze(-1) * axis.unsqueeze(-2)
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device)
    return eye * cos + sin * cross + (1.0 - cos) * outer


def body_fixed_xyz_matrix(angles: Tensor) -> Tensor:
    """Body-fixed X-Y-Z rotation (..., 3) radians -> (..., 3, 3), R = Rx(a0) Ry(a1) Rz(a2).

    This is how OpenSim stores a frame ``orientation`` property.
    """
    eye = torch.eye(3, dtype=angles.dtype, device=angles.device)
    r = axis_angle_matrix(eye[0], angles[..., 0])
    r = r @ axis_angle_matrix(eye[1], angles[..., 1])
    return r @ axis_angle_matrix(eye[2], angles[..., 2])


def compose(r_ab: Tensor, p_ab: Tensor, r_bc: Tensor, p_bc: Tensor) -> tuple[Tensor, Tensor]:
    """Compose transforms A<-B and B<-C into A<-C. Rotations (..., 3, 3), translations (..., 3)."""
    return r_ab @ r_bc, p_ab + (r_ab @ p_bc.unsqueeze(-1)).squeeze(-1)


def invert(r_ab: Tensor, p_ab: Tensor) -> tuple[Tensor, Tensor]:
    """Invert transform A<-B into B<-A. Rotation (..., 3, 3), translation (..., 3) metres."""
    r_ba = r_ab.transpose(-1, -2)
    return r_ba, -(r_ba @ p_ab.unsqueeze(-1)).squeeze(-1)


def to_homogeneous(r: Tensor, p: Tensor) -> Tensor:
    """Pack rotation (..., 3, 3) and translation (..., 3) into 4x4 matrices (..., 4, 4)."""
    top = torch.cat([r, p.unsqueeze(-1)], -1)
    bottom = torch.zeros(top.shape[:-2] + (1, 4), dtype=r.dtype, device=r.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], -2)
