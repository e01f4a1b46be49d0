"""Compiled per-frame kernels (numba) for the CPU path of IK refinement.

Why: at lab batch sizes (tens to hundreds of frames) the batched torch kernels of
:mod:`.skeleton` spend most of their time in per-operator overhead (hundreds of small ops per
Levenberg-Marquardt pass), and a batched solve costs as many passes as its slowest frame
needs. Here each frame runs its own loop in machine code: forward kinematics, the normal
equations of OpenSim's IK objective and the damped step, so a frame costs only its own
iterations. The arithmetic is the one of :func:`Skeleton.normal_equations` and
``refine._lm_step`` (same objective, derivatives, step and stopping rules); tests compare
both paths.

Layout: a :class:`NativeModel` is plain numpy arrays made once per Skeleton from its
:class:`KinematicModel` (joints parent-first; body rows = model body index + 1, row 0 =
ground). Only the unscaled model with its own marker offsets is covered (what refinement
uses); anything else stays on the torch path.

Frames: ground G (Y up); per joint, F fixed in the parent body, M in the child body;
``X_GC = X_GP X_PF X_FM(q) X_CM^-1`` with X_FM = translation along F's axes, then up to three
rotations about successively rotated axes (OpenSim's CustomJoint form, see osim_reader).
Compilation is cached on disk by numba (``cache=True``): the first use in a fresh install
takes ~10-20 s, later processes load the machine code in well under a second.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from opensim_biopose.kinematics.functions import FunctionSpec, FunctionTable, PolynomialSpec
from opensim_biopose.kinematics.osim_reader import AxisSpec, JointSpec, KinematicModel

try:  # numba is a dependency; without it (or on a platform it lacks) refinement uses torch.
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is absent
    numba = None

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        return (lambda f: f) if not args or not callable(args[0]) else args[0]


AVAILABLE = numba is not None

_POLY, _SPLINE = 0, 1


@dataclasses.dataclass(frozen=True, eq=False)
class NativeModel:
    """The kinematics of one model as flat arrays (float64 / int64), for the kernels below.

    Functions (axis and coupler functions, ``scale * g(x)``): ``fn_kind`` (Fn,) 0 polynomial /
    1 spline, ``fn_scale``, ``fn_poly`` (Fn, P) highest power first, ``fn_knots`` (Fn, K)
    padded with +inf, ``fn_coef`` (Fn, 4, K) y, b, c, d per knot, ``fn_last`` (Fn,) last knot.
    Couplers in evaluation order: q[cp_dep] = f[cp_fn](q[cp_ind]).
    ``coord_root`` (n,): the independent coordinate each coordinate follows.
    Joints (J, parent-first): parent/child body rows, F and M frames (``j_r_pf`` body<-F,
    ``j_p_pf``; ``j_r_cm`` child body<-M, ``j_p_cm``), and their axes as ranges of the axis
    arrays: translations ``j_tr`` (start, count), then rotations ``j_rot`` (start, count).
    Axes (A): ``ax_dir`` (A, 3) unit direction in F (rotations: in the successively rotated
    frame), ``ax_coord`` (A,) coordinate read (-1: constant), ``ax_fn`` (A,) function,
    ``ax_rot`` (A,) 1 for rotations, ``ax_body`` (A,) the joint's child body row (an axis moves
    the markers of that body's subtree), ``ax_joint`` (A,); ``j_ancestors``: per joint, the
    joints above it; ``j_identity`` (J, 2): 1 where the F / M frame's rotation is the identity
    (most joints: their products are skipped). Markers (M): body row and offset (m) in the body.
    """

    fn_kind: np.ndarray
    fn_scale: np.ndarray
    fn_poly: np.ndarray
    fn_knots: np.ndarray
    fn_coef: np.ndarray
    fn_last: np.ndarray
    cp_dep: np.ndarray
    cp_ind: np.ndarray
    cp_fn: np.ndarray
    coord_root: np.ndarray
    j_parent: np.ndarray
    j_child: np.ndarray
    j_r_pf: np.ndarray
    j_p_pf: np.ndarray
    j_r_cm: np.ndarray
    j_p_cm: np.ndarray
    j_tr: np.ndarray
    j_rot: np.ndarray
    ax_dir: np.ndarray
    ax_coord: np.ndarray
    ax_fn: np.ndarray
    ax_rot: np.ndarray
    ax_body: np.ndarray
    ax_joint: np.ndarray
    j_identity: np.ndarray
    j_ancestors: tuple[frozenset[int], ...]
    mk_row: np.ndarray
    mk_off: np.ndarray
    _structures: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def n_bodies(self) -> int:
        return int(max(self.j_child.max(initial=0), self.mk_row.max(initial=0))) + 1

    def kinematics(self) -> tuple:
        """The arrays the kernels take, in their argument order."""
        return (self.fn_kind, self.fn_scale, self.fn_poly, self.fn_knots, self.fn_coef, self.fn_last,
                self.cp_dep, self.cp_ind, self.cp_fn, self.j_parent, self.j_child, self.j_r_pf, self.j_p_pf,
                self.j_r_cm, self.j_p_cm, self.j_tr, self.j_rot, self.ax_dir, self.ax_coord, self.ax_fn, self.ax_rot,
                self.ax_body, self.j_identity)


def _is_active(axis: AxisSpec) -> bool:
    """False for axes that are identically zero (unused CustomJoint axes)."""
    f = axis.function
    return not (isinstance(f, PolynomialSpec) and all(c == 0.0 for c in f.coefficients))


def _function_arrays(specs: list[FunctionSpec]) -> tuple[np.ndarray, ...]:
    """Pad ``specs`` as :class:`FunctionTable` does (same spline coefficients) into per-function rows."""
    table = FunctionTable.build(specs)
    count = len(specs)
    width = int(table.poly_coefficients.shape[1]) if table.poly_columns.numel() else 1
    knots_w = int(table.spline_knots.shape[1]) if table.spline_columns.numel() else 2
    kind = np.zeros(count, dtype=np.int64)
    poly = np.zeros((count, width))
    knots = np.full((count, knots_w), np.inf)
    coef = np.zeros((count, 4, knots_w))
    last = np.zeros(count, dtype=np.int64)
    for row, a in enumerate(table.poly_columns.tolist()):
        poly[a] = table.poly_coefficients[row].numpy()
    for row, a in enumerate(table.spline_columns.tolist()):
        kind[a] = _SPLINE
        knots[a] = table.spline_knots[row].numpy()
        coef[a] = table.spline_coefficients[:, row].numpy()
        last[a] = int(table.spline_last[row])
    return kind, table.scale.numpy().copy(), poly, knots, coef, last


def _coordinate_roots(model: KinematicModel) -> np.ndarray:
    root = np.arange(len(model.coordinates), dtype=np.int64)
    for c in model.couplers:  # evaluation order: an independent's root is already final
        root[c.dependent] = root[c.independent]
    return root


def build_native_model(model: KinematicModel) -> NativeModel:
    """Flatten ``model`` (unscaled, its own markers) for the kernels."""
    specs: list[FunctionSpec] = []
    ax_dir, ax_coord, ax_fn, ax_rot = [], [], [], []
    j_tr, j_rot = [], []
    ax_body, ax_joint = [], []
    ancestors: list[frozenset[int]] = []
    joint_of_body: dict[int, int] = {}

    def add(axis: AxisSpec, rotation: bool, j: int, joint: JointSpec) -> int:
        specs.append(axis.function)
        ax_rot.append(int(rotation))
        ax_dir.append(axis.axis)
        ax_coord.append(axis.coordinate)
        ax_fn.append(len(specs) - 1)
        ax_body.append(joint.child + 1)
        ax_joint.append(j)
        return len(ax_dir) - 1

    for j, joint in enumerate(model.joints):  # parent-first
        translations = [add(a, False, j, joint) for a in joint.translations if _is_active(a)]
        rotations = [add(a, True, j, joint) for a in joint.rotations if _is_active(a)]
        j_tr.append((translations[0] if translations else len(ax_dir), len(translations)))
        j_rot.append((rotations[0] if rotations else len(ax_dir), len(rotations)))
        parent_joint = joint_of_body.get(joint.parent)
        ancestors.append(frozenset() if parent_joint is None else ancestors[parent_joint] | {parent_joint})
        joint_of_body[joint.child] = j
    coupler_fn = []
    for c in model.couplers:
        specs.append(c.function)
        coupler_fn.append(len(specs) - 1)
    kind, scale, poly, knots, coef, last = _function_arrays(specs)

    def mats(key: str) -> np.ndarray:
        return np.array([getattr(j, key).rotation for j in model.joints], dtype=np.float64).reshape(-1, 3, 3)

    def vecs(key: str) -> np.ndarray:
        return np.array([getattr(j, key).translation for j in model.joints], dtype=np.float64).reshape(-1, 3)

    i64 = np.int64
    r_pf, r_cm = mats("parent_frame"), mats("child_frame")
    return NativeModel(
        fn_kind=kind, fn_scale=scale, fn_poly=poly, fn_knots=knots, fn_coef=coef, fn_last=last,
        cp_dep=np.array([c.dependent for c in model.couplers], dtype=i64),
        cp_ind=np.array([c.independent for c in model.couplers], dtype=i64),
        cp_fn=np.array(coupler_fn, dtype=i64),
        coord_root=_coordinate_roots(model),
        j_parent=np.array([j.parent + 1 for j in model.joints], dtype=i64),
        j_child=np.array([j.child + 1 for j in model.joints], dtype=i64),
        j_r_pf=r_pf, j_p_pf=vecs("parent_frame"), j_r_cm=r_cm, j_p_cm=vecs("child_frame"),
        j_tr=np.array(j_tr, dtype=i64).reshape(-1, 2), j_rot=np.array(j_rot, dtype=i64).reshape(-1, 2),
        ax_dir=np.array(ax_dir, dtype=np.float64).reshape(-1, 3),
        ax_coord=np.array(ax_coord, dtype=i64), ax_fn=np.array(ax_fn, dtype=i64), ax_rot=np.array(ax_rot, dtype=i64),
        ax_body=np.array(ax_body, dtype=i64), ax_joint=np.array(ax_joint, dtype=i64), j_ancestors=tuple(ancestors),
        j_identity=np.stack([(r_pf == np.eye(3)).all(axis=(1, 2)), (r_cm == np.eye(3)).all(axis=(1, 2))],
                            axis=1).astype(i64).reshape(-1, 2),
        mk_row=np.array([m.body + 1 for m in model.markers], dtype=i64),
        mk_off=np.array([m.offset for m in model.markers], dtype=np.float64).reshape(-1, 3),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Structure:
    """Where the free coordinates (F,) enter: ``col_of_coord`` (n,) a coordinate's column (its
    root's position in ``free``; -1: none, e.g. locked), ``ax_col`` (A,) each axis's column, and
    the axis ``pairs`` (P, 3) whose product enters J^T J: (a, b, body row of the subtree below
    both), a's joint above b's or the same joint with a <= b."""

    free: np.ndarray
    col_of_coord: np.ndarray
    ax_col: np.ndarray
    pairs: np.ndarray


def structure(native: NativeModel, free: np.ndarray) -> Structure:
    """The :class:`Structure` for ``free`` (made once per model and set of free coordinates)."""
    key = free.tobytes()
    if key in native._structures:
        return native._structures[key]
    n = native.coord_root.shape[0]
    position = np.full(n, -1, dtype=np.int64)
    position[free] = np.arange(free.shape[0])
    col_of_coord = position[native.coord_root]
    ax_col = np.where(native.ax_coord >= 0, col_of_coord[np.maximum(native.ax_coord, 0)], -1)
    live = [a for a in range(ax_col.shape[0]) if ax_col[a] >= 0]
    pairs = []
    for b in live:
        jb = int(native.ax_joint[b])
        for a in live:
            ja = int(native.ax_joint[a])
            if ja in native.j_ancestors[jb] or (ja == jb and a <= b):
                pairs.append((a, b, int(native.ax_body[b])))
    out = Structure(free=free, col_of_coord=col_of_coord, ax_col=ax_col,
                    pairs=np.array(pairs, dtype=np.int64).reshape(-1, 3))
    native._structures[key] = out
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class NativeProblem:
    """One refinement problem as arrays: markers (T, M, 3) with NaN replaced by 0, weights
    (T, M) (0 = absent or unweighted), coordinate tasks (index (K,), sqrt weight (K,), values
    (T, K)), the free coordinates' :class:`Structure` and bounds (F,) (+-inf: unbounded)."""

    markers: np.ndarray
    weights: np.ndarray
    task_index: np.ndarray
    task_sqrt_w: np.ndarray
    task_values: np.ndarray
    structure: Structure
    lower: np.ndarray
    upper: np.ndarray

    def take(self, rows: np.ndarray) -> NativeProblem:
        """The problem of frames ``rows`` (index array)."""
        return dataclasses.replace(self, markers=self.markers[rows], weights=self.weights[rows],
                                   task_values=self.task_values[rows])


