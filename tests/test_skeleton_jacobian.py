"""Skeleton's analytic marker Jacobian equals reverse-mode autodiff and central differences.

The forward pass is checked against OpenSim in test_skeleton.py and its autograd gradients by
gradcheck there, so ``torch.func.jacrev`` through ``Skeleton.forward`` is the reference here
(float64). Poses reach 10 % beyond the coordinate ranges, so spline extrapolation is covered.
Models without markers get one marker per body.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import ROOT, shared_path
from opensim_biopose.errors import InputError
from opensim_biopose.kinematics import Skeleton
from opensim_biopose.kinematics import skeleton as skeleton_module
from opensim_biopose.kinematics.osim_reader import MarkerSpec, read_osim

torch.set_num_threads(1)

# Relative to the largest entry (~1 m/rad): float64 round-off of two different formulas.
RELATIVE_TOLERANCE = 1e-10

MODELS = {
    "gait2354": ("opensim", "models", "gait2354_simbody.osim"),
    "Rajagopal2016": ("opensim", "models", "Rajagopal2016.osim"),
    "Rajagopal2015_opensense": ("opensim", "models", "Rajagopal2015_opensense.osim"),
    "gait2392": ("opensim", "models", "gait2392_thelen2003muscle.osim"),
    "LaiUhlrich2022": ("opensim", "models", "LaiUhlrich2022.osim"),
    "Pose2Sim_simple": ("opensim", "models", "Model_Pose2Sim_simple.osim"),
    "gait2354_subject01": ("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim"),
    "rajagopal_subject": ("opensim", "trials", "rajagopal_walk", "subject_scaled_walk.osim"),
    "LaiUhlrich2022_markers": ("opensim", "synthetic", "LaiUhlrich2022_with_markers.osim"),
}


def skeleton_with_markers(path) -> Skeleton:
    """The model's Skeleton; one marker per body (off the body origin) when it has none."""
    model = read_osim(path)
    if not model.markers:
        markers = tuple(
            MarkerSpec(f"m_{name}", b, (0.03, -0.05 + 0.01 * b, 0.02), True) for b, name in enumerate(model.body_names)
        )
        model = dataclasses.replace(model, markers=markers)
    return Skeleton(model)


def poses(sk: Skeleton, count: int, seed: int = 0) -> torch.Tensor:
    """(count, n) uniform over the coordinate ranges widened by 10 % each side."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = sk.coordinate_ranges.double().unbind(1)
    span = hi - lo
    return lo - 0.1 * span + 1.2 * span * torch.rand(count, len(lo), generator=gen, dtype=torch.float64)


def autograd_jacobians(sk: Skeleton, q: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M, 3, n) and (B, n, n) by jacrev through Skeleton.forward, one pose at a time."""
    def markers(x: torch.Tensor) -> torch.Tensor:
        return sk.forward(x[None], **kwargs).markers[0]

    def q_full(x: torch.Tensor) -> torch.Tensor:
        return sk.forward(x[None], **kwargs).q_full[0]

    return (
        torch.stack([torch.func.jacrev(markers)(row) for row in q]),
        torch.stack([torch.func.jacrev(q_full)(row) for row in q]),
    )


def assert_close(analytic: torch.Tensor, reference: torch.Tensor) -> None:
    scale = reference.abs().max()
    assert scale > 0.1  # the markers do move
    assert (analytic - reference).abs().max() <= RELATIVE_TOLERANCE * scale


@pytest.mark.parametrize("name", list(MODELS))
def test_marker_jacobian_equals_autograd(name: str) -> None:
    sk = skeleton_with_markers(shared_path(*MODELS[name]))
    q = poses(sk, 3)
    out = sk.jacobians(q)
    ref_markers, ref_coordinates = autograd_jacobians(sk, q)
    assert out.marker_jacobian.shape == (3, len(sk.marker_names), 3, sk.num_coordinates)
    assert torch.allclose(out.markers, sk.forward(q).markers, atol=1e-12)
    assert_close(out.marker_jacobian, ref_markers)
    assert torch.allclose(out.coordinate_jacobian, ref_coordinates, atol=1e-12)
    assert torch.all(out.marker_jacobian[..., sk.coordinate_dependent] == 0)


