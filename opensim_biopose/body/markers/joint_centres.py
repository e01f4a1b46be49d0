"""Joint-centre virtual markers on Anny: how the ``*JC`` entries of ``anny-pig53`` v3 are derived.

A skin marker slides over the bone it names (the acromion rides on the scapula, not the humerus),
so a segment between two skin markers changes length as the joints move. A joint centre does not:
the glenohumeral centre and the midpoint of the humeral epicondyles both belong to the humerus,
and their distance is the upper arm's length (ISB convention, Wu et al. 2005, J Biomech 38:981).

On Anny the rotation centre of a joint is the head of the child bone (``upperarm01.R`` for the
right shoulder). It is not a vertex, so each joint-centre marker is a *regressed* point, a weighted
sum of vertices with weights summing to 1 (the form of SMPL's joint regressor, Loper et al. 2015,
ACM TOG 34:248). Two kinds, chosen per joint in :data:`JOINT_CENTRES`:

* **carried** (SJC, EJC, WJC, HJC, KJC): the ISB assigns each landmark to one bone -- the
  glenohumeral centre and the epicondyles' midpoint to the humerus, the wrist centre (styloids'
  midpoint) to the forearm, the femoral head and the femoral epicondyles' midpoint to the femur
  (Wu et al. 2002, J Biomech 35:543; 2005). The point is made only of vertices skinned
  ``>= purity`` to that bone's rigid group (the bone and its unposed twist bones): linear blend
  skinning moves every such vertex with the same rigid transform, so any combination whose
  weights sum to 1 moves rigidly with the bone, on *every* body and pose. SJC-EJC and HJC-KJC are
  then exactly constant. Those vertices lie on one side of the joint, so the weights are signed
  (an extrapolation towards the joint): ridge least squares over rest bodies of many shapes,

      minimise  sum over shapes || sum_i c_i v_i(shape) - head(shape) ||^2 + ridge ||c||^2,
      sum_i c_i = 1, i over the ``nearest`` such vertices to the head on the neutral body.

  The price of extrapolating: on a mesh with independent per-vertex noise the point's noise is
  ``||c||_2`` (about 5-8) times the vertex noise. Fitted body-model meshes have none.
* **blended** (AJC): Anny's lower leg has too few rigidly skinned vertices near the ankle to
  extrapolate well, so the ankle centre is a sparse non-negative combination of the vertices
  within ``radius_m`` of it, fitted (NNLS) to Anny's *posed* ankle over many bodies and random
  poses of every pose joint of :data:`~opensim_biopose.body.anny_model.POSE_BONES`. It follows the
  joint closely but not exactly rigidly.

Either way a fixed vertex combination cannot follow Anny's joint exactly on every body: Anny places
its joints per phenotype independently of the skin (DESIGN.md: the knee drifts up to ~6 cm at
extreme heights). :func:`evaluate` measures the distance to Anny's posed joints on held-out
bodies and poses (the table printed by ``python -m opensim_biopose.body.markers.joint_centres``);
``tests/test_joint_centres.py`` checks segment lengths over joint sweeps on extreme bodies.

Regenerate the marker file (deterministic; seconds on one core)::

    python -m opensim_biopose.body.markers.joint_centres --write
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from opensim_biopose.body.anny_model import AnnyBody

# (marker, Anny bone whose head is the joint centre, carrier bone or None for "blended",
# description). Plug-in-Gait-like names; the default OpenSim model has none of them, so OpenSim IK,
# NeurIK and scaling pass them by.
JOINT_CENTRES: tuple[tuple[str, str, str | None, str], ...] = tuple(
    (f"{side}{stem}", f"{bone}.{side}", None if carrier is None else f"{carrier}.{side}",
     f"{'left' if side == 'L' else 'right'} {what}")
    for side in ("L", "R")
    for stem, bone, carrier, what in (
        ("SJC", "upperarm01", "upperarm01", "shoulder (glenohumeral) joint centre, on the humerus"),
        ("EJC", "lowerarm01", "upperarm01", "elbow joint centre, on the humerus"),
        ("WJC", "wrist", "lowerarm01", "wrist joint centre, on the forearm"),
        ("HJC", "upperleg01", "upperleg01", "hip joint centre, on the femur"),
        ("KJC", "lowerleg01", "upperleg01", "knee joint centre, on the femur"),
        ("AJC", "foot", None, "ankle joint centre (blended skin)"),
    )
)


@dataclass(frozen=True)
class JointCentreConfig:
    """How the joint-centre regressors are fitted (the v3 file was made with the defaults)."""

    # Random bodies inside the fit's phenotype bounds, plus this many corners of those bounds:
    # the regressor has to hold on every body a fit may produce, the extremes included.
    random_shapes: int = 48
    corner_shapes: int = 16
    # Carried points: vertices skinned at least this much to the carrier's rigid group (0.999:
    # rigid to float precision), the ``nearest`` of them to the joint on the neutral body (150
    # reach past the blended ring around a joint; more add only far, less useful vertices), and a
    # ridge that trades a few millimetres of placement for much smaller weights (1e-4: ||c||_2 ~ 8
    # instead of ~ 25 without it).
    purity: float = 0.999
    nearest: int = 150
    ridge: float = 1e-4
    # Blended points: candidate vertices within this distance of the joint on the neutral body,
    # random poses per body, each pose joint uniform in ``pose_fraction`` of its soft limits
    # (0.6: no self-intersecting extremes), weights below ``min_weight`` dropped (NNLS leaves a few
    # dozen vertices, most of them near zero).
    radius_m: float = 0.12
    poses_per_shape: int = 24
    pose_fraction: float = 0.6
    min_weight: float = 1e-3
    # Weight of the sum-to-one row against metres of position error.
    sum_row_weight: float = 100.0
    seed: int = 0


@dataclass(frozen=True, eq=False)
class Samples:
    """Training or test bodies: vertices (N, V, 3) and bone heads (N, J, 3), Anny frame, metres."""

    vertices: np.ndarray
    heads: np.ndarray
    shapes: np.ndarray          # (S, 6) phenotypes; sample n belongs to shape n // (N // S)


@dataclass(frozen=True)
class JointRegressor:
    """One joint centre as vertex indices (K,) and weights (K,) summing to 1."""

    name: str
    bone: str
    carrier: str | None
    description: str
    vertices: tuple[int, ...]
    weights: tuple[float, ...]

    def positions(self, vertices: np.ndarray) -> np.ndarray:
        """(N, 3) points from (N, V, 3) vertices."""
        return np.einsum("k,nkd->nd", np.asarray(self.weights), vertices[:, list(self.vertices)])


def sample_shapes(body: AnnyBody, count: int, corners: int, rng: np.random.Generator) -> np.ndarray:
    """(1 + count + corners, 6): neutral body, uniform random bodies, random corners of the bounds."""
    lo, hi = (b.double().numpy() for b in body.shape_bounds)
    rand = lo + (hi - lo) * rng.random((count, lo.size))
    corner = np.where(rng.random((corners, lo.size)) < 0.5, lo, hi)
    return np.vstack([body.neutral_shape.double().numpy()[None], rand, corner])


def sample_poses(body: AnnyBody, count: int, fraction: float, rng: np.random.Generator) -> torch.Tensor:
    """(count, P, 3) rad: each pose joint uniform in ``fraction`` of its soft limits (0 where none)."""
    limits = body.pose_limits()
    lo = np.array([limits[n].lower if n in limits else (0, 0, 0) for n in body.pose_joint_names], float)
    hi = np.array([limits[n].upper if n in limits else (0, 0, 0) for n in body.pose_joint_names], float)
    deg = fraction * (lo + (hi - lo) * rng.random((count, *lo.shape)))
    return torch.from_numpy(np.radians(deg))


def pose_samples(body: AnnyBody, shapes: np.ndarray, poses_per_shape: int, fraction: float,
                 rng: np.random.Generator) -> Samples:
    """Posed bodies: ``poses_per_shape`` random poses (plus the rest pose) of every shape."""
    verts, heads = [], []
    with torch.no_grad():
        for shape in shapes:
            pose = torch.cat([body.zero_pose(1).double(), sample_poses(body, poses_per_shape, fraction, rng)])
            out = body(pose, torch.from_numpy(shape)[None])
            verts.append(out.vertices.double().numpy())
            heads.append(out.joints.double().numpy())
    return Samples(np.concatenate(verts), np.concatenate(heads), shapes)


def rigid_groups(parents: list[int], posed: set[int]) -> np.ndarray:
    """(J,) for every bone the nearest posed bone at or above it (root if none): bones that a pose
    of :data:`POSE_BONES` moves with one rigid transform."""
    groups = np.empty(len(parents), dtype=int)
    for b in range(len(parents)):
        g = b
        while g not in posed and parents[g] >= 0:
            g = parents[g]
        groups[b] = g
    return groups


def group_weights(weights: np.ndarray, bones: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(V, J) skinning weight of each vertex per rigid group, from (V, k) weights of (V, k) bones."""
    out = np.zeros((weights.shape[0], groups.size))
    np.add.at(out, (np.repeat(np.arange(weights.shape[0]), weights.shape[1]), groups[bones.ravel()]), weights.ravel())
    return out