# ---------------------------------------------------------------------------------------------
# Kernels (numba nopython; plain loops over small fixed-size arrays)


@njit(cache=True, inline="always")
def _function(kind, scale, poly, knots, coef, last, f, x):
    """Value and slope of function f at x (see functions.FunctionTable)."""
    if kind[f] == _POLY:
        value = poly[f, 0]
        slope = 0.0
        for i in range(1, poly.shape[1]):
            slope = slope * x + value
            value = value * x + poly[f, i]
        return scale[f] * value, scale[f] * slope
    n = last[f]
    if x < knots[f, 0]:
        return scale[f] * (coef[f, 0, 0] + coef[f, 1, 0] * (x - knots[f, 0])), scale[f] * coef[f, 1, 0]
    if x > knots[f, n]:
        return scale[f] * (coef[f, 0, n] + coef[f, 1, n] * (x - knots[f, n])), scale[f] * coef[f, 1, n]
    k = 0
    while k + 1 < n and x >= knots[f, k + 1]:
        k += 1
    dx = x - knots[f, k]
    y, b, c, d = coef[f, 0, k], coef[f, 1, k], coef[f, 2, k], coef[f, 3, k]
    return scale[f] * (y + dx * (b + dx * (c + dx * d))), scale[f] * (b + dx * (2.0 * c + 3.0 * dx * d))


