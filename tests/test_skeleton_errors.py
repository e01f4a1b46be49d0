"""Bad input to Skeleton gives a clear InputError naming the input, never a segfault."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_path
from opensim_biopose.errors import InputError
from opensim_biopose.kinematics import Skeleton
from test_skeleton import MAX_MARKER_ERROR_M, load_opensim, opensim_fk, random_poses

torch.set_num_threads(1)

GAIT2354 = ("opensim", "models", "gait2354_simbody.osim")


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothere.osim does not exist"):
        Skeleton.from_osim(tmp_path / "nothere.osim")


def test_directory_instead_of_model(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a file"):
        Skeleton.from_osim(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_model(tmp_path: Path) -> None:
    path = tmp_path / "locked.osim"
    path.write_text("<OpenSimDocument/>")
    path.chmod(0)
    with pytest.raises(InputError, match="not readable"):
        Skeleton.from_osim(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("hello, not xml", "not an OpenSim XML document"),
        ('<?xml version="1.0"?>\n<Something/>', "not an OpenSim XML document"),
        ('<?xml version="1.0"?>\n<OpenSimDocument Version="40000"><Model name="x"><BodySet>', "could not be read"),
        (
            '<?xml version="1.0"?>\n<OpenSimDocument Version="40000"><Model name="x"><JointSet><objects>'
            '<PinJoint name="j"><socket_parent_frame>nope</socket_parent_frame>'
            "<socket_child_frame>nope2</socket_child_frame></PinJoint></objects></JointSet></Model></OpenSimDocument>",
            "could not be initialised",
        ),
    ],
    ids=["text", "other-xml", "truncated", "dangling-socket"],
)
def test_malformed_model(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.osim"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        Skeleton.from_osim(path)


def test_q_checks() -> None:
    sk = Skeleton.from_osim(shared_path(*GAIT2354))
    n = len(sk.coordinate_names)
    with pytest.raises(InputError, match=rf"expected \(B, {n}\)"):
        sk.forward(torch.zeros(2, n - 1, dtype=torch.float64))
    with pytest.raises(InputError, match=rf"expected \(B, {n}\)"):
        sk.forward(torch.zeros(n, dtype=torch.float64))
    q = torch.zeros(3, n, dtype=torch.float64)
    q[1, 4] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        sk.forward(q)
    with pytest.raises(InputError, match="scales"):
        sk.forward(torch.zeros(1, n, dtype=torch.float64), scales=torch.ones(3, 3))
    with pytest.raises(InputError, match="scales contains NaN"):
        sk.forward(torch.zeros(1, n, dtype=torch.float64), scales=torch.full((len(sk.body_names), 3), float("nan")))
    with pytest.raises(InputError, match="marker_offsets"):
        sk.forward(torch.zeros(1, n, dtype=torch.float64), marker_offsets=torch.zeros(4, 3))


def test_no_markers_and_marker_file() -> None:
    """gait2354 has no markers: require_markers says what to do; the lab's marker set fixes it."""
    model_path = shared_path(*GAIT2354)
    sk = Skeleton.from_osim(model_path)
    assert sk.marker_names == [] and sk.forward(torch.zeros(1, len(sk.coordinate_names))).markers.shape == (1, 0, 3)
    with pytest.raises(InputError, match="has no markers.*marker_file"):
        sk.require_markers()
    marker_file = shared_path("opensim", "trials", "gait2354_walk1", "gait2354_Scale_MarkerSet.xml")
    with_markers = Skeleton.from_osim(model_path, marker_file=marker_file)
    with_markers.require_markers()
    assert len(with_markers.marker_names) > 20
    import opensim as osim

    model = load_opensim(model_path)
    model.updateMarkerSet(osim.MarkerSet(str(marker_file)))
    model.finalizeConnections()
    out = with_markers.forward(random_poses(with_markers, 20))
    ref = opensim_fk(model, with_markers, out.q_full.numpy())
    assert np.linalg.norm(out.markers.numpy() - ref.markers, axis=-1).max() < MAX_MARKER_ERROR_M


def test_marker_file_with_unknown_body(tmp_path: Path) -> None:
    marker_file = tmp_path / "markers.xml"
    marker_file.write_text(
        '<?xml version="1.0"?>\n<OpenSimDocument Version="40000"><MarkerSet name="m"><objects>'
        '<Marker name="RKNE"><socket_parent_frame>/bodyset/wing_r</socket_parent_frame>'
        "<location>0 0 0</location></Marker></objects></MarkerSet></OpenSimDocument>"
    )
    with pytest.raises(InputError, match="RKNE.*wing_r"):
        Skeleton.from_osim(shared_path(*GAIT2354), marker_file=marker_file)
    with pytest.raises(InputError, match="missing.xml does not exist"):
        Skeleton.from_osim(shared_path(*GAIT2354), marker_file=tmp_path / "missing.xml")
