"""Unrefined NeurIK accuracy on the shared lab and synthetic trials, from the committed checkpoints.

Prints, per trial, the mean absolute difference (deg) over the 12 OpenCap rotational DoFs to
OpenSim 4.6 IK at accuracy 1e-6 (lab trials) or to the exact truth (synthetic LaiUhlrich2022
trials, clean and 10 mm noise; OpenSim IK itself is ~0.13 / ~2.04 deg from it there), the solve time and frames per second, and the checkpoint's
training steps / minutes. Run from the repository root:

    .venv/bin/python benchmarks/neurik_accuracy.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "opensim"
# name -> (folder under DATA, model, trial .trc, reference motion, committed checkpoint). The lab
# trials are compared with OpenSim IK at accuracy 1e-6, the synthetic ones with the exact truth.
CASES = {
    "gait2354_walk1": ("trials/gait2354_walk1", "subject01_simbody.osim", "subject01_walk1.trc",
                       "reference_ik_acc1e-6.mot", "gait2354_walk1.safetensors"),
    "rajagopal_walk": ("trials/rajagopal_walk", "subject_scaled_walk.osim", "motion_capture_walk.trc",
                       "reference_ik_acc1e-6.mot", "rajagopal_walk.safetensors"),
    "synthetic_clean": ("synthetic", "LaiUhlrich2022_with_markers.osim", "synthetic_clean.trc",
                        "synthetic_truth.mot", "lai_synthetic.safetensors"),
    "synthetic_noise10mm": ("synthetic", "LaiUhlrich2022_with_markers.osim", "synthetic_noise10mm.trc",
                            "synthetic_truth.mot", "lai_synthetic.safetensors"),
}


def main() -> int:
    import opensim as osim

    from opensim_biopose.kinematics import Skeleton
    from opensim_biopose.neurik import NeurIK
    from opensim_biopose.neurik.evaluate import evaluate_trial

    osim.Logger.removeFileSink()
    torch.set_num_threads(1)
    if not DATA.is_dir():
        print(f"shared OpenSim data not found at {DATA}; nothing to measure")
        return 1
    for trial, (sub, model, trc, reference, ckpt) in CASES.items():
        folder = DATA / sub
        path = ROOT / "tests" / "checkpoints" / ckpt
        sk = Skeleton.from_osim(folder / model)
        nk = NeurIK.load(path, sk)
        acc = evaluate_trial(nk, folder / trc, folder / reference)
        per = ", ".join(f"{k} {v:.2f}" for k, v in acc.per_dof_deg.items())
        print(f"{trial}: mean {acc.mean_deg:.3f} deg from {reference} over {len(acc.per_dof_deg)} DoFs, {acc.frames} frames, "
              f"solve {acc.solve_seconds:.2f} s; checkpoint {path.stat().st_size / 1e6:.1f} MB, "
              f"{nk.meta.steps} steps, {nk.meta.train_seconds / 60:.1f} min training, "
              f"target {nk.meta.synth.get('target', 'fk')}, window {nk.meta.config.window}")
        print(f"  per DoF (deg): {per}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
