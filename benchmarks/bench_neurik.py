"""NeurIK inference speed on the lab trials: the windowed path against the per-frame fast path.

Usage: python benchmarks/bench_neurik.py [--trials gait2354_walk1,rajagopal_walk] [--repeats 30]

For each trial with a committed checkpoint (tests/checkpoints/<trial>.safetensors, per-frame
networks), ``NeurIK.solve`` runs with ``inference="windows"`` (sliding windows, Hann blending,
batched torch decoding: the path every network has) and ``inference="frames"`` (features and
network on all frames at once, compiled decoding), alternating in one process on one thread;
each figure is the fastest of ``--repeats`` calls after a warm-up (the machine may be shared).
It prints the stages of NeurIKResult.stages (net: features + network [+ decoding and blending
for windows]; root: decoding + root coordinates), frames/s, the speed-up, and the largest
difference between the two answers (rotations in degrees, translations in metres).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import opensim as osim  # noqa: E402

from opensim_biopose.cli.ik_cmd import job_from_setup, prepare_trial  # noqa: E402
from opensim_biopose.io.ik_setup import read_ik_setup  # noqa: E402
from opensim_biopose.kinematics import Skeleton  # noqa: E402
from opensim_biopose.neurik import NeurIK  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "opensim" / "trials"
SETUPS = {"gait2354_walk1": "subject01_Setup_IK.xml", "rajagopal_walk": "ik_setup_walk.xml"}
INFERENCES = ("windows", "frames")


@dataclasses.dataclass(frozen=True)
class Timing:
    """Fastest call of one inference path (seconds) and its answer."""

    total_s: float
    net_s: float
    root_s: float
    q: torch.Tensor


def _trial(name: str):
    setup_path = DATA / name / SETUPS[name]
    checkpoint = ROOT / "tests" / "checkpoints" / f"{name}.safetensors"
    if not setup_path.exists() or not checkpoint.exists():
        print(f"[skip] {name}: {setup_path if not setup_path.exists() else checkpoint} is absent")
        return None
    setup = read_ik_setup(setup_path)
    sk = Skeleton.from_osim(setup.model_file, dtype=torch.float64)
    prepared = prepare_trial(job_from_setup(setup, out=Path("unused.mot")), sk)
    names = [sk.marker_names[i] for i in prepared.used]
    return sk, NeurIK.load(checkpoint, sk), names, prepared.xyz[:, prepared.used], prepared.times


def _time(nk: NeurIK, names, xyz, times, repeats: int) -> dict[str, Timing]:
    """Fastest of ``repeats`` calls per path, the paths alternating call by call."""
    for inference in INFERENCES:
        nk.solve(names, xyz, times, inference=inference)  # warm-up (numba loads its cached kernel)
    runs: dict[str, list] = {inference: [] for inference in INFERENCES}
    for _ in range(repeats):
        for inference in INFERENCES:
            runs[inference].append(nk.solve(names, xyz, times, inference=inference))
    out = {}
    for inference, results in runs.items():
        best = min(results, key=lambda r: r.stages.total_s)
        out[inference] = Timing(best.stages.total_s, best.stages.windows_s, best.stages.root_s, best.q)
    return out


def _gap(sk: Skeleton, a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    rotational = sk.coordinate_is_rotational.bool()
    d = a - b
    deg = torch.rad2deg(torch.atan2(torch.sin(d[:, rotational]), torch.cos(d[:, rotational]))).abs().max()
    return float(deg), float(d[:, ~rotational].abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default=",".join(SETUPS))
    parser.add_argument("--repeats", type=int, default=30, help="calls per path; the fastest counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    osim.Logger.removeFileSink()
    osim.Logger.setLevelString("error")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    print(f"{'trial':<16}{'frames':>7}{'path':>9}{'total ms':>10}{'net ms':>8}{'root ms':>9}{'frames/s':>10}"
          f"{'x windows':>10}{'max dq deg':>12}{'max dq m':>10}")
    for name in args.trials.split(","):
        loaded = _trial(name)
        if loaded is None:
            continue
        sk, nk, names, xyz, times = loaded
        timings = _time(nk, names, xyz, times, args.repeats)
        base = timings["windows"]
        for inference, t in timings.items():
            deg, metres = _gap(sk, t.q, base.q)
            print(f"{name:<16}{len(times):>7}{inference:>9}{1e3 * t.total_s:>10.2f}{1e3 * t.net_s:>8.2f}"
                  f"{1e3 * t.root_s:>9.2f}{len(times) / t.total_s:>10.0f}{base.total_s / t.total_s:>10.2f}"
                  f"{deg:>12.1e}{metres:>10.1e}")
    print("net: features + network (+ decoding and blending for windows); root: decoding (frames) and root "
          "coordinates; total: the whole NeurIK.solve. max dq: largest |difference| from the windows path's answer.")


if __name__ == "__main__":
    main()