def fit_carried(vertices: np.ndarray, target: np.ndarray, candidates: np.ndarray,
                config: JointCentreConfig) -> np.ndarray:
    """Signed weights (K,) summing to 1 over ``candidates`` so that the combination of
    ``vertices`` (N, V, 3) meets ``target`` (N, 3); ridge least squares."""
    a = vertices[:, candidates].transpose(0, 2, 1).reshape(-1, len(candidates))      # (3N, K)
    a = np.vstack([a, np.full(len(candidates), config.sum_row_weight)])
    b = np.append(target.reshape(-1), config.sum_row_weight)
    c = np.linalg.solve(a.T @ a + config.ridge * np.eye(len(candidates)), a.T @ b)
    return c / c.sum()


def fit_blended(vertices: np.ndarray, target: np.ndarray, candidates: np.ndarray,
                config: JointCentreConfig) -> tuple[np.ndarray, np.ndarray]:
    """Sparse non-negative weights over ``candidates`` (K,) so that the combination of
    ``vertices`` (N, V, 3) meets ``target`` (N, 3); returns (indices, weights summing to 1)."""
    from scipy.optimize import nnls

    a = vertices[:, candidates].transpose(0, 2, 1).reshape(-1, len(candidates))      # (3N, K)
    a = np.vstack([a, np.full(len(candidates), config.sum_row_weight)])
    b = np.append(target.reshape(-1), config.sum_row_weight)
    c, _ = nnls(a, b, maxiter=50 * len(candidates))
    keep = c >= config.min_weight
    return candidates[keep], c[keep] / c[keep].sum()


