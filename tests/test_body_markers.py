"""Geometric verification of the Anny virtual marker set (anny-pig53), on the neutral body and on
extreme phenotypes. These checks are the record of why each vertex index is kept.

Anny frame: +X subject's left, -Y anterior, +Z up, metres.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("anny")

from opensim_biopose.body.anny_model import AnnyBody  # noqa: E402
from opensim_biopose.body.markers import load_marker_set  # noqa: E402

# (gender, age, muscle, weight, height, proportions): the neutral body, then the corners that
# stress marker placement the most (height kept in 0.25-0.75, see DESIGN.md).
SHAPES = {
    "neutral": (0.5, 0.5, 0.5, 0.5, 0.5, 0.5),
    "short-light-female": (0.0, 0.5, 0.0, 0.0, 0.25, 0.0),
    "tall-heavy-male": (1.0, 0.5, 1.0, 1.0, 0.75, 1.0),
    "old-muscular": (1.0, 1.0, 1.0, 0.5, 0.5, 0.5),
    "young-adult-thin-tall": (0.0, 0.35, 0.0, 0.0, 0.75, 1.0),
}
SIDES = ("L", "R")


@pytest.fixture(scope="module")
def posed() -> dict[str, dict[str, torch.Tensor]]:
    """Marker positions (name -> (3,) m) and stature (m) per shape, rest pose."""
    torch.set_num_threads(1)
    body = AnnyBody()
    markers = load_marker_set("anny-pig53")
    shapes = torch.tensor(list(SHAPES.values()))
    out = body(body.zero_pose(len(SHAPES)), shapes)
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
    assert markers.version == 1 and markers.body_model == "anny"
    assert len(markers.names) == 53 and len(set(markers.names)) == 53
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
