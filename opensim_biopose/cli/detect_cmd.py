"""``opensim-biopose detect VIDEO --out FILE``: keypoints of one person, plus a contact sheet.

Exit codes: 0 ok; 2 bad input (missing/corrupt video, unknown detector, ...);
3 no person found in any frame (the keypoint file is still written, empty but valid).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from opensim_biopose.detect.frontend import DEFAULT_DETECTOR, DetectConfig, FrontEndTiming, detect_video
from opensim_biopose.detect.keypoint_file import save_keypoints
from opensim_biopose.detect.overlay import contact_sheet, write_contact_sheet
from opensim_biopose.detect.postprocess import SELECTION_RULES, PostprocessConfig
from opensim_biopose.errors import InputError

NAME = "detect"
HELP = "detect one person's keypoints in a video (or read another detector's output); write .npz/.json + overlay"

EXIT_NO_PERSON = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, metavar="VIDEO",
                        help="video file; for a keypoint source: its file or folder (OpenPose JSON, COCO JSON, .trc)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="keypoint output: .npz or .json (schema in docs/plugins.md)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="NAME",
                        help=f"detector or keypoint source (default {DEFAULT_DETECTOR}; "
                             "'opensim-biopose plugins' lists them)")
    parser.add_argument("--overlay", type=Path, metavar="IMAGE",
                        help="contact sheet image (default: <out stem>_overlay.png beside --out)")
    parser.add_argument("--no-overlay", action="store_true", help="do not write the contact sheet")
    parser.add_argument("--source-video", type=Path, metavar="VIDEO",
                        help="keypoint sources: the video they came from (fps, size, overlay frames)")
    parser.add_argument("--fps", type=float, help="keypoint sources without times: frame rate (default 30)")
    parser.add_argument("--max-side", type=int, metavar="PX",
                        help="shrink frames to this longer side before detection (speed)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="only the first N frames")
    parser.add_argument("--person", choices=sorted(SELECTION_RULES), default=PostprocessConfig.person,
                        help="which person to keep when several appear (default %(default)s)")
    parser.add_argument("--cutoff", type=float, default=PostprocessConfig.cutoff_hz, metavar="HZ",
                        help="low-pass cutoff, capped at 80%% of Nyquist (default %(default)s)")
    parser.add_argument("--no-filter", action="store_true", help="fill gaps but do not low-pass filter")
    parser.add_argument("--max-gap", type=float, default=PostprocessConfig.max_gap_s, metavar="S",
                        help="longest dropout filled by interpolation, seconds (default %(default)s)")
    parser.add_argument("--focal-px", type=float, metavar="PX",
                        help="camera focal length in full-resolution pixels, if known from a calibration")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def build_config(args: argparse.Namespace) -> DetectConfig:
    """The front end configuration from the command line."""
    options: dict[str, object] = {}
    if args.source_video is not None:
        options["video"] = str(args.source_video)
    if args.fps is not None:
        options["fps"] = args.fps
    post = replace(PostprocessConfig(), person=args.person, cutoff_hz=args.cutoff,
                   filter=not args.no_filter, max_gap_s=args.max_gap)
    return DetectConfig(detector=args.detector, detector_options=options, max_side=args.max_side,
                        max_frames=args.max_frames, progress=args.progress,
                        focal_length_px=args.focal_px, postprocess=post)


def run(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() not in (".npz", ".json"):
        raise InputError(f"--out {args.out}: use a .npz or .json file name")
    timing = FrontEndTiming()
    seq = detect_video(args.video, config=build_config(args), timing=timing)
    save_keypoints(args.out, seq)
    print(f"{args.out}: {seq.num_frames} frames, person in {seq.detected.sum()} "
          f"({100 * seq.detection_rate:.1f}%), {seq.layout.name}, {timing.total_s:.1f} s")
    if not args.no_overlay:
        overlay = args.overlay or args.out.with_name(f"{args.out.stem}_overlay.png")
        video = args.source_video or (args.video if args.video.is_file() else None)
        write_contact_sheet(overlay, contact_sheet(seq, video))
        print(f"{overlay}: overlay of sampled frames")
    if not seq.detected.any():
        print(f"no person found in any frame of {args.video} (empty keypoint file written)", file=sys.stderr)
        return EXIT_NO_PERSON
    return 0
