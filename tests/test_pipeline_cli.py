"""``opensim-biopose run``: outputs, the summary line, no overwrite, bad input as one message, a user's model."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import opensim as osim
import pytest
import torch

from conftest import shared_path
from opensim_biopose.cli.main import main

torch.set_num_threads(1)

VIDEO = ("videos", "pose2sim_singleperson_cam01.mp4")
QUICK = ["--max-frames", "6", "--max-side", "480", "--fit-iterations", "30", "--no-train", "--quiet"]
STEM = "pose2sim_singleperson_cam01"
SUFFIXES = ("_markers.trc", "_ik.mot", "_scaled.osim", "_report.html")

# Anny virtual markers -> OpenCap's LaiUhlrich2022 "study" markers (same anatomical landmarks).
OPENCAP_MAP = {
    "RASI": "r.ASIS_study", "LASI": "L.ASIS_study", "RPSI": "r.PSIS_study", "LPSI": "L.PSIS_study",
    "RKNE": "r_knee_study", "RKNM": "r_mknee_study", "LKNE": "L_knee_study", "LKNM": "L_mknee_study",
    "RANK": "r_ankle_study", "RMED": "r_mankle_study", "LANK": "L_ankle_study", "LMED": "L_mankle_study",
    "RTOE": "r_toe_study", "RMT5": "r_5meta_study", "RHEE": "r_calc_study",
    "LTOE": "L_toe_study", "LMT5": "L_5meta_study", "LHEE": "L_calc_study",
    "RSHO": "r_shoulder_study", "LSHO": "L_shoulder_study", "C7": "C7_study",
    "RELB": "r_lelbow_study", "RMEL": "r_melbow_study", "RWRA": "r_lwrist_study", "RWRB": "r_mwrist_study",
    "LELB": "L_lelbow_study", "LMEL": "L_melbow_study", "LWRA": "L_lwrist_study", "LWRB": "L_mwrist_study",
}


def _outputs(folder: Path) -> list[Path]:
    return [folder / f"{STEM}{s}" for s in SUFFIXES]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    return err[-1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    video = shared_path(*VIDEO)
    out = tmp_path_factory.mktemp("run")
    code = main(["run", str(video), "--out", str(out), *QUICK])
    return video, out, code


def test_run_writes_four_outputs_and_a_summary(quick_run, capsys):
    _, out, code = quick_run
    assert code == 0
    for path in _outputs(out):
        assert path.is_file() and path.stat().st_size > 0, path
    assert osim.TimeSeriesTableVec3(str(_outputs(out)[0])).getNumRows() == 6


def test_existing_outputs_are_not_overwritten(quick_run, capsys):
    video, out, _ = quick_run
    before = {p: p.stat().st_mtime_ns for p in _outputs(out)}
    capsys.readouterr()
    assert main(["run", str(video), "--out", str(out), *QUICK]) == 2
    line = _error_line(capsys)
    assert "--overwrite" in line and STEM in line
    assert {p: p.stat().st_mtime_ns for p in _outputs(out)} == before


def test_summary_line(tmp_path, capsys):
    video = shared_path(*VIDEO)
    assert main(["run", str(video), "--out", str(tmp_path), *QUICK, "--no-report", "--max-frames", "3"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("3 frames in") and "frames/s" in last and "mean marker error" in last
    assert str(tmp_path / f"{STEM}_ik.mot") in last
    assert not (tmp_path / f"{STEM}_report.html").exists()


def _blank_video(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(5):
        writer.write(rng.integers(90, 110, (240, 320, 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("case", ["missing", "not_a_video", "empty_room", "bad_map", "no_model", "height",
                                  "out_is_a_file", "preset"])
def test_bad_input_is_one_message_and_no_output(case, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--out", str(out), *QUICK]
    video = tmp_path / "clip.mp4"
    expect = str(video)
    if case == "missing":
        pass
    elif case == "not_a_video":
        video.write_text("this is not a video\n" * 50)
    elif case == "empty_room":
        _blank_video(video)
        expect = "nobody"
    else:
        video = shared_path(*VIDEO)
        if case == "bad_map":
            bad = tmp_path / "map.json"
            bad.write_text("{not json")
            args += ["--marker-map", str(bad)]
            expect = str(bad)
        elif case == "out_is_a_file":
            out.write_text("a file where the output folder should be")
            args[1] = str(out / "sub")
            expect = "is a file"
        elif case == "preset":
            args += ["--preset", "turbo"]
            expect = "unknown preset 'turbo'"
        elif case == "no_model":
            args += ["--model", str(tmp_path / "absent.osim")]
            expect = "absent.osim"
        else:
            args += ["--height", "17.5"]
            expect = "--height"
    assert main(["run", str(video), *args]) == 2
    line = _error_line(capsys)
    assert line.startswith("opensim-biopose run: error:") and expect in line, line
    if out.is_dir():
        assert not any(out.iterdir()), "a failed run left files behind"


def test_preset_sets_the_speed_options_and_explicit_options_win(tmp_path):
    """--preset fast fits the body at a lower rate than the default accurate preset (<= 30 Hz);
    --fit-rate/--max-side/--fit-iterations given on the command line override the preset."""
    import argparse

    from opensim_biopose.cli.run_cmd import add_arguments, build_config
    from opensim_biopose.pipeline import PRESETS

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    video = str(tmp_path / "clip.mp4")
    accurate = build_config(parser.parse_args([video]))
    assert accurate.mesh.max_fit_rate_hz == 30.0 and accurate.detect.max_side is None
    assert accurate == build_config(parser.parse_args([video, "--preset", "accurate"]))
    fast = build_config(parser.parse_args([video, "--preset", "fast"]))
    assert fast.mesh.max_fit_rate_hz == PRESETS["fast"].max_fit_rate_hz < 30.0
    assert fast.mesh.options == dict(PRESETS["fast"].fit_options)
    mine = build_config(parser.parse_args([video, "--preset", "fast", "--fit-rate", "20", "--max-side", "960",
                                           "--fit-iterations", "90"]))
    assert mine.mesh.max_fit_rate_hz == 20.0 and mine.detect.max_side == 960
    assert mine.mesh.options["iterations"] == 90


def test_user_model_with_marker_map(tmp_path, capsys):
    """OpenCap's LaiUhlrich2022 with its own marker names: scaled, solved, and OpenSim IK agrees."""
    video = shared_path(*VIDEO)
    model = shared_path("opensim", "synthetic", "LaiUhlrich2022_with_markers.osim")
    mapping = tmp_path / "opencap.json"
    mapping.write_text(json.dumps(OPENCAP_MAP))
    out = tmp_path / "out"
    code = main(["run", str(video), "--out", str(out), *QUICK, "--model", str(model), "--marker-map", str(mapping),
                 "--no-report", "--mass", "70"])
    assert code == 0, capsys.readouterr().err
    scaled = osim.Model(str(out / f"{STEM}_scaled.osim"))
    state = scaled.initSystem()
    assert scaled.getTotalMass(state) == pytest.approx(70.0, abs=0.01)
    coords = osim.TimeSeriesTable(str(out / f"{STEM}_ik.mot"))
    assert "knee_angle_r" in list(coords.getColumnLabels())
    trc = osim.TimeSeriesTableVec3(str(out / f"{STEM}_markers.trc"))
    assert "r_knee_study" in list(trc.getColumnLabels())


