"""Rotation helpers: pure, batched, differentiable tensor math (no modules, no state)."""
from __future__ import annotations

import torch


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors (axis * angle, radians) -> (..., 3, 3) rotation matrices.

    Rodrigues' formula with a Taylor expansion near zero, so the gradient at the rest pose
    is finite (the fit starts there).
    """
    theta2 = (rotvec * rotvec).sum(dim=-1, keepdim=True)[..., None]       # (..., 1, 1)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2_safe)
    k = skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand(k.shape)
    return eye + a * k + b * (k @ k)


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices, ``skew(v) @ w == v x w``."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape, 3)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) rotation vectors, angle in [0, pi).

    Not differentiated through (used to initialise fits); accurate away from angle = pi.
    """
    cos = ((matrix.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    angle = torch.acos(cos)
    axis = torch.stack([matrix[..., 2, 1] - matrix[..., 1, 2],
                        matrix[..., 0, 2] - matrix[..., 2, 0],
                        matrix[..., 1, 0] - matrix[..., 0, 1]], dim=-1)
    sin = torch.sin(angle)[..., None]
    scale = torch.where(sin.abs() < 1e-6, torch.full_like(sin, 0.5), angle[..., None] / (2.0 * sin))
    return axis * scale


def rotation_about_y(angle: torch.Tensor) -> torch.Tensor:
    """(...,) radians -> (..., 3, 3) rotations about +Y."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).reshape(*angle.shape, 3, 3)