@njit(cache=True, inline="always")
def _rotate(out, r, axis, angle):
    """out = r @ Rot(axis, angle) (Rodrigues), r and out (3, 3) distinct."""
    c, s = math.cos(angle), math.sin(angle)
    kx, ky, kz = axis[0], axis[1], axis[2]
    t = 1.0 - c
    m00, m01, m02 = c + t * kx * kx, t * kx * ky - s * kz, t * kx * kz + s * ky
    m10, m11, m12 = t * ky * kx + s * kz, c + t * ky * ky, t * ky * kz - s * kx
    m20, m21, m22 = t * kz * kx - s * ky, t * kz * ky + s * kx, c + t * kz * kz
    for i in range(3):
        a0, a1, a2 = r[i, 0], r[i, 1], r[i, 2]
        out[i, 0] = a0 * m00 + a1 * m10 + a2 * m20
        out[i, 1] = a0 * m01 + a1 * m11 + a2 * m21
        out[i, 2] = a0 * m02 + a1 * m12 + a2 * m22


@njit(cache=True, inline="always")
def _axis_value(fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, ax_fn, ax_coord, q, ax, axis_slope):
    """Value of axis ax at q (n,); stores d value / d q[its coordinate] (0 for constants) in axis_slope."""
    c = ax_coord[ax]
    v, s = _function(fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, ax_fn[ax], q[c] if c >= 0 else 0.0)
    axis_slope[ax] = s if c >= 0 else 0.0
    return v


@njit(cache=True, inline="always")
def _world_axis(axis_w, ax, r, ax_dir):
    """axis_w[ax] = r @ ax_dir[ax]: the axis's direction in ground, r (3, 3) the frame it is given in."""
    for a in range(3):
        axis_w[ax, a] = r[a, 0] * ax_dir[ax, 0] + r[a, 1] * ax_dir[ax, 1] + r[a, 2] * ax_dir[ax, 2]


