"""TRC / MOT / STO / IK-setup files round-trip through OpenSim's own adapters."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import opensim as osim
import pytest

from conftest import shared_path
from opensim_biopose.errors import InputError
from opensim_biopose.io import mot as mot_io
from opensim_biopose.io import trc as trc_io
from opensim_biopose.io.ik_setup import read_ik_setup

GAIT = ("opensim", "trials", "gait2354_walk1")


def _rotational_from_model(path: Path) -> dict[str, bool]:
    model = osim.Model(str(path))
    coords = model.getCoordinateSet()
    return {coords.get(i).getName(): coords.get(i).getMotionType() == 1 for i in range(coords.getSize())}


def test_trc_mm_file_reads_in_metres_and_round_trips_through_opensim(tmp_path: Path) -> None:
    src = shared_path(*GAIT, "subject01_walk1.trc")
    data = trc_io.read_trc(src)
    assert data.units_in_file == "mm"
    assert data.xyz.shape == (151, 41, 3)
    assert data.rate == pytest.approx(60.0)
    # Raw file value of R.ASIS X in frame 1 is 617.24762 mm.
    raw = osim.TimeSeriesTableVec3(str(src))
    assert data.xyz[0, 0, 0] == pytest.approx(raw.getRowAtIndex(0)[0].get(0) / 1000.0, abs=1e-12)

    xyz = data.xyz.copy()
    xyz[3, 5] = np.nan  # a gap must survive the round trip
    gappy = trc_io.MarkerData(data.times, data.names, xyz, data.rate, "mm")
    out = trc_io.write_trc(tmp_path / "walk_m.trc", gappy)
    table = osim.TimeSeriesTableVec3(str(out))
    assert table.getTableMetaDataAsString("Units") == "m"
    assert float(table.getTableMetaDataAsString("DataRate")) == pytest.approx(60.0)
    assert list(table.getColumnLabels()) == list(data.names)
    back = trc_io.read_trc(out)
    assert np.isnan(back.xyz[3, 5]).all()
    np.testing.assert_allclose(back.xyz, xyz, atol=1e-9, equal_nan=True)  # nanometres
    np.testing.assert_allclose(back.times, data.times, atol=1e-9)
    assert out.read_text().split("\n", 1)[0].endswith("walk_m.trc")
    assert [p.name for p in tmp_path.iterdir()] == ["walk_m.trc"]  # no temporary left behind


def test_trc_zero_markers_are_missing(tmp_path: Path) -> None:
    data = trc_io.read_trc(shared_path(*GAIT, "subject01_walk1.trc"))
    xyz = data.xyz.copy()
    xyz[:, 2] = 0.0
    xyz[7, 4] = 0.0
    path = trc_io.write_trc(tmp_path / "zeros.trc", trc_io.MarkerData(data.times, data.names, xyz, data.rate))
    back = trc_io.read_trc(path)
    assert back.missing[:, 2].all()
    assert back.missing[7, 4] and back.missing.sum() == 152
    kept = trc_io.read_trc(path, zeros_as_missing=False)
    assert not kept.missing.any()


def test_trc_bad_inputs_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        trc_io.read_trc(tmp_path / "absent.trc")
    not_trc = tmp_path / "x.trc"
    not_trc.write_text("time\tx\n0\t1\n")
    with pytest.raises(InputError, match="not a .trc"):
        trc_io.read_trc(not_trc)
    src = shared_path(*GAIT, "subject01_walk1.trc").read_text()
    lines = src.split("\n")
    lines[2] = lines[2].replace("\tmm\t", "\tinches\t")
    bad_units = tmp_path / "inches.trc"
    bad_units.write_text("\n".join(lines))
    with pytest.raises(InputError, match="unknown marker units 'inches'"):
        trc_io.read_trc(bad_units)


def test_mot_written_exactly_as_inverse_kinematics_tool_writes_it(tmp_path: Path) -> None:
    ref = shared_path(*GAIT, "reference_ik_acc1e-6.mot")
    rot = _rotational_from_model(shared_path(*GAIT, "subject01_simbody.osim"))
    data = mot_io.read_mot(ref, rot)
    knee = data.column("knee_angle_r")
    assert np.rad2deg(knee).min() < -50  # degrees converted to radians (knee flexes > 50 deg)
    assert data.column("pelvis_ty").mean() == pytest.approx(1.0, abs=0.1)  # metres untouched
    out = mot_io.write_mot(tmp_path / "ik.mot", data.names, data.times, data.values, [rot[n] for n in data.names])
    assert out.read_text() == ref.read_text()
    storage = osim.Storage(str(out))
    assert storage.getSize() == 73 and storage.isInDegrees()
    labels = storage.getColumnLabels()
    assert [labels.get(i) for i in range(labels.getSize())] == ["time", *data.names]


def test_mot_in_degrees_needs_the_rotational_columns(tmp_path: Path) -> None:
    ref = shared_path(*GAIT, "reference_ik_acc1e-6.mot")
    with pytest.raises(InputError, match="in degrees"):
        mot_io.read_mot(ref)
    with pytest.raises(InputError, match="not coordinates"):
        mot_io.read_mot(ref, {"pelvis_tilt": True})


def test_mot_to_table_and_marker_error_sto_read_back_by_opensim(tmp_path: Path) -> None:
    times = np.linspace(0.0, 0.1, 7)
    values = np.stack([np.linspace(0, 1, 7), np.linspace(0.9, 1.0, 7)], axis=1)
    data = mot_io.CoordinateData(times, ("hip_flexion_r", "pelvis_ty"), values)
    table = mot_io.to_table(data, [True, False])
    assert table.getTableMetaDataAsString("inDegrees") == "yes"
    column = table.getDependentColumn("hip_flexion_r").to_numpy().copy()
    np.testing.assert_allclose(column, np.rad2deg(values[:, 0]), atol=1e-12)

    rms = np.full(7, 0.02)
    path = mot_io.write_marker_errors_sto(tmp_path / "e.sto", times, rms**2 * 30, rms, rms * 3)
    back = osim.TimeSeriesTable(str(path))
    assert list(back.getColumnLabels()) == list(mot_io.MARKER_ERROR_COLUMNS)
    np.testing.assert_allclose(back.getDependentColumn("marker_error_RMS").to_numpy().copy(), rms, atol=1e-8)


def test_ik_setup_parsed_with_paths_from_the_setup_folder() -> None:
    path = shared_path(*GAIT, "subject01_Setup_IK.xml")
    setup = read_ik_setup(path)
    folder = path.parent.resolve()          # the parser resolves links (../shared may be one)
    assert setup.model_file == folder / "subject01_simbody.osim"
    assert setup.marker_file == folder / "subject01_walk1.trc"
    assert setup.time_range == (0.4, 1.6)
    assert setup.accuracy == pytest.approx(1e-5)
    assert setup.constraint_weight == pytest.approx(20.0)
    weights = setup.marker_weights()
    assert weights["R.ASIS"] == 10 and weights["Sternum"] == 1 and len(weights) == 31
    tasks = {t.name: t for t in setup.applied_coordinate_tasks()}
    assert set(tasks) == {"subtalar_angle_r", "mtp_angle_r", "subtalar_angle_l", "mtp_angle_l"}
    assert tasks["mtp_angle_l"].weight == 1000 and tasks["mtp_angle_l"].value_type == "default_value"

    raj = read_ik_setup(shared_path("opensim", "trials", "rajagopal_walk", "ik_setup_walk.xml"))
    assert math.isinf(raj.constraint_weight) and raj.report_errors
    assert "R.Biceps" not in raj.marker_weights()  # apply=false
    assert raj.output_motion_file == raj.setup_file.parent / "results_walk" / "ik_output_walk.mot"


def test_ik_setup_missing_model_is_named_before_opensim_runs(tmp_path: Path) -> None:
    src = shared_path(*GAIT, "subject01_Setup_IK.xml")
    text = src.read_text().replace("<model_file>subject01_simbody.osim", "<model_file>no_such_model.osim")
    text = text.replace("<marker_file>subject01_walk1.trc", f"<marker_file>{src.parent / 'subject01_walk1.trc'}")
    setup = tmp_path / "setup.xml"
    setup.write_text(text)
    with pytest.raises(InputError, match=r"<model_file> 'no_such_model.osim' resolves to .*no_such_model.osim"):
        read_ik_setup(setup)
    with pytest.raises(InputError, match="no <InverseKinematicsTool>"):
        (tmp_path / "other.xml").write_text("<OpenSimDocument><ScaleTool/></OpenSimDocument>")
        read_ik_setup(tmp_path / "other.xml")


@pytest.mark.parametrize(
    "case, message",
    [
        ("header_only", "no frames"),  # OpenSim's adapter would loop forever on this
        ("first_line_only", "ends inside"),
        ("truncated_row", "could not read"),
        ("marker_count_wrong", "could not read"),
    ],
)
def test_malformed_trc_files_are_input_errors_not_hangs(tmp_path: Path, case: str, message: str) -> None:
    lines = shared_path(*GAIT, "subject01_walk1.trc").read_text().split("\n")
    text = {
        "header_only": lines[:5],
        "first_line_only": lines[:1],
        "truncated_row": lines[:10] + [lines[10][:40]],
        "marker_count_wrong": [lines[0], lines[1], lines[2].replace("\t41\t", "\t45\t"), *lines[3:20]],
    }[case]
    path = tmp_path / f"{case}.trc"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match=message):
        trc_io.read_trc(path)


@pytest.mark.parametrize("case", ["no_endheader", "not_a_motion", "truncated_row"])
def test_malformed_mot_files_are_input_errors_not_hangs(tmp_path: Path, case: str) -> None:
    lines = shared_path(*GAIT, "reference_ik_acc1e-6.mot").read_text().split("\n")
    text = {
        "no_endheader": lines[:5],  # OpenSim's adapter would loop forever on this
        "not_a_motion": ["hello"],
        "truncated_row": lines[:13] + [lines[13][:50]],
    }[case]
    path = tmp_path / f"{case}.mot"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match=str(path.name)):
        mot_io.read_mot(path, {})
