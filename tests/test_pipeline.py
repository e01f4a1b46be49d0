"""The whole pipeline on the shared real video: outputs that OpenSim's own tools accept and agree with.

Small on purpose: the first 15 frames, detector on a 480 px copy, a shortened mesh fit. NeurIK
weights are used when shipped; otherwise the solve starts from the default pose (``train=False``),
so the test never trains a network.
"""
from __future__ import annotations

import base64
import html.parser
import os
from pathlib import Path

import cv2
import numpy as np
import opensim as osim
import pytest
import torch

from conftest import shared_path
from opensim_biopose import BioPose, run_inverse_dynamics, run_inverse_kinematics
from opensim_biopose.detect.frontend import DetectConfig
from opensim_biopose.io.mot import OPENCAP_DOFS, compare_dofs, read_mot
from opensim_biopose.pipeline import (
    MeshStageConfig,
    PipelineConfig,
    SolverConfig,
)
from opensim_biopose.report.figures import ARM_DOFS

torch.set_num_threads(1)

VIDEO = ("videos", "pose2sim_singleperson_cam01.mp4")
FRAMES = 15


@pytest.fixture(scope="module")
def run_result(tmp_path_factory):
    video = shared_path(*VIDEO)
    config = PipelineConfig(
        detect=DetectConfig(max_frames=FRAMES, max_side=480),
        mesh=MeshStageConfig(options={"iterations": 60, "rigid_iterations": 30}),
        solver=SolverConfig(train=False),
    )
    cwd = Path.cwd()
    work = tmp_path_factory.mktemp("cwd")
    os.chdir(work)                      # anything written to the cwd would show up here
    try:
        result = BioPose(config).run(video)
        files = result.write(tmp_path_factory.mktemp("out"))
    finally:
        os.chdir(cwd)
    return result, files, work


def _rotational(path: Path) -> dict[str, bool]:
    table = osim.TimeSeriesTable(str(path))
    return {n: not n.endswith(("_tx", "_ty", "_tz")) for n in table.getColumnLabels()}


def test_result_arrays_have_the_promised_shapes_and_units(run_result):
    result, _, _ = run_result
    t, m, n = result.num_frames, len(result.marker_names), len(result.coordinate_names)
    assert t == FRAMES and result.q.shape == (t, n) and result.marker_xyz.shape == (t, m, 3)
    assert np.all(np.diff(result.times) > 0)
    # Metres in OpenSim ground, Y up: feet near the floor, head 1.2-2.2 m above them.
    y = result.marker_xyz[..., 1]
    assert -0.1 < np.nanmin(y) < 0.15 and 1.2 < np.nanmax(y) - np.nanmin(y) < 2.2
    # Quality flags per frame; the final pose fits the virtual markers within centimetres.
    q = result.quality
    assert q.detection_confidence.shape == (t,) and (q.detection_confidence > 0.3).all()
    assert np.nanmean(q.marker_rms_m) < 0.03
    assert np.all(np.isfinite(result.q))
    # OpenSim objects from the result.
    assert result.markers.getNumRows() == t and result.markers.getNumColumns() == m
    assert result.coordinates.getNumColumns() == n
    model = result.scaled_model                  # keep the owner of the marker set alive
    marker_set = model.getMarkerSet()
    model_markers = {marker_set.get(i).getName() for i in range(marker_set.getSize())}
    # Every model marker has its virtual marker; the 12 joint centres of anny-pig53 v3 go to the .trc only.
    assert model_markers <= set(result.marker_names) and len(set(result.marker_names) - model_markers) == 12
    # Stage times: the one-off body model load is its own stage, not part of the per-frame fit.
    tm = result.timings
    assert tm.body_load_s > 0 and tm.mesh_s > 0 and tm.detect_s > 0
    assert tm.total_s >= tm.body_load_s + tm.mesh_s + tm.detect_s


def test_outputs_load_in_opensim_and_nothing_is_left_in_the_cwd(run_result):
    result, files, cwd = run_result
    model = osim.Model(str(files.osim))
    model.initSystem()
    markers = osim.TimeSeriesTableVec3(str(files.trc))
    coords = osim.TimeSeriesTable(str(files.mot))
    assert markers.getNumRows() == coords.getNumRows() == result.num_frames
    assert coords.getTableMetaDataString("inDegrees") == "yes"
    assert model.getCoordinateSet().getSize() == coords.getNumColumns()
    assert list(os.listdir(cwd)) == [], "the pipeline wrote into the working directory"
    assert not [p for p in files.trc.parent.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_opensim_ik_on_the_outputs_agrees_with_the_mot(run_result, tmp_path):
    result, files, _ = run_result
    mot = run_inverse_kinematics(files, tmp_path / "opensim_ik.mot")
    rot = _rotational(files.mot)
    comparison = compare_dofs(read_mot(files.mot, rot), read_mot(mot, rot))
    assert len(comparison.per_dof_deg) == len(OPENCAP_DOFS)
    assert comparison.mean_deg < 2.0, f"OpenSim IK differs from our .mot: {comparison.per_dof_deg}"


def test_opensim_inverse_dynamics_runs_on_the_mot(run_result, tmp_path):
    _, files, _ = run_result
    sto = run_inverse_dynamics(files.osim, files.mot, tmp_path / "id.sto")
    table = osim.TimeSeriesTable(str(sto))
    assert table.getNumRows() > 0
    labels = list(table.getColumnLabels())
    pelvis_ty = table.getDependentColumn("pelvis_ty_force").to_numpy().copy()
    assert "knee_angle_r_moment" in labels
    # Without ground reaction forces the pelvis residual carries the body weight: hundreds of newtons upwards.
    assert 200 < np.median(pelvis_ty) < 2000


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, bytes]] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            src = attrs.get("src", "")
            assert src.startswith("data:image/png;base64,"), "report images must be embedded"
            self.images.append((attrs.get("alt", ""), base64.b64decode(src.split(",", 1)[1])))
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data)


