"""Read the kinematic structure of an OpenSim model (.osim) through the ``opensim`` API.

The result, :class:`KinematicModel`, is plain data (names, numbers, function specs): no
SWIG objects survive the call, so nothing here can outlive its owner and segfault later.

Every joint is reduced to OpenSim's CustomJoint form: three rotations applied in sequence
about their (parent-frame, then successively rotated) axes and three translations along
parent-frame axes, each axis a function of one coordinate (or a constant). PinJoint,
UniversalJoint, BallJoint, ... are the same thing with fixed axes and identity functions.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opensim_biopose.errors import InputError, UnsupportedModelError
from opensim_biopose.kinematics.functions import FunctionSpec, PolynomialSpec, SplineSpec

Vec3 = tuple[float, float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]

IDENTITY = PolynomialSpec((1.0, 0.0))
ZERO = PolynomialSpec((0.0,))
X_AXIS: Vec3 = (1.0, 0.0, 0.0)
Y_AXIS: Vec3 = (0.0, 1.0, 0.0)
Z_AXIS: Vec3 = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class AxisSpec:
    """One transform axis: value = function(q[coordinate]) (rad or m) about/along ``axis``."""

    axis: Vec3  # unit vector in the joint's parent frame F (rotations: in the rotated frame)
    coordinate: int  # index into the model's coordinates; -1 when the function is constant
    function: FunctionSpec
    # Model.scale multiplies CustomJoint translation functions by (axis . parent body factors);
    # translations that are coordinates themselves (FreeJoint, PlanarJoint, SliderJoint) stay.
    scaled: bool = True


FIXED_AXES = (AxisSpec(X_AXIS, -1, ZERO), AxisSpec(Y_AXIS, -1, ZERO), AxisSpec(Z_AXIS, -1, ZERO))


@dataclass(frozen=True)
class FrameSpec:
    """A joint frame fixed in a body: rotation (body<-frame) and origin (metres, body frame)."""

    rotation: Mat3
    translation: Vec3
    scalable: bool  # False for offset frames of offset frames (scaling them is not reproduced)


@dataclass(frozen=True)
class JointSpec:
    """A joint connecting ``parent`` (body index, -1 = ground) to ``child`` (body index)."""

    name: str
    kind: str  # OpenSim concrete class name
    parent: int
    child: int
    parent_frame: FrameSpec  # F in the parent body
    child_frame: FrameSpec  # M in the child body
    rotations: tuple[AxisSpec, AxisSpec, AxisSpec]
    translations: tuple[AxisSpec, AxisSpec, AxisSpec]


@dataclass(frozen=True)
class CouplerSpec:
    """CoordinateCouplerConstraint: q[dependent] = function(q[independent])."""

    name: str
    dependent: int
    independent: int
    function: FunctionSpec


@dataclass(frozen=True)
class CoordinateSpec:
    name: str
    range: tuple[float, float]  # internal units (rad / m)
    default: float
    clamped: bool
    locked: bool
    rotational: bool


@dataclass(frozen=True)
class MarkerSpec:
    name: str
    body: int  # -1 = ground
    offset: Vec3  # metres in the body frame
    scalable: bool


@dataclass(frozen=True)
class KinematicModel:
    """Everything forward kinematics needs, in model order; joints sorted parent-before-child."""

    path: Path
    name: str
    coordinates: tuple[CoordinateSpec, ...]
    body_names: tuple[str, ...]
    joints: tuple[JointSpec, ...]
    couplers: tuple[CouplerSpec, ...]  # sorted so a dependent never feeds an earlier coupler
    markers: tuple[MarkerSpec, ...]


@contextlib.contextmanager
def _quiet_opensim() -> Iterator[Any]:
    """Import opensim with its log limited to errors (missing .vtp geometry is expected)."""
    import opensim as osim

    osim.Logger.removeFileSink()
    level = osim.Logger.getLevelString()
    osim.Logger.setLevelString("error")
    try:
        yield osim
    finally:
        osim.Logger.setLevelString(level)


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist; check the path")
    if not path.is_file():
        raise InputError(f"{what} {path} is not a file; pass the .osim/.xml file itself")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} is not readable; check its permissions")


def load_model(osim: Any, path: Path, marker_file: Path | None) -> Any:
    """An initialised ``opensim.Model`` from ``path`` (+ markers from ``marker_file``)."""
    _check_file(path, "OpenSim model")
    head = path.read_bytes()[:4096].lstrip()
    if not head.startswith(b"<") or b"<OpenSimDocument" not in head and b"<Model" not in head:
        raise InputError(f"OpenSim model {path} is not an OpenSim XML document (.osim); pass a model file")
    try:
        model = osim.Model(str(path))
    except Exception as exc:  # opensim raises RuntimeError with the parser's message
        raise InputError(f"OpenSim model {path} could not be read: {exc}") from exc
    if marker_file is not None:
        _check_file(marker_file, "marker set")
        try:
            markers = osim.MarkerSet(str(marker_file))
        except Exception as exc:
            raise InputError(f"marker set {marker_file} could not be read: {exc}") from exc
        _check_marker_frames(osim, model, markers, marker_file)
        model.updateMarkerSet(markers)
    try:
        model.finalizeConnections()
        model.initSystem()
    except Exception as exc:
        raise InputError(f"OpenSim model {path} could not be initialised: {exc}") from exc
    return model


def _check_marker_frames(osim: Any, model: Any, markers: Any, marker_file: Path) -> None:
    """Every marker's parent frame must exist in the model (else OpenSim may abort)."""
    for i in range(markers.getSize()):
        marker = markers.get(i)
        frame = marker.getSocket("parent_frame").getConnecteePath()
        name = frame.rsplit("/", 1)[-1]
        if not (model.getBodySet().contains(name) or name == "ground" or _has_component(model, frame)):
            raise InputError(
                f"marker set {marker_file}: marker {marker.getName()} is attached to '{frame}', "
                f"which model {model.getName()} does not have; fix the marker's socket_parent_frame"
            )


