"""Joint types, transform-axis functions and couplers that the shared models do not all use.

Small models are built here with the opensim API (random frames, axes, knots), written to
.osim, read back by Skeleton.from_osim, and compared with OpenSim's own kinematics.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from opensim_biopose.errors import UnsupportedModelError
from opensim_biopose.kinematics import Skeleton
from opensim_biopose.kinematics.functions import FunctionTable, PolynomialSpec, SplineSpec
from test_skeleton import MAX_MARKER_ERROR_M, MAX_ROTATION_ERROR, load_opensim, opensim_fk, random_poses

torch.set_num_threads(1)

JOINT_KINDS = ["PinJoint", "SliderJoint", "UniversalJoint", "BallJoint", "GimbalJoint", "PlanarJoint", "FreeJoint", "WeldJoint"]


def _vec3(rng: np.random.Generator, scale: float):
    import opensim as osim

    return osim.Vec3(*map(float, rng.uniform(-scale, scale, 3)))


def _add_body(osim, model, name: str, rng: np.random.Generator):
    body = osim.Body(name, 1.0, osim.Vec3(0), osim.Inertia(0.1, 0.1, 0.1))
    model.addBody(body)
    model.addMarker(osim.Marker(f"{name}_marker", body, _vec3(rng, 0.2)))
    return body


def _set_ranges(joint, low: float = -1.2, high: float = 1.2) -> None:
    for k in range(joint.numCoordinates()):
        joint.upd_coordinates(k).setRangeMin(low)
        joint.upd_coordinates(k).setRangeMax(high)


def build_joint_chain(path: Path, seed: int = 0) -> Path:
    """A chain ground -> one body per built-in joint type, random offset frames, a marker each."""
    import opensim as osim

    rng = np.random.default_rng(seed)
    model = osim.Model()
    model.setName("joint_chain")
    parent = model.getGround()
    for kind in JOINT_KINDS:
        body = _add_body(osim, model, f"body_{kind}", rng)
        joint = getattr(osim, kind)(
            f"joint_{kind}", parent, _vec3(rng, 0.3), _vec3(rng, 1.0), body, _vec3(rng, 0.3), _vec3(rng, 1.0)
        )
        _set_ranges(joint)
        model.addJoint(joint)
        parent = body
    # A joint on the bodies' own frames (no offset frames) and a marker fixed in ground.
    bare = _add_body(osim, model, "body_bare", rng)
    model.addJoint(osim.PinJoint("joint_bare", parent, bare))
    model.addMarker(osim.Marker("ground_marker", model.getGround(), _vec3(rng, 1.0)))
    model.finalizeConnections()
    model.printToXML(str(path))
    return path


def build_nested_frames(path: Path, seed: int = 4) -> Path:
    """A joint whose parent frame is an offset frame of an offset frame of a body."""
    import opensim as osim

    rng = np.random.default_rng(seed)
    model = osim.Model()
    model.setName("nested_frames")
    base = _add_body(osim, model, "base", rng)
    model.addJoint(osim.FreeJoint("free", model.getGround(), base))
    tip = _add_body(osim, model, "tip", rng)
    outer = osim.PhysicalOffsetFrame("outer", base, osim.Transform(osim.Rotation(0.7, osim.Vec3(0, 0, 1)), _vec3(rng, 0.3)))
    inner = osim.PhysicalOffsetFrame("inner", outer, osim.Transform(osim.Rotation(-0.4, osim.Vec3(1, 0, 0)), _vec3(rng, 0.3)))
    base.addComponent(outer)
    base.addComponent(inner)
    child = osim.PhysicalOffsetFrame("tip_offset", tip, osim.Transform(_vec3(rng, 0.2)))
    tip.addComponent(child)
    model.addJoint(osim.PinJoint("pin", inner, child))
    model.finalizeConnections()
    model.printToXML(str(path))
    return path


def _give(function):
    """Hand a function to an OpenSim setter that adopts it: Python must not free it too."""
    function.thisown = False
    return function


def _axis(osim, transform, index: int, coordinate: str | None, axis, function) -> None:
    ta = transform.updTransformAxis(index)
    names = osim.ArrayStr()
    if coordinate is not None:
        names.append(coordinate)
    ta.setCoordinateNames(names)
    ta.setAxis(osim.Vec3(*axis))
    ta.setFunction(_give(function))


def _spline(osim, cls, x, y):
    f = cls()
    for a, b in zip(x, y):
        f.addPoint(float(a), float(b))
    return f


def build_function_model(path: Path, seed: int = 1) -> Path:
    """CustomJoints driven by every supported function type, non-orthogonal axes, and a chain
    of two CoordinateCouplerConstraints (a dependent coordinate driving another)."""
    import opensim as osim

    rng = np.random.default_rng(seed)
    model = osim.Model()
    model.setName("functions")
    knots = np.linspace(-1.5, 1.5, 7)
    first = _add_body(osim, model, "first", rng)
    st = osim.SpatialTransform()
    _axis(osim, st, 0, "a", rng.normal(size=3), osim.LinearFunction(1.0, 0.0))
    _axis(osim, st, 1, "b", rng.normal(size=3), _spline(osim, osim.SimmSpline, knots, rng.normal(size=7)))
    _axis(osim, st, 2, "a", rng.normal(size=3), osim.PolynomialFunction(osim.Vector([0.1, -0.3, 0.5, 0.2])))
    _axis(osim, st, 3, "b", (1, 0, 0), osim.MultiplierFunction(_give(_spline(osim, osim.PiecewiseLinearFunction, knots, 0.1 * rng.normal(size=7))), 1.7))
    _axis(osim, st, 4, None, (0, 1, 0), osim.Constant(0.25))
    _axis(osim, st, 5, "a", (0, 0, 1), osim.LinearFunction(0.05, 0.01))
    # CustomJoint coordinates keep OpenSim's default range (-10, 10): poses then also exercise
    # the splines' linear extrapolation far outside their knots (-1.5, 1.5).
    j1 = osim.CustomJoint("custom_first", model.getGround(), _vec3(rng, 0.3), _vec3(rng, 1.0), first, _vec3(rng, 0.3), _vec3(rng, 1.0), st)
    model.addJoint(j1)
    second = _add_body(osim, model, "second", rng)
    st2 = osim.SpatialTransform()
    _axis(osim, st2, 0, "c", (0, 0, 1), osim.LinearFunction(1.0, 0.0))
    _axis(osim, st2, 1, "d", (1, 0, 0), osim.LinearFunction(1.0, 0.0))
    _axis(osim, st2, 2, None, (0, 1, 0), osim.Constant(0.0))
    _axis(osim, st2, 3, "c", (0, 1, 0), _spline(osim, osim.SimmSpline, knots[:4], 0.05 * rng.normal(size=4)))
    _axis(osim, st2, 4, None, (1, 0, 0), osim.Constant(0.1))
    _axis(osim, st2, 5, None, (0, 0, 1), osim.Constant(0.0))
    j2 = osim.CustomJoint("custom_second", first, _vec3(rng, 0.3), _vec3(rng, 1.0), second, _vec3(rng, 0.3), _vec3(rng, 1.0), st2)
    model.addJoint(j2)
    # c = spline(a); d = 0.5 c - 0.1  (d depends on a dependent)
    for name, dep, ind, fn in [
        ("couple_c", "c", "a", _spline(osim, osim.SimmSpline, knots, 0.5 * rng.normal(size=7))),
        ("couple_d", "d", "c", osim.LinearFunction(0.5, -0.1)),
    ]:
        constraint = osim.CoordinateCouplerConstraint()
        constraint.setName(name)
        names = osim.ArrayStr()
        names.append(ind)
        constraint.setIndependentCoordinateNames(names)
        constraint.setDependentCoordinateName(dep)
        constraint.setFunction(_give(fn))
        model.addConstraint(constraint)
    model.finalizeConnections()
    model.printToXML(str(path))
    return path


def _assert_agrees(path: Path, poses: int) -> Skeleton:
    sk = Skeleton.from_osim(path)
    out = sk.forward(random_poses(sk, poses, seed=7))
    ref = opensim_fk(load_opensim(path), sk, out.q_full.numpy())
    if sk.coordinate_dependent.any():
        assert np.abs(ref.q - out.q_full.numpy()).max() < 1e-4
        out = sk.forward(torch.from_numpy(ref.q))
    assert np.abs(out.body_transforms[..., :3, 3].numpy() - ref.body_positions).max() < MAX_MARKER_ERROR_M
    assert np.abs(out.body_transforms[..., :3, :3].numpy() - ref.body_rotations).max() < MAX_ROTATION_ERROR
    assert np.linalg.norm(out.markers.numpy() - ref.markers, axis=-1).max() < MAX_MARKER_ERROR_M
    return sk


def test_builtin_joint_types_agree_with_opensim(tmp_path: Path) -> None:
    sk = _assert_agrees(build_joint_chain(tmp_path / "chain.osim"), 100)
    assert len(sk.coordinate_names) == 1 + 1 + 2 + 3 + 3 + 3 + 6 + 0 + 1
    assert sk.marker_body_index[sk.marker_names.index("ground_marker")] == -1


def test_nested_offset_frames_agree_but_are_not_scaled(tmp_path: Path) -> None:
    sk = _assert_agrees(build_nested_frames(tmp_path / "nested.osim"), 50)
    with pytest.raises(UnsupportedModelError, match="offset frames of offset frames"):
        sk.forward(random_poses(sk, 2), scales=torch.ones(len(sk.body_names), 3))


def test_transform_axis_functions_and_chained_couplers_agree_with_opensim(tmp_path: Path) -> None:
    sk = _assert_agrees(build_function_model(tmp_path / "functions.osim"), 100)
    assert sk.coordinate_dependent.tolist() == [False, False, True, True]


@pytest.mark.parametrize("builder", [build_function_model, build_joint_chain], ids=["custom-joints", "builtin-joints"])
def test_scaling_agrees_with_opensim(tmp_path: Path, builder) -> None:
    """CustomJoint translation functions scale with the parent body; FreeJoint/PlanarJoint/
    SliderJoint translations are coordinates, which Model.scale leaves alone."""
    import opensim as osim

    from test_skeleton import _scale_set

    path = builder(tmp_path / "model.osim")
    sk = Skeleton.from_osim(path)
    factors = np.random.default_rng(2).uniform(0.6, 1.4, size=(len(sk.body_names), 3))
    model = load_opensim(path)
    model.scale(model.initSystem(), _scale_set(osim, sk.body_names, factors), True)
    out = sk.forward(random_poses(sk, 30, seed=8), scales=torch.tensor(factors))
    ref = opensim_fk(model, sk, out.q_full.numpy())
    out = sk.forward(torch.from_numpy(ref.q), scales=torch.tensor(factors))
    assert np.linalg.norm(out.markers.numpy() - ref.markers, axis=-1).max() < MAX_MARKER_ERROR_M


def _opensim_values(function, xs: np.ndarray) -> np.ndarray:
    import opensim as osim

    return np.array([function.calcValue(osim.Vector(1, float(x))) for x in xs])


@pytest.mark.parametrize("count", [2, 3, 4, 5, 11])
@pytest.mark.parametrize("kind", ["simm", "linear"])
def test_splines_match_opensim_calc_value(kind: str, count: int) -> None:
    """Inside and outside the knots (extrapolation), uneven knot spacing."""
    import opensim as osim

    rng = np.random.default_rng(count)
    x = np.sort(rng.uniform(-2, 2, count))
    y = rng.normal(size=count)
    cls = {"simm": osim.SimmSpline, "linear": osim.PiecewiseLinearFunction}[kind]
    xs = np.linspace(-3, 3, 601)
    ref = _opensim_values(_spline(osim, cls, x, y), xs)
    table = FunctionTable.build([SplineSpec(tuple(x), tuple(y), kind, scale=1.0)])
    ours = table(torch.from_numpy(xs)[None, :])[0].numpy()
    assert np.abs(ours - ref).max() < 1e-12 * max(1.0, np.abs(ref).max())


def test_function_table_mixes_kinds_in_order() -> None:
    import opensim as osim

    poly = (0.3, -1.0, 0.5, 2.0)
    knots = (-1.0, 0.0, 0.5, 2.0)
    values = (0.0, 1.0, -1.0, 0.5)
    table = FunctionTable.build([SplineSpec(knots, values, "simm", 2.0), PolynomialSpec(poly), PolynomialSpec((7.0,))])
    xs = torch.linspace(-2, 3, 41, dtype=torch.float64)
    out = table(xs[None, :].expand(3, -1)).T
    spline = _opensim_values(_spline(osim, osim.SimmSpline, knots, values), xs.numpy())
    polynomial = _opensim_values(osim.PolynomialFunction(osim.Vector(list(poly))), xs.numpy())
    assert np.abs(out[:, 0].numpy() - 2.0 * spline).max() < 1e-12
    assert np.abs(out[:, 1].numpy() - polynomial).max() < 1e-12
    assert torch.all(out[:, 2] == 7.0)


def test_unsupported_joint_is_named(tmp_path: Path) -> None:
    import opensim as osim

    model = osim.Model()
    body = osim.Body("blob", 1.0, osim.Vec3(0), osim.Inertia(0.1, 0.1, 0.1))
    model.addBody(body)
    model.addJoint(osim.EllipsoidJoint("shoulder_ellipsoid", model.getGround(), body, osim.Vec3(0.1, 0.2, 0.3)))
    model.finalizeConnections()
    model.printToXML(str(tmp_path / "ellipsoid.osim"))
    with pytest.raises(UnsupportedModelError, match="shoulder_ellipsoid.*EllipsoidJoint"):
        Skeleton.from_osim(tmp_path / "ellipsoid.osim")


def test_natural_cubic_spline_agrees_with_opensim(tmp_path: Path) -> None:
    """<NaturalCubicSpline> in a file (no Python binding builds one): OpenSim reads it as a SimmSpline."""
    text = build_function_model(tmp_path / "functions.osim").read_text()
    assert text.count("<SimmSpline") == 3
    natural = tmp_path / "natural.osim"
    natural.write_text(text.replace("<SimmSpline", "<NaturalCubicSpline").replace("</SimmSpline>", "</NaturalCubicSpline>"))
    _assert_agrees(natural, 50)


def test_reversed_joint_is_refused(tmp_path: Path) -> None:
    import opensim as osim

    model = osim.Model()
    first = osim.Body("first", 1.0, osim.Vec3(0), osim.Inertia(0.1, 0.1, 0.1))
    second = osim.Body("second", 1.0, osim.Vec3(0), osim.Inertia(0.1, 0.1, 0.1))
    model.addBody(first)
    model.addBody(second)
    model.addJoint(osim.PinJoint("hinge", model.getGround(), first))
    model.addJoint(osim.PinJoint("backwards", second, first))  # OpenSim would reverse this one
    model.finalizeConnections()
    model.printToXML(str(tmp_path / "reversed.osim"))
    with pytest.raises(UnsupportedModelError, match="reversed joint"):
        Skeleton.from_osim(tmp_path / "reversed.osim")
