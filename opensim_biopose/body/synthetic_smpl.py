"""A small synthetic model file in the SMPL format, for tests of the SMPL path without the real files.

Same keys, dtypes and array layouts as the registered SMPL ``.pkl`` (v_template (V, 3),
shapedirs (V, 3, 10), posedirs (V, 3, 207), J_regressor (24, V), weights (V, 24),
kintree_table (2, 24), f (F, 3)), but V is small: a stick figure made of vertex clusters
around SMPL's 24 joints in its T-pose frame (+X left, +Y up, +Z anterior, metres),
each cluster skinned rigidly to its joint, random small shape and pose blend shapes.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from opensim_biopose.io.atomic import atomic_path

# Rough adult joint centres (metres), pelvis at the origin; SMPL's joint order.
_JOINTS = np.array([
    [0.0, 0.0, 0.0], [0.09, -0.08, 0.0], [-0.09, -0.08, 0.0], [0.0, 0.11, -0.02],
    [0.10, -0.46, 0.01], [-0.10, -0.46, 0.01], [0.0, 0.24, 0.0], [0.10, -0.86, -0.03],
    [-0.10, -0.86, -0.03], [0.0, 0.30, 0.01], [0.11, -0.92, 0.10], [-0.11, -0.92, 0.10],
    [0.0, 0.51, -0.01], [0.07, 0.42, 0.0], [-0.07, 0.42, 0.0], [0.0, 0.63, 0.03],
    [0.18, 0.45, -0.01], [-0.18, 0.45, -0.01], [0.45, 0.45, -0.02], [-0.45, 0.45, -0.02],
    [0.70, 0.45, -0.01], [-0.70, 0.45, -0.01], [0.79, 0.45, -0.01], [-0.79, 0.45, -0.01],
])
_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])


def synthetic_smpl_arrays(vertices_per_joint: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of a synthetic SMPL model (see the module docstring)."""
    rng = np.random.default_rng(seed)
    j, n = _JOINTS.shape[0], vertices_per_joint
    offsets = rng.normal(size=(j, n, 3))
    offsets *= 0.04 / np.linalg.norm(offsets, axis=2, keepdims=True)          # 4 cm shells
    v_template = (_JOINTS[:, None, :] + offsets).reshape(-1, 3)
    owner = np.repeat(np.arange(j), n)
    weights = np.zeros((j * n, j))
    weights[np.arange(j * n), owner] = 1.0
    j_regressor = np.zeros((j, j * n))
    j_regressor[owner, np.arange(j * n)] = 1.0 / n                              # cluster means
    faces = np.concatenate([np.stack([np.full(n - 2, k * n), k * n + np.arange(1, n - 1),
                                      k * n + np.arange(2, n)], axis=1) for k in range(j)])
    kintree = np.stack([_PARENTS, np.arange(j)]).astype(np.int64)
    kintree[0, 0] = 4294967295                                                  # as in the real file
    return {
        "v_template": v_template,
        "shapedirs": rng.normal(scale=0.01, size=(j * n, 3, 10)),
        "posedirs": rng.normal(scale=0.001, size=(j * n, 3, 207)),
        "J_regressor": j_regressor,
        "weights": weights,
        "kintree_table": kintree,
        "f": faces.astype(np.int64),
    }


def write_synthetic_smpl(path: str | os.PathLike[str], vertices_per_joint: int = 8, seed: int = 0) -> Path:
    """Write a synthetic SMPL ``.pkl`` (latin-1 pickle like the real one), atomically."""
    arrays = synthetic_smpl_arrays(vertices_per_joint, seed)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(arrays, fh, protocol=2)
    return Path(path)
