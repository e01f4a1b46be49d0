"""Left/right symmetry of the default model's coordinates (and Rajagopal2016's, as the convention's reference).

Rajagopal2016's convention, which the default model follows: the same value of ``X_r`` and ``X_l``
gives mirrored motion. With the pelvis at identity, every right marker/body origin must then be
the mirror of its left twin through the sagittal plane of OpenSim ground (z -> -z: +Z is the
subject's right). A coordinate whose left axis had the wrong sign would move the left side the
"other way" and break the mirror by centimetres (see ``test_mirror_check_detects_a_sign_flip``).
"""
from __future__ import annotations

import math

import pytest
import torch

import osim_models
from conftest import shared_path
from opensim_biopose.kinematics import Skeleton

torch.set_num_threads(1)

MAX_MIRROR_ERROR_M = 1e-3  # the brief's target; exact mirroring measures ~1e-16 m (float64)
DRAWS_PER_PAIR = 8  # random values per coordinate pair (fixed seed), cheap: one batch per pair
WHOLE_POSE_DRAWS = 32  # random poses with every bilateral pair set at once
SIGN_FLIP_MIN_ERROR_M = 0.01  # a flipped hip_adduction_l must move the foot by centimetres


def _bilateral_pairs(names: list[str]) -> list[tuple[str, str]]:
    """(right, left) name pairs: ``X_r``/``X_l`` and ``RXXX``/``LXXX`` (mocap marker style)."""
    present = set(names)
    pairs = [(n, n[:-2] + "_l") for n in names if n.endswith("_r") and n[:-2] + "_l" in present]
    pairs += [(n, "L" + n[1:]) for n in names if n.startswith("R") and len(n) > 1 and "L" + n[1:] in present]
    pairs += [(n, "L." + n[2:]) for n in names if n.startswith("R.") and "L." + n[2:] in present]
    return pairs


def _mirror(points: torch.Tensor) -> torch.Tensor:
    """(..., 3) points in ground reflected through the sagittal plane (z -> -z)."""
    return points * points.new_tensor([1.0, 1.0, -1.0])


def _neutral_pose(sk: Skeleton, batch: int) -> torch.Tensor:
    """(batch, n) defaults with every non-bilateral coordinate (pelvis, lumbar, ...) at zero."""
    q = sk.coordinate_defaults.clone()
    for i, name in enumerate(sk.coordinate_names):
        if not name.endswith(("_r", "_l")):
            q[i] = 0.0
    return q.expand(batch, -1).clone()


def _uniform_in_range(sk: Skeleton, index: int, count: int, gen: torch.Generator) -> torch.Tensor:
    lo, hi = sk.coordinate_ranges[index]
    return lo + (hi - lo) * torch.rand(count, generator=gen, dtype=sk.dtype)


def _mirror_errors(sk: Skeleton, q: torch.Tensor, *, markers: bool = True) -> dict[str, float]:
    """Worst |R - mirror(L)| in metres over the batch, per right marker / right body origin."""
    out = sk.forward(q)
    errors: dict[str, float] = {}
    for right, left in _bilateral_pairs(sk.marker_names) if markers else []:
        r, l = sk.marker_names.index(right), sk.marker_names.index(left)
        errors[right] = float((out.markers[:, r] - _mirror(out.markers[:, l])).norm(dim=-1).max())
    origins = out.body_transforms[..., :3, 3]
    for right, left in _bilateral_pairs(sk.body_names):
        r, l = sk.body_names.index(right), sk.body_names.index(left)
        errors[right] = float((origins[:, r] - _mirror(origins[:, l])).norm(dim=-1).max())
    return errors


def _model_path(name: str):
    if name == "default":
        return osim_models.DEFAULT_MODEL
    return shared_path("opensim", "models", "Rajagopal2016.osim")


_SKELETONS: dict[str, Skeleton] = {}


def _skeleton(name: str) -> Skeleton:
    if name not in _SKELETONS:
        _SKELETONS[name] = Skeleton.from_osim(_model_path(name))
    return _SKELETONS[name]


# Parametrisation reads the in-repo default model once at collection.
DEFAULT_PAIRS = _bilateral_pairs(_skeleton("default").coordinate_names)


def test_default_model_has_the_expected_bilateral_pairs() -> None:
    sk = _skeleton("default")
    rights = {r for r, _ in DEFAULT_PAIRS}
    for needed in ("hip_flexion_r", "knee_angle_r", "ankle_angle_r", "subtalar_angle_r", "mtp_angle_r", "arm_flex_r", "wrist_dev_r"):
        assert needed in rights
    assert len(_bilateral_pairs(sk.marker_names)) >= 20  # the foot markers included
    for right, left in DEFAULT_PAIRS:  # same ranges both sides, or a fit could pin one side only
        i, j = sk.coordinate_index(right), sk.coordinate_index(left)
        assert torch.allclose(sk.coordinate_ranges[i], sk.coordinate_ranges[j]), right


@pytest.mark.parametrize("right,left", DEFAULT_PAIRS, ids=[r[:-2] for r, _ in DEFAULT_PAIRS])
def test_default_model_pair_mirrors(right: str, left: str) -> None:
    """One pair at a time: random in-range value on the right, the same on the left."""
    sk = _skeleton("default")
    gen = torch.Generator().manual_seed(sum(map(ord, right)))
    q = _neutral_pose(sk, DRAWS_PER_PAIR)
    values = _uniform_in_range(sk, sk.coordinate_index(right), DRAWS_PER_PAIR, gen)
    q[:, sk.coordinate_index(right)] = values
    q[:, sk.coordinate_index(left)] = values
    errors = _mirror_errors(sk, q)
    worst = max(errors, key=errors.get)
    assert errors[worst] < MAX_MIRROR_ERROR_M, f"{right}: {worst} off its mirror by {errors[worst] * 1000:.2f} mm"


# Rajagopal2016's markers are one subject's measured placements (e.g. RPSH vs LPSH differ by 8 mm
# in x), so only its body origins are compared; the default model's markers are built mirrored.
@pytest.mark.parametrize("model,markers", [("default", True), ("Rajagopal2016", False)])
def test_whole_pose_mirrors(model: str, markers: bool) -> None:
    """Every bilateral pair random at once (couplings between a side's joints included)."""
    sk = _skeleton(model)
    gen = torch.Generator().manual_seed(7)
    q = _neutral_pose(sk, WHOLE_POSE_DRAWS)
    for right, left in _bilateral_pairs(sk.coordinate_names):
        values = _uniform_in_range(sk, sk.coordinate_index(right), WHOLE_POSE_DRAWS, gen)
        q[:, sk.coordinate_index(right)] = values
        q[:, sk.coordinate_index(left)] = values
    errors = _mirror_errors(sk, q, markers=markers)
    assert len(errors) > 0
    worst = max(errors, key=errors.get)
    assert errors[worst] < MAX_MIRROR_ERROR_M, f"{model}: {worst} off its mirror by {errors[worst] * 1000:.2f} mm"


@pytest.mark.parametrize("coordinate", ["hip_adduction", "subtalar_angle"])
def test_mirror_check_detects_a_sign_flip(coordinate: str) -> None:
    """The check has teeth: the left value negated (a sign bug) breaks the mirror by centimetres."""
    sk = _skeleton("default")
    q = _neutral_pose(sk, 1)
    value = math.radians(20.0)
    q[:, sk.coordinate_index(coordinate + "_r")] = value
    q[:, sk.coordinate_index(coordinate + "_l")] = -value
    errors = _mirror_errors(sk, q)
    assert max(errors.values()) > SIGN_FLIP_MIN_ERROR_M
