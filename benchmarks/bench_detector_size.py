"""Detector input size: what shrinking 1080p frames (``--max-side``) buys in speed and costs in keypoints.

For each longer side (full resolution, then the given sizes) prints, per frame: the resize, MediaPipe's
own time with and without its segmentation mask (the mask is warped back to the input size and
scanned, so it grows with the input), and the keypoints' distance from the full-resolution ones in
pixels of the full-resolution frame (median, mean and 95th percentile over the confidently seen
keypoints). Two videos: the shared real lab video (1080x1920) and an Anny gait clip rendered at
1080x1920 in the same run (its own exact framing). Same process, same frames, for every size.

    .venv/bin/python benchmarks/bench_detector_size.py [--sizes 1280 960 640 480] [--frames 60]
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

import cv2  # noqa: E402
import numpy as np  # noqa: E402

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "pose2sim_singleperson_cam01.mp4"


@dataclass(frozen=True)
class SizeRun:
    """One input size on one video: ms per frame and (T, 33, 3) keypoints (x, y full-res px, visibility)."""

    side: int | None
    resize_ms: float
    detector_ms: float
    detector_mask_ms: float
    keypoints: np.ndarray


def read_frames(video: Path, frames: int) -> list[np.ndarray]:
    from opensim_biopose.io.video import VideoReader

    with VideoReader(video, max_frames=frames) as reader:
        return [f.image for f in reader]


def run_size(images: list[np.ndarray], side: int | None) -> SizeRun:
    """MediaPipe (complexity 1, video mode) on ``images`` shrunk to ``side``, with and without its mask."""
    import mediapipe as mp

    times: dict[bool, float] = {}
    keypoints = []
    resize = 0.0
    for mask in (False, True):
        pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, enable_segmentation=mask)
        spent = 0.0
        for image in images:
            t0 = time.perf_counter()
            h, w = image.shape[:2]
            scale = 1.0 if side is None or max(h, w) <= side else side / max(h, w)
            small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            t1 = time.perf_counter()
            result = pose.process(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
            if mask and result.segmentation_mask is not None:
                np.nonzero(result.segmentation_mask > 0.5)        # what the plugin's mask box does
            spent += time.perf_counter() - t1
            if not mask:
                resize += t1 - t0
                sh, sw = small.shape[:2]
                keypoints.append(np.full((33, 3), np.nan) if result.pose_landmarks is None else np.array(
                    [[p.x * sw / scale, p.y * sh / scale, p.visibility] for p in result.pose_landmarks.landmark]))
        pose.close()
        times[mask] = 1000 * spent / len(images)
    return SizeRun(side, 1000 * resize / len(images), times[False], times[True], np.stack(keypoints))


def rendered_video(folder: Path, frames: int) -> Path:
    """An Anny gait clip rendered at 1080x1920 (portrait, ~38 deg field of view as the default clips)."""
    from opensim_biopose.body.anny_model import AnnyBody
    from opensim_biopose.body.markers import load_marker_set
    from opensim_biopose.render.clip import ClipSpec, render_clip
    from opensim_biopose.render.motions import sample_adult_shapes
    from opensim_biopose.render.video import write_video

    body = AnnyBody()
    spec = ClipSpec(motion="gait", view="45deg", seconds=frames / 30.0, width=1080, height=1920,
                    focal_px=700.0 * 1920 / 640)
    clip = render_clip(body, load_marker_set("anny-pig53"), sample_adult_shapes(body, 1, seed=3)[0], spec)
    path = folder / "gait_45deg_1080x1920.mp4"
    write_video(clip.frames, path, spec.fps)
    return path


def report(name: str, runs: list[SizeRun]) -> None:
    full = runs[0].keypoints
    size = np.nanmedian([np.ptp(k[:, 1]) for k in full if np.isfinite(k).all()])
    print(f"\n{name}: person ~{size:.0f} px tall at full resolution")
    print(f"{'input':>10s} {'resize':>8s} {'detector':>9s} {'with mask':>10s} {'median':>8s} {'mean':>7s} {'p95':>7s}")
    print(f"{'':>10s} {'ms':>8s} {'ms':>9s} {'ms':>10s} {'px':>8s} {'px':>7s} {'px':>7s}")
    for r in runs:
        seen = (full[..., 2] > 0.5) & (r.keypoints[..., 2] > 0.5)
        d = np.linalg.norm(r.keypoints[..., :2] - full[..., :2], axis=-1)[seen]
        label = "full" if r.side is None else f"{r.side} px"
        print(f"{label:>10s} {r.resize_ms:8.2f} {r.detector_ms:9.2f} {r.detector_mask_ms:10.2f} "
              f"{np.median(d):8.2f} {d.mean():7.2f} {np.percentile(d, 95):7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1280, 960, 640, 480])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--no-rendered", action="store_true", help="skip the rendered 1080x1920 clip")
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"video {args.video} is absent (the shared reference data lives in ../shared/data)")
    cv2.setNumThreads(1)
    videos = {f"real video {args.video.name}": args.video}
    with tempfile.TemporaryDirectory(prefix="bench_size_") as folder:
        if not args.no_rendered:
            videos["rendered Anny gait, 45 deg, 1080x1920"] = rendered_video(Path(folder), args.frames)
        for name, video in videos.items():
            images = read_frames(video, args.frames)
            run_size(images[:5], None)                            # MediaPipe's first-graph start-up, untimed
            report(name, [run_size(images, side) for side in (None, *args.sizes)])
    print("\nkeypoint distances: to the full-resolution keypoints, in full-resolution pixels, keypoints both "
          "runs see with visibility > 0.5")


if __name__ == "__main__":
    main()
