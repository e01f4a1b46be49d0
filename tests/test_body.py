"""Body models: the Anny adapter (shared instance), the SMPL path on a synthetic SMPL-format file,
frames, keypoint correspondences and errors for absent model files."""
from __future__ import annotations

import math

import pytest
import torch

from opensim_biopose.body.base import VertexRegressor
from opensim_biopose.body.frames import ANNY_FRAME, SMPL_FRAME, to_opensim_ground
from opensim_biopose.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from opensim_biopose.body.smpl_model import SmplBody, SmplConfig
from opensim_biopose.body.synthetic_smpl import write_synthetic_smpl
from opensim_biopose.errors import InputError
from opensim_biopose.plugins import get_registry


@pytest.fixture(scope="session")
def anny_body():
    pytest.importorskip("anny")
    torch.set_num_threads(1)
    return get_registry().create("body_models", "anny")


@pytest.fixture(scope="module")
def smpl_body(tmp_path_factory):
    path = write_synthetic_smpl(tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.pkl")
    return SmplBody(SmplConfig(model_path=str(path)))


def test_frames_are_proper_rotations_and_map_anatomy() -> None:
    for frame, up, anterior, left in ((ANNY_FRAME, (0, 0, 1), (0, -1, 0), (1, 0, 0)),
                                      (SMPL_FRAME, (0, 1, 0), (0, 0, 1), (1, 0, 0))):
        r = frame.matrix()
        assert torch.allclose(r @ r.T, torch.eye(3)) and abs(torch.det(r).item() - 1) < 1e-6
        pts = to_opensim_ground(torch.tensor([up, anterior, left], dtype=torch.float32), frame)
        # OpenSim ground: Y up, X anterior, Z subject's right
        assert torch.allclose(pts, torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]]))


def test_axis_angle_round_trip_and_gradient_at_zero() -> None:
    v = torch.tensor([[0.3, -0.2, 0.9], [1e-9, 0.0, 0.0], [0.0, 2.5, 0.0]])
    m = axis_angle_to_matrix(v)
    assert torch.allclose(m @ m.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(matrix_to_axis_angle(m), v, atol=1e-5)
    z = torch.zeros(1, 3, requires_grad=True)
    axis_angle_to_matrix(z)[0, 1, 2].backward()
    assert torch.isfinite(z.grad).all() and abs(z.grad[0, 0].item() + 1.0) < 1e-6


def test_anny_forward_batched_differentiable(anny_body) -> None:
    body = anny_body
    assert body.num_vertices == 13718 and body.faces.shape[1] == 3
    pose = torch.zeros(3, len(body.pose_joint_names), 3, requires_grad=True)
    shape = body.neutral_shape[None].clone().requires_grad_(True)
    transl = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 0, 2.0]])
    out = body(pose, shape, transl)
    assert out.vertices.shape == (3, 13718, 3) and out.vertices.dtype == torch.float32
    # translation moves every vertex by exactly transl
    assert torch.allclose(out.vertices[1] - out.vertices[0], transl[1].expand(13718, 3), atol=1e-5)
    stature = (out.vertices[0, :, 2].max() - out.vertices[0, :, 2].min()).item()
    assert 1.5 < stature < 1.85, f"neutral Anny stature {stature:.3f} m"
    out.vertices.sum().backward()
    assert pose.grad.abs().sum() > 0 and shape.grad.abs().sum() > 0


def test_anny_knee_flexion_sign_and_subset_skinning(anny_body) -> None:
    body = anny_body
    reg = body.keypoint_regressor()
    knee = body.pose_joint_names.index("lowerleg01.L")
    pose = body.zero_pose(2)
    pose[1, knee, 0] = math.radians(90)
    out = body(pose, body.neutral_shape[None])
    kp = reg.positions(out.vertices)
    ankle, knee_pt = reg.names.index("left_ankle"), reg.names.index("left_knee")
    shank_rest = kp[0, ankle] - kp[0, knee_pt]
    shank_bent = kp[1, ankle] - kp[1, knee_pt]
    angle = math.degrees(math.acos(torch.nn.functional.cosine_similarity(shank_rest, shank_bent, dim=0)))
    assert 80 < angle < 100, f"90 deg knee flexion turned the shank by {angle:.1f} deg"
    assert shank_bent[1] > 0.3, "knee flexion must swing the shank backwards (+Y in Anny)"
    ids, compact = reg.compact()
    sub = body(pose, body.neutral_shape[None], vertex_ids=ids).vertices
    assert torch.allclose(compact.positions(sub), kp, atol=1e-5)


