"""End-to-end speed of ``opensim-biopose run`` on the shared real video, per speed preset, and where the time goes.

For each preset (``accurate``, the default of ``run``, and ``fast``) prints frames/s of the whole
pipeline and of each stage (detect, mesh fit, scaling, NeurIK, refinement + marker registration,
report), the share of each, and the throughput without the one-off costs (body model load, writing
the outputs + report), which a long video amortises. References measured in the same run: the
video's own frame rate (real time), issue 6's target (30 frames/s) and OpenSim's
InverseKinematicsTool on the produced .trc + scaled .osim (what NeurIK + refinement replace).
A short untimed warm-up run first pays the imports and first-call costs, so the presets' order
does not matter. Headline: the whole video (all frames).

``--cost-model`` also fits the body to 6 to 100 of the video's frames and fits a line to the fit's
time (seconds per video + milliseconds per fitted frame), then projects each preset's frames/s on a
long video of the same kind from the per-frame costs measured here (detect, fit, refinement).

``--loop N`` measures a long video instead of projecting one: the video played forwards, then
backwards, and so on, to N frames (the same person and motion without a jump at the turns;
re-encoded once at the source's size and rate, outside the timing).

    .venv/bin/python benchmarks/bench_pipeline.py [--video PATH] [--frames N] [--presets accurate fast]
                                                  [--max-side PX] [--fit-rate HZ] [--threads K] [--no-refine]
                                                  [--cost-model] [--loop N]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")

import torch  # noqa: E402

from opensim_biopose.api import run_inverse_kinematics  # noqa: E402
from opensim_biopose.detect.frontend import DetectConfig  # noqa: E402
from opensim_biopose.pipeline import (PRESETS, BioPoseResult, PipelineConfig, ReportStageConfig,  # noqa: E402
                                      SolverConfig, get_preset, run_pipeline)

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "pose2sim_singleperson_cam01.mp4"
TARGET_FPS = 30.0       # issue 6: >= 30 frames/s end to end on 1080p video, default detector


@dataclass(frozen=True)
class Measured:
    """One preset's run: the result, seconds to write the outputs + report, the whole run's
    seconds (pipeline + writing), and OpenSim IK's seconds on the written files."""

    preset: str
    config: PipelineConfig
    result: BioPoseResult
    write_s: float
    total_s: float
    opensim_ik_s: float

    @property
    def one_off_s(self) -> float:
        """Seconds a longer video does not multiply: the body model load and writing the outputs + report."""
        return self.result.timings.body_load_s + self.write_s

    @property
    def fps(self) -> float:
        return self.result.num_frames / self.total_s

    @property
    def steady_fps(self) -> float:
        return self.result.num_frames / (self.total_s - self.one_off_s)


def build_config(preset: str, args: argparse.Namespace) -> PipelineConfig:
    """The run's configuration: ``preset`` over the CLI's defaults, then explicit overrides."""
    chosen = get_preset(preset).overridden(max_side=args.max_side, max_fit_rate_hz=args.fit_rate)
    return chosen.apply(PipelineConfig(detect=DetectConfig(max_frames=args.frames),
                                       solver=SolverConfig(train=False, refine=not args.no_refine)))


def measure(video: Path, preset: str, config: PipelineConfig) -> Measured:
    t0 = time.perf_counter()
    result = run_pipeline(video, config)
    with tempfile.TemporaryDirectory() as folder:
        t1 = time.perf_counter()
        files = result.write(folder)
        write_s = time.perf_counter() - t1
        total_s = time.perf_counter() - t0
        t2 = time.perf_counter()
        run_inverse_kinematics(files, Path(folder) / "opensim_ik.mot")
        opensim_ik_s = time.perf_counter() - t2
    return Measured(preset, config, result, write_s, total_s, opensim_ik_s)


