"""The body-model interface: a differentiable, batched mesh ``forward(pose, shape, transl)``.

Every body model works in its *own* canonical frame (Anny: +X subject's left, -Y anterior,
+Z up; SMPL: +X subject's left, +Y up, +Z anterior), in metres. The model declares that
frame as a :class:`BodyFrame`; :func:`opensim_biopose.body.frames.to_opensim_ground` is the
one place that turns it into OpenSim's ground frame (X anterior, Y up, Z subject's right).

Keypoint correspondences are data, not code: a :class:`VertexRegressor` maps named points
(detector keypoints or virtual markers) to sparse weights over mesh vertices, so vertex
picks, barycentric points and linear joint regressors are the same thing.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np
import torch

from opensim_biopose.errors import InputError


@dataclass(frozen=True)
class BodyFrame:
    """Directions of the body model's canonical axes, as unit vectors in OpenSim's frame.

    ``to_opensim``: (3, 3) rotation R with ``p_opensim = R @ p_body``. Columns are the images
    of the body's +X, +Y, +Z axes in OpenSim ground (X anterior, Y up, Z subject's right).
    """

    name: str
    to_opensim: tuple[tuple[float, float, float], ...]

    def matrix(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(3, 3) tensor of :attr:`to_opensim`."""
        return torch.tensor(self.to_opensim, dtype=dtype)


@dataclass(frozen=True)
class BodyOutput:
    """A posed body, batched over B.

    vertices: (B, V, 3) metres, body-model canonical frame, after ``transl``.
    joints: (B, J, 3) metres, the model's own skeleton joints (artist-placed for Anny; do not
        use them as anatomical landmarks, use a :class:`VirtualMarkerSet`).
    """

    vertices: torch.Tensor
    joints: torch.Tensor


class VertexRegressor:
    """Named points as sparse weighted sums of mesh vertices.

    ``indices``: (M, S) int64 vertex indices; ``weights``: (M, S) float, each row summing to 1
    (pad unused slots with index 0 and weight 0). A point is ``sum_s weights[m, s] *
    vertices[..., indices[m, s], :]``; one vertex (weight 1), a barycentric point (three
    weights) and a joint regressor row (many weights) all fit this form.
    """

    def __init__(self, names: tuple[str, ...], indices: torch.Tensor, weights: torch.Tensor) -> None:
        if indices.shape != weights.shape or indices.ndim != 2 or indices.shape[0] != len(names):
            raise InputError(
                f"vertex regressor: indices {tuple(indices.shape)} and weights {tuple(weights.shape)} "
                f"must both be (M={len(names)}, S)"
            )
        if len(set(names)) != len(names):
            raise InputError(f"vertex regressor: duplicate point names in {names}")
        sums = weights.sum(dim=1)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
            bad = [names[i] for i in torch.nonzero((sums - 1).abs() > 1e-3).flatten().tolist()]
            raise InputError(f"vertex regressor: weights of {bad} do not sum to 1")
        self.names = tuple(names)
        self.indices = indices.long()
        self.weights = weights

    @property
    def num_points(self) -> int:
        return len(self.names)

    def check_vertex_count(self, num_vertices: int, what: str) -> None:
        """Raise InputError when an index is outside a mesh of ``num_vertices`` vertices."""
        top = int(self.indices.max()) if self.indices.numel() else -1
        if top >= num_vertices:
            raise InputError(
                f"{what}: vertex index {top} is out of range for a mesh of {num_vertices} vertices; "
                "the point set belongs to another body model or topology"
            )

    def positions(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, M, 3) points from (B, V, 3) vertices (same units and frame as the vertices)."""
        gathered = vertices[:, self.indices]                     # (B, M, S, 3)
        weights = self.weights.to(dtype=vertices.dtype, device=vertices.device)
        return torch.einsum("ms,bmsd->bmd", weights, gathered)

    def compact(self) -> tuple[torch.Tensor, VertexRegressor]:
        """(N,) the vertices this regressor reads, and the regressor re-indexed into them.

        ``r.positions(v) == compact_r.positions(v[:, ids])``: evaluate a body model on ``ids`` only.
        """
        ids, inverse = torch.unique(self.indices, return_inverse=True)
        return ids, VertexRegressor(self.names, inverse.reshape(self.indices.shape), self.weights)

    def sparsified(self, max_vertices: int) -> VertexRegressor:
        """Keep each point's ``max_vertices`` largest weights, renormalised (dense joint
        regressors read hundreds of vertices; 32 keep Anny's COCO points within ~4 mm)."""
        if self.indices.shape[1] <= max_vertices:
            return self
        w, j = self.weights.topk(max_vertices, dim=1)
        return VertexRegressor(self.names, self.indices.gather(1, j), w / w.sum(dim=1, keepdim=True))

    def subset(self, names: tuple[str, ...]) -> VertexRegressor:
        """The named points only, in the given order."""
        index = {n: i for i, n in enumerate(self.names)}
        absent = [n for n in names if n not in index]
        if absent:
            raise InputError(f"points {absent} are not defined; defined: {', '.join(self.names)}")
        rows = torch.tensor([index[n] for n in names], dtype=torch.long)
        return VertexRegressor(tuple(names), self.indices[rows], self.weights[rows])

    @staticmethod
    def from_rows(rows: dict[str, tuple[list[int], list[float]]]) -> VertexRegressor:
        """Build from ``{name: (vertex indices, weights)}``, padding rows to the longest."""
        width = max((len(ix) for ix, _ in rows.values()), default=1)
        names = tuple(rows)
        indices = np.zeros((len(names), width), dtype=np.int64)
        weights = np.zeros((len(names), width), dtype=np.float32)
        for m, name in enumerate(names):
            ix, w = rows[name]
            if len(ix) != len(w) or not ix:
                raise InputError(f"point {name!r}: give as many weights as vertex indices (at least one)")
            indices[m, : len(ix)] = ix
            weights[m, : len(w)] = w
        return VertexRegressor(names, torch.from_numpy(indices), torch.from_numpy(weights))