def test_default_model_marker_jacobian_equals_autograd() -> None:
    sk = Skeleton.from_osim(ROOT / "osim_models" / "biopose_fullbody.osim")
    q = poses(sk, 3, seed=1)
    markers, jac = sk.marker_jacobian(q)
    assert_close(jac, autograd_jacobians(sk, q)[0])


@pytest.mark.parametrize(
    "parts",
    [("opensim", "synthetic", "LaiUhlrich2022_with_markers.osim"), ("opensim", "models", "Rajagopal2016.osim")],
    ids=["LaiUhlrich2022_markers", "Rajagopal2016"],
)
def test_marker_jacobian_with_scales_and_offsets(parts: tuple[str, ...]) -> None:
    """Per-pose scale factors and marker offsets change the Jacobian as they change the pose."""
    sk = Skeleton.from_osim(shared_path(*parts))
    q = poses(sk, 3, seed=2)
    gen = torch.Generator().manual_seed(3)
    scales = 0.7 + 0.6 * torch.rand(3, len(sk.body_names), 3, generator=gen, dtype=torch.float64)
    offsets = sk.marker_offsets + 0.02 * torch.randn(3, *sk.marker_offsets.shape, generator=gen, dtype=torch.float64)
    _, jac = sk.marker_jacobian(q, scales=scales, marker_offsets=offsets)
    reference = torch.stack([
        torch.func.jacrev(lambda x: sk.forward(x[None], scales=scales[i:i + 1], marker_offsets=offsets[i:i + 1]).markers[0])(q[i])
        for i in range(3)
    ])
    assert_close(jac, reference)
    assert (jac - sk.marker_jacobian(q)[1]).abs().max() > 0.01  # scaling matters


def test_marker_jacobian_equals_central_differences() -> None:
    """Independent of autograd: (x(q + h e_j) - x(q - h e_j)) / 2h per coordinate."""
    sk = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    q = poses(sk, 2, seed=4)
    _, jac = sk.marker_jacobian(q)
    h = 1e-6
    n = sk.num_coordinates
    step = h * torch.eye(n, dtype=torch.float64)
    plus = sk.forward((q[:, None] + step).reshape(-1, n)).markers.view(2, n, -1, 3)
    minus = sk.forward((q[:, None] - step).reshape(-1, n)).markers.view(2, n, -1, 3)
    fd = ((plus - minus) / (2 * h)).permute(0, 2, 3, 1)  # (B, M, 3, n)
    fd[..., sk.coordinate_dependent] = 0.0  # forward() ignores dependent values
    assert (jac - fd).abs().max() < 1e-8  # metres per radian: the differences' truncation


def test_chunked_jacobian_matches_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    sk = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    q = poses(sk, 20, seed=5)
    whole = sk.jacobians(q)
    monkeypatch.setattr(skeleton_module, "JACOBIAN_CPU_CHUNK", 7)
    pieces = sk.jacobians(q)
    for field in ("markers", "marker_jacobian", "q_full", "coordinate_jacobian"):
        assert torch.allclose(getattr(whole, field), getattr(pieces, field), atol=1e-14)


def test_selected_columns_equal_those_of_the_full_jacobian() -> None:
    from opensim_biopose.errors import InputError

    sk = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    q = poses(sk, 4, seed=6)
    full = sk.jacobians(q)
    columns = [sk.coordinate_index(n) for n in ("knee_angle_r", "pelvis_tx", "hip_flexion_l")]
    part = sk.jacobians(q, columns=columns)
    assert part.marker_jacobian.shape == (4, len(sk.marker_names), 3, 3)
    assert torch.allclose(part.marker_jacobian, full.marker_jacobian[..., columns], atol=1e-14)
    assert torch.allclose(part.coordinate_jacobian, full.coordinate_jacobian[..., columns], atol=1e-14)
    dependent = int(torch.nonzero(sk.coordinate_dependent)[0])
    with pytest.raises(InputError, match="not independent"):
        sk.jacobians(q, columns=[dependent])