@njit(cache=True)
def _forward_frame(q, fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, cp_dep, cp_ind, cp_fn,
                   j_parent, j_child, j_r_pf, j_p_pf, j_r_cm, j_p_cm, j_tr, j_rot, ax_dir, ax_coord, ax_fn,
                   j_identity, chain, body_r, body_p, axis_w, axis_o, axis_slope, work):
    """One pose: fills dependent coordinates of q (n,) in place, chain (n,) = d q / d q[root],
    body rotations/origins (NB, 3, 3)/(NB, 3) in ground, and per axis its world direction
    (A, 3), its rotation centre (A, 3) and d value / d q[coordinate] (A,). work: (5, 3, 3) scratch."""
    for i in range(q.shape[0]):
        chain[i] = 1.0
    for k in range(cp_dep.shape[0]):
        v, s = _function(fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, cp_fn[k], q[cp_ind[k]])
        q[cp_dep[k]] = v
        chain[cp_dep[k]] = s * chain[cp_ind[k]]
    for i in range(3):
        body_p[0, i] = 0.0
        for j in range(3):
            body_r[0, i, j] = 1.0 if i == j else 0.0
    r_f, r_a, r_b = work[0], work[1], work[2]
    p_f, t = work[3, 0], work[3, 1]
    for j in range(j_parent.shape[0]):
        pa = j_parent[j]
        for a in range(3):
            acc = body_p[pa, a]
            for b in range(3):
                acc += body_r[pa, a, b] * j_p_pf[j, b]
            p_f[a] = acc
            for b in range(3):
                if j_identity[j, 0]:
                    r_f[a, b] = body_r[pa, a, b]
                else:
                    r_f[a, b] = (body_r[pa, a, 0] * j_r_pf[j, 0, b] + body_r[pa, a, 1] * j_r_pf[j, 1, b]
                                 + body_r[pa, a, 2] * j_r_pf[j, 2, b])
        t[0] = t[1] = t[2] = 0.0
        start, count = j_tr[j, 0], j_tr[j, 1]
        for ax in range(start, start + count):
            v = _axis_value(fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, ax_fn, ax_coord, q, ax,
                            axis_slope)
            _world_axis(axis_w, ax, r_f, ax_dir)
            for a in range(3):
                t[a] += ax_dir[ax, a] * v
        ch = j_child[j]
        for a in range(3):  # M's origin in ground
            body_p[ch, a] = p_f[a] + r_f[a, 0] * t[0] + r_f[a, 1] * t[1] + r_f[a, 2] * t[2]
        for a in range(3):
            for b in range(3):
                r_a[a, b] = r_f[a, b]
        start, count = j_rot[j, 0], j_rot[j, 1]
        for ax in range(start, start + count):
            v = _axis_value(fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, ax_fn, ax_coord, q, ax,
                            axis_slope)
            _world_axis(axis_w, ax, r_a, ax_dir)
            for a in range(3):
                axis_o[ax, a] = body_p[ch, a]
            _rotate(r_b, r_a, ax_dir[ax], v)
            r_a, r_b = r_b, r_a
        # child body: R_GC = R_GM R_CM^T, p_GC = p_GM - R_GC p_CM
        for a in range(3):
            for b in range(3):
                if j_identity[j, 1]:
                    body_r[ch, a, b] = r_a[a, b]
                else:
                    body_r[ch, a, b] = (r_a[a, 0] * j_r_cm[j, b, 0] + r_a[a, 1] * j_r_cm[j, b, 1]
                                        + r_a[a, 2] * j_r_cm[j, b, 2])
        for a in range(3):
            body_p[ch, a] -= (body_r[ch, a, 0] * j_p_cm[j, 0] + body_r[ch, a, 1] * j_p_cm[j, 1]
                              + body_r[ch, a, 2] * j_p_cm[j, 2])


@njit(cache=True, inline="always")
def _marker_position(out, body_r, body_p, row, off):
    for a in range(3):
        out[a] = body_p[row, a] + body_r[row, a, 0] * off[0] + body_r[row, a, 1] * off[1] + body_r[row, a, 2] * off[2]


# Per-body marker moments (columns of the moments array (NB, 16)): total weight W, S = sum w p,
# Q = sum w p p^T (xx, xy, xz, yy, yz, zz), P = sum w p x r, R = sum w r (p: marker in ground,
# r: its residual). With each axis as a twist (w, v) (a marker at p moves by w x p + v per unit
# of the axis value), the normal equations of the markers below a body follow from them:
# J^T r per axis = w.P + v.R, and per axis pair W v_a.v_b + S.(v_a x w_b + v_b x w_a)
# + (w_a.w_b) tr Q - w_a^T Q w_b (the derivation of Skeleton.normal_equations, here per frame).
_W, _S, _Q, _P, _R = 0, 1, 4, 10, 13
MOMENTS = 16