def derive(body: AnnyBody, config: JointCentreConfig = JointCentreConfig()) -> tuple[JointRegressor, ...]:
    """Fit every joint of :data:`JOINT_CENTRES` on Anny (``body``: an ``AnnyBody`` in float64)."""
    from opensim_biopose.body.anny_model import POSE_BONES

    rng = np.random.default_rng(config.seed)
    shapes = sample_shapes(body, config.random_shapes, config.corner_shapes, rng)
    rest = pose_samples(body, shapes, 0, config.pose_fraction, rng)
    posed = pose_samples(body, shapes, config.poses_per_shape, config.pose_fraction, rng)
    anny = body._anny
    labels = list(anny.bone_labels)
    groups = rigid_groups(list(anny.bone_parents), {labels.index(b) for b in POSE_BONES})
    skin = group_weights(anny.vertex_bone_weights.double().numpy(), anny.vertex_bone_indices.numpy(), groups)
    out = []
    for name, bone, carrier, what in JOINT_CENTRES:
        j = labels.index(bone)
        distance = np.linalg.norm(rest.vertices[0] - rest.heads[0, j], axis=1)   # sample 0: neutral body
        if carrier is not None:
            pure = np.flatnonzero(skin[:, groups[labels.index(carrier)]] >= config.purity)
            idx = pure[np.argsort(distance[pure])[:config.nearest]]
            w = fit_carried(rest.vertices, rest.heads[:, j], idx, config)
        else:
            idx, w = fit_blended(posed.vertices, posed.heads[:, j], np.flatnonzero(distance < config.radius_m), config)
        out.append(JointRegressor(name, bone, carrier, what, tuple(int(i) for i in idx), _rounded(w)))
    return tuple(out)


