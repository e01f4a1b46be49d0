"""Unrefined NeurIK accuracy on the shared lab trials, from the committed checkpoints.

Prints, per trial, the mean absolute difference (deg) to OpenSim 4.6 IK at accuracy 1e-6 over
the 12 OpenCap rotational DoFs, the solve time and frames per second, and the checkpoint's
training steps / minutes. Run from the repository root:

    .venv/bin/python benchmarks/neurik_accuracy.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TRIALS = ROOT.parent / "shared" / "data" / "opensim" / "trials"
# trial folder -> (model, trial .trc, committed checkpoint)
CASES = {
    "gait2354_walk1": ("subject01_simbody.osim", "subject01_walk1.trc", "gait2354_walk1.safetensors"),
    "rajagopal_walk": ("subject_scaled_walk.osim", "motion_capture_walk.trc", "rajagopal_walk.safetensors"),
}


def main() -> int:
    import opensim as osim

    from opensim_biopose.kinematics import Skeleton
    from opensim_biopose.neurik import NeurIK
    from opensim_biopose.neurik.evaluate import evaluate_trial

    osim.Logger.removeFileSink()
    torch.set_num_threads(1)
    if not TRIALS.is_dir():
        print(f"shared lab trials not found at {TRIALS}; nothing to measure")
        return 1
    for trial, (model, trc, ckpt) in CASES.items():
        folder = TRIALS / trial
        path = ROOT / "tests" / "checkpoints" / ckpt
        sk = Skeleton.from_osim(folder / model)
        nk = NeurIK.load(path, sk)
        acc = evaluate_trial(nk, folder / trc, folder / "reference_ik_acc1e-6.mot")
        per = ", ".join(f"{k} {v:.2f}" for k, v in acc.per_dof_deg.items())
        print(f"{trial}: mean {acc.mean_deg:.3f} deg over {len(acc.per_dof_deg)} DoFs, {acc.frames} frames, "
              f"solve {acc.solve_seconds:.2f} s; checkpoint {path.stat().st_size / 1e6:.1f} MB, "
              f"{nk.meta.steps} steps, {nk.meta.train_seconds / 60:.1f} min training, "
              f"target {nk.meta.synth.get('target', 'fk')}, window {nk.meta.config.window}")
        print(f"  per DoF (deg): {per}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
