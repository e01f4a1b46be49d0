"""Geometric verification of the Anny virtual marker set (anny-pig53), on the neutral body and on
extreme phenotypes. These checks are the record of why each vertex index is kept.

Anny frame: +X subject's left, -Y anterior, +Z up, metres.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("anny")

from conftest import ANNY_SHAPES  # noqa: E402
from opensim_biopose.body.anny_model import AnnyBody  # noqa: E402
from opensim_biopose.body.frames import ANNY_FRAME, to_opensim_ground  # noqa: E402
from opensim_biopose.body.markers import VirtualMarkerSet, load_marker_set  # noqa: E402
from opensim_biopose.errors import InputError  # noqa: E402
from opensim_biopose.plugins import get_registry  # noqa: E402

SHAPES = ANNY_SHAPES
SIDES = ("L", "R")


@pytest.fixture(scope="module")
def rest_bodies():
    """(AnnyBody, BodyOutput) of every shape in :data:`SHAPES`, rest pose, anny frame (m)."""
    torch.set_num_threads(1)
    body = AnnyBody()
    shapes = torch.tensor(list(SHAPES.values()))
    return body, body(body.zero_pose(len(SHAPES)), shapes)


@pytest.fixture(scope="module")
def posed(rest_bodies) -> dict[str, dict[str, torch.Tensor]]:
    """Marker positions (name -> (3,) m) and stature (m) per shape, rest pose."""
    body, out = rest_bodies
    markers = load_marker_set("anny-pig53")
    pos = markers.positions(out.vertices)
    result = {}
    for i, key in enumerate(SHAPES):
        v = out.vertices[i]
        floor = v[:, 2].min()
        named = {n: pos[i, j] - torch.tensor([0.0, 0.0, float(floor)]) for j, n in enumerate(markers.names)}
        named["_stature"] = v[:, 2].max() - floor
        named["_thumb.L"] = out.joints[i, body._anny.bone_labels.index("finger1-1.L")] - torch.tensor([0, 0, float(floor)])
        named["_thumb.R"] = out.joints[i, body._anny.bone_labels.index("finger1-1.R")] - torch.tensor([0, 0, float(floor)])
        result[key] = named
    return result


def test_marker_set_names_and_version() -> None:
    markers = load_marker_set("anny-pig53")
    assert markers.version == 3 and markers.body_model == "anny"
    # 53 surface markers named as on the default model, then 12 joint centres (v3; test_joint_centres.py)
    assert len(markers.names) == 65 and len(set(markers.names)) == 65
    assert sum(n[1:] in ("SJC", "EJC", "WJC", "HJC", "KJC", "AJC") for n in markers.names[53:]) == 12
    for side in SIDES:
        for stem in ("ASI", "PSI", "KNE", "KNM", "ANK", "MED", "HEE", "TOE", "SHO", "ELB", "MEL", "WRA", "WRB"):
            assert f"{side}{stem}" in markers.names


def test_left_right_mirror_symmetry_on_neutral_body(posed) -> None:
    m = posed["neutral"]
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    for name in m:
        if name.startswith("L") and m[name].ndim and f"R{name[1:]}" in m:
            gap = (m[name] - m[f"R{name[1:]}"] * mirror).norm().item()
            assert gap < 0.005, f"{name} is {gap * 1000:.1f} mm from the mirror image of R{name[1:]}"
    for name in ("C7", "CLAV", "STRN", "T10", "SACR"):
        assert abs(m[name][0].item()) < 0.005, f"{name} is off the midline"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_anterior_posterior_order(posed, shape) -> None:
    m = posed[shape]
    y = {n: v[1].item() for n, v in m.items() if v.ndim}           # -Y is anterior
    for s in SIDES:
        assert y[f"{s}ASI"] < y[f"{s}PSI"] - 0.08, f"{shape}: {s}ASI not anterior of {s}PSI"
        assert y[f"{s}TOE"] < y[f"{s}HEE"] - 0.15, f"{shape}: {s}TOE not anterior of {s}HEE"
        assert y[f"{s}MT1"] < y[f"{s}ANK"] and y[f"{s}MT5"] < y[f"{s}ANK"]
        assert y[f"{s}BAK"] > y[f"{s}SHO"]
    assert y["STRN"] < y["T10"] - 0.1 and y["CLAV"] < y["C7"] - 0.08
    assert y["SACR"] > y["LASI"] + 0.08
    for s in SIDES:
        assert y[f"{s}FHD"] < y[f"{s}BHD"] - 0.1


@pytest.mark.parametrize("shape", list(SHAPES))
def test_lateral_medial_order(posed, shape) -> None:
    m = posed[shape]
    ax = {n: abs(v[0].item()) for n, v in m.items() if v.ndim}      # distance from the midline
    for s in SIDES:
        assert ax[f"{s}KNE"] > ax[f"{s}KNM"] + 0.05, f"{shape}: {s}KNE not lateral of {s}KNM"
        assert ax[f"{s}ANK"] > ax[f"{s}MED"] + 0.03, f"{shape}: {s}ANK not lateral of {s}MED"
        assert ax[f"{s}ELB"] > ax[f"{s}MEL"] + 0.02, f"{shape}: {s}ELB not lateral of {s}MEL"
        assert ax[f"{s}MT5"] > ax[f"{s}MT1"] + 0.04, f"{shape}: {s}MT5 not lateral of {s}MT1"
        assert ax[f"{s}GTR"] > ax[f"{s}ASI"], f"{shape}: {s}GTR not lateral of {s}ASI"
        # radial styloid (WRA) sits on the thumb side of the wrist, the ulnar one (WRB) away from it
        thumb = m[f"_thumb.{s}"]
        assert (m[f"{s}WRA"] - thumb).norm() < (m[f"{s}WRB"] - thumb).norm() - 0.02


@pytest.mark.parametrize("shape", list(SHAPES))
def test_heights_ordered_and_anthropometric(posed, shape) -> None:
    m = posed[shape]
    z = {n: v[2].item() for n, v in m.items() if v.ndim}
    h = m["_stature"].item()
    for s in SIDES:
        chain = [f"{s}HEE", f"{s}ANK", f"{s}TIB", f"{s}KNE", f"{s}THI", f"{s}GTR", f"{s}ASI", f"{s}SHO"]
        heights = [z[n] for n in chain]
        assert heights == sorted(heights), f"{shape}: {chain} not bottom to top: {heights}"
        # Segment-height proportions of stature (Drillis & Contini 1966, as tabulated in
        # Winter, Biomechanics and Motor Control of Human Movement, Fig. 4.1): knee ~0.285,
        # greater trochanter ~0.53, acromion ~0.82, lateral malleolus ~0.04; wide margins for
        # body types and the A-pose.
        assert 0.24 < z[f"{s}KNE"] / h < 0.33, f"{shape}: {s}KNE at {z[f'{s}KNE'] / h:.3f} H"
        assert 0.46 < z[f"{s}GTR"] / h < 0.57, f"{shape}: {s}GTR at {z[f'{s}GTR'] / h:.3f} H"
        assert 0.77 < z[f"{s}SHO"] / h < 0.86, f"{shape}: {s}SHO at {z[f'{s}SHO'] / h:.3f} H"
        assert 0.02 < z[f"{s}ANK"] / h < 0.07, f"{shape}: {s}ANK at {z[f'{s}ANK'] / h:.3f} H"
        assert z[f"{s}FHD"] > 0.88 * h
    assert z["SACR"] < z["T10"] < z["C7"]
    assert z["STRN"] < z["CLAV"]
    # Cervicale ~0.87 H and suprasternale ~0.82 H standing (ANSUR II means, Gordon et al. 2014,
    # as fractions of mean stature); wide margins for body types and Anny's rig.
    assert 0.82 < z["C7"] / h < 0.89, f"{shape}: C7 at {z['C7'] / h:.3f} H"
    assert 0.79 < z["CLAV"] / h < 0.845, f"{shape}: CLAV at {z['CLAV'] / h:.3f} H"


# ----------------------------------------------------------------------------- versions
def test_bare_name_is_the_newest_version_and_older_ones_stay_loadable() -> None:
    newest, v2, v1 = load_marker_set("anny-pig53"), load_marker_set("anny-pig53@v2"), load_marker_set("anny-pig53@v1")
    assert (newest.version, v2.version, v1.version) == (3, 2, 1)
    assert v2.names == v1.names              # same markers in the same order; only placement changed
    moved = [n for n in v2.names if not torch.equal(_rows(v2)[n], _rows(v1)[n])]
    assert {n.lstrip("LR") for n in moved} == {"TOE", "ANK", "MED", "MT5", "ELB", "MEL", "FHD", "C7", "CLAV", "STRN"}
    registry = get_registry()
    assert registry.create("marker_sets", "anny-pig53@v1").version == 1
    assert registry.create("marker_sets", "anny-pig53").version == 3
    with pytest.raises(InputError, match="anny-pig53@v1"):
        load_marker_set("anny-pig53@v9")     # the error lists the built-in names


def _rows(markers: VirtualMarkerSet) -> dict[str, torch.Tensor]:
    """Marker name -> its (K,) vertex indices (padding slots of weight 0 dropped)."""
    reg = markers.regressor
    return {n: ix[w > 0] for n, ix, w in zip(markers.names, reg.indices, reg.weights)}


# ----------------------------------------------------------------------------- v2 landmarks
@pytest.mark.parametrize("shape", list(SHAPES))
def test_toe_tip_temples_and_malleoli(posed, rest_bodies, shape) -> None:
    """The v2 placements: toe marker at the toe tip, 5th metatarsal head behind the 1st, front head
    markers over the temples, lateral malleolus below and behind the medial one -- where the
    default OpenSim model has them."""
    m = posed[shape]
    vertices = rest_bodies[1].vertices[list(SHAPES).index(shape)]
    vertices = vertices - torch.tensor([0.0, 0.0, float(vertices[:, 2].min())])
    h = m["_stature"].item()
    for s, sign in (("L", 1.0), ("R", -1.0)):
        foot = vertices[(torch.sign(vertices[:, 0]) == sign) & (vertices[:, 2] < 0.06 * h)]
        toe = m[f"{s}TOE"]
        # the tip is the foot's most anterior point (-Y); v1 sat on the metatarsal heads, 5.6 cm back
        assert toe[1].item() - foot[:, 1].min().item() < 0.006, f"{shape}: {s}TOE behind the toe tip"
        assert 0.008 < toe[2].item() < 0.035, f"{shape}: {s}TOE not on the dorsum of the toe"
        assert abs(m[f"{s}MT1"][0]) < abs(toe[0]) < abs(m[f"{s}MT5"][0]), f"{shape}: {s}TOE not on a middle toe"
        # the metatarsal heads' line is oblique: the 5th lies 2-3 cm behind the 1st (model: 26 mm)
        behind = (m[f"{s}MT5"][1] - m[f"{s}MT1"][1]).item()
        assert 0.015 < behind < 0.045, f"{shape}: {s}MT5 {behind * 1000:.0f} mm behind {s}MT1"
        ank, med = m[f"{s}ANK"], m[f"{s}MED"]
        assert ank[2] < med[2], f"{shape}: {s}ANK (lateral malleolus) above {s}MED"
        assert 0.005 < (ank[1] - med[1]).item() < 0.04, f"{shape}: {s}ANK not behind {s}MED"
    head = vertices[(vertices[:, 2] - m["RFHD"][2]).abs() < 0.01]
    half_breadth = head[:, 0].abs().max().item()
    for s in SIDES:
        ratio = abs(m[f"{s}FHD"][0].item()) / half_breadth
        assert 0.65 < ratio < 0.85, f"{shape}: {s}FHD at {ratio:.2f} of the head's half-breadth (temple ~0.75)"


# ----------------------------------------------------------------------------- against the model
def _opensim_ik(names: tuple[str, ...], xyz: np.ndarray, stature_m: float, work: Path):
    """OpenSim IK of one static frame ``xyz`` (M, 3) m (ground, floor y = 0) on the default model
    built at ``stature_m`` with its shipped IK setup. Returns (coordinates: name -> deg or m,
    residuals: name -> model minus target, m)."""
    osim = pytest.importorskip("opensim")
    from opensim_biopose.io.opensim_tools import run_ik_tool
    from opensim_biopose.io.trc import MarkerData, write_trc
    from osim_models import DEFAULT_IK_SETUP
    from osim_models.build_default_model import write_model

    osim.Logger.removeFileSink()
    osim.Logger.setLevelString("warn")
    model_path = write_model(work / "model.osim", stature_m, 70.0)
    write_trc(work / "static.trc", MarkerData(np.array([0.0, 0.01]), names, np.stack([xyz, xyz]), 100.0))
    run_ik_tool(model_path, work / "static.trc", work / "static.mot", setup=DEFAULT_IK_SETUP,
                accuracy=1e-6, time_range=(0.0, 0.0))
    model = osim.Model(str(model_path))
    state = model.initSystem()
    motion = osim.Storage(str(work / "static.mot"))
    labels, row = motion.getColumnLabels(), motion.getStateVector(0).getData()
    q = {}
    for i in range(row.getSize()):
        coord = model.getCoordinateSet().get(labels.get(i + 1))
        q[coord.getName()] = row.get(i)
        rotational = coord.getMotionType() == 1
        coord.setValue(state, np.radians(row.get(i)) if rotational else row.get(i), False)
    model.realizePosition(state)
    residual = {}
    for name, target in zip(names, xyz):
        if not model.getMarkerSet().contains(name):
            continue                # the joint centres of v3: in the .trc, ignored by OpenSim's IK
        located = model.getMarkerSet().get(name).getLocationInGround(state).to_numpy().copy()
        residual[name] = located - target
    return q, residual


def _neutral_ik(rest_bodies, work: Path, marker_set: str) -> tuple[dict[str, float], dict[str, float], float]:
    """IK of the neutral body's markers: (coordinates deg/m, per-marker residual mm, RMS residual mm)."""
    markers = load_marker_set(marker_set)
    ground = to_opensim_ground(rest_bodies[1].vertices[0].double(), ANNY_FRAME)    # (V, 3), Y up
    floor = ground[:, 1].min()
    xyz = markers.positions(ground[None])[0].numpy() - np.array([0.0, float(floor), 0.0])
    q, residual = _opensim_ik(markers.names, xyz, float(ground[:, 1].max() - floor), work)
    errors_mm = {n: 1000.0 * float(np.linalg.norm(d)) for n, d in residual.items()}
    return q, errors_mm, float(np.sqrt(np.mean(np.square(list(errors_mm.values())))))


