"""Differentiable, batched forward kinematics of OpenSim models (``Skeleton.from_osim``)."""
from __future__ import annotations

from opensim_biopose.kinematics.skeleton import Skeleton, SkeletonOutput

__all__ = ["Skeleton", "SkeletonOutput"]