def test_anny_keypoints_cover_blazepose_and_coco(anny_body) -> None:
    from opensim_biopose.detect.layouts import BLAZEPOSE33, COCO17

    names = set(anny_body.keypoint_names)
    assert set(BLAZEPOSE33.keypoint_names) <= names and set(COCO17.keypoint_names) <= names
    kp = anny_body.keypoint_regressor().positions(
        anny_body(anny_body.zero_pose(1), anny_body.neutral_shape[None]).vertices)[0]
    reg = anny_body.keypoint_regressor()
    z = {n: kp[i, 2].item() for i, n in enumerate(reg.names)}
    assert z["left_ankle"] < z["left_knee"] < z["left_hip"] < z["left_shoulder"] < z["nose"]
    assert kp[reg.names.index("left_shoulder"), 0] > 0 > kp[reg.names.index("right_shoulder"), 0]


def test_vertex_regressor_rejects_bad_weights_and_indices() -> None:
    with pytest.raises(InputError, match="sum to 1"):
        VertexRegressor.from_rows({"a": ([0, 1], [0.5, 0.2])})
    reg = VertexRegressor.from_rows({"a": ([5], [1.0])})
    with pytest.raises(InputError, match="out of range"):
        reg.check_vertex_count(3, "test set")


def test_smpl_synthetic_file_forward_and_keypoints(smpl_body) -> None:
    body = smpl_body
    assert body.num_vertices == 24 * 8 and len(body.pose_joint_names) == 23
    # Only J_regressor keypoints exist on a non-standard topology.
    assert "left_knee" in body.keypoint_names and "nose" not in body.keypoint_names
    pose = body.zero_pose(2)
    pose[1, body.pose_joint_names.index("left_knee"), 0] = math.radians(90)
    out = body(pose, body.neutral_shape[None], torch.zeros(2, 3))
    kp = body.keypoint_regressor().positions(out.vertices)
    names = body.keypoint_regressor().names
    a, k = names.index("left_ankle"), names.index("left_knee")
    shank = kp[1, a] - kp[1, k]
    # SMPL frame: +Z anterior; knee flexion swings the shank backwards (-Z), ~0.4 m long
    assert shank[2] < -0.3 and abs(shank[1]) < 0.1, shank


def test_smpl_absent_files_say_where_to_put_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENSIM_BIOPOSE_BODY_MODELS", str(tmp_path))
    for name in ("smpl", "smplh", "smplx"):
        with pytest.raises(InputError) as err:
            get_registry().create("body_models", name)
        msg = str(err.value)
        assert str(tmp_path / name) in msg and "registration" in msg


def test_smpl_corrupt_file_is_input_error(tmp_path) -> None:
    bad = tmp_path / "SMPL_NEUTRAL.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="not a readable SMPL"):
        SmplBody(SmplConfig(model_path=str(bad)))


def test_registry_lists_body_models_and_marker_sets() -> None:
    reg = get_registry()
    assert {"anny", "smpl", "smplh", "smplx"} <= set(reg.entries["body_models"])
    assert "anny-pig53" in reg.entries["marker_sets"]
    assert "keypoint-fit" in reg.entries["mesh_backends"]


def test_anny_vertex_subset_matches_full_model_with_gradients(anny_body) -> None:
    """The fit's vertex subset (BlazePose keypoints' vertices, which follow about half of the bones)
    gives the full model's vertices, joints and shape/pose gradients, for a random pose and body."""
    body = anny_body
    ids, _ = body.keypoint_regressor().sparsified(32).compact()
    gen = torch.Generator().manual_seed(7)
    pose = (torch.rand(3, len(body.pose_joint_names), 3, generator=gen) - 0.5) * 1.2      # +-34 deg
    shape = torch.rand(1, len(body.shape_names), generator=gen)
    weights = torch.rand(3, ids.shape[0], 3, generator=gen)
    results = []
    for subset in (False, True):
        p, s = pose.clone().requires_grad_(True), shape.clone().requires_grad_(True)
        out = body(p, s, vertex_ids=ids if subset else None)
        verts = out.vertices if subset else out.vertices[:, ids]
        (verts * weights).sum().backward()
        results.append((verts.detach(), out.joints.detach(), p.grad, s.grad))
    (v_full, j_full, gp_full, gs_full), (v_sub, j_sub, gp_sub, gs_sub) = results
    assert (v_sub - v_full).abs().max() < 1e-5, "subset vertices differ from the full model's by > 0.01 mm"
    followed = ~torch.isnan(j_sub[0, :, 0])
    assert 10 < int(followed.sum()) < j_full.shape[1], "the subset should follow some, not all, bones"
    assert (j_sub[:, followed] - j_full[:, followed]).abs().max() < 1e-5
    for grad_sub, grad_full in ((gp_sub, gp_full), (gs_sub, gs_full)):
        assert (grad_sub - grad_full).abs().max() < 1e-4 * (1.0 + grad_full.abs().max())