@njit(cache=True)
def _evaluate(q_full, x, free, kin, mk_row, mk_off, markers, weights, task_index, task_sqrt_w, task_values, state):
    """Objective sum_m w_m |p_m - target_m|^2 + sum_k (w_k (q_k - v_k))^2 at q_full with the free
    coordinates set to x (F,). Leaves in ``state`` the forward kinematics and the marker moments
    of every body's subtree, which :func:`_gradient` and :func:`_hessian` read.
    ``markers`` (M, 3), ``weights`` (M,), ``task_values`` (K,) belong to one frame."""
    (fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, cp_dep, cp_ind, cp_fn, j_parent, j_child, j_r_pf,
     j_p_pf, j_r_cm, j_p_cm, j_tr, j_rot, ax_dir, ax_coord, ax_fn, ax_rot, ax_body, j_identity) = kin
    chain, body_r, body_p, axis_w, axis_o, axis_slope, work, mom, twist = state
    for k in range(free.shape[0]):
        q_full[free[k]] = x[k]
    _forward_frame(q_full, fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, cp_dep, cp_ind, cp_fn,
                   j_parent, j_child, j_r_pf, j_p_pf, j_r_cm, j_p_cm, j_tr, j_rot, ax_dir, ax_coord, ax_fn,
                   j_identity, chain, body_r, body_p, axis_w, axis_o, axis_slope, work)
    mom[:, :] = 0.0
    cost = 0.0
    for m in range(mk_row.shape[0]):
        w = weights[m]
        if w <= 0.0:
            continue
        row, off = mk_row[m], mk_off[m]
        px = body_p[row, 0] + body_r[row, 0, 0] * off[0] + body_r[row, 0, 1] * off[1] + body_r[row, 0, 2] * off[2]
        py = body_p[row, 1] + body_r[row, 1, 0] * off[0] + body_r[row, 1, 1] * off[1] + body_r[row, 1, 2] * off[2]
        pz = body_p[row, 2] + body_r[row, 2, 0] * off[0] + body_r[row, 2, 1] * off[1] + body_r[row, 2, 2] * off[2]
        rx, ry, rz = px - markers[m, 0], py - markers[m, 1], pz - markers[m, 2]
        cost += w * (rx * rx + ry * ry + rz * rz)
        wx, wy, wz = w * px, w * py, w * pz
        mom[row, _W] += w
        mom[row, _S] += wx
        mom[row, _S + 1] += wy
        mom[row, _S + 2] += wz
        mom[row, _Q] += wx * px
        mom[row, _Q + 1] += wx * py
        mom[row, _Q + 2] += wx * pz
        mom[row, _Q + 3] += wy * py
        mom[row, _Q + 4] += wy * pz
        mom[row, _Q + 5] += wz * pz
        mom[row, _P] += wy * rz - wz * ry
        mom[row, _P + 1] += wz * rx - wx * rz
        mom[row, _P + 2] += wx * ry - wy * rx
        mom[row, _R] += w * rx
        mom[row, _R + 1] += w * ry
        mom[row, _R + 2] += w * rz
    for j in range(j_parent.shape[0] - 1, -1, -1):  # children before parents: subtree sums
        mom[j_parent[j]] += mom[j_child[j]]
    for t in range(task_index.shape[0]):
        res = (q_full[task_index[t]] - task_values[t]) * task_sqrt_w[t]
        cost += res * res
    return cost


@njit(cache=True)
def _gradient(q_full, kin, ax_col, task_index, task_sqrt_w, task_values, col_of_coord, state, grad):
    """J^T r (F,) at the last :func:`_evaluate`; also leaves each axis's twist, scaled by
    d value / d x[column], in state (for :func:`_hessian`)."""
    ax_coord, ax_rot, ax_body = kin[18], kin[20], kin[21]
    chain, body_r, body_p, axis_w, axis_o, axis_slope, work, mom, twist = state
    grad[:] = 0.0
    for a in range(ax_col.shape[0]):
        col = ax_col[a]
        if col < 0:
            continue
        s = axis_slope[a] * chain[ax_coord[a]]
        if ax_rot[a]:
            wx, wy, wz = s * axis_w[a, 0], s * axis_w[a, 1], s * axis_w[a, 2]
            ox, oy, oz = axis_o[a, 0], axis_o[a, 1], axis_o[a, 2]
            vx, vy, vz = oy * wz - oz * wy, oz * wx - ox * wz, ox * wy - oy * wx  # o x w
        else:
            wx = wy = wz = 0.0
            vx, vy, vz = s * axis_w[a, 0], s * axis_w[a, 1], s * axis_w[a, 2]
        twist[a, 0], twist[a, 1], twist[a, 2], twist[a, 3], twist[a, 4], twist[a, 5] = wx, wy, wz, vx, vy, vz
        b = ax_body[a]
        grad[col] += (wx * mom[b, _P] + wy * mom[b, _P + 1] + wz * mom[b, _P + 2]
                      + vx * mom[b, _R] + vy * mom[b, _R + 1] + vz * mom[b, _R + 2])
    for t in range(task_index.shape[0]):
        c = task_index[t]
        col = col_of_coord[c]
        if col >= 0:
            grad[col] += chain[c] * task_sqrt_w[t] * (q_full[c] - task_values[t]) * task_sqrt_w[t]


