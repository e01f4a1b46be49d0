"""Forward-kinematics speed: Skeleton.forward (batched torch) vs OpenSim's per-state loop.

    .venv/bin/python benchmarks/bench_skeleton.py [--batch 4096] [--opensim-poses 300] [--threads 1] [--skip-forward]

For the default model (osim_models/biopose_fullbody.osim) when it exists, and Rajagopal2016 /
the gait2354 subject model from ../shared/data (skipped with a message when absent), it
prints poses/s of
  * Skeleton.forward on CPU, batch 4096, float32 and float64 (markers + body transforms),
    with autograd enabled (inputs not requiring grad) and under torch.inference_mode,
  * the same with a backward pass (what IK refinement and training pay),
  * OpenSim's loop: set every coordinate in one State, realizePosition, read all markers
    (falls back to all body origins when the model has no markers),
measured in this run on the same threads, with the ratio Skeleton / OpenSim (target >= 1000x).
Also the largest marker difference between the two over the OpenSim poses (metres).

Then the marker Jacobian that IK refinement needs (float64, free coordinates): frames/s of
Skeleton.jacobians (analytic, one pass) against the finite differences it replaced (one
forward pass over (colour groups + 1) poses per frame, as neurik.refine builds them), at a
large and a small batch, and the refinement itself on the lab trials (gait2354_walk1,
rajagopal_walk, from the default pose, no coordinate tasks) with either Jacobian, repeats
interleaved so both see the same machine load; medians and the ratio analytic / finite
differences (> 1: the analytic Jacobian is faster). The Jacobian rows also give the speed of
the Gauss-Newton normal equations formed without a Jacobian (Skeleton.normal_equations), which
the batched torch loop uses ("analytic" in RefineConfig; "analytic_jacobian" is the Jacobian
route). The refinement rows add the compiled per-frame kernel refine uses by default on the CPU
(kinematics/native.py), and the model rows its per-pose forward kinematics.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opensim_biopose.kinematics import Skeleton  # noqa: E402
from opensim_biopose.kinematics import native  # noqa: E402
from opensim_biopose.neurik.refine import JACOBIANS, LINEARISERS, RefineConfig, _build_problem, refine  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "opensim"
MODELS = {
    "biopose_fullbody (default)": ROOT / "osim_models" / "biopose_fullbody.osim",
    "Rajagopal2016 + lab markers": SHARED / "trials" / "rajagopal_walk" / "subject_scaled_walk.osim",
    "gait2354 subject01": SHARED / "trials" / "gait2354_walk1" / "subject01_simbody.osim",
}


@dataclass(frozen=True)
class Timing:
    poses_per_s: float
    seconds_per_call: float


def time_calls(fn: Callable[[], object], poses_per_call: int, repeats: int) -> Timing:
    """Median wall time over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return Timing(poses_per_call / median, median)