def test_report_is_self_contained_with_decodable_images(run_result):
    result, files, _ = run_result
    parser = _Images()
    parser.feed(files.html.read_text())
    assert "Keyframes" in parser.headings and "Arms" in parser.headings
    assert len(parser.images) >= 5
    for alt, png in parser.images:
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, alt
        assert image.std() > 5, f"image {alt!r} is blank"
    assert all(any(d in result.coordinate_names for d in (a + "_r",)) for a in ARM_DOFS)


def test_height_rescales_the_markers_to_that_stature(run_result):
    """With --height the subject's head markers sit where a person of that height has them."""
    from opensim_biopose.pipeline import SubjectConfig, estimated_stature, load_generic_model, subject_markers

    result, _, _ = run_result
    model = load_generic_model(SubjectConfig())
    for height in (1.60, 1.90):
        markers = subject_markers(result.mesh, model, SubjectConfig(height_m=height))
        assert estimated_stature(model, markers, result.config.scaling) == pytest.approx(height, rel=1e-6)
        head = [markers.names.index(n) for n in ("RFHD", "LFHD", "RBHD", "LBHD")]
        floor = np.nanpercentile(markers.xyz[..., 1], 1)
        # Head markers (around the temples) sit at ~88-96% of stature when standing or walking.
        ratio = (np.nanmedian(markers.xyz[:, head, 1]) - floor) / height
        assert 0.85 < ratio < 0.98, ratio


def test_neurik_start_then_refinement_on_the_scaled_model(run_result, tmp_path):
    """The NeurIK path with a 2-step (poor) checkpoint: refinement on the scaled model repairs its start."""
    import dataclasses

    from opensim_biopose import neurik
    from opensim_biopose.pipeline import (
        SubjectConfig,
        fit_scaled_model,
        load_generic_model,
        solve_neurik,
        subject_markers,
    )
    from opensim_biopose.scaling import measure_scale_factors

    result, _, _ = run_result
    model = load_generic_model(SubjectConfig())
    names = list(model.skeleton.marker_names)
    ckpt = tmp_path / "tiny.safetensors"
    neurik.train_neurik(model.skeleton, names, [model.weights[n] for n in names], None,
                        neurik.TrainConfig(steps=2, batch=2), ckpt, resume=False, progress=False)
    markers = subject_markers(result.mesh, model, SubjectConfig())
    factors = measure_scale_factors(model.skeleton, markers.names, markers.for_measuring)
    solver = SolverConfig(weights=ckpt, train=False)
    q0, how = solve_neurik(model, markers, result.times, solver)
    assert how == "NeurIK" and q0.shape == (result.num_frames, len(model.skeleton.coordinate_names))
    rms = {}
    for refine_on in (False, True):
        config = dataclasses.replace(result.config, solver=dataclasses.replace(solver, refine=refine_on))
        work = tmp_path / f"refine_{refine_on}"
        work.mkdir()
        rms[refine_on] = fit_scaled_model(model, factors, markers, q0, config, work).rms
    assert np.all(np.isfinite(rms[True]))
    assert np.nanmean(rms[True]) < 0.5 * np.nanmean(rms[False])
    assert np.nanmean(rms[True]) < 0.03


@pytest.mark.slow
def test_whole_video_full_resolution(tmp_path):
    """All 100 frames at full resolution with the default fit: OpenSim IK agrees with the .mot."""
    video = shared_path(*VIDEO)
    result = BioPose(PipelineConfig(solver=SolverConfig(train=False))).run(video)
    assert result.num_frames == 100 and (result.quality.detection_confidence > 0).all()
    files = result.write(tmp_path / "out")
    mot = run_inverse_kinematics(result, tmp_path / "opensim_ik.mot")
    rot = _rotational(files.mot)
    comparison = compare_dofs(read_mot(files.mot, rot), read_mot(mot, rot))
    assert comparison.mean_deg < 2.0, comparison.per_dof_deg
    assert np.nanmean(result.quality.marker_rms_m) < 0.03


def test_default_fits_every_other_frame_of_60fps_video_and_interpolates_between(run_result):
    """At the default <= 30 Hz a 60 fps video is fitted on every other frame (and the last); the
    frames between are interpolated: NaN residual, markers on the line between their fitted neighbours
    in time. (Why 30 Hz and not every frame: tests/test_pipeline_presets.py, on rendered truth.)"""
    from opensim_biopose.pipeline import fit_rows

    result, _, _ = run_result
    assert result.config.mesh.max_fit_rate_hz == 30.0
    rows = fit_rows(result.keypoints.times, result.keypoints.fps, result.config.mesh.max_fit_rate_hz)
    assert rows.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    quality = result.mesh.quality
    assert np.isnan(quality.reprojection_px[1::2]).all() and np.isfinite(quality.reprojection_px[::2]).all()
    assert np.nanmax(quality.normalized) < 0.05          # fitted frames: within 5% of the body's size
    t, m = result.times, result.mesh.markers
    alpha = ((t[1:-1:2] - t[0:-2:2]) / (t[2::2] - t[0:-2:2]))[:, None, None]
    between = (1 - alpha) * m[0:-2:2] + alpha * m[2::2]
    assert np.abs(m[1:-1:2] - between).max() < 1e-6     # metres
    # and the interpolated frames move: the subject walks ~1 m/s, a frame is 17 ms
    assert np.median(np.linalg.norm(m[1:-1:2] - m[0:-2:2], axis=-1)) > 1e-3