@njit(cache=True)
def _hessian(pairs, ax_col, task_index, task_sqrt_w, col_of_coord, state, hess):
    """J^T J (F, F) at the last :func:`_evaluate` / :func:`_gradient`.

    Per pair (a, b) with moments W, S, Q of the markers below both, the entry is linear in a's
    twist: v_a . (W v_b + w_b x S) + w_a . (S x v_b + tr(Q) w_b - Q w_b); the two bracketed
    vectors are made once per b (pairs come grouped by b)."""
    chain, body_r, body_p, axis_w, axis_o, axis_slope, work, mom, twist = state
    hess[:, :] = 0.0
    last = -1
    fx = fy = fz = gx = gy = gz = 0.0
    for k in range(pairs.shape[0]):
        a, b, row = pairs[k, 0], pairs[k, 1], pairs[k, 2]
        if b != last:
            last = b
            w = mom[row, _W]
            bx, by, bz, bvx, bvy, bvz = twist[b, 0], twist[b, 1], twist[b, 2], twist[b, 3], twist[b, 4], twist[b, 5]
            sx, sy, sz = mom[row, _S], mom[row, _S + 1], mom[row, _S + 2]
            qxx, qxy, qxz = mom[row, _Q], mom[row, _Q + 1], mom[row, _Q + 2]
            qyy, qyz, qzz = mom[row, _Q + 3], mom[row, _Q + 4], mom[row, _Q + 5]
            trace = qxx + qyy + qzz
            fx = w * bvx + (by * sz - bz * sy)
            fy = w * bvy + (bz * sx - bx * sz)
            fz = w * bvz + (bx * sy - by * sx)
            gx = (sy * bvz - sz * bvy) + trace * bx - (qxx * bx + qxy * by + qxz * bz)
            gy = (sz * bvx - sx * bvz) + trace * by - (qxy * bx + qyy * by + qyz * bz)
            gz = (sx * bvy - sy * bvx) + trace * bz - (qxz * bx + qyz * by + qzz * bz)
        value = (twist[a, 3] * fx + twist[a, 4] * fy + twist[a, 5] * fz
                 + twist[a, 0] * gx + twist[a, 1] * gy + twist[a, 2] * gz)
        ca, cb = ax_col[a], ax_col[b]
        if a == b:
            hess[ca, ca] += value
        else:
            hess[ca, cb] += value
            hess[cb, ca] += value
    for t in range(task_index.shape[0]):
        col = col_of_coord[task_index[t]]
        if col >= 0:
            d = chain[task_index[t]] * task_sqrt_w[t]
            hess[col, col] += d * d


@njit(cache=True)
def _cholesky_solve(a, rhs, out):
    """Solve a x = rhs for symmetric positive definite a (F, F) (overwritten by its factor);
    returns False (out untouched) where a is not positive definite to round-off."""
    n = a.shape[0]
    for j in range(n):
        d = a[j, j]
        for k in range(j):
            d -= a[j, k] * a[j, k]
        if not d > 0.0:  # also catches NaN
            return False
        d = math.sqrt(d)
        a[j, j] = d
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= a[i, k] * a[j, k]
            a[i, j] = s / d
    for i in range(n):  # L y = rhs
        s = rhs[i]
        for k in range(i):
            s -= a[i, k] * out[k]
        out[i] = s / a[i, i]
    for i in range(n - 1, -1, -1):  # L^T x = y
        s = out[i]
        for k in range(i + 1, n):
            s -= a[k, i] * out[k]
        out[i] = s / a[i, i]
    return True


@njit(cache=True, inline="always")
def _held(x, grad, lower, upper, i):
    """Variable i sits on a bound that the gradient pushes it through (refine._active_set)."""
    eps = 1e-12
    return (x[i] <= lower[i] + eps and grad[i] > 0.0) or (x[i] >= upper[i] - eps and grad[i] < 0.0)


@njit(cache=True)
def _lm_step(hess, grad, x, damping, lower, upper, system, rhs, step, trial, keep, diag):
    """Projected damped Gauss-Newton step from x (refine._lm_step); fills trial (F,).
    keep (F,) bool and diag (F,) are scratch."""
    n = x.shape[0]
    dmax = -np.inf
    for i in range(n):
        dmax = max(dmax, hess[i, i])
        keep[i] = not _held(x, grad, lower, upper, i)
    for i in range(n):
        for k in range(n):
            system[i, k] = hess[i, k] if keep[i] and keep[k] else 0.0
        if keep[i]:
            system[i, i] += damping * (hess[i, i] + 1e-9 * dmax + 1e-12)
            rhs[i] = -grad[i]
        else:
            system[i, i] += 1.0
            rhs[i] = 0.0
        diag[i] = system[i, i]
    if not _cholesky_solve(system, rhs, step):
        for i in range(n):  # the step large damping tends to
            step[i] = rhs[i] / diag[i]
    for i in range(n):
        trial[i] = min(max(x[i] + step[i], lower[i]), upper[i])


