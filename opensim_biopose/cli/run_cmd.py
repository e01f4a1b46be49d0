"""``opensim-biopose run VIDEO``: the whole pipeline, video in, OpenSim files out.

Writes ``DIR/<stem>_markers.trc``, ``<stem>_ik.mot``, ``<stem>_scaled.osim`` and
``<stem>_report.html``, all or none; existing outputs are kept unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from opensim_biopose.detect.frontend import DEFAULT_DETECTOR

NAME = "run"
HELP = "video -> OpenSim: virtual markers (.trc), coordinates (.mot), scaled model (.osim), HTML report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, metavar="VIDEO", help="video of one person (mp4, mov, ...)")
    parser.add_argument("--out", type=Path, default=Path("biopose_out"), metavar="DIR",
                        help="output folder (default ./biopose_out)")
    parser.add_argument("--model", type=Path, metavar="OSIM",
                        help="OpenSim model with markers (default: the shipped full-body model); NeurIK is "
                             "trained for it on first use and cached")
    parser.add_argument("--marker-map", type=Path, metavar="JSON",
                        help='{"virtual marker": "model marker"} for models whose markers are named otherwise')
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="NAME",
                        help=f"detector or keypoint source (default {DEFAULT_DETECTOR}; see 'opensim-biopose plugins')")
    parser.add_argument("--body-model", default="anny", metavar="NAME", help="body model of the mesh fit (default anny)")
    parser.add_argument("--mesh-backend", default="keypoint-fit", metavar="NAME", help="mesh backend (default keypoint-fit)")
    parser.add_argument("--height", type=float, metavar="M", help="subject stature in metres (fixes body size)")
    parser.add_argument("--mass", type=float, metavar="KG", help="subject mass in kilograms (scaled model's mass)")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                        help="least-squares refinement on OpenSim's IK objective (default on)")
    parser.add_argument("--weights", type=Path, metavar="CKPT", help="NeurIK checkpoint to use")
    parser.add_argument("--no-train", action="store_true",
                        help="never train NeurIK; without weights, refine from the model's default pose")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device (default cpu)")
    parser.add_argument("--preset", default="accurate", metavar="NAME",
                        help="speed preset: accurate (default: the body fitted at <= 30 frames/s) or fast (at "
                             "<= 10 frames/s, for walking-speed movements), interpolated in between; --max-side, "
                             "--fit-rate and --fit-iterations override it")
    parser.add_argument("--max-frames", type=int, metavar="N", help="only the first N frames")
    parser.add_argument("--max-side", type=int, metavar="PX",
                        help="shrink frames to this longer side for the detector (default: full resolution)")
    parser.add_argument("--focal-px", type=float, metavar="PX", help="camera focal length in pixels, if known")
    parser.add_argument("--fit-iterations", type=int, metavar="N",
                        help="objective evaluations of the keypoint fit (default 300; fewer: faster, rougher)")
    parser.add_argument("--fit-rate", type=float, metavar="HZ",
                        help="fit the body at most HZ frames per second and interpolate between (default: the "
                             "preset's, 30 for accurate)")
    parser.add_argument("--threads", type=int, metavar="K",
                        help="CPU threads for torch (default: torch's choice; 1 is faster on a busy shared machine)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no per-stage progress lines")


def build_config(args: argparse.Namespace):
    """The :class:`PipelineConfig` from the command line (validated inputs)."""
    from opensim_biopose.detect.frontend import DetectConfig
    from opensim_biopose.errors import InputError
    from opensim_biopose.pipeline import (
        MeshStageConfig,
        PipelineConfig,
        ReportStageConfig,
        SolverConfig,
        SubjectConfig,
        get_preset,
        load_marker_map,
    )

    if args.weights is not None and not args.weights.is_file():
        raise InputError(f"NeurIK checkpoint {args.weights} does not exist")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames {args.max_frames}: give at least 1")
    for value, what, lo, hi in ((args.height, "--height", 0.5, 2.5), (args.mass, "--mass", 10.0, 300.0)):
        if value is not None and not lo <= value <= hi:
            raise InputError(f"{what} {value} is outside {lo}-{hi}; give metres / kilograms")
    if args.fit_rate is not None and args.fit_rate <= 0:
        raise InputError(f"--fit-rate {args.fit_rate}: give a positive rate in frames per second")
    if args.max_side is not None and args.max_side < 64:
        raise InputError(f"--max-side {args.max_side}: give at least 64 pixels")
    preset = get_preset(args.preset).overridden(max_side=args.max_side, max_fit_rate_hz=args.fit_rate)
    marker_map = load_marker_map(args.marker_map) if args.marker_map is not None else {}
    mesh_options: dict[str, object] = {}
    if args.fit_iterations is not None:
        if args.fit_iterations < 1:
            raise InputError(f"--fit-iterations {args.fit_iterations}: give at least 1")
        mesh_options = {"iterations": args.fit_iterations, "rigid_iterations": min(60, args.fit_iterations)}
    return preset.apply(PipelineConfig(
        detect=DetectConfig(detector=args.detector, max_frames=args.max_frames, focal_length_px=args.focal_px),
        mesh=MeshStageConfig(backend=args.mesh_backend, body_model=args.body_model, options=mesh_options),
        subject=SubjectConfig(model=args.model, marker_map=marker_map, height_m=args.height, mass_kg=args.mass),
        solver=SolverConfig(weights=args.weights, train=not args.no_train, refine=args.refine, device=args.device),
        report=ReportStageConfig(enabled=not args.no_report),
        progress=not args.quiet,
    ))


def run(args: argparse.Namespace) -> int:
    from opensim_biopose.errors import InputError
    from opensim_biopose.pipeline import check_outputs, output_files, run_pipeline

    if not args.video.exists():
        raise InputError(f"video {args.video} does not exist; check the path")
    config = build_config(args)
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads}: give at least 1")
        import torch

        torch.set_num_threads(args.threads)
    # Refuse before minutes of work, not after.
    check_outputs(output_files(args.out, args.video.stem, config.report.enabled), args.overwrite)
    result = run_pipeline(args.video, config)
    files = result.write(args.out, overwrite=args.overwrite)
    seconds = result.timings.total_s
    print(f"{result.num_frames} frames in {seconds:.1f} s ({result.num_frames / max(seconds, 1e-9):.1f} frames/s, "
          f"{result.solver}); mean marker error {1000 * float(np.nanmean(result.quality.marker_rms_m)):.1f} mm; "
          f"wrote {', '.join(str(p) for p in files.all())}")
    return 0
