"""How well the model's markers sit where the Anny virtual markers are: OpenSim IK of one Anny body.

Poses the neutral Anny body (anny 0.6.2, all phenotypes 0.5, its rest A-pose), reads the
virtual markers of a marker set off its vertices, builds this model at Anny's stature and
solves OpenSim's InverseKinematicsTool with the shipped IK setup. The per-marker residual is
then the placement disagreement between the model marker and the mesh marker (pose is solved
away). Prints the solved coordinates that differ from 0 and every marker's residual (mm)::

    python -m osim_models.compare_anny_markers [--marker-set anny-pig53] [--exclude LTOE RTOE]

Needs the ``anny`` extra; the first run builds Anny's cache (~1 min, ~790 MB).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def anny_markers_in_opensim(marker_set: str) -> tuple[list[str], np.ndarray, float]:
    """Marker names, (M, 3) positions in OpenSim ground (floor at y = 0) and stature (m) of neutral Anny."""
    import torch

    from opensim_biopose.body.markers import load_marker_set

    torch.set_num_threads(1)
    import anny

    body = anny.Anny()
    out = body(phenotype_kwargs={k: 0.5 for k in body.phenotype_labels})
    vertices = out["vertices"].to(torch.float64)  # (1, V, 3), anny frame: +X left, -Y anterior, +Z up
    markers = load_marker_set(marker_set)
    anny_xyz = markers.positions(vertices)[0].numpy()
    # anny -> OpenSim ground: X = -Y (anterior), Y = Z (up), Z = -X (right)
    to_osim = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
    verts = vertices[0].numpy() @ to_osim.T
    floor = verts[:, 1].min()
    xyz = anny_xyz @ to_osim.T
    xyz[:, 1] -= floor
    return list(markers.names), xyz, float(verts[:, 1].max() - floor)


def _write_trc(path: Path, names: list[str], xyz: np.ndarray) -> None:
    import opensim as osim

    table = osim.TimeSeriesTableVec3()
    table.setColumnLabels(names)
    row = osim.RowVectorVec3([osim.Vec3(*map(float, p)) for p in xyz])
    table.appendRow(0.0, row)
    table.appendRow(0.01, row)
    for key, value in (("DataRate", 100), ("CameraRate", 100), ("OrigDataRate", 100), ("Units", "m"),
                       ("NumFrames", 2), ("NumMarkers", len(names)), ("OrigDataStartFrame", 1),
                       ("OrigNumFrames", 2)):
        table.addTableMetaDataString(key, str(value))
    osim.TRCFileAdapter().write(table, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marker-set", default="anny-pig53")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="MARKER",
                        help="markers left out of the IK (still reported), e.g. a suspect vertex")
    args = parser.parse_args(argv)
    import opensim as osim

    from opensim_biopose.io.opensim_tools import run_ik_tool
    from osim_models import DEFAULT_IK_SETUP
    from osim_models.build_default_model import write_model

    osim.Logger.removeFileSink()
    osim.Logger.setLevelString("warn")
    names, xyz, stature = anny_markers_in_opensim(args.marker_set)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_path = write_model(tmp / "anny_size.osim", stature, 70.0)
        _write_trc(tmp / "anny.trc", names, xyz)
        run_ik_tool(model_path, tmp / "anny.trc", tmp / "anny_ik.mot", setup=DEFAULT_IK_SETUP,
                    accuracy=1e-6, time_range=(0.0, 0.0), exclude=args.exclude)
        model = osim.Model(str(model_path))
        state = model.initSystem()
        motion = osim.Storage(str(tmp / "anny_ik.mot"))
        labels = motion.getColumnLabels()
        values = motion.getStateVector(0).getData()
        print(f"neutral Anny stature {stature:.3f} m; model built at that stature")
        print("solved coordinates (deg; m for translations), |value| > 2:")
        for i in range(values.getSize()):
            name, value = labels.get(i + 1), values.get(i)
            coord = model.getCoordinateSet().get(name)
            is_rot = coord.getMotionType() == 1
            coord.setValue(state, np.radians(value) if is_rot else value, False)
            if abs(value) > 2.0 or not is_rot:
                print(f"  {name:<18} {value:8.2f}")
        model.realizePosition(state)
        print("marker residual after IK (mm), model minus Anny, in ground X fwd / Y up / Z right:")
        residuals = []
        for name, target in zip(names, xyz):
            if not model.getMarkerSet().contains(name):
                continue                 # e.g. the joint centres of anny-pig53 v3: not model markers
            got = model.getMarkerSet().get(name).getLocationInGround(state).to_numpy().copy()
            diff = (got - target) * 1000.0
            residuals.append(float(np.linalg.norm(diff)))
            print(f"  {name:<5} {residuals[-1]:6.1f}   ({diff[0]:6.1f} {diff[1]:6.1f} {diff[2]:6.1f})")
        print(f"RMS residual {np.sqrt(np.mean(np.square(residuals))):.1f} mm, max {max(residuals):.1f} mm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