@njit(cache=True)
def _solve_frames(q0, kin, mk_row, mk_off, markers, weights, task_index, task_sqrt_w, task_values, free,
                  col_of_coord, ax_col, pairs, lower, upper, reference, settings, max_iters, n_bodies,
                  out_q, out_iterations, out_converged, out_cost, out_report):
    """Levenberg-Marquardt per frame (refine._solve_chunk's rules, each frame on its own).

    q0 (B, n) starts; markers (B, M, 3), weights (B, M), task_values (B, K); reference (B, F):
    a frame also stops on reaching its row (NaN rows: none). settings: tol, gradient_tol,
    gradient_min_rms, gradient_start_ratio, initial_damping, damping_up, damping_down,
    reject_damping, max_damping, same_minimum. Outputs q (B, n) (free coordinates solved,
    dependents recomputed, the rest as in q0), iterations (B,), converged (B,), objective (B,)
    and OpenSim's marker report at the answer (B, 3): total squared distance (m^2), RMS and
    largest distance (m) over the markers with weight (NaN where there is none).
    A rejected trial costs one forward pass (the objective), an accepted one also J^T r, and
    J^T J only when another step follows.
    """
    tol, gtol, gmin_rms, gratio = settings[0], settings[1], settings[2], settings[3]
    damp0, up, down, reject, max_damp, same = (settings[4], settings[5], settings[6], settings[7], settings[8],
                                               settings[9])
    n = q0.shape[1]
    nf = free.shape[0]
    n_axes = kin[17].shape[0]
    state = (np.empty(n), np.empty((n_bodies, 3, 3)), np.empty((n_bodies, 3)), np.empty((n_axes, 3)),
             np.empty((n_axes, 3)), np.empty(n_axes), np.empty((5, 3, 3)), np.empty((n_bodies, MOMENTS)),
             np.empty((n_axes, 6)))
    hess, grad = np.empty((nf, nf)), np.empty(nf)
    system, rhs, step = np.empty((nf, nf)), np.empty(nf), np.empty(nf)
    x, trial, diag = np.empty(nf), np.empty(nf), np.empty(nf)
    keep = np.empty(nf, dtype=np.bool_)
    q = np.empty(n)
    for b in range(q0.shape[0]):
        for i in range(n):
            q[i] = q0[b, i]
        for k in range(nf):
            x[k] = min(max(q0[b, free[k]], lower[k]), upper[k])
        total = 0.0
        for m in range(weights.shape[1]):
            total += weights[b, m]
        has_ref = True
        for k in range(nf):
            if not reference[b, k] == reference[b, k]:
                has_ref = False
        tv = task_values[b]
        cost = _evaluate(q, x, free, kin, mk_row, mk_off, markers[b], weights[b], task_index, task_sqrt_w, tv, state)
        _gradient(q, kin, ax_col, task_index, task_sqrt_w, tv, col_of_coord, state, grad)
        _hessian(pairs, ax_col, task_index, task_sqrt_w, col_of_coord, state, hess)
        start_cost = cost
        damping = damp0
        iterations = max_iters
        converged = False
        at_x = True  # state holds the kinematics at x
        for it in range(max_iters):
            _lm_step(hess, grad, x, damping, lower, upper, system, rhs, step, trial, keep, diag)
            cost_t = _evaluate(q, trial, free, kin, mk_row, mk_off, markers[b], weights[b], task_index, task_sqrt_w,
                               tv, state)
            accept = cost_t <= cost
            moved = 0.0
            for k in range(nf):
                moved = max(moved, abs(trial[k] - x[k]))
            at_x = accept
            if accept:
                for k in range(nf):
                    x[k] = trial[k]
                cost = cost_t
                damping *= down
                _gradient(q, kin, ax_col, task_index, task_sqrt_w, tv, col_of_coord, state, grad)
            else:
                damping = max(damping * up, reject)
            flat = False
            if gtol > 0.0:
                projected = 0.0
                for k in range(nf):
                    if not _held(x, grad, lower, upper, k):
                        projected = max(projected, abs(grad[k]))
                flat = (projected <= gtol * total and start_cost <= gratio * cost
                        and cost >= gmin_rms * gmin_rms * total)
            done = (accept and (moved < tol or flat)) or damping > max_damp
            if has_ref and accept:
                near = 0.0
                for k in range(nf):
                    near = max(near, abs(trial[k] - reference[b, k]))
                done = done or near < same
            if done:
                iterations = it + 1
                converged = True
                break
            if accept:
                _hessian(pairs, ax_col, task_index, task_sqrt_w, col_of_coord, state, hess)
        if not at_x:
            _evaluate(q, x, free, kin, mk_row, mk_off, markers[b], weights[b], task_index, task_sqrt_w, tv, state)
        for i in range(n):
            out_q[b, i] = q[i]
        out_iterations[b] = iterations
        out_converged[b] = converged
        out_cost[b] = cost
        _report_at_state(markers[b], weights[b], mk_row, mk_off, state[1], state[2], out_report[b])


@njit(cache=True, inline="always")
def _report_at_state(markers, weights, mk_row, mk_off, body_r, body_p, out):
    """(total squared, RMS, max) marker distance over markers with weight > 0, at the state's pose."""
    count, sq, big = 0, 0.0, 0.0
    p = np.empty(3)
    for m in range(mk_row.shape[0]):
        if not weights[m] > 0.0:
            continue
        _marker_position(p, body_r, body_p, mk_row[m], mk_off[m])
        d2 = (p[0] - markers[m, 0]) ** 2 + (p[1] - markers[m, 1]) ** 2 + (p[2] - markers[m, 2]) ** 2
        count += 1
        sq += d2
        big = max(big, math.sqrt(d2))
    out[0] = sq if count else np.nan
    out[1] = math.sqrt(sq / count) if count else np.nan
    out[2] = big if count else np.nan


