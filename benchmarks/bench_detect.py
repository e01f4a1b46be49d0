"""Video front end speed on the shared real video, against MediaPipe called directly.

Prints frames/s of: decoding alone, MediaPipe's own Pose loop (the reference, same
settings: complexity 1, video mode, segmentation off as our plugin's default), our detector plugin alone, and the
whole front end (decode + detect + person selection + gap filling + filtering), with the
ratio to the reference measured in the same run. Both build MediaPipe's graph once per
video inside the timing; the whole front end adds decoding, person selection, gap filling
and filtering.

    .venv/bin/python benchmarks/bench_detect.py [--video PATH] [--max-side PX] [--frames N] [--repeats R]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")

import cv2  # noqa: E402
import mediapipe  # noqa: E402,F401  (imported up front: its ~1 s import is not what we time)

from opensim_biopose.detect.frontend import DetectConfig, FrontEndTiming, detect_video  # noqa: E402
from opensim_biopose.io.video import VideoReader  # noqa: E402
from opensim_biopose.plugins import get_registry  # noqa: E402

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "pose2sim_singleperson_cam01.mp4"


def decode_fps(video: Path, max_side: int | None, frames: int | None) -> float:
    t0 = time.perf_counter()
    n = sum(1 for _ in VideoReader(video, max_side=max_side, max_frames=frames))
    return n / (time.perf_counter() - t0)


def reference_fps(video: Path, max_side: int | None, frames: int | None) -> tuple[float, int]:
    """MediaPipe's legacy Pose graph in a plain loop (graph built per video, as ours is):
    detector frames/s and frames with a person."""
    import mediapipe as mp

    spent, found, frames_seen = 0.0, 0, 0
    t0 = time.perf_counter()
    pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, enable_segmentation=False)
    spent += time.perf_counter() - t0
    for frame in VideoReader(video, max_side=max_side, max_frames=frames):
        t0 = time.perf_counter()
        result = pose.process(cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB))
        spent += time.perf_counter() - t0
        found += result.pose_landmarks is not None
        frames_seen += 1
    pose.close()
    return frames_seen / spent, found


def front_end(video: Path, max_side: int | None, frames: int | None) -> tuple[float, float, object]:
    """Our detector's frames/s, the whole front end's frames/s, and its KeypointSequence."""
    timing = FrontEndTiming()
    seq = detect_video(video, "mediapipe", DetectConfig(max_side=max_side, max_frames=frames), timing=timing)
    return timing.frames / timing.detector_s, timing.frames / timing.total_s, seq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--max-side", type=int, default=None, help="shrink frames (default: full resolution)")
    parser.add_argument("--frames", type=int, default=None, help="first N frames (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N interleaved runs (default 3)")
    args = parser.parse_args()
    if not args.video.exists():
        raise SystemExit(f"{args.video} is absent (third-party data kept in ../shared/data)")
    cv2.setNumThreads(1)

    get_registry()   # plugin discovery happens once per process, not per video
    dec = ref = det = whole = 0.0
    ref_found, seq = 0, None
    for i in range(args.repeats):   # interleaved, order alternating, best of N: the machine is shared
        dec = max(dec, decode_fps(args.video, args.max_side, args.frames))
        for which in (("ref", "ours") if i % 2 == 0 else ("ours", "ref")):
            if which == "ref":
                r, ref_found = reference_fps(args.video, args.max_side, args.frames)
                ref = max(ref, r)
            else:
                d, w, seq = front_end(args.video, args.max_side, args.frames)
                det, whole = max(det, d), max(whole, w)
    size = "full resolution" if args.max_side is None else f"max side {args.max_side} px"
    print(f"video {args.video.name}: {seq.num_frames} frames, best of {args.repeats}, {seq.image_size[0]}x{seq.image_size[1]}, {size}")
    print(f"decode only                      {dec:7.1f} frames/s")
    print(f"MediaPipe Pose loop (reference)  {ref:7.1f} frames/s   person in {ref_found}/{seq.num_frames}")
    print(f"detector plugin 'mediapipe'      {det:7.1f} frames/s   ratio to reference {det / ref:.2f}")
    print(f"whole front end (detect_video)   {whole:7.1f} frames/s   ratio to reference {whole / ref:.2f}"
          f"   person in {int(seq.detected.sum())}/{seq.num_frames} ({100 * seq.detection_rate:.0f}%)")


if __name__ == "__main__":
    main()