def _has_component(model: Any, path: str) -> bool:
    try:
        model.getComponent(path)
    except Exception:
        return False
    return True


def _vec3(v: Any) -> Vec3:
    return (float(v.get(0)), float(v.get(1)), float(v.get(2)))


def _frame_spec(osim: Any, frame: Any) -> FrameSpec:
    transform = frame.findTransformInBaseFrame()
    rot = transform.R()
    rotation = tuple(tuple(float(rot.get(i, j)) for j in range(3)) for i in range(3))
    offset = osim.PhysicalOffsetFrame.safeDownCast(frame)
    scalable = offset is None or osim.PhysicalOffsetFrame.safeDownCast(offset.getParentFrame()) is None
    return FrameSpec(rotation, _vec3(transform.p()), scalable)  # type: ignore[arg-type]


def read_function(osim: Any, function: Any, where: str) -> FunctionSpec:
    """An OpenSim Function as a spec; MultiplierFunction folds into ``scale``."""
    kind = function.getConcreteClassName()
    reader = FUNCTION_READERS.get(kind)
    if reader is None:
        raise UnsupportedModelError(
            f"{where} uses a {kind}; supported: {', '.join(sorted(FUNCTION_READERS))}"
        )
    return reader(osim, function, where)


def _read_constant(osim: Any, f: Any, where: str) -> FunctionSpec:
    return PolynomialSpec((float(osim.Constant.safeDownCast(f).getValue()),))


def _read_linear(osim: Any, f: Any, where: str) -> FunctionSpec:
    lin = osim.LinearFunction.safeDownCast(f)
    return PolynomialSpec((float(lin.getSlope()), float(lin.getIntercept())))


def _read_polynomial(osim: Any, f: Any, where: str) -> FunctionSpec:
    coefficients = osim.PolynomialFunction.safeDownCast(f).getCoefficients()
    return PolynomialSpec(tuple(float(coefficients.get(i)) for i in range(coefficients.size())))


def _read_multiplier(osim: Any, f: Any, where: str) -> FunctionSpec:
    mult = osim.MultiplierFunction.safeDownCast(f)
    inner = read_function(osim, mult.getFunction(), where)
    return _rescaled(inner, float(mult.getScale()))


