"""``opensim-biopose train-neurik``: help, a two-step run on a real lab model, bad input."""
from __future__ import annotations

import pytest

from conftest import shared_path
from opensim_biopose.cli.main import main
from opensim_biopose.neurik.checkpoint import read_metadata


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train-neurik", "--help"])
    assert exc.value.code == 0
    assert "--setup" in capsys.readouterr().out


def test_two_steps_from_an_ik_setup(tmp_path, capsys):
    setup = shared_path("opensim", "trials", "gait2354_walk1", "subject01_Setup_IK.xml")
    model = shared_path("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim")
    out = tmp_path / "ckpt.safetensors"
    rc = main(["train-neurik", "--model", str(model), "--setup", str(setup), "--out", str(out),
               "--steps", "2", "--batch", "2", "--threads", "1", "--no-progress", "--subject-scaled"])
    assert rc == 0 and out.is_file()
    meta = read_metadata(out)
    assert meta.steps == 2 and "R.ASIS" in meta.marker_names and "R.Bicep" not in meta.marker_names  # not an IK task
    weights = dict(zip(meta.marker_names, meta.marker_weights))
    assert weights["R.ASIS"] == 10.0
    # A subject-scaled lab model: OpenSim IK's answer as the target, per-frame network, no scale factors.
    assert meta.synth["target"] == "ik" and meta.config.predict_scales is False
    assert meta.config.window == 1 and meta.config.temporal_layers == 0
    # Existing output without --resume is refused; with --resume it continues.
    assert main(["train-neurik", "--model", str(model), "--setup", str(setup), "--out", str(out), "--steps", "2"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train-neurik", "--model", str(model), "--setup", str(setup), "--out", str(out), "--steps", "3",
                 "--batch", "2", "--resume", "--no-progress", "--subject-scaled"]) == 0
    assert read_metadata(out).steps == 3


def test_unknown_marker_is_an_input_error(tmp_path, capsys):
    model = shared_path("opensim", "trials", "gait2354_walk1", "subject01_simbody.osim")
    rc = main(["train-neurik", "--model", str(model), "--markers", "R.ASIS,Nope", "--out", str(tmp_path / "x.safetensors"),
               "--steps", "1"])
    assert rc == 2 and "Nope" in capsys.readouterr().err