def test_similarity_alignment_recovers_a_known_transform():
    from opensim_biopose.cli.demo_cmd import similarity_align

    rng = np.random.default_rng(1)
    pts = rng.normal(size=(200, 3))
    angle = np.radians(37.0)
    rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    target = 1.2 * pts @ rot.T + np.array([0.3, -1.0, 2.0])
    moved, scale = similarity_align(pts, target)
    assert scale == pytest.approx(1.2, rel=1e-9)
    assert np.abs(moved - target).max() < 1e-9


def test_demo_runs_on_the_shipped_video(tmp_path, capsys):
    from opensim_biopose.cli.demo_cmd import DEMO_VIDEO

    if not DEMO_VIDEO.is_file():
        pytest.skip(f"the demo video {DEMO_VIDEO} is not in this checkout")
    assert main(["demo", "--out", str(tmp_path), "--max-frames", "5"]) == 0
    out = capsys.readouterr().out
    assert "virtual markers vs the rendered truth" in out
    listed = [Path(line.strip()) for line in out.splitlines() if line.startswith("  /")]
    assert len(listed) == 4 and all(p.is_file() for p in listed)
    # The recovered markers are within 15 cm of the rendered truth on average (after alignment).
    mm = float(out.split("virtual markers vs the rendered truth: ")[1].split(" mm")[0])
    assert mm < 150.0