def random_poses(sk: Skeleton, count: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    lo, hi = sk.coordinate_ranges.double().unbind(1)
    q = lo + (hi - lo) * torch.rand(count, len(lo), generator=gen, dtype=torch.float64)
    return torch.where(sk.coordinate_locked, sk.coordinate_defaults.double(), q)


def opensim_loop(path: Path, sk: Skeleton, q_full: np.ndarray) -> tuple[Timing, np.ndarray]:
    """OpenSim's FK, one state: set q (dependents set consistently), realizePosition, read points."""
    import opensim as osim

    osim.Logger.removeFileSink()
    osim.Logger.setLevelString("error")
    model = osim.Model(str(path))
    state = model.initSystem()
    coords = [model.getCoordinateSet().get(n) for n in sk.coordinate_names]
    if sk.marker_names:
        points = [model.getMarkerSet().get(n) for n in sk.marker_names]
        read = [p.getLocationInGround for p in points]
    else:
        bodies = [model.getBodySet().get(n) for n in sk.body_names]
        read = [b.getPositionInGround for b in bodies]
    out = np.empty((len(q_full), len(read), 3))
    start = time.perf_counter()
    for i, row in enumerate(q_full):
        for coord, value in zip(coords, row):
            coord.setValue(state, float(value), False)
        model.realizePosition(state)
        for k, r in enumerate(read):
            v = r(state)
            out[i, k] = (v.get(0), v.get(1), v.get(2))
    elapsed = time.perf_counter() - start
    return Timing(len(q_full) / elapsed, elapsed / len(q_full)), out


def bench_model(name: str, path: Path, batch: int, opensim_poses: int, repeats: int) -> None:
    if not path.exists():
        print(f"\n{name}: skipped ({path} is absent)")
        return
    sk64 = Skeleton.from_osim(path)
    sk32 = sk64.to(dtype=torch.float32)
    q = random_poses(sk64, batch)
    print(f"\n{name}: {len(sk64.coordinate_names)} coordinates, {len(sk64.body_names)} bodies, "
          f"{len(sk64.marker_names)} markers  ({path})")

    q_small = sk64.forward(q[:opensim_poses]).q_full
    reference, points = opensim_loop(path, sk64, q_small.numpy())
    ours = sk64.forward(q_small)
    ours_points = ours.markers if sk64.marker_names else ours.body_transforms[..., :3, 3]
    diff = float(np.abs(ours_points.numpy() - points).max())
    print(f"  OpenSim loop (set q, realizePosition, read {points.shape[1]} points): "
          f"{reference.poses_per_s:10.0f} poses/s   ({opensim_poses} poses; max |diff| vs Skeleton {diff:.1e} m)")

    for label, sk, qq in (("float32", sk32, q.float()), ("float64", sk64, q)):
        fwd = time_calls(lambda: sk.forward(qq), batch, repeats)
        q_grad = qq.clone().requires_grad_(True)

        def forward_backward() -> None:
            out = sk.forward(q_grad)
            (out.markers.sum() + out.body_transforms.sum()).backward()

        with torch.inference_mode():
            no_grad = time_calls(lambda: sk.forward(qq), batch, repeats)
        fb = time_calls(forward_backward, batch, max(2, repeats // 2))
        print(f"  Skeleton.forward {label}, batch {batch}: {fwd.poses_per_s:12.0f} poses/s  "
              f"ratio {fwd.poses_per_s / reference.poses_per_s:8.0f}x   "
              f"(inference_mode {no_grad.poses_per_s:10.0f}/s {no_grad.poses_per_s / reference.poses_per_s:6.0f}x; "
              f"forward+backward {fb.poses_per_s:10.0f}/s {fb.poses_per_s / reference.poses_per_s:6.0f}x)")
    if native.AVAILABLE and sk64.marker_names:
        model, q_np = sk64.native_model(), sk64.forward(q).q_full.numpy()
        compiled = time_calls(lambda: native.forward_markers(model, q_np), batch, repeats)
        print(f"  compiled per-pose forward (kinematics/native.py, float64, markers): {compiled.poses_per_s:12.0f} "
              f"poses/s  ratio {compiled.poses_per_s / reference.poses_per_s:8.0f}x")


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved (same load for all)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_jacobian(name: str, path: Path, repeats: int) -> None:
    """Residual Jacobian of refinement: analytic vs colour-grouped finite differences."""
    if not path.exists():
        return
    sk = Skeleton.from_osim(path)
    weights = torch.ones(len(sk.marker_names), dtype=torch.float64)
    for batch in (512, 8):
        q = random_poses(sk, batch, seed=1)
        markers = sk.forward(q).markers + 0.01
        problem = _build_problem(sk, markers, weights, None)
        x = q[:, problem.free]
        fns = {kind: (lambda kind=kind: JACOBIANS[kind](sk, q, x, problem, 1e-7)) for kind in ("analytic", "finite_difference")}
        fns["normal"] = lambda: LINEARISERS["analytic"](sk, q, x, problem, 1e-7)
        with torch.no_grad():
            median = interleaved(fns, repeats)
        groups = int(problem.group_of.max()) + 1
        print(f"  {name}, batch {batch:4d}: analytic {batch / median['analytic']:9.0f} frames/s, finite differences "
              f"({groups + 1} poses/frame) {batch / median['finite_difference']:9.0f} frames/s, "
              f"ratio {median['finite_difference'] / median['analytic']:5.2f}x; normal equations from marker moments "
              f"(what refine uses) {batch / median['normal']:9.0f} frames/s")


TRIALS = {"gait2354_walk1": "subject01_Setup_IK.xml", "rajagopal_walk": "ik_setup_walk.xml"}


def bench_refine(name: str, repeats: int) -> None:
    """refine() on a lab trial's IK setup (markers, weights, tasks, time range) from the default
    pose with each Jacobian."""
    from opensim_biopose.cli.ik_cmd import job_from_setup, prepare_trial
    from opensim_biopose.io.ik_setup import read_ik_setup

    setup_path = SHARED / "trials" / name / TRIALS[name]
    if not setup_path.exists():
        print(f"  refine {name}: skipped ({setup_path} is absent)")
        return
    setup = read_ik_setup(setup_path)
    sk = Skeleton.from_osim(setup.model_file)
    trial = prepare_trial(job_from_setup(setup), sk)
    frames = len(trial.times)
    q0 = sk.coordinate_defaults.double().expand(frames, -1)
    results = {}

    configs = {  # the compiled per-frame kernel (default), the batched torch loop, finite differences
        "native": RefineConfig(),
        "analytic": RefineConfig(kernel="torch"),
        "finite_difference": RefineConfig(jacobian="finite_difference"),
    }

    def run(kind: str) -> None:
        results[kind] = refine(sk, trial.xyz, trial.weights, q0, coordinate_tasks=trial.targets, config=configs[kind])

    median = interleaved({k: (lambda k=k: run(k)) for k in configs}, repeats)
    diff = float(torch.rad2deg((results["analytic"].q - results["finite_difference"].q).abs()).max())
    diff_native = float(torch.rad2deg((results["native"].q - results["analytic"].q).abs()).max())
    iters = {k: float(r.iterations.float().mean()) for k, r in results.items()}
    print(f"  refine {name} ({frames} frames): torch loop analytic {frames / median['analytic']:6.0f} frames/s, finite "
          f"differences {frames / median['finite_difference']:6.0f} frames/s, ratio "
          f"{median['finite_difference'] / median['analytic']:5.2f}x (iterations {iters['analytic']:.1f} / "
          f"{iters['finite_difference']:.1f}; max |q difference| {diff:.1e} deg); compiled per-frame kernel "
          f"{frames / median['native']:6.0f} frames/s ({median['analytic'] / median['native']:4.1f}x the torch loop, "
          f"max |q difference| {diff_native:.1e} deg)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--opensim-poses", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (OpenSim runs on one)")
    parser.add_argument("--skip-forward", action="store_true", help="only the Jacobian and refinement figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s)")
    if not args.skip_forward:
        for name, path in MODELS.items():
            bench_model(name, path, args.batch, args.opensim_poses, args.repeats)
    print("\nMarker Jacobian of refinement (float64, free coordinates), interleaved medians:")
    for name, path in MODELS.items():
        bench_jacobian(name, path, args.repeats)
    for name in TRIALS:
        bench_refine(name, max(3, args.repeats // 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
