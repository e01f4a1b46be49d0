"""Compiled (numba) decoding of a per-frame NeurIK network's outputs into coordinates.

Why: after the network, each frame needs a few dozen scalar operations (clamping of the
predicted coordinates, the 6D root rotation, the closed-form root coordinates). As batched
torch operators these are ~60 operator calls per trial whose dispatch costs far more than the
arithmetic (~0.3-0.6 ms on a lab trial); one compiled loop over the frames does the same
float64 arithmetic in microseconds.

The arithmetic is that of ``NeurIK._window_coordinates`` (range clamps, root solve),
:func:`.frames.rotation_6d_to_matrix` (Gram-Schmidt), :func:`.features.root_in_ground` (the
rotation) and :func:`.layout.euler_root_coordinates`, in float64. The float32 steps whose
rounding would show in the answer stay in torch, in the windowed path's own operations: the
predicted coordinates (tanh onto their ranges) and the root position in ground (a sum of
metre-sized values, where one float32 step is 1e-7 m). The coordinates match the windowed path
to the float32 rounding of the root rotation (~1e-7 rad); tests/test_neurik_frames.py compares them.
Compilation is cached on disk by numba (``cache=True``); without numba, NeurIK decodes with torch.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from opensim_biopose.neurik.layout import EulerRoot, ModelLayout

try:  # numba is a dependency; without it the torch decoding is used.
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is absent
    njit = None

AVAILABLE = njit is not None

# F.normalize's floor on a vector's norm (rotation_6d_to_matrix uses the default).
_NORM_EPS = 1e-12


@dataclasses.dataclass(frozen=True, eq=False)
class ClosedFormArrays:
    """:class:`.layout.EulerRoot` as float64 / int64 numpy arrays for the kernel.

    Attributes:
        coordinates: (6,) rotation then translation coordinate indices.
        left, right: (3, 3) the closed form's ``left R right`` whose X-Y-Z angles are wanted.
        angle_sign: (3,) signs of the atan2 numerators -m12, m02, -m01.
        rotation_offset, rotation_gain: (3,) axis value = gain * q + offset.
        translation_matrix, translation_constant, p_cm: (3, 3), (3,), (3,): translation
            coordinates = (p + R p_cm) @ translation_matrix + translation_constant.
    """

    coordinates: np.ndarray
    left: np.ndarray
    right: np.ndarray
    angle_sign: np.ndarray
    rotation_offset: np.ndarray
    rotation_gain: np.ndarray
    translation_matrix: np.ndarray
    translation_constant: np.ndarray
    p_cm: np.ndarray

    @classmethod
    def of(cls, form: EulerRoot) -> ClosedFormArrays:
        return cls(_i64(form.coordinates), _f64(form.left), _f64(form.right), _f64(form.angle_sign),
                   _f64(form.rotation_offset), _f64(form.rotation_gain), _f64(form.translation_matrix),
                   _f64(form.translation_constant), _f64(form.p_cm))


# Placeholder arrays for models without the closed form (the kernel then leaves the root alone).
_NO_CLOSED_FORM = ClosedFormArrays(np.zeros(6, np.int64), np.eye(3), np.eye(3), np.zeros(3), np.zeros(3),
                                   np.ones(3), np.eye(3), np.zeros(3), np.zeros(3))


@dataclasses.dataclass(frozen=True, eq=False)
class FrameDecoder:
    """Per-checkpoint constants of the decoding, numpy arrays made once at load.

    Attributes:
        default_q: (n,) default coordinates, clamped where the model clamps them (rad / m).
        predicted: (P,) indices of the predicted coordinates.
        lower, upper: (P,) their clamps (-inf / +inf where unclamped).
        closed_form: the root's closed form, or None (root coordinates are then left at their defaults).
    """

    default_q: np.ndarray
    predicted: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    closed_form: ClosedFormArrays | None


def _f64(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().double().numpy())


def _i64(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.int64))


def frame_decoder(layout: ModelLayout, default_q, lower_predicted, upper_predicted) -> FrameDecoder:
    """Constants for :func:`decode_frames` from the layout and the clamped defaults / bounds (tensors)."""
    form = layout.root_closed_form
    return FrameDecoder(_f64(default_q), _i64(layout.predicted), _f64(lower_predicted), _f64(upper_predicted),
                        ClosedFormArrays.of(form) if form is not None else None)


def _decode_kernel(q_pred, root_6d, frame_rotation, ground_position, default_q, predicted, lower, upper,
                   closed_form, root_coordinates, left, right, angle_sign, rotation_offset, rotation_gain,
                   translation_matrix, translation_constant, p_cm, q, rotation):
    """Fills q (T, n) and rotation (T, 3, 3); see :func:`decode_frames` for the arguments."""
    t_frames, n_pred = q_pred.shape
    has_root = root_6d.shape[0] == t_frames
    rl = np.empty((3, 3))
    m = np.empty((3, 3))
    lr = np.empty((3, 3))
    lever = np.empty(3)
    for t in range(t_frames):
        q[t, :] = default_q
        for j in range(n_pred):
            q[t, predicted[j]] = min(max(np.float64(q_pred[t, j]), lower[j]), upper[j])
        if not has_root:
            continue
        # 6D -> rotation in the reference frame: Gram-Schmidt of the two columns, third = cross.
        a0, a1, a2 = np.float64(root_6d[t, 0]), np.float64(root_6d[t, 1]), np.float64(root_6d[t, 2])
        b0, b1, b2 = np.float64(root_6d[t, 3]), np.float64(root_6d[t, 4]), np.float64(root_6d[t, 5])
        na = max(math.sqrt(a0 * a0 + a1 * a1 + a2 * a2), _NORM_EPS)
        a0, a1, a2 = a0 / na, a1 / na, a2 / na
        d = a0 * b0 + a1 * b1 + a2 * b2
        b0, b1, b2 = b0 - d * a0, b1 - d * a1, b2 - d * a2
        nb = max(math.sqrt(b0 * b0 + b1 * b1 + b2 * b2), _NORM_EPS)
        b0, b1, b2 = b0 / nb, b1 / nb, b2 / nb
        rl[0, 0], rl[1, 0], rl[2, 0] = a0, a1, a2
        rl[0, 1], rl[1, 1], rl[2, 1] = b0, b1, b2
        rl[0, 2], rl[1, 2], rl[2, 2] = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0
        for i in range(3):      # ground rotation = reference frame rotation @ local rotation
            for k in range(3):
                s = 0.0
                for j in range(3):
                    s += np.float64(frame_rotation[t, i, j]) * rl[j, k]
                rotation[t, i, k] = s
        if not closed_form:
            continue
        for i in range(3):      # m = left @ R @ right
            for k in range(3):
                s = 0.0
                for j in range(3):
                    s += left[i, j] * rotation[t, j, k]
                lr[i, k] = s
        for i in range(3):
            for k in range(3):
                s = 0.0
                for j in range(3):
                    s += lr[i, j] * right[j, k]
                m[i, k] = s
        angles = (math.atan2(angle_sign[0] * m[1, 2], m[2, 2]),
                  math.atan2(angle_sign[1] * m[0, 2], math.hypot(m[0, 0], m[0, 1])),
                  math.atan2(angle_sign[2] * m[0, 1], m[0, 0]))
        for i in range(3):
            v = (angles[i] - rotation_offset[i]) / rotation_gain[i]
            q[t, root_coordinates[i]] = math.atan2(math.sin(v), math.cos(v))
        for i in range(3):
            s = np.float64(ground_position[t, i])
            for j in range(3):
                s += rotation[t, i, j] * p_cm[j]
            lever[i] = s
        for k in range(3):
            s = translation_constant[k]
            for i in range(3):
                s += lever[i] * translation_matrix[i, k]
            q[t, root_coordinates[3 + k]] = s


_kernel = njit(cache=True)(_decode_kernel) if AVAILABLE else None


def decode_frames(decoder: FrameDecoder, q_pred: np.ndarray, root_6d: np.ndarray | None,
                  frame_rotation: np.ndarray | None, ground_position: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Coordinates of T frames from a per-frame network's outputs.

    Args:
        q_pred: (T, P) predicted coordinates (rad / m) before the clamps.
        root_6d: (T, 6) float32 root orientation in each reference frame (6D), or None without a root.
        frame_rotation: (T, 3, 3) float32 reference frames (reference-to-ground), or None.
        ground_position: (T, 3) float32 root body position in ground (m), or None.
    Returns:
        q (T, n) float64: defaults, predicted coordinates clamped to their ranges,
        and with the closed form the root coordinates (rad / m); the root rotation in ground
        (T, 3, 3) float64 (None without a root) for a Gauss-Newton root solve where there is no
        closed form.
    """
    if _kernel is None:
        raise RuntimeError("numba is not installed: decode with torch (NeurIK does this itself)")
    t = q_pred.shape[0]
    q = np.empty((t, decoder.default_q.shape[0]))
    has_root = root_6d is not None
    rotation = np.empty((t if has_root else 0, 3, 3))
    if not has_root:
        root_6d, frame_rotation = np.zeros((0, 6), np.float32), np.zeros((0, 3, 3), np.float32)
        ground_position = np.zeros((0, 3), np.float32)
    d = decoder
    c = d.closed_form if d.closed_form is not None else _NO_CLOSED_FORM
    _kernel(q_pred, root_6d, frame_rotation, ground_position, d.default_q, d.predicted, d.lower, d.upper,
            d.closed_form is not None and has_root, c.coordinates, c.left, c.right, c.angle_sign, c.rotation_offset,
            c.rotation_gain, c.translation_matrix, c.translation_constant, c.p_cm, q, rotation)
    return q, (rotation if has_root else None)