def warm_up(video: Path) -> tuple[float, BioPoseResult]:
    """An untimed 5-frame run without report: imports, MediaPipe's and OpenSim's first calls, and
    the body model's first build in this process (later runs reuse it). Seconds and its result."""
    t0 = time.perf_counter()
    config = get_preset("fast").apply(PipelineConfig(detect=DetectConfig(max_frames=5),
                                                     solver=SolverConfig(train=False),
                                                     report=ReportStageConfig(enabled=False)))
    result = run_pipeline(video, config)
    return time.perf_counter() - t0, result


def print_table(m: Measured) -> None:
    result, t, n = m.result, m.result.timings, m.result.num_frames
    w, h = result.keypoints.image_size
    side = m.config.detect.max_side
    rate = m.config.mesh.max_fit_rate_hz
    print(f"\npreset {m.preset}: {n} frames, {w}x{h}, {result.fps:g} fps; detector input "
          f"{'full resolution' if side is None else f'{side} px'}; body fitted "
          f"{'every frame' if rate is None else f'at <= {rate:g} Hz'}; fit options {m.config.mesh.options or 'default'}")
    rows = [("detect (decode + detector + cleaning)", t.detect_s), ("  of which the detector", t.detector_s),
            ("  of which waiting for decoded frames", t.decode_wait_s),
            ("body model load (once per process)", t.body_load_s),
            ("mesh fit (all frames)", t.mesh_s), ("scaling", t.scale_s),
            (f"NeurIK ({result.solver})", t.neurik_s), ("refinement + marker registration", t.refine_s),
            ("write outputs + report", m.write_s)]
    print(f"{'stage':40s} {'seconds':>9s} {'frames/s':>9s} {'share':>7s}")
    for name, sec in rows:
        share = "" if name.startswith("  ") else f"{100 * sec / m.total_s:6.1f}%"
        print(f"{name:40s} {sec:9.2f} {n / max(sec, 1e-9):9.1f} {share:>7s}")
    print(f"{'whole pipeline':40s} {m.total_s:9.2f} {m.fps:9.2f} {'100.0%':>7s}")
    print(f"{'  without the one-off costs':40s} {m.total_s - m.one_off_s:9.2f} {m.steady_fps:9.2f}   "
          "(body load, outputs + report)")
    ik_ours = t.neurik_s + t.refine_s
    print(f"OpenSim InverseKinematicsTool on the outputs: {m.opensim_ik_s:.2f} s ({n / m.opensim_ik_s:.1f} frames/s); "
          f"our NeurIK + refinement + registration / OpenSim IK time = {ik_ours / m.opensim_ik_s:.2f}")


@dataclass(frozen=True)
class FitCost:
    """The mesh fit's wall time as ``per_video_s + per_frame_s * fitted frames`` (least squares)."""

    per_video_s: float
    per_frame_s: float
    samples: tuple[tuple[int, float], ...]


def fit_cost(result: BioPoseResult, config: PipelineConfig) -> FitCost:
    """Time the mesh fit on evenly spread subsets of ``result``'s keypoints (best of two each)."""
    import numpy as np

    from opensim_biopose.pipeline import mesh_backend, take_frames

    backend = mesh_backend(config.mesh)
    total = result.keypoints.num_frames
    samples = []
    for count in sorted({min(n, total) for n in (6, 12, 25, 50, 100)}):
        rows = np.unique(np.linspace(0, total - 1, count).round().astype(int))
        subset = take_frames(result.keypoints, rows)
        best = np.inf
        for _ in range(2):
            t0 = time.perf_counter()
            backend.fit(subset)
            best = min(best, time.perf_counter() - t0)
        samples.append((len(rows), float(best)))
    frames, seconds = np.array(samples, float).T
    slope, intercept = np.polyfit(frames, seconds, 1)
    return FitCost(float(intercept), float(slope), tuple(samples))


