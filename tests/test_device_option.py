"""``--device``: CUDA asked for on a machine without it is one clear error naming the option,
given before any stage runs and with no output written."""
from __future__ import annotations

import pytest
import torch

from conftest import shared_path
from opensim_biopose import BioPose
from opensim_biopose.cli.main import main
from opensim_biopose.errors import InputError

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


def test_run_with_cuda_and_no_gpu_is_an_input_error(tmp_path, capsys) -> None:
    video = shared_path("videos", "pose2sim_singleperson_cam01.mp4")
    out = tmp_path / "out"
    code = main(["run", str(video), "--out", str(out), "--device", "cuda", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "--device cpu" in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_python_api_with_cuda_and_no_gpu_is_an_input_error(tmp_path) -> None:
    video = shared_path("videos", "pose2sim_singleperson_cam01.mp4")
    with pytest.raises(InputError, match="--device cuda"):
        BioPose(device="cuda").run(video)
