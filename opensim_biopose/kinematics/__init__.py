"""Differentiable, batched forward kinematics of OpenSim models.

    sk = Skeleton.from_osim("Rajagopal2016.osim")          # float64, CPU
    out = sk.forward(q)                                      # q (B, n): rad / m, CoordinateSet order
    out.markers                                              # (B, M, 3) metres, OpenSim ground (Y up)
    out.body_transforms                                      # (B, NB, 4, 4) ground <- body
    sk.forward(q, scales=factors)                            # factors (NB, 3): as Model.scale does
    sk.jacobians(q, columns=free)                            # analytic d markers / d q (B, M, 3, F)
    sk.normal_equations(q, targets, weights, columns=free)   # J^T W J, J^T W e without forming J
    sk.body_transforms(q, [0])                               # some bodies only (their paths from ground)

Modules: ``osim_reader`` (the model through the opensim API -> plain data), ``compiled``
(plain data -> tensors), ``functions`` (SimmSpline & co. as tensor math), ``rotations`` and
``tree`` (pure batch-last kinematics), ``skeleton`` (the thin public class).
"""
from __future__ import annotations

from opensim_biopose.kinematics.skeleton import MarkerTargets, Skeleton, SkeletonNormalEquations, SkeletonOutput

__all__ = ["MarkerTargets", "Skeleton", "SkeletonNormalEquations", "SkeletonOutput"]
