"""Skeleton forward kinematics agrees with OpenSim's own kinematics on real models.

OpenSim's side: set every coordinate in a state, ``assemble`` where constraints exist,
``realizePosition``, read ``getTransformInGround`` of bodies and ``getLocationInGround`` of
markers. Random poses are drawn uniformly inside the coordinate ranges (fixed seed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, shared_path
from opensim_biopose.errors import InputError
from opensim_biopose.kinematics import Skeleton

torch.set_num_threads(1)

MAX_MARKER_ERROR_M = 1e-5  # the task's agreement target (float64)
MAX_ROTATION_ERROR = 1e-6  # rotation-matrix entries; ~0.06 millidegrees
# OpenSim's assembler moves consistently set coordinates by up to its accuracy (~1e-6); a wrong
# coupler function would move them by tenths of a radian.
MAX_ASSEMBLY_SHIFT = 1e-4
FLOAT32_MARKER_ERROR_M = 1e-5  # measured <= 2.7e-6 m over 2000 poses (float32 carries ~7 digits over ~2 m chains)

MODELS = {
    # name: (path parts under ../shared/data, poses in the default run)
    "gait2354": (("opensim", "models", "gait2354_simbody.osim"), 500),
    "Rajagopal2016": (("opensim", "models", "Rajagopal2016.osim"), 500),
    "Rajagopal2015_opensense": (("opensim", "models", "Rajagopal2015_opensense.osim"), 100),
    "gait2392": (("opensim", "models", "gait2392_thelen2003muscle.osim"), 100),
    "LaiUhlrich2022": (("opensim", "models", "LaiUhlrich2022.osim"), 100),
    "Pose2Sim_simple": (("opensim", "models", "Model_Pose2Sim_simple.osim"), 100),
    "gait2354_subject01": (("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim"), 100),
    "rajagopal_subject": (("opensim", "trials", "rajagopal_walk", "subject_scaled_walk.osim"), 100),
    "LaiUhlrich2022_markers": (("opensim", "synthetic", "LaiUhlrich2022_with_markers.osim"), 100),
}
DEFAULT_MODEL = ROOT / "osim_models" / "biopose_fullbody.osim"
SLOW_POSES = 500


@dataclass
class Reference:
    """OpenSim's forward kinematics for a batch of poses."""

    q: np.ndarray  # (B, n) coordinates after OpenSim's assembly
    body_rotations: np.ndarray  # (B, NB, 3, 3)
    body_positions: np.ndarray  # (B, NB, 3) metres
    markers: np.ndarray  # (B, M, 3) metres


def _vec(v) -> list[float]:
    return [v.get(0), v.get(1), v.get(2)]


def opensim_fk(model, sk: Skeleton, q_full: np.ndarray) -> Reference:
    """Run OpenSim's kinematics of ``model`` (an opensim.Model) at each row of ``q_full``."""
    state = model.initSystem()
    coords = [model.getCoordinateSet().get(n) for n in sk.coordinate_names]
    bodies = [model.getBodySet().get(n) for n in sk.body_names]
    markers = [model.getMarkerSet().get(n) for n in sk.marker_names]
    constrained = model.getConstraintSet().getSize() > 0
    out_q, out_r, out_p, out_m = [], [], [], []
    for row in q_full:
        for coord, value in zip(coords, row):
            coord.setValue(state, float(value), False)
        if constrained:
            model.assemble(state)
        model.realizePosition(state)
        out_q.append([c.getValue(state) for c in coords])
        transforms = [b.getTransformInGround(state) for b in bodies]
        out_r.append([[[t.R().get(i, j) for j in range(3)] for i in range(3)] for t in transforms])
        out_p.append([_vec(t.p()) for t in transforms])
        out_m.append([_vec(m.getLocationInGround(state)) for m in markers])
    m = len(markers)
    return Reference(
        q=np.array(out_q),
        body_rotations=np.array(out_r).reshape(len(q_full), -1, 3, 3),
        body_positions=np.array(out_p).reshape(len(q_full), -1, 3),
        markers=np.array(out_m).reshape(len(q_full), m, 3),
    )


def load_opensim(path: Path):
    import opensim as osim

    osim.Logger.setLevelString("error")
    return osim.Model(str(path))