def _rescaled(spec: FunctionSpec, factor: float) -> FunctionSpec:
    if isinstance(spec, PolynomialSpec):
        return PolynomialSpec(spec.coefficients, spec.scale * factor)
    return SplineSpec(spec.x, spec.y, spec.kind, spec.scale * factor)


def _spline_reader(kind: str) -> Callable[[Any, Any, str], FunctionSpec]:
    def read(osim: Any, f: Any, where: str) -> FunctionSpec:
        xy = osim.XYFunctionInterface(f)
        n = xy.getNumberOfPoints()
        if n < 2:
            raise UnsupportedModelError(f"{where} uses a {f.getConcreteClassName()} with {n} point(s); need >= 2")
        x = tuple(float(xy.getX(i)) for i in range(n))
        y = tuple(float(xy.getY(i)) for i in range(n))
        if any(b <= a for a, b in zip(x, x[1:])):
            raise UnsupportedModelError(f"{where}: spline knots are not strictly increasing")
        return SplineSpec(x, y, kind)

    return read


FUNCTION_READERS: dict[str, Callable[[Any, Any, str], FunctionSpec]] = {
    "Constant": _read_constant,
    "LinearFunction": _read_linear,
    "PolynomialFunction": _read_polynomial,
    "MultiplierFunction": _read_multiplier,
    "SimmSpline": _spline_reader("simm"),
    # OpenSim reads <NaturalCubicSpline> elements as SimmSpline (a renamed type).
    "PiecewiseLinearFunction": _spline_reader("linear"),
}


# ---- joints -------------------------------------------------------------------------------

JointAxes = tuple[tuple[AxisSpec, AxisSpec, AxisSpec], tuple[AxisSpec, AxisSpec, AxisSpec]]


def _joint_coordinates(joint: Any, index: dict[str, int]) -> list[int]:
    return [index[joint.get_coordinates(i).getName()] for i in range(joint.numCoordinates())]


def _custom_axes(osim: Any, joint: Any, index: dict[str, int]) -> JointAxes:
    transform = osim.CustomJoint.safeDownCast(joint).getSpatialTransform()
    axes = []
    for i in range(6):
        ta = transform.getTransformAxis(i)
        where = f"joint {joint.getName()} {ta.getName()}"
        names = [ta.get_coordinates(k) for k in range(ta.getPropertyByName("coordinates").size())]
        if len(names) > 1:
            raise UnsupportedModelError(f"{where} is a function of {len(names)} coordinates; only 1 is supported")
        if names and names[0] not in index:
            raise UnsupportedModelError(f"{where} refers to unknown coordinate {names[0]}")
        if ta.hasFunction():
            function = read_function(osim, ta.get_function(), where)
        else:  # no function: the coordinate itself, or nothing
            function = IDENTITY if names else ZERO
        axis = _vec3(ta.getAxis())
        norm = sum(a * a for a in axis) ** 0.5
        axes.append(AxisSpec(tuple(a / norm for a in axis), index[names[0]] if names else -1, function))  # type: ignore[arg-type]
    return (axes[0], axes[1], axes[2]), (axes[3], axes[4], axes[5])


def _fixed_axes_reader(rotations: tuple[Vec3, ...], translations: tuple[Vec3, ...]) -> Callable[..., JointAxes]:
    """A joint whose coordinates drive fixed axes: rotations first, then translations (OpenSim's order)."""

    def read(osim: Any, joint: Any, index: dict[str, int]) -> JointAxes:
        coords = _joint_coordinates(joint, index)
        expected = len(rotations) + len(translations)
        if len(coords) != expected:
            raise UnsupportedModelError(
                f"joint {joint.getName()} ({joint.getConcreteClassName()}) has {len(coords)} coordinates, expected {expected}"
            )
        rot = [AxisSpec(a, c, IDENTITY, scaled=False) for a, c in zip(rotations, coords)]
        trans = [AxisSpec(a, c, IDENTITY, scaled=False) for a, c in zip(translations, coords[len(rotations):])]
        rot += list(FIXED_AXES[len(rot):])
        trans += list(FIXED_AXES[len(trans):])
        return (rot[0], rot[1], rot[2]), (trans[0], trans[1], trans[2])

    return read


