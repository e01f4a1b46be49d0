"""run_ik_tool: OpenSim's IK in process recovers a known pose; bad paths are InputErrors before OpenSim."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import opensim as osim
import pytest

from opensim_biopose.errors import InputError
from opensim_biopose.io.opensim_tools import run_ik_tool
from opensim_biopose.io.trc import MarkerData, write_trc
from osim_models import DEFAULT_IK_SETUP, DEFAULT_MODEL

# Lower body and trunk well inside their ranges; hands and feet stay neutral (their markers
# pin them less well, see test_default_model's known-pose test).
POSE_DEG = {"pelvis_tilt": -6.0, "pelvis_rotation": 15.0, "hip_flexion_r": 25.0, "knee_angle_r": 40.0,
            "hip_flexion_l": -12.0, "knee_angle_l": 20.0, "lumbar_extension": -8.0, "elbow_flex_l": 50.0}
PELVIS_TX_M = 0.3


def _markers_of_pose(tmp_path: Path) -> tuple[Path, list[str]]:
    """A 2-frame .trc (50 Hz, metres, ground) of the default model's markers, by OpenSim FK:
    neutral, then POSE_DEG with the pelvis moved PELVIS_TX_M forward."""
    model = osim.Model(str(DEFAULT_MODEL))
    state = model.initSystem()
    markers, coords = model.getMarkerSet(), model.getCoordinateSet()
    names = [markers.get(i).getName() for i in range(markers.getSize())]
    frames = []
    for scale in (0.0, 1.0):
        for name, degrees in POSE_DEG.items():
            coords.get(name).setValue(state, math.radians(degrees * scale), False)
        coords.get("pelvis_tx").setValue(state, PELVIS_TX_M * scale, False)
        model.realizePosition(state)
        frames.append([markers.get(n).getLocationInGround(state).to_numpy().copy() for n in names])
    trc = write_trc(tmp_path / "pose.trc", MarkerData(np.array([0.0, 0.02]), tuple(names), np.array(frames), 50.0))
    return trc, names


def _last_row(mot: Path) -> dict[str, float]:
    storage = osim.Storage(str(mot))
    labels, row = storage.getColumnLabels(), storage.getStateVector(storage.getSize() - 1).getData()
    return {labels.get(i + 1): row.get(i) for i in range(row.getSize())}


def test_ik_with_the_shipped_setup_recovers_a_known_pose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trc, names = _markers_of_pose(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = run_ik_tool(DEFAULT_MODEL, trc, tmp_path / "out" / "pose_ik.mot", setup=DEFAULT_IK_SETUP,
                      accuracy=1e-6, exclude=(names[0],))
    assert out == (tmp_path / "out" / "pose_ik.mot").resolve() and out.is_file()
    assert Path.cwd() == cwd and list(cwd.iterdir()) == []     # cwd restored, nothing dropped there
    assert [p.name for p in out.parent.iterdir()] == ["pose_ik.mot"]   # no temporaries, no error report
    solved = _last_row(out)
    for name, degrees in POSE_DEG.items():                     # .mot holds degrees
        assert solved[name] == pytest.approx(degrees, abs=0.5), name
    assert solved["pelvis_tx"] == pytest.approx(PELVIS_TX_M, abs=1e-3)


def test_ik_without_setup_uses_the_given_weights_and_time_range(tmp_path: Path) -> None:
    trc, names = _markers_of_pose(tmp_path)
    out = run_ik_tool(DEFAULT_MODEL, trc, tmp_path / "first.mot", marker_weights={n: 1.0 for n in names},
                      time_range=(0.0, 0.0), report_errors=True)
    storage = osim.Storage(str(out))
    assert storage.getSize() == 1                               # only the neutral frame was solved
    assert all(abs(v) < 0.5 for k, v in _last_row(out).items() if k in POSE_DEG)
    assert list(tmp_path.glob("*_ik_marker_errors.sto"))       # report beside the output when asked


@pytest.mark.parametrize("missing", ["model", "marker file", "IK setup"])
def test_missing_input_is_an_input_error_naming_it(missing: str, tmp_path: Path) -> None:
    trc = tmp_path / "pose.trc"
    trc.write_text("not read: the check comes first\n")
    paths = {"model": DEFAULT_MODEL, "marker file": trc, "IK setup": DEFAULT_IK_SETUP}
    paths[missing] = tmp_path / "nowhere" / "absent.file"
    cwd = os.getcwd()
    with pytest.raises(InputError, match=f"{missing} .*absent.file does not exist"):
        run_ik_tool(paths["model"], paths["marker file"], tmp_path / "out.mot", setup=paths["IK setup"])
    assert not (tmp_path / "out.mot").exists() and os.getcwd() == cwd