def random_poses(sk: Skeleton, count: int, seed: int = 0) -> torch.Tensor:
    """(count, n) coordinates uniform in their ranges; locked ones at their defaults (OpenSim keeps them there)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = sk.coordinate_ranges.double().unbind(1)
    q = lo + (hi - lo) * torch.rand(count, len(lo), generator=gen, dtype=torch.float64)
    locked = sk.coordinate_locked
    return torch.where(locked, sk.coordinate_defaults.double(), q)


def assert_agrees(path: Path, poses: int) -> None:
    sk = Skeleton.from_osim(path)
    out = sk.forward(random_poses(sk, poses))
    ref = opensim_fk(load_opensim(path), sk, out.q_full.numpy())
    shift = np.abs(ref.q - out.q_full.numpy()).max()
    assert shift < MAX_ASSEMBLY_SHIFT, f"OpenSim's assembly moved coordinates by {shift}: dependents differ"
    if sk.coordinate_dependent.any():  # compare at exactly the pose OpenSim assembled
        out = sk.forward(torch.from_numpy(ref.q))
    position_error = np.abs(out.body_transforms[..., :3, 3].numpy() - ref.body_positions).max()
    rotation_error = np.abs(out.body_transforms[..., :3, :3].numpy() - ref.body_rotations).max()
    assert position_error < MAX_MARKER_ERROR_M, f"body origins differ by {position_error * 1e3:.4f} mm"
    assert rotation_error < MAX_ROTATION_ERROR
    if sk.marker_names:
        marker_error = np.linalg.norm(out.markers.numpy() - ref.markers, axis=-1).max()
        assert marker_error < MAX_MARKER_ERROR_M, f"markers differ by {marker_error * 1e3:.4f} mm"


@pytest.mark.parametrize("name", list(MODELS))
def test_agrees_with_opensim(name: str) -> None:
    parts, poses = MODELS[name]
    assert_agrees(shared_path(*parts), poses)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_agrees_with_opensim_full(name: str) -> None:
    parts, _ = MODELS[name]
    assert_agrees(shared_path(*parts), SLOW_POSES)


def test_default_model_agrees_with_opensim() -> None:
    if not DEFAULT_MODEL.exists():
        pytest.skip(f"{DEFAULT_MODEL} is not built yet (osim_models/build_default_model.py)")
    assert_agrees(DEFAULT_MODEL, SLOW_POSES)


def _scale_set(osim, names: list[str], factors: np.ndarray):
    scale_set = osim.ScaleSet()
    for name, s in zip(names, factors):
        scale = osim.Scale()
        scale.setSegmentName(name)
        scale.setScaleFactors(osim.Vec3(*map(float, s)))
        scale.setApply(True)
        scale_set.cloneAndAppend(scale)
    return scale_set


@pytest.mark.parametrize(
    "parts",
    [
        ("opensim", "models", "Rajagopal2016.osim"),
        ("opensim", "synthetic", "LaiUhlrich2022_with_markers.osim"),
        ("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim"),
    ],
    ids=["Rajagopal2016", "LaiUhlrich2022_markers", "gait2354_subject01"],
)
def test_scaling_agrees_with_opensim_model_scale(parts: tuple[str, ...]) -> None:
    """Per-body factors through ``scales`` == OpenSim's Model.scale(state, ScaleSet, True), then FK."""
    import opensim as osim

    path = shared_path(*parts)
    sk = Skeleton.from_osim(path)
    factors = np.random.default_rng(3).uniform(0.7, 1.3, size=(len(sk.body_names), 3))
    model = load_opensim(path)
    state = model.initSystem()
    model.scale(state, _scale_set(osim, sk.body_names, factors), True)
    out = sk.forward(random_poses(sk, 50, seed=4), scales=torch.tensor(factors))
    ref = opensim_fk(model, sk, out.q_full.numpy())
    position_error = np.abs(out.body_transforms[..., :3, 3].numpy() - ref.body_positions).max()
    marker_error = np.linalg.norm(out.markers.numpy() - ref.markers, axis=-1).max()
    assert position_error < MAX_MARKER_ERROR_M
    assert marker_error < MAX_MARKER_ERROR_M
    # Unit factors change nothing, and the scaled model is far from the unscaled one.
    same = sk.forward(out.q_full, scales=torch.ones(len(sk.body_names), 3))
    assert torch.allclose(same.markers, sk.forward(out.q_full).markers, atol=1e-12)
    assert (same.markers - out.markers).norm(dim=-1).max() > 0.01


