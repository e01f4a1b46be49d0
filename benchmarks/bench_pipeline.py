"""End-to-end speed of ``opensim-biopose run`` on the shared real video, and where the time goes.

Prints frames/s of the whole pipeline and of each stage (detect, mesh fit, scaling, NeurIK,
refinement + marker registration, report), the share of each, and two references measured in the
same run: the video's own frame rate (real time) and OpenSim's InverseKinematicsTool on the
produced .trc + scaled .osim (what our NeurIK + refinement stages replace).

    .venv/bin/python benchmarks/bench_pipeline.py [--video PATH] [--frames N] [--max-side PX] [--threads K] [--fit-rate HZ]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")

import torch  # noqa: E402

from opensim_biopose.api import run_inverse_kinematics  # noqa: E402
from opensim_biopose.detect.frontend import DetectConfig  # noqa: E402
from opensim_biopose.pipeline import MeshStageConfig, PipelineConfig, SolverConfig, run_pipeline  # noqa: E402

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "pose2sim_singleperson_cam01.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--frames", type=int, default=None, help="first N frames (default: all)")
    parser.add_argument("--max-side", type=int, default=None, help="detector input size (default: full resolution)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--no-refine", action="store_true")
    parser.add_argument("--fit-rate", type=float, default=None, help="fit at most HZ frames/s (default: every frame)")
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"video {args.video} is absent (the shared reference data lives in ../shared/data)")
    torch.set_num_threads(args.threads)

    config = PipelineConfig(detect=DetectConfig(max_frames=args.frames, max_side=args.max_side),
                            mesh=MeshStageConfig(max_fit_rate_hz=args.fit_rate),
                            solver=SolverConfig(train=False, refine=not args.no_refine))
    t0 = time.perf_counter()
    result = run_pipeline(args.video, config)
    with tempfile.TemporaryDirectory() as folder:
        t1 = time.perf_counter()
        files = result.write(folder)
        write_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        run_inverse_kinematics(files, Path(folder) / "opensim_ik.mot")
        opensim_ik_s = time.perf_counter() - t2
    total = time.perf_counter() - t0 - opensim_ik_s
    n = result.num_frames
    w, h = result.keypoints.image_size
    t = result.timings
    rows = [("detect (decode + detector + cleaning)", t.detect_s), ("  of which the detector", t.detector_s),
            ("body model load (once per process)", t.body_load_s),
            ("mesh fit (all frames)", t.mesh_s), ("scaling", t.scale_s),
            (f"NeurIK ({result.solver})", t.neurik_s), ("refinement + marker registration", t.refine_s),
            ("write outputs + report", write_s)]
    print(f"video {args.video.name}: {n} frames, {w}x{h}, {result.fps:g} fps; detector input "
          f"{'full resolution' if args.max_side is None else f'{args.max_side} px'}; torch threads {args.threads}; "
          f"body fitted {'every frame' if args.fit_rate is None else f'at <= {args.fit_rate:g} Hz'}")
    print(f"{'stage':40s} {'seconds':>9s} {'frames/s':>9s} {'share':>7s}")
    for name, sec in rows:
        share = "" if name.startswith("  ") else f"{100 * sec / total:6.1f}%"
        print(f"{name:40s} {sec:9.2f} {n / max(sec, 1e-9):9.1f} {share:>7s}")
    print(f"{'whole pipeline':40s} {total:9.2f} {n / total:9.2f} {'100.0%':>7s}")
    steady = total - t.body_load_s
    print(f"{'  without the one-off body model load':40s} {steady:9.2f} {n / steady:9.2f}")
    print(f"real time = {result.fps:g} frames/s; pipeline / real time = {n / total / result.fps:.3f}")
    ik_ours = t.neurik_s + t.refine_s
    print(f"OpenSim InverseKinematicsTool on the outputs: {opensim_ik_s:.2f} s ({n / opensim_ik_s:.1f} frames/s); "
          f"our NeurIK + refinement + registration / OpenSim IK time = {ik_ours / opensim_ik_s:.2f}")


if __name__ == "__main__":
    main()
