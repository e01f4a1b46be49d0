"""Offscreen rendering: camera rigs, the generated clothes, frames with the person where the
geometry says, and MediaPipe finding the rendered person near the body's own projected joints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from opensim_biopose.errors import InputError
from opensim_biopose.render.cameras import VIEWS, camera_rig, look_at

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def anny():
    pytest.importorskip("anny")
    from opensim_biopose.body.anny_model import AnnyBody
    from opensim_biopose.body.markers import load_marker_set

    return AnnyBody(), load_marker_set("anny-pig53")


def _require_gl() -> None:
    from opensim_biopose.render.offscreen import gl_unavailable_reason

    reason = gl_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_camera_rig_is_level_at_its_azimuth_and_frames_the_subject(view: str) -> None:
    centre = np.array([0.3, 0.0, -0.2])
    rig = camera_rig(view, centre, subject_height_m=1.7, fill=0.7)
    offset = rig.position - centre
    azimuth = np.degrees(np.arctan2(offset[2], offset[0]))
    assert azimuth == pytest.approx(VIEWS[view], abs=1e-9)
    assert rig.position[1] == pytest.approx(0.85)                         # level, at half the stature
    feet, head = rig.project(np.array([[centre[0], 0.0, centre[2]], [centre[0], 1.7, centre[2]]]))
    assert feet[0] == pytest.approx(rig.width / 2, abs=1e-6)              # centred horizontally
    assert (feet[1] - head[1]) / rig.height == pytest.approx(0.7, rel=1e-6)
    assert head[1] < feet[1]                                              # image y points down


def test_camera_rig_rejects_bad_views_and_sizes() -> None:
    with pytest.raises(InputError, match="unknown camera view 'top'"):
        camera_rig("top", np.zeros(3))
    with pytest.raises(InputError, match="must be positive"):
        camera_rig("side", np.zeros(3), width=0)
    with pytest.raises(InputError, match="parallel"):
        look_at(np.zeros(3), np.array([0.0, 1.0, 0.0]))


def test_clothes_are_coloured_not_grey(anny) -> None:
    from opensim_biopose.render.scene import body_colours
    from opensim_biopose.render.texture import Palette

    body, _ = anny
    rgb = body_colours(body).astype(float)
    assert rgb.shape == (body.num_vertices, 3)
    chroma = rgb.max(axis=1) - rgb.min(axis=1)
    assert np.mean(chroma) > 50                          # a grey body (chroma ~0) is not detected at all
    assert np.mean(chroma < 25) < 0.3                    # neutral: shoes (fine toes), shirt stripes, a little hair
    palette = Palette()
    names = ("skin", "shirt", "trousers", "shoes")
    ref = np.array([getattr(palette, n) for n in names], float)
    nearest = np.argmin(np.linalg.norm(rgb[:, None] - ref[None], axis=-1), axis=1)
    shares = np.bincount(nearest, minlength=len(names)) / len(rgb)
    assert (shares > 0.05).all(), dict(zip(names, shares))


def test_rendered_person_is_where_the_camera_projects_the_mesh(anny) -> None:
    _require_gl()
    from opensim_biopose.render.clip import ClipSpec
    from opensim_biopose.render.motions import motion_pose, sample_adult_shapes
    from opensim_biopose.render.offscreen import OffscreenRenderer
    from opensim_biopose.render.scene import body_colours, pose_sequence
    from opensim_biopose.render.texture import FlatMesh, checker_floor

    body, markers = anny
    spec = ClipSpec(view="45deg")
    seq = pose_sequence(body, motion_pose("squat", body, torch.tensor([0.6])), sample_adult_shapes(body, 1)[0], markers)
    rig = camera_rig(spec.view, seq.centre, width=spec.width, height=spec.height, focal_px=spec.focal_px,
                     subject_height_m=seq.stature, fill=spec.fill)
    nothing = FlatMesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.zeros((3, 3), np.uint8))
    with OffscreenRenderer(rig, (checker_floor(seq.centre),)) as renderer:
        empty = renderer.render(nothing)
        frame = renderer.render(FlatMesh(seq.vertices[0], seq.faces, body_colours(body)))
    assert frame.shape == (spec.height, spec.width, 3) and frame.dtype == np.uint8
    changed = np.abs(frame.astype(int) - empty.astype(int)).sum(axis=2) > 30
    uv = rig.project(seq.vertices[0])
    (u0, v0), (u1, v1) = uv.min(axis=0), uv.max(axis=0)
    assert 0 < u0 < u1 < spec.width and 0 < v0 < v1 < spec.height          # the person is inside the image
    ys, xs = np.nonzero(changed)
    assert xs.min() >= u0 - 2 and xs.max() <= u1 + 2 and ys.min() >= v0 - 2 and ys.max() <= v1 + 2
    assert changed.sum() > 0.25 * (u1 - u0) * (v1 - v0)                    # a body, not a few stray pixels
    silhouette_height = (ys.max() - ys.min()) / spec.height
    assert silhouette_height == pytest.approx((v1 - v0) / spec.height, abs=0.01)


def test_mediapipe_finds_the_rendered_person_near_its_projected_joints(anny, tmp_path) -> None:
    _require_gl()
    pytest.importorskip("mediapipe")
    from opensim_biopose.detect import detect_video
    from opensim_biopose.render.clip import ClipSpec, render_clip
    from opensim_biopose.render.motions import sample_adult_shapes
    from opensim_biopose.render.scene import keypoints_ground
    from opensim_biopose.render.video import write_video

    body, markers = anny
    clip = render_clip(body, markers, sample_adult_shapes(body, 2, seed=3)[1],
                       ClipSpec(motion="gait", view="side", seconds=0.4, fps=30.0))
    video = tmp_path / "rendered.mp4"
    write_video(clip.frames, video, clip.spec.fps)
    seq = detect_video(video)
    assert seq.detected.all()
    joints = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
              "left_knee", "right_knee", "left_ankle", "right_ankle")
    cols = [seq.layout.keypoint_names.index(n) for n in joints]
    truth = clip.rig.project(keypoints_ground(body, clip.sequence, joints))
    err = np.linalg.norm(seq.xy[:, cols] - truth, axis=-1)                # (T, K) pixels
    # Measured on the demo clip: median 5.6 px, 95th percentile 14 px, for a ~460 px tall person
    # (and the body model's joint centres are not BlazePose's). A left/right swap would be ~30+ px.
    assert np.nanmedian(err) < 10.0
    assert np.nanpercentile(err, 90) < 25.0


def test_sit_to_stand_stool_carries_the_seated_body_and_stays_clear_when_standing(anny) -> None:
    from opensim_biopose.render.motions import motion_pose, sample_adult_shapes
    from opensim_biopose.render.scene import pose_sequence

    body, markers = anny
    times = torch.linspace(0.0, 3.2, 9)
    seq = pose_sequence(body, motion_pose("sit_to_stand", body, times), sample_adult_shapes(body, 1, seed=2)[0],
                        markers)
    (stool,) = seq.props
    lo, hi = stool.positions.min(axis=0), stool.positions.max(axis=0)
    assert lo[1] == 0.0 and 0.35 < hi[1] < 0.65                          # a seat at chair height

    def depth_inside(v: np.ndarray) -> np.ndarray:
        """How far each vertex is inside the box (m, <= 0 outside)."""
        return np.minimum(v - lo, hi - v).min(axis=-1)

    seated = depth_inside(seq.vertices[0])
    assert seated.max() < 0.02                                             # sits on it, not in it
    assert np.sort(seated)[-50:].min() > -0.01                             # ... and touches it
    assert depth_inside(seq.vertices[4]).max() < 0.0                       # standing: clear of it


def test_write_video_round_trips_and_never_leaves_a_partial_file(tmp_path) -> None:
    import cv2

    from opensim_biopose.render.video import write_video

    frames = [np.full((64, 48, 3), (40 * i, 100, 200 - 40 * i), np.uint8) for i in range(5)]
    path = tmp_path / "clip.mp4"
    assert write_video(frames, path, 30.0) == "mp4v"
    cap = cv2.VideoCapture(str(path))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
        ok, first = cap.read()
    finally:
        cap.release()
    assert ok and np.abs(first.astype(int) - frames[0]).mean() < 8          # lossy, but the same picture
    bad = tmp_path / "bad.mp4"
    with pytest.raises(InputError, match="no frames"):
        write_video([], bad, 30.0)
    with pytest.raises(InputError, match=r"\(64, 48, 3\) uint8"):
        write_video([frames[0], frames[1][:32]], bad, 30.0)
    assert list(tmp_path.iterdir()) == [path]                               # nothing half-written