@njit(cache=True)
def _forward_markers(q, kin, mk_row, mk_off, n_bodies, out_q, out_markers):
    """Forward kinematics of every row of q (B, n): out_q (B, n) with dependents filled,
    out_markers (B, M, 3) in ground (m)."""
    (fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, cp_dep, cp_ind, cp_fn, j_parent, j_child, j_r_pf,
     j_p_pf, j_r_cm, j_p_cm, j_tr, j_rot, ax_dir, ax_coord, ax_fn, ax_rot, ax_body, j_identity) = kin
    n_axes = ax_dir.shape[0]
    chain, body_r, body_p = np.empty(q.shape[1]), np.empty((n_bodies, 3, 3)), np.empty((n_bodies, 3))
    axis_w, axis_o, axis_slope = np.empty((n_axes, 3)), np.empty((n_axes, 3)), np.empty(n_axes)
    work = np.empty((5, 3, 3))
    for b in range(q.shape[0]):
        for i in range(q.shape[1]):
            out_q[b, i] = q[b, i]
        _forward_frame(out_q[b], fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, cp_dep, cp_ind, cp_fn,
                       j_parent, j_child, j_r_pf, j_p_pf, j_r_cm, j_p_cm, j_tr, j_rot, ax_dir, ax_coord, ax_fn,
                       j_identity, chain, body_r, body_p, axis_w, axis_o, axis_slope, work)
        for m in range(mk_row.shape[0]):
            _marker_position(out_markers[b, m], body_r, body_p, mk_row[m], mk_off[m])


# ---------------------------------------------------------------------------------------------
# Python entry points


@dataclasses.dataclass(frozen=True, eq=False)
class NativeSolved:
    """Per frame: q (B, n) (dependents recomputed), iterations (B,), converged (B,) bool,
    objective (B,), marker report (B, 3): total squared (m^2), RMS (m), max (m)."""

    q: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    cost: np.ndarray
    report: np.ndarray


def solve(native: NativeModel, q0: np.ndarray, problem: NativeProblem, settings: np.ndarray, max_iters: int,
          reference: np.ndarray | None = None) -> NativeSolved:
    """Levenberg-Marquardt on every frame of q0 (B, n) with the problem's rows (B first)."""
    b, n = q0.shape
    st = problem.structure
    ref = np.full((b, st.free.shape[0]), np.nan) if reference is None else np.ascontiguousarray(reference, np.float64)
    out_q = np.empty((b, n))
    iterations = np.empty(b, dtype=np.int64)
    converged = np.empty(b, dtype=np.bool_)
    cost = np.empty(b)
    report = np.empty((b, 3))
    _solve_frames(np.ascontiguousarray(q0, dtype=np.float64), native.kinematics(), native.mk_row, native.mk_off,
                  problem.markers, problem.weights, problem.task_index, problem.task_sqrt_w, problem.task_values,
                  st.free, st.col_of_coord, st.ax_col, st.pairs, problem.lower, problem.upper, ref, settings,
                  int(max_iters), native.n_bodies, out_q, iterations, converged, cost, report)
    return NativeSolved(out_q, iterations, converged, cost, report)


def forward_markers(native: NativeModel, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q_full (B, n) with dependent coordinates filled, markers (B, M, 3) m in ground)."""
    q = np.ascontiguousarray(q, dtype=np.float64)
    out_q = np.empty_like(q)
    markers = np.empty((q.shape[0], native.mk_row.shape[0], 3))
    _forward_markers(q, native.kinematics(), native.mk_row, native.mk_off, native.n_bodies, out_q, markers)
    return out_q, markers


@njit(cache=True)
def _marker_report(q, kin, mk_row, mk_off, markers, weights, n_bodies, out_q, out_report):
    """OpenSim's per-frame marker report at q (B, n): out_report (B, 3) squared-distance total, RMS
    and max over the markers with weight > 0 in ``weights`` (B, M) (NaN where none); out_q (B, n)
    with dependents filled."""
    (fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, cp_dep, cp_ind, cp_fn, j_parent, j_child, j_r_pf,
     j_p_pf, j_r_cm, j_p_cm, j_tr, j_rot, ax_dir, ax_coord, ax_fn, ax_rot, ax_body, j_identity) = kin
    n_axes = ax_dir.shape[0]
    chain, body_r, body_p = np.empty(q.shape[1]), np.empty((n_bodies, 3, 3)), np.empty((n_bodies, 3))
    axis_w, axis_o, axis_slope = np.empty((n_axes, 3)), np.empty((n_axes, 3)), np.empty(n_axes)
    work = np.empty((5, 3, 3))
    for b in range(q.shape[0]):
        for i in range(q.shape[1]):
            out_q[b, i] = q[b, i]
        _forward_frame(out_q[b], fn_kind, fn_scale, fn_poly, fn_knots, fn_coef, fn_last, cp_dep, cp_ind, cp_fn,
                       j_parent, j_child, j_r_pf, j_p_pf, j_r_cm, j_p_cm, j_tr, j_rot, ax_dir, ax_coord, ax_fn,
                       j_identity, chain, body_r, body_p, axis_w, axis_o, axis_slope, work)
        _report_at_state(markers[b], weights[b], mk_row, mk_off, body_r, body_p, out_report[b])


def marker_report(native: NativeModel, q: np.ndarray, markers: np.ndarray, used: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(total squared m^2, RMS m, max m) per frame over ``used`` (B, M) markers of ``markers``
    (B, M, 3), and q_full (B, n) with dependents filled, at q (B, n)."""
    q = np.ascontiguousarray(q, dtype=np.float64)
    out_q, report = np.empty_like(q), np.empty((q.shape[0], 3))
    _marker_report(q, native.kinematics(), native.mk_row, native.mk_off, np.ascontiguousarray(markers, np.float64),
                   np.ascontiguousarray(used, np.float64), native.n_bodies, out_q, report)
    return report[:, 0].copy(), report[:, 1].copy(), report[:, 2].copy(), out_q