@dataclass(frozen=True)
class PoseLimit:
    """Soft box limits of one pose joint's rotation vector, degrees, per axis of the model frame.

    The fit penalises the excess beyond the box; the box is deliberately generous (it keeps the
    optimiser out of anatomically impossible minima, e.g. a knee bending forwards).
    """

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]


class BodyModel(abc.ABC):
    """A parametric body mesh, differentiable and batched, float32, on CPU by default.

    Pose: (B, P, 3) rotation vectors (axis * angle, radians) of the model's pose joints
    (:attr:`pose_joint_names`) in the model's canonical axes, relative to its rest pose.
    Global orientation is *not* part of ``pose``: callers rotate the output (a fit does it in
    the camera frame). Shape: (B or 1, S) model-specific parameters, :attr:`shape_names`,
    neutral at :attr:`neutral_shape`. Transl: (B, 3) metres, added to every vertex.
    """

    name: str
    frame: BodyFrame

    @property
    @abc.abstractmethod
    def pose_joint_names(self) -> tuple[str, ...]:
        """Names of the P pose joints, in the order of ``pose``'s second axis."""

    @property
    @abc.abstractmethod
    def shape_names(self) -> tuple[str, ...]:
        """Names of the S shape parameters."""

    @property
    @abc.abstractmethod
    def neutral_shape(self) -> torch.Tensor:
        """(S,) the average body's shape parameters (the shape prior's mean)."""

    @property
    @abc.abstractmethod
    def shape_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(S,), (S,) lower and upper bounds of sensible shape parameters."""

    @property
    @abc.abstractmethod
    def faces(self) -> torch.Tensor:
        """(F, 3) int64 triangle vertex indices."""

    @property
    @abc.abstractmethod
    def num_vertices(self) -> int:
        """V, the number of mesh vertices."""

    @abc.abstractmethod
    def forward(self, pose: torch.Tensor, shape: torch.Tensor, transl: torch.Tensor | None = None,
                vertex_ids: torch.Tensor | None = None) -> BodyOutput:
        """Pose the body; see the class docstring for shapes and units.

        ``vertex_ids`` (N,): return only these vertices, (B, N, 3) (models may skip the others).
        """

    @property
    @abc.abstractmethod
    def keypoint_names(self) -> tuple[str, ...]:
        """Detector keypoint names this model declares correspondences for.

        Names follow :mod:`opensim_biopose.detect.layouts` (the same anatomical point has the
        same snake_case name in every layout), so a layout is matched by name.
        """

    @abc.abstractmethod
    def keypoint_regressor(self) -> VertexRegressor:
        """All declared detector keypoints (:attr:`keypoint_names`) on this mesh."""

    def pose_limits(self) -> dict[str, PoseLimit]:
        """Soft limits per pose joint name; joints not listed are only regularised."""
        return {}

    def pose_prior_weights(self) -> torch.Tensor:
        """(P, 3) relative stiffness of each pose joint and axis for the L2 pose prior (1 = default)."""
        return torch.ones(len(self.pose_joint_names), 3)

    def zero_pose(self, batch: int) -> torch.Tensor:
        """(batch, P, 3) rest pose."""
        return torch.zeros(batch, len(self.pose_joint_names), 3)

    def __call__(self, pose: torch.Tensor, shape: torch.Tensor, transl: torch.Tensor | None = None,
                 vertex_ids: torch.Tensor | None = None) -> BodyOutput:
        return self.forward(pose, shape, transl, vertex_ids)


def check_pose_shape(model: BodyModel, pose: torch.Tensor, shape: torch.Tensor) -> int:
    """Validate (B, P, 3) pose and (B or 1, S) shape; return B."""
    p, s = len(model.pose_joint_names), len(model.shape_names)
    if pose.ndim != 3 or pose.shape[1:] != (p, 3):
        raise InputError(f"{model.name}: pose must be (B, {p}, 3) rotation vectors, got {tuple(pose.shape)}")
    if shape.ndim != 2 or shape.shape[1] != s or shape.shape[0] not in (1, pose.shape[0]):
        raise InputError(f"{model.name}: shape must be (1 or B, {s}), got {tuple(shape.shape)}")
    return int(pose.shape[0])
