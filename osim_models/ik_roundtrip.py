"""OpenSim IK on the default model with its shipped setup: markers from FK of a known motion, solved back.

Prints OpenSim InverseKinematicsTool frames/s and the coordinate error against the motion that
made the markers (exact data, so the error is the solver's and the setup's, not noise)::

    python -m osim_models.ik_roundtrip [--frames 100] [--accuracy 1e-5]

The motion swings 22 coordinates from standing to :data:`POSE_DEG` and back (one cycle).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: The far end of the test motion: inside every range and away from the shoulder's gimbal lock.
POSE_DEG = {
    "pelvis_tilt": -8.0, "pelvis_list": 3.0, "pelvis_rotation": 20.0,
    "hip_flexion_r": 30.0, "hip_adduction_r": -5.0, "hip_rotation_r": 8.0, "knee_angle_r": 45.0,
    "ankle_angle_r": 10.0, "hip_flexion_l": -10.0, "knee_angle_l": 15.0, "ankle_angle_l": -15.0,
    "lumbar_extension": -10.0, "lumbar_bending": 5.0, "lumbar_rotation": -8.0,
    "arm_flex_r": -20.0, "arm_add_r": -15.0, "elbow_flex_r": 30.0, "arm_flex_l": 40.0,
    "arm_add_l": -20.0, "arm_rot_l": 20.0, "elbow_flex_l": 70.0, "pro_sup_l": 60.0,
}


def synthetic_markers(model_path: Path, frames: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Marker names, (T, M, 3) positions (m, ground) and (T, K) coordinates (deg) of the test motion."""
    import opensim as osim

    model = osim.Model(str(model_path))
    state = model.initSystem()
    coords = model.getCoordinateSet()
    names = [model.getMarkerSet().get(i).getName() for i in range(model.getMarkerSet().getSize())]
    xyz = np.zeros((frames, len(names), 3))
    truth = np.zeros((frames, len(POSE_DEG)))
    for t in range(frames):
        amount = 0.5 * (1.0 - math.cos(2.0 * math.pi * t / frames))  # 0 -> 1 -> 0
        for k, (name, value) in enumerate(POSE_DEG.items()):
            truth[t, k] = amount * value
            coords.get(name).setValue(state, math.radians(truth[t, k]), False)
        model.realizePosition(state)
        for m, name in enumerate(names):
            xyz[t, m] = model.getMarkerSet().get(name).getLocationInGround(state).to_numpy()
    return names, xyz, truth


def write_trc(path: Path, names: list[str], xyz: np.ndarray, rate: float) -> None:
    """(T, M, 3) metres -> an OpenSim .trc through TRCFileAdapter."""
    import opensim as osim

    table = osim.TimeSeriesTableVec3()
    table.setColumnLabels(names)
    for t in range(xyz.shape[0]):
        table.appendRow(t / rate, osim.RowVectorVec3([osim.Vec3(*map(float, p)) for p in xyz[t]]))
    for key, value in (("DataRate", rate), ("CameraRate", rate), ("OrigDataRate", rate), ("Units", "m"),
                       ("NumFrames", xyz.shape[0]), ("NumMarkers", len(names)),
                       ("OrigDataStartFrame", 1), ("OrigNumFrames", xyz.shape[0])):
        table.addTableMetaDataString(key, str(value))
    osim.TRCFileAdapter().write(table, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--accuracy", type=float, default=1e-5, help="IK accuracy (the setup's default 1e-5)")
    args = parser.parse_args(argv)
    import opensim as osim

    from opensim_biopose.io.opensim_tools import run_ik_tool
    from osim_models import DEFAULT_IK_SETUP, DEFAULT_MODEL

    osim.Logger.removeFileSink()
    osim.Logger.setLevelString("warn")
    rate = 100.0
    names, xyz, truth = synthetic_markers(DEFAULT_MODEL, args.frames)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_trc(tmp / "motion.trc", names, xyz, rate)
        start = time.perf_counter()          # the tool's run, model load and .trc read included
        run_ik_tool(DEFAULT_MODEL, tmp / "motion.trc", tmp / "motion_ik.mot", setup=DEFAULT_IK_SETUP,
                    accuracy=args.accuracy, time_range=(0.0, (args.frames - 1) / rate))
        seconds = time.perf_counter() - start
        motion = osim.Storage(str(tmp / "motion_ik.mot"))
        labels = motion.getColumnLabels()
        column = {labels.get(i + 1): i for i in range(labels.getSize() - 1)}
        solved = np.array([[motion.getStateVector(t).getData().get(column[n]) for n in POSE_DEG]
                           for t in range(motion.getSize())])
    error = np.abs(solved - truth)
    print(f"OpenSim IK, {DEFAULT_MODEL.name}, {len(names)} markers, accuracy {args.accuracy:g}: "
          f"{args.frames} frames in {seconds:.2f} s = {args.frames / seconds:.0f} frames/s")
    print(f"coordinate error vs the generating motion: mean {error.mean():.3f} deg, max {error.max():.3f} deg")
    for k in np.argsort(-error.max(axis=0))[:5]:
        print(f"  {list(POSE_DEG)[k]:<18} max {error[:, k].max():.3f} deg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