def dense_normal_equations(jac, targets: torch.Tensor, weights: torch.Tensor):
    """cost, J^T W e, J^T W J formed from the analytic Jacobian (B, M, 3, F)."""
    j = jac.marker_jacobian.flatten(1, 2)  # (B, 3M, F)
    w = weights.repeat_interleave(3, dim=1)  # (B, 3M)
    e = (jac.markers - targets).flatten(1)
    return (w * e * e).sum(1), (j.transpose(1, 2) @ (w * e)[..., None])[..., 0], j.transpose(1, 2) @ (j * w[..., None])


@pytest.mark.parametrize("name", ["gait2354_subject01", "rajagopal_subject", "Rajagopal2016", "LaiUhlrich2022_markers"])
def test_normal_equations_equal_the_jacobian_products(name: str) -> None:
    """Skeleton.normal_equations (marker moments, no Jacobian) against J^T W J and J^T W e from
    the analytic Jacobian, on the free coordinates, with absent markers (weight 0), per-frame
    weights, couplers (Rajagopal's knee) and per-pose scales."""
    sk = skeleton_with_markers(shared_path(*MODELS[name]))
    q = poses(sk, 5, seed=6)
    gen = torch.Generator().manual_seed(7)
    m = len(sk.marker_names)
    free = torch.nonzero(~sk.coordinate_locked & ~sk.coordinate_dependent).flatten()
    scales = 0.8 + 0.4 * torch.rand(5, len(sk.body_names), 3, generator=gen, dtype=torch.float64)
    # free columns: entries map onto columns directly (plus a coupled coordinate's extra
    # entries); all columns (dependent ones too, zero): the general scatter into columns
    for kwargs, columns in (({}, free), ({"scales": scales}, free), ({}, None)):
        targets = sk.forward(q, **kwargs).markers + 0.03 * torch.randn(5, m, 3, generator=gen, dtype=torch.float64)
        weights = torch.rand(5, m, generator=gen, dtype=torch.float64)
        weights[0, : m // 2] = 0.0
        out = sk.normal_equations(q, targets, weights, columns=columns, with_coordinate_jacobian=True, **kwargs)
        jac = sk.jacobians(q, columns=columns, **kwargs)
        cost, gradient, hessian = dense_normal_equations(jac, targets, weights)
        assert torch.equal(out.coordinate_jacobian, jac.coordinate_jacobian)
        assert sk.normal_equations(q, targets, weights, columns=columns, **kwargs).coordinate_jacobian is None
        assert torch.allclose(out.cost, cost, rtol=1e-12, atol=0)
        assert_close(out.gradient, gradient)
        assert_close(out.hessian, hessian)
        assert torch.allclose(out.markers, sk.forward(q, **kwargs).markers, atol=1e-12)


def test_normal_equations_reject_bad_targets() -> None:
    sk = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    q = poses(sk, 2)
    targets = sk.forward(q).markers
    weights = torch.ones(len(sk.marker_names), dtype=torch.float64)
    with pytest.raises(InputError, match="finite"):
        sk.normal_equations(q, targets.clone().fill_(float("nan")), weights)
    with pytest.raises(InputError, match="weights >= 0"):
        sk.normal_equations(q, targets, -weights)
    with pytest.raises(InputError, match="marker targets have shape"):
        sk.normal_equations(q, targets[:, :3], weights)
    checked = sk.marker_targets(targets, weights)  # checked once, as solvers do
    with pytest.raises(InputError, match="for 2 poses, q has 1"):
        sk.normal_equations(q[:1], checked)
    assert torch.equal(sk.normal_equations(q, checked).hessian, sk.normal_equations(q, targets, weights).hessian)


def test_chunked_normal_equations_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    sk = Skeleton.from_osim(shared_path("opensim", "models", "Rajagopal2016.osim"))
    q = poses(sk, 20, seed=8)
    targets = sk.forward(q).markers + 0.01
    weights = torch.ones(len(sk.marker_names), dtype=torch.float64)
    whole = sk.normal_equations(q, targets, weights, with_coordinate_jacobian=True)
    monkeypatch.setattr(skeleton_module, "CPU_CHUNK", 7)
    pieces = sk.normal_equations(q, targets, weights, with_coordinate_jacobian=True)
    for field in ("markers", "q_full", "coordinate_jacobian", "cost", "gradient", "hessian"):
        assert torch.allclose(getattr(whole, field), getattr(pieces, field), rtol=1e-12, atol=1e-14)
