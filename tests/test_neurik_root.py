"""NeurIK's root-coordinate solve: the closed form for Euler-type floating bases must give the
Gauss-Newton answer on real models, and models without that shape must keep Gauss-Newton."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import opensim
import pytest
import torch

from conftest import ROOT, shared_path
from opensim_biopose.kinematics.osim_reader import read_osim
from opensim_biopose.kinematics.skeleton import Skeleton
from opensim_biopose.neurik.layout import ModelLayout, RootPose, body_pose, build_layout, solve_root_coordinates

opensim.Logger.removeFileSink()

_FRAMES = 48


def _model_paths() -> dict[str, Callable[[], Path]]:
    return {
        "gait2354": lambda: shared_path("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim"),
        "rajagopal": lambda: shared_path("opensim", "trials", "rajagopal_walk", "subject_scaled_walk.osim"),
        "default": lambda: ROOT / "osim_models" / "biopose_fullbody.osim",
    }


def _layout(sk: Skeleton) -> ModelLayout:
    return build_layout(sk, sk.marker_names[:6])


def _root_poses(sk: Skeleton, layout: ModelLayout, seed: int) -> tuple[torch.Tensor, RootPose]:
    """Coordinates with random root values (walking-like tilts, any heading, some headings
    within 1e-3 rad of +-180 deg) and the root body poses they produce."""
    g = torch.Generator().manual_seed(seed)
    q = sk.coordinate_defaults.double().repeat(_FRAMES, 1)
    root = layout.root.tolist()
    rot = [j for j in root if bool(sk.coordinate_is_rotational[j])]
    trans = [j for j in root if not bool(sk.coordinate_is_rotational[j])]
    q[:, rot] = (torch.rand(_FRAMES, len(rot), generator=g, dtype=torch.float64) * 2 - 1) * 0.6
    q[:, trans] = torch.randn(_FRAMES, len(trans), generator=g, dtype=torch.float64)
    yaw = layout.yaw_coordinate
    q[:, yaw] = (torch.rand(_FRAMES, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    q[: _FRAMES // 4, yaw] = math.pi - 1e-3 * torch.rand(_FRAMES // 4, generator=g, dtype=torch.float64)
    q[_FRAMES // 4: _FRAMES // 2, yaw] = -math.pi + 1e-3 * torch.rand(_FRAMES // 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        pose = body_pose(sk.body_transforms(q, [layout.root_body]), 0)
    return q, pose


def _angle_gap(a: torch.Tensor, b: torch.Tensor, rotational: torch.Tensor) -> torch.Tensor:
    d = a - b
    d[:, rotational] = torch.atan2(torch.sin(d[:, rotational]), torch.cos(d[:, rotational]))
    return d.abs()


@pytest.mark.parametrize("name", ["gait2354", "rajagopal", "default"])
def test_closed_form_matches_gauss_newton(name):
    sk = Skeleton.from_osim(_model_paths()[name]())
    layout = _layout(sk)
    assert layout.root_closed_form is not None, f"{name}: its floating base should have the closed form"
    q, pose = _root_poses(sk, layout, seed=3)
    start = q.clone()
    start[:, layout.root] = 0.0
    closed = solve_root_coordinates(sk, start, layout, pose)
    newton = solve_root_coordinates(sk, start, dataclasses.replace(layout, root_closed_form=None), pose)
    assert float(_angle_gap(closed, newton, layout.rotational).max()) < 1e-8
    assert float(_angle_gap(closed, q, layout.rotational).max()) < 1e-8   # the poses' own coordinates
    others = torch.ones(q.shape[1], dtype=torch.bool)
    others[layout.root] = False
    assert torch.equal(closed[:, others], start[:, others])                 # non-root entries kept
    rot = layout.root[layout.root_rotational]
    assert bool((closed[:, rot] > -math.pi).all() and (closed[:, rot] <= math.pi).all())
    with torch.no_grad():
        back = body_pose(sk.body_transforms(closed, [layout.root_body]), 0)
    assert float((back.rotation - pose.rotation).abs().max()) < 1e-9
    assert float((back.position - pose.position).abs().max()) * 1000 < 1e-6  # mm


def _skewed_root(path) -> Skeleton:
    """gait2354 with its pelvis tilt axis leaning 30 deg towards the list axis: still a floating
    base, but its rotation axes are no longer orthogonal."""
    model = read_osim(path)
    joints = list(model.joints)
    j = next(i for i, joint in enumerate(joints) if joint.parent == -1)
    rotations = list(joints[j].rotations)
    lean = math.radians(30)
    x, y, z = rotations[0].axis
    tilted = (x + math.sin(lean), y, z * math.cos(lean))
    norm = math.sqrt(sum(c * c for c in tilted))
    rotations[0] = dataclasses.replace(rotations[0], axis=tuple(c / norm for c in tilted))
    joints[j] = dataclasses.replace(joints[j], rotations=tuple(rotations))
    return Skeleton(dataclasses.replace(model, joints=tuple(joints)))


def test_non_orthogonal_floating_base_keeps_gauss_newton():
    sk = _skewed_root(shared_path("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim"))
    layout = _layout(sk)
    assert layout.has_root
    assert layout.root_closed_form is None
    q, pose = _root_poses(sk, layout, seed=5)
    q[:, layout.root[layout.root_rotational]] *= 0.3  # near the Gauss-Newton start: one basin
    with torch.no_grad():
        pose = body_pose(sk.body_transforms(q, [layout.root_body]), 0)
    solved = solve_root_coordinates(sk, q.clone(), layout, pose)
    with torch.no_grad():
        back = body_pose(sk.body_transforms(solved, [layout.root_body]), 0)
    assert float((back.rotation - pose.rotation).abs().max()) < 1e-6
    assert float((back.position - pose.position).abs().max()) * 1000 < 1e-3  # mm