# Simbody mobilizers behind OpenSim's joints: Pin = rotation about F's z; Universal = x then
# the new y; Ball/Gimbal/Free use body-fixed X-Y-Z angles; Planar = rotation about z then
# translation in F's x-y plane; Slider = translation along F's x.
JOINT_READERS: dict[str, Callable[[Any, Any, dict[str, int]], JointAxes]] = {
    "CustomJoint": _custom_axes,
    "WeldJoint": _fixed_axes_reader((), ()),
    "PinJoint": _fixed_axes_reader((Z_AXIS,), ()),
    "SliderJoint": _fixed_axes_reader((), (X_AXIS,)),
    "UniversalJoint": _fixed_axes_reader((X_AXIS, Y_AXIS), ()),
    "BallJoint": _fixed_axes_reader((X_AXIS, Y_AXIS, Z_AXIS), ()),
    "GimbalJoint": _fixed_axes_reader((X_AXIS, Y_AXIS, Z_AXIS), ()),
    "FreeJoint": _fixed_axes_reader((X_AXIS, Y_AXIS, Z_AXIS), (X_AXIS, Y_AXIS, Z_AXIS)),
    "PlanarJoint": _fixed_axes_reader((Z_AXIS,), (X_AXIS, Y_AXIS)),
}


def _body_index(frame: Any, bodies: dict[str, int], where: str) -> int:
    base = frame.findBaseFrame()
    name = base.getName()
    if base.getConcreteClassName() == "Ground":
        return -1
    if name not in bodies:
        raise UnsupportedModelError(f"{where} is attached to '{name}', which is not a body of the model")
    return bodies[name]


def _read_joint(osim: Any, joint: Any, bodies: dict[str, int], coords: dict[str, int]) -> JointSpec:
    kind = joint.getConcreteClassName()
    reader = JOINT_READERS.get(kind)
    if reader is None:
        raise UnsupportedModelError(
            f"joint {joint.getName()} is a {kind}; supported: {', '.join(sorted(JOINT_READERS))}"
        )
    rotations, translations = reader(osim, joint, coords)
    parent, child = joint.getParentFrame(), joint.getChildFrame()
    return JointSpec(
        name=joint.getName(),
        kind=kind,
        parent=_body_index(parent, bodies, f"joint {joint.getName()} parent frame"),
        child=_body_index(child, bodies, f"joint {joint.getName()} child frame"),
        parent_frame=_frame_spec(osim, parent),
        child_frame=_frame_spec(osim, child),
        rotations=rotations,
        translations=translations,
    )


def _tree_order(joints: list[JointSpec], body_names: tuple[str, ...]) -> tuple[JointSpec, ...]:
    """Joints sorted parent-before-child; reversed joints, loops and floating bodies are refused."""
    by_child: dict[int, JointSpec] = {}
    for joint in joints:
        if joint.child == -1:
            raise UnsupportedModelError(f"joint {joint.name} has ground as its child (a reversed joint)")
        if joint.child in by_child:
            raise UnsupportedModelError(
                f"body {body_names[joint.child]} is the child of joints {by_child[joint.child].name} and "
                f"{joint.name} (a kinematic loop or reversed joint)"
            )
        by_child[joint.child] = joint
    for b, name in enumerate(body_names):
        if b not in by_child:
            raise UnsupportedModelError(f"body {name} is not the child of any joint (reversed joint or floating body)")
    ordered: list[JointSpec] = []
    placed = {-1}
    pending = list(joints)
    while pending:
        ready = [j for j in pending if j.parent in placed]
        if not ready:
            raise UnsupportedModelError(
                f"joints {', '.join(j.name for j in pending)} do not connect to ground parent-first "
                "(OpenSim would reverse them)"
            )
        ordered += ready
        placed |= {j.child for j in ready}
        pending = [j for j in pending if j.child not in placed]
    return tuple(ordered)


# ---- coordinates, constraints, markers ------------------------------------------------------


def _read_coordinates(osim: Any, model: Any) -> tuple[CoordinateSpec, ...]:
    out = []
    coordinate_set = model.getCoordinateSet()
    for i in range(coordinate_set.getSize()):
        c = coordinate_set.get(i)
        out.append(
            CoordinateSpec(
                name=c.getName(),
                range=(float(c.getRangeMin()), float(c.getRangeMax())),
                default=float(c.getDefaultValue()),
                clamped=bool(c.getDefaultClamped()),
                locked=bool(c.getDefaultLocked()),
                rotational=c.getMotionType() == osim.Coordinate.Rotational,
            )
        )
    return tuple(out)