def print_cost_model(cost: FitCost, runs: list[Measured]) -> None:
    """Per-frame costs and each preset's projected frames/s on a long video (fixed costs amortised)."""
    from opensim_biopose.pipeline import fit_rows

    print(f"\nmesh fit time = {cost.per_video_s:.2f} s per video + {1000 * cost.per_frame_s:.1f} ms per fitted frame "
          f"(measured: {', '.join(f'{n} frames {s:.2f} s' for n, s in cost.samples)})")
    print(f"{'preset':10s} {'detect':>8s} {'fitted':>7s} {'fit':>8s} {'rest':>8s} {'per frame':>10s} {'long video':>11s}")
    print(f"{'':10s} {'ms':>8s} {'share':>7s} {'ms':>8s} {'ms':>8s} {'ms':>10s} {'frames/s':>11s}")
    for m in runs:
        t, n = m.result.timings, m.result.num_frames
        share = len(fit_rows(m.result.keypoints.times, m.result.fps, m.config.mesh.max_fit_rate_hz)) / n
        detect, fit = 1000 * t.detect_s / n, 1000 * cost.per_frame_s * share
        rest = 1000 * (t.scale_s + t.neurik_s + t.refine_s) / n
        per_frame = detect + fit + rest
        print(f"{m.preset:10s} {detect:8.1f} {share:7.2f} {fit:8.1f} {rest:8.1f} {per_frame:10.1f} "
              f"{1000 / per_frame:11.1f}")
    print(f"(one core, stages in sequence; the target {TARGET_FPS:g} frames/s allows {1000 / TARGET_FPS:.1f} ms per frame)")


def ping_pong_video(video: Path, frames: int, folder: Path) -> Path:
    """``video`` played forwards, backwards, forwards ... to ``frames`` frames, written to ``folder``."""
    import cv2

    from opensim_biopose.render.video import write_video

    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS)
    source = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        source.append(image)
    capture.release()
    if len(source) < 2:
        raise SystemExit(f"video {video} has fewer than two readable frames")
    cycle = list(range(len(source))) + list(range(len(source) - 2, 0, -1))
    order = [cycle[i % len(cycle)] for i in range(frames)]
    path = folder / f"{video.stem}_loop{frames}.mp4"
    write_video((source[i] for i in order), path, fps)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--frames", type=int, default=None, help="first N frames (default: all)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--max-side", type=int, default=None, help="detector input size (over the presets)")
    parser.add_argument("--fit-rate", type=float, default=None, help="fit at most HZ frames/s (over the presets)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--no-refine", action="store_true")
    parser.add_argument("--cost-model", action="store_true",
                        help="also time the fit on 6-100 frames and project frames/s on a long video")
    parser.add_argument("--loop", type=int, default=None, metavar="N",
                        help="measure a long video: the video forwards and backwards in turn to N frames")
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"video {args.video} is absent (the shared reference data lives in ../shared/data)")
    torch.set_num_threads(args.threads)
    if args.loop:
        folder = tempfile.TemporaryDirectory()
        args.video = ping_pong_video(args.video, args.loop, Path(folder.name))
        print(f"long video: {args.video.name}, {args.loop} frames (forwards and backwards in turn)")
    warm_s, warm = warm_up(args.video)
    print(f"warm-up (imports, first calls; 5 frames, not counted): {warm_s:.1f} s; torch threads {args.threads}; "
          f"{os.cpu_count()} CPU cores")
    print(f"first body model build in a process (a CLI run pays it once, later runs reuse it): "
          f"{warm.timings.body_load_s:.2f} s")
    runs = [measure(args.video, p, build_config(p, args)) for p in args.presets]
    for m in runs:
        print_table(m)
    fps = runs[0].result.fps
    print(f"\n{'preset':10s} {'frames':>6s} {'frames/s':>9s} {'w/o one-off':>12s} {'x real time':>12s} {'x target':>9s}")
    for m in runs:
        print(f"{m.preset:10s} {m.result.num_frames:6d} {m.fps:9.2f} {m.steady_fps:12.2f} {m.fps / fps:12.3f} "
              f"{m.fps / TARGET_FPS:9.2f}")
    print(f"real time = {fps:g} frames/s; target = {TARGET_FPS:g} frames/s (issue 6)")
    if args.cost_model:
        print_cost_model(fit_cost(runs[0].result, runs[0].config), runs)


if __name__ == "__main__":
    main()