def test_opensim_ik_of_the_neutral_body_on_the_default_model(rest_bodies, tmp_path) -> None:
    """Markers that name the model's points leave a small IK residual and the toes unbent.

    The model is built at the neutral body's stature but not scaled, so part of the residual is
    segment proportions (arms, trunk), not placement.
    """
    q, errors_mm, rms_mm = _neutral_ik(rest_bodies, tmp_path, "anny-pig53")
    for side in ("r", "l"):
        assert abs(q[f"mtp_angle_{side}"]) < 10.0, f"toes bent {q[f'mtp_angle_{side}']:.1f} deg"
    assert rms_mm < 16.0, f"RMS residual {rms_mm:.1f} mm"
    for name in ("RTOE", "LTOE", "RMT5", "LMT5", "RFHD", "LFHD", "RANK", "LANK", "RMED", "LMED"):
        assert errors_mm[name] < 12.0, f"{name} {errors_mm[name]:.1f} mm from the model's marker"


def test_v1_toe_marker_bends_the_toes(rest_bodies, tmp_path) -> None:
    """The record of what v2 fixes (same IK): v1's toe marker sat on the metatarsal heads, and IK
    bent the toes ~65 deg to reach it; its front head markers sat on the forehead."""
    q, errors_mm, _ = _neutral_ik(rest_bodies, tmp_path, "anny-pig53@v1")
    assert q["mtp_angle_r"] < -40.0 and q["mtp_angle_l"] < -40.0
    assert errors_mm["RTOE"] > 25.0 and errors_mm["RFHD"] > 20.0
