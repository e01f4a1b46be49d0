"""NeurIK training, checkpoints and solving with a tiny network on the real gait2354 lab model."""
from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest
import torch

from conftest import shared_path
from opensim_biopose.errors import CheckpointError, InputError
from opensim_biopose.neurik import NeurIK, SynthConfig, TrainConfig, default_config, load_or_train, train_neurik
from opensim_biopose.neurik.checkpoint import read_metadata, state_path
from opensim_biopose.neurik.features import decode, window_features
from opensim_biopose.neurik.layout import build_layout
from opensim_biopose.neurik.model import build_neurik
from opensim_biopose.neurik.synth import SyntheticMotion
from opensim_biopose.neurik.train import LossWeights, compute_losses

torch.set_num_threads(1)

TINY = dict(d_model=32, frame_layers=1, temporal_layers=1, heads=2, window=8)
TINY_SYNTH = SynthConfig(window=8)


@pytest.fixture(scope="module")
def gait_sk():
    from opensim_biopose.kinematics import Skeleton

    return Skeleton.from_osim(shared_path("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim"))


@pytest.fixture(scope="module")
def raj_sk():
    from opensim_biopose.kinematics import Skeleton

    return Skeleton.from_osim(shared_path("opensim", "trials", "rajagopal_walk", "subject_scaled_walk.osim"))


@pytest.fixture(scope="module")
def markers(gait_sk):
    return list(gait_sk.marker_names)[:30]


def _train(sk, markers, path, steps, seed=0, resume=True):
    cfg = default_config(sk, markers, **TINY)
    tc = TrainConfig(steps=steps, batch=8, warmup=5, seed=seed, synth=TINY_SYNTH, save_every_s=1e9)
    return train_neurik(sk, markers, None, cfg, tc, path, resume=resume, progress=False)


def test_tiny_network_loss_drops(gait_sk, markers):
    sk = gait_sk.to(dtype=torch.float32)
    layout = build_layout(sk, markers)
    synth = SyntheticMotion(sk, layout, TINY_SYNTH)
    torch.manual_seed(0)
    net = build_neurik(default_config(sk, markers, **TINY))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    val = synth.sample(16, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)

    def loss(batch):
        inp = window_features(batch.markers, batch.visible, layout)
        dec = decode(net(inp.relative, inp.visible, inp.centroid), inp, layout)
        return compute_losses(batch, inp, dec, sk, layout, torch.ones(len(markers)), LossWeights())

    with torch.no_grad():
        before = loss(val)
    for _ in range(40):
        opt.zero_grad()
        loss(synth.sample(8, g)).total.backward()
        opt.step()
    with torch.no_grad():
        after = loss(val)
    assert after.total.item() < 0.7 * before.total.item()
    assert after.coord_error_deg < before.coord_error_deg


def test_checkpoint_round_trip_and_deterministic_resume(gait_sk, markers, tmp_path):
    straight = _train(gait_sk, markers, tmp_path / "a.safetensors", steps=6)
    _train(gait_sk, markers, tmp_path / "b.safetensors", steps=3)
    resumed = _train(gait_sk, markers, tmp_path / "b.safetensors", steps=6)
    assert straight.steps == resumed.steps == 6
    assert state_path(tmp_path / "b.safetensors").is_file()
    a = NeurIK.load(tmp_path / "a.safetensors", gait_sk)
    b = NeurIK.load(tmp_path / "b.safetensors", gait_sk)
    for (name, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.allclose(pa, pb, atol=1e-6), name
    meta = read_metadata(tmp_path / "a.safetensors")
    assert meta.marker_names == tuple(markers) and meta.model_hash == gait_sk.model_hash and meta.steps == 6
    # Same weights give the same answer after reloading.
    names = list(markers)
    q = torch.as_tensor(gait_sk.coordinate_defaults).unsqueeze(0).repeat(10, 1)
    xyz = gait_sk.forward(q).markers[:, gait_sk.marker_index(names)].numpy()
    times = np.arange(10) / 60.0
    r1, r2 = a.solve(names, xyz, times), NeurIK.load(tmp_path / "a.safetensors", gait_sk).solve(names, xyz, times)
    assert torch.equal(r1.q, r2.q)


def test_checkpoint_for_another_model_or_corrupt_file_is_refused(gait_sk, raj_sk, markers, tmp_path):
    path = tmp_path / "gait.safetensors"
    _train(gait_sk, markers, path, steps=1)
    with pytest.raises(CheckpointError, match="another model"):
        NeurIK.load(path, raj_sk)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        NeurIK.load(broken, gait_sk)
    with pytest.raises(CheckpointError, match="does not exist"):
        NeurIK.load(tmp_path / "missing.safetensors", gait_sk)


def test_solve_survives_missing_markers_and_empty_frames(gait_sk, markers, tmp_path, caplog):
    path = tmp_path / "gait.safetensors"
    _train(gait_sk, markers, path, steps=2)
    nk = NeurIK.load(path, gait_sk)
    t = 23
    q = torch.as_tensor(gait_sk.coordinate_defaults).unsqueeze(0).repeat(t, 1)
    q[:, gait_sk.coordinate_index("knee_angle_r")] = torch.linspace(-1.0, 0.0, t, dtype=q.dtype)
    xyz = gait_sk.forward(q).markers[:, gait_sk.marker_index(markers)].numpy().copy()
    xyz[3:6, :10] = np.nan          # some markers missing
    xyz[10] = np.nan                # a whole frame missing
    xyz[:, 5] = np.nan              # a marker missing throughout
    names = list(markers) + ["NotAMarker"]
    xyz = np.concatenate([xyz, np.zeros((t, 1, 3))], 1)
    with caplog.at_level(logging.WARNING):
        res = nk.solve(names, xyz, np.arange(t) / 100.0)
    assert "NotAMarker" in caplog.text
    assert res.q.shape == (t, gait_sk.num_coordinates) and bool(torch.isfinite(res.q).all())
    assert bool(res.empty_frames[10]) and int(res.empty_frames.sum()) == 1
    short = nk.solve(list(markers), xyz[:3, :-1], np.arange(3) / 100.0)   # shorter than a window
    assert short.q.shape[0] == 3
    with pytest.raises(InputError, match="none of the input markers"):
        nk.solve(["a", "b"], np.zeros((4, 2, 3)), np.arange(4) / 100.0)
    with pytest.raises(InputError):
        nk.solve(list(markers), np.full((4, len(markers), 3), np.nan), np.arange(4) / 100.0)


def test_load_or_train_without_training_names_the_command(gait_sk, markers, tmp_path):
    with pytest.raises(InputError, match="opensim-biopose train-neurik --model"):
        load_or_train(gait_sk, markers, None, train=False, cache_dir=tmp_path)


def test_cache_keeps_ik_and_fk_weights_apart(gait_sk, markers):
    """Weights that learned the generating pose must not answer a request for IK's answer."""
    from opensim_biopose.neurik.loader import cache_key
    from opensim_biopose.neurik.train import LAB_IK

    fk = cache_key(gait_sk, markers, None)
    assert cache_key(gait_sk, markers, None, LAB_IK) != fk
    assert cache_key(gait_sk, markers, None) == fk