def test_marker_offsets_override_moves_only_that_marker() -> None:
    sk = Skeleton.from_osim(shared_path("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim"))
    q = random_poses(sk, 4)
    base = sk.forward(q).markers
    offsets = sk.marker_offsets.clone()
    offsets[5] += torch.tensor([0.01, 0.0, 0.0], dtype=offsets.dtype)
    moved = sk.forward(q, marker_offsets=offsets).markers
    shift = (moved - base).norm(dim=-1)
    assert torch.allclose(shift[:, 5], torch.full((4,), 0.01, dtype=shift.dtype), atol=1e-12)
    assert shift[:, torch.arange(len(sk.marker_names)) != 5].max() < 1e-12


def test_gradcheck_q_scales_offsets() -> None:
    """Analytic gradients of markers and body transforms match finite differences (float64)."""
    sk = Skeleton.from_osim(shared_path("opensim", "synthetic", "LaiUhlrich2022_with_markers.osim"))
    q = random_poses(sk, 2, seed=5).requires_grad_(True)
    scales = (1.0 + 0.1 * torch.rand(len(sk.body_names), 3, dtype=torch.float64)).requires_grad_(True)
    offsets = sk.marker_offsets.clone().requires_grad_(True)

    def fk(q: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = sk.forward(q, scales=scales, marker_offsets=offsets)
        return out.markers, out.body_transforms

    assert torch.autograd.gradcheck(fk, (q, scales, offsets), eps=1e-6, atol=1e-6)


def test_dependent_coordinates_are_recomputed_and_get_no_gradient() -> None:
    sk = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    assert sk.coordinate_dependent.sum() == 2
    q = random_poses(sk, 3).requires_grad_(True)
    garbage = q.detach().clone()
    garbage[:, sk.coordinate_dependent] = 123.0
    a, b = sk.forward(q), sk.forward(garbage)
    assert torch.allclose(a.markers, b.markers, atol=1e-12)
    a.markers.sum().backward()
    assert q.grad is not None and torch.all(q.grad[:, sk.coordinate_dependent] == 0)
    assert q.grad[:, sk.coordinate_index("knee_angle_r")].abs().min() > 0


def test_float32_close_to_float64() -> None:
    sk64 = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    sk32 = sk64.to(dtype=torch.float32)
    assert sk64.dtype == torch.float64 and sk32.dtype == torch.float32
    assert sk32.marker_offsets.dtype == torch.float32 and sk32.coordinate_locked.dtype == torch.bool
    q = random_poses(sk64, 64)
    m64, m32 = sk64.forward(q).markers, sk32.forward(q.float()).markers
    assert m32.dtype == torch.float32
    assert (m64 - m32.double()).norm(dim=-1).max() < FLOAT32_MARKER_ERROR_M


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    sk = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    q = random_poses(sk, 32)
    gpu = sk.to(device="cuda").forward(q.cuda())
    assert gpu.markers.device.type == "cuda"
    assert (gpu.body_transforms.cpu() - sk.forward(q).body_transforms).abs().max() < 1e-10


def test_hash_follows_the_kinematics_not_the_dtype() -> None:
    """NeurIK checkpoints are keyed to model_hash: it must not depend on dtype or on how the
    code stores the model, and must change when a marker moves by a millimetre."""
    import dataclasses

    from opensim_biopose.kinematics.osim_reader import read_osim

    model = read_osim(DEFAULT_MODEL, None)
    sk = Skeleton(model)
    assert Skeleton(model, dtype=torch.float32).model_hash == sk.model_hash
    assert sk.to(dtype=torch.float32).model_hash == sk.model_hash

    def moved(dx: float) -> str:
        m0 = model.markers[0]
        marker = dataclasses.replace(m0, offset=(m0.offset[0] + dx, *m0.offset[1:]))
        return Skeleton(dataclasses.replace(model, markers=(marker, *model.markers[1:]))).model_hash

    assert moved(1e-3) != sk.model_hash
    assert moved(1e-12) == sk.model_hash    # float noise of a refactor


def test_names_indices_and_hash() -> None:
    path = shared_path("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim")
    sk = Skeleton.from_osim(path)
    again = Skeleton.from_osim(path)
    generic = Skeleton.from_osim(shared_path("opensim", "models", "gait2354_simbody.osim"))
    assert sk.model_hash == again.model_hash and sk.model_hash != generic.model_hash
    assert sk.coordinate_names[sk.coordinate_index("knee_angle_r")] == "knee_angle_r"
    idx = sk.marker_index([sk.marker_names[3], sk.marker_names[0]])
    assert idx.tolist() == [3, 0]
    assert sk.marker_offsets.shape == (len(sk.marker_names), 3)
    assert sk.marker_body_index.max() < len(sk.body_names)
    assert sk.independent_index.numel() == len(sk.coordinate_names)
    with pytest.raises(InputError, match="no coordinate 'elbow_flex'"):
        sk.coordinate_index("elbow_flex")
    with pytest.raises(InputError, match="NOPE"):
        sk.marker_index(["NOPE"])


def test_chunked_batches_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large CPU batches run in pieces: per-pose scales/offsets and gradients must follow their poses."""
    import opensim_biopose.kinematics.skeleton as skeleton_module

    sk = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    gen = torch.Generator().manual_seed(9)
    q = random_poses(sk, 20)
    scales = 0.8 + 0.4 * torch.rand(20, len(sk.body_names), 3, generator=gen, dtype=torch.float64)
    offsets = sk.marker_offsets + 0.01 * torch.rand(20, len(sk.marker_names), 3, generator=gen, dtype=torch.float64)

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qq = q.clone().requires_grad_(True)
        out = sk.forward(qq, scales=scales, marker_offsets=offsets)
        (out.markers.square().sum() + out.body_transforms.sum()).backward()
        return out.markers.detach(), out.body_transforms.detach(), qq.grad

    whole = run()
    assert all(t.is_contiguous() for t in whole[:2])  # callers .view() the outputs
    monkeypatch.setattr(skeleton_module, "CPU_CHUNK", 7)
    pieces = run()
    for a, b in zip(whole, pieces):
        assert torch.allclose(a, b, atol=1e-12)


def test_forward_mode_jvp_matches_central_differences() -> None:
    """neurik.refine may take Jacobians with torch.func.jvp: forward-mode AD must work too."""
    sk = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    q = random_poses(sk, 3, seed=11)
    tangent = torch.zeros_like(q)
    tangent[:, sk.coordinate_index("knee_angle_r")] = 1.0
    tangent[:, sk.coordinate_index("hip_flexion_l")] = 0.5
    _, dm = torch.func.jvp(lambda x: sk.forward(x).markers, (q,), (tangent,))
    eps = 1e-6
    fd = (sk.forward(q + eps * tangent).markers - sk.forward(q - eps * tangent).markers) / (2 * eps)
    assert (dm - fd).abs().max() < 1e-7  # metres per radian
    assert dm.abs().max() > 0.1


@pytest.mark.parametrize("name", ["Rajagopal2016", "gait2354_subject01"])
def test_body_transforms_of_some_bodies_equal_the_full_pass(name: str) -> None:
    """Skeleton.body_transforms evaluates only the joints on the paths to the bodies asked for;
    the transforms must be the full forward pass's (root body, a deep body, in any order)."""
    sk = Skeleton.from_osim(shared_path(*MODELS[name][0]))
    gen = torch.Generator().manual_seed(9)
    lo, hi = sk.coordinate_ranges.double().unbind(1)
    q = lo + (hi - lo) * torch.rand(6, sk.num_coordinates, generator=gen, dtype=torch.float64)
    full = sk.forward(q).body_transforms
    deep = sk.body_names.index("calcn_l")
    for bodies in ([0], [deep, 0], [deep]):
        part = sk.body_transforms(q, bodies)
        assert part.shape == (6, len(bodies), 4, 4)
        assert (part - full[:, bodies]).abs().max() < 1e-14
    with pytest.raises(InputError, match="no body"):
        sk.body_transforms(q, [len(sk.body_names)])
