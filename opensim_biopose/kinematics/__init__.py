"""Differentiable, batched forward kinematics of OpenSim models.

    sk = Skeleton.from_osim("Rajagopal2016.osim")          # float64, CPU
    out = sk.forward(q)                                      # q (B, n): rad / m, CoordinateSet order
    out.markers                                              # (B, M, 3) metres, OpenSim ground (Y up)
    out.body_transforms                                      # (B, NB, 4, 4) ground <- body
    sk.forward(q, scales=factors)                            # factors (NB, 3): as Model.scale does

Modules: ``osim_reader`` (the model through the opensim API -> plain data), ``compiled``
(plain data -> tensors), ``functions`` (SimmSpline & co. as tensor math), ``rotations`` and
``tree`` (pure batch-last kinematics), ``skeleton`` (the thin public class).
"""
from __future__ import annotations

from opensim_biopose.kinematics.skeleton import Skeleton, SkeletonOutput

__all__ = ["Skeleton", "SkeletonOutput"]
