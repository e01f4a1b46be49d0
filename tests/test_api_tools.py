"""OpenSim's InverseDynamicsTool and AnalyzeTool through opensim_biopose.api: real OpenSim, the
real gait2354 lab trial. Outputs appear whole or not at all; a failing input is an InputError
naming it and leaves the output folder as it was."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import opensim as osim
import pytest

from conftest import shared_path
from opensim_biopose.api import run_analyze_body_kinematics, run_inverse_dynamics
from opensim_biopose.errors import InputError

TRIAL = ("opensim", "trials", "gait2354_walk1")


@pytest.fixture(scope="module")
def trial() -> tuple[Path, Path]:
    """(scaled model, IK coordinates .mot) of the gait2354 walk, 0.4-1.6 s."""
    osim.Logger.setLevelString("error")
    return shared_path(*TRIAL, "subject01_simbody.osim"), shared_path(*TRIAL, "reference_ik_published.mot")


def _short_mot(mot: Path, rows: int, out: Path) -> Path:
    """The first ``rows`` rows of ``mot`` (header kept): too few rows for OpenSim's filter."""
    lines = mot.read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
    header = [f"datarows {rows}" if line.startswith("datarows") else line for line in lines[:end + 2]]
    out.write_text("\n".join(header + lines[end + 2:end + 2 + rows]) + "\n")
    return out


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_inverse_dynamics_writes_the_sto_and_nothing_else(trial, tmp_path) -> None:
    model, mot = trial
    out = tmp_path / "results"
    sto = run_inverse_dynamics(model, mot, out / "id.sto")
    assert sorted(p.name for p in out.iterdir()) == ["id.sto"], "no staging folder or stray file is left"
    table = osim.TimeSeriesTable(str(sto))
    # The published trial's stance carries the body weight (72.6 kg model) through the pelvis residual.
    pelvis_ty = table.getDependentColumn("pelvis_ty_force").to_numpy().copy()
    assert 300 < np.median(pelvis_ty) < 1500
    assert table.getNumRows() > 50


def test_failed_inverse_dynamics_leaves_the_old_output_untouched(trial, tmp_path) -> None:
    model, mot = trial
    short = _short_mot(mot, 2, tmp_path / "two_rows.mot")
    out = tmp_path / "results"
    out.mkdir()
    (out / "id.sto").write_text("an earlier run's result\n")
    before = _listing(out)
    with pytest.raises(InputError, match="two_rows.mot"):
        run_inverse_dynamics(model, short, out / "id.sto")     # OpenSim: too few data points to filter
    assert _listing(out) == before


def test_analyze_writes_all_three_files_or_none(trial, tmp_path) -> None:
    model, mot = trial
    out = tmp_path / "analysis"
    written = run_analyze_body_kinematics(model, mot, out, name="walk")
    assert [p.name for p in written] == [f"walk_BodyKinematics_{k}_global.sto" for k in ("acc", "pos", "vel")]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in written]
    pos = osim.TimeSeriesTable(str(out / "walk_BodyKinematics_pos_global.sto"))
    pelvis_y = pos.getDependentColumn("pelvis_Y").to_numpy().copy()
    assert 0.8 < np.median(pelvis_y) < 1.2, "pelvis height of a walking adult, metres"

    broken = tmp_path / "broken.mot"
    broken.write_text("not a motion file\nendheader\ntime\tfoo\n0\t1\n")
    again = tmp_path / "again"
    with pytest.raises(InputError, match="broken.mot"):
        run_analyze_body_kinematics(model, broken, again, name="walk")
    assert not again.exists() or not any(again.iterdir())


def test_missing_inputs_are_input_errors_before_opensim_runs(trial, tmp_path) -> None:
    model, mot = trial
    with pytest.raises(InputError, match="no_such.mot"):
        run_inverse_dynamics(model, tmp_path / "no_such.mot", tmp_path / "id.sto")
    with pytest.raises(InputError, match="external loads"):
        run_inverse_dynamics(model, mot, tmp_path / "id.sto", external_loads=tmp_path / "no_loads.xml")
    assert not (tmp_path / "id.sto").exists()