def _rounded(w: np.ndarray, digits: int = 7) -> tuple[float, ...]:
    """Weights rounded for the file, the largest absorbing the rounding so they sum to 1."""
    r = np.round(w, digits)
    r[np.argmax(r)] += 1.0 - r.sum()
    return tuple(float(round(x, digits + 1)) for x in r)


@dataclass(frozen=True)
class JointError:
    """How far one regressed centre lands from Anny's posed joint over test samples, millimetres."""

    name: str
    mean_mm: float
    max_mm: float


def evaluate(regressors: tuple[JointRegressor, ...], labels: list[str], samples: Samples) -> list[JointError]:
    """Distance between each regressed centre and Anny's bone head over ``samples``."""
    out = []
    for r in regressors:
        d = 1000 * np.linalg.norm(r.positions(samples.vertices) - samples.heads[:, labels.index(r.bone)], axis=1)
        out.append(JointError(r.name, float(d.mean()), float(d.max())))
    return out


def marker_entries(regressors: tuple[JointRegressor, ...]) -> dict[str, dict]:
    """The marker-set file entries of the regressors."""
    return {r.name: {"vertices": list(r.vertices), "weights": list(r.weights),
                     "description": f"{r.description}: regressed head of Anny bone {r.bone}"
                                    + (f" from vertices rigid with {r.carrier}" if r.carrier else "")}
            for r in regressors}


V3_FILE = "anny_pig53_v3.json"


def v3_document(v2: dict, regressors: tuple[JointRegressor, ...], config: JointCentreConfig) -> dict:
    """anny-pig53 v3: v2's 53 markers unchanged (same names, order and vertices) + joint centres."""
    doc = {k: v for k, v in v2.items() if k not in ("changes_from_v1", "markers")}
    doc["version"] = 3
    doc["description"] = (v2["description"] + " Version 3 adds 12 regressed joint centres (SJC, EJC, WJC, HJC, "
                          "KJC, AJC per side), which the default model lacks: OpenSim IK, NeurIK and scaling skip "
                          "them; they measure segment lengths that skin markers cannot.")
    doc["provenance"] = (f"The 53 markers of version 2 unchanged. Joint centres fitted to Anny's bone heads over "
                         f"{1 + config.random_shapes + config.corner_shapes} bodies by "
                         "opensim_biopose/body/markers/joint_centres.py (JointCentreConfig defaults): SJC, EJC, WJC, "
                         "HJC, KJC from vertices skinned rigidly to one bone (ridge least squares, signed weights; the "
                         "point moves exactly with that bone), AJC as a non-negative blend of skin vertices around the "
                         f"ankle fitted over {config.poses_per_shape + 1} poses per body.")
    doc["markers"] = {**v2["markers"], **marker_entries(regressors)}
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Derive the joint-centre markers of anny-pig53 v3 and report them.")
    parser.add_argument("--write", action="store_true", help=f"(re)write {V3_FILE} beside this module")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from opensim_biopose.body.anny_model import AnnyBody, AnnyConfig
    from opensim_biopose.io.atomic import write_text_atomic

    body = AnnyBody(AnnyConfig(dtype=torch.float64))
    config = JointCentreConfig()
    regressors = derive(body, config)
    rng = np.random.default_rng(config.seed + 1)     # other bodies and poses than the fit's
    test = pose_samples(body, sample_shapes(body, 8, 4, rng)[1:], 16, config.pose_fraction, rng)
    labels = list(body._anny.bone_labels)
    print(f"{'marker':7s} {'bone head':13s} {'on':13s} {'vertices':>8s} {'|c|_2':>6s} {'mean mm':>8s} {'max mm':>7s}"
          "  (distance to Anny's joint, held-out bodies and poses)")
    for r, e in zip(regressors, evaluate(regressors, labels, test)):
        print(f"{r.name:7s} {r.bone:13s} {r.carrier or '(blended)':13s} {len(r.vertices):8d} "
              f"{np.linalg.norm(r.weights):6.2f} {e.mean_mm:8.1f} {e.max_mm:7.1f}")
    if args.write:
        here = resources.files(__package__)
        v2 = json.loads(here.joinpath("anny_pig53_v2.json").read_text())
        path = Path(str(here.joinpath(V3_FILE)))
        write_text_atomic(path, json.dumps(v3_document(v2, regressors, config), indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