def _read_couplers(osim: Any, model: Any, coords: dict[str, int]) -> tuple[CouplerSpec, ...]:
    couplers = []
    constraints = model.getConstraintSet()
    for i in range(constraints.getSize()):
        constraint = constraints.get(i)
        if not constraint.get_isEnforced():
            continue
        where = f"constraint {constraint.getName()}"
        kind = constraint.getConcreteClassName()
        if kind != "CoordinateCouplerConstraint":
            raise UnsupportedModelError(f"{where} is a {kind}; only CoordinateCouplerConstraint is supported")
        cc = osim.CoordinateCouplerConstraint.safeDownCast(constraint)
        independent = cc.getIndependentCoordinateNames()
        if independent.getSize() != 1:
            raise UnsupportedModelError(f"{where} couples {independent.getSize()} independent coordinates; only 1 is supported")
        couplers.append(
            CouplerSpec(
                name=constraint.getName(),
                dependent=coords[cc.getDependentCoordinateName()],
                independent=coords[independent.get(0)],
                function=read_function(osim, cc.getFunction(), where),
            )
        )
    return _coupler_order(couplers)


def _coupler_order(couplers: list[CouplerSpec]) -> tuple[CouplerSpec, ...]:
    dependents = {c.dependent: c for c in couplers}
    if len(dependents) != len(couplers):
        raise UnsupportedModelError("a coordinate is the dependent of two CoordinateCouplerConstraints")
    ordered: list[CouplerSpec] = []
    pending = list(couplers)
    while pending:
        ready = [c for c in pending if c.independent not in dependents or dependents[c.independent] in ordered]
        if not ready:
            raise UnsupportedModelError(f"constraints {', '.join(c.name for c in pending)} form a cycle")
        ordered += ready
        pending = [c for c in pending if c not in ready]
    return tuple(ordered)


def _read_markers(osim: Any, model: Any, bodies: dict[str, int]) -> tuple[MarkerSpec, ...]:
    out = []
    marker_set = model.getMarkerSet()
    for i in range(marker_set.getSize()):
        marker = marker_set.get(i)
        frame = marker.getParentFrame()
        spec = _frame_spec(osim, frame)
        loc = _vec3(marker.get_location())
        offset = tuple(
            sum(spec.rotation[r][k] * loc[k] for k in range(3)) + spec.translation[r] for r in range(3)
        )
        body = _body_index(frame, bodies, f"marker {marker.getName()}")
        out.append(MarkerSpec(marker.getName(), body, offset, spec.scalable and _is_base(osim, frame)))  # type: ignore[arg-type]
    return tuple(out)


def _is_base(osim: Any, frame: Any) -> bool:
    return osim.PhysicalOffsetFrame.safeDownCast(frame) is None


def read_osim(path: str | os.PathLike[str], marker_file: str | os.PathLike[str] | None = None) -> KinematicModel:
    """Read ``path`` into a :class:`KinematicModel`.

    Raises InputError for a missing/unreadable/malformed file and UnsupportedModelError for
    constructs whose kinematics this package does not reproduce exactly.
    """
    path = Path(path)
    with _quiet_opensim() as osim:
        model = load_model(osim, path, Path(marker_file) if marker_file is not None else None)
        body_set = model.getBodySet()
        body_names = tuple(body_set.get(i).getName() for i in range(body_set.getSize()))
        bodies = {name: i for i, name in enumerate(body_names)}
        coordinates = _read_coordinates(osim, model)
        coords = {c.name: i for i, c in enumerate(coordinates)}
        joint_set = model.getJointSet()
        joints = [_read_joint(osim, joint_set.get(i), bodies, coords) for i in range(joint_set.getSize())]
        return KinematicModel(
            path=path.resolve(),
            name=model.getName(),
            coordinates=coordinates,
            body_names=body_names,
            joints=_tree_order(joints, body_names),
            couplers=_read_couplers(osim, model, coords),
            markers=_read_markers(osim, model, bodies),
        )
