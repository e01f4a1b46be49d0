"""Render the project's demo video and its ground-truth JSON, deterministically.

    python scripts/make_demo_video.py [--out-dir opensim_biopose/demo] [--check]

Writes ``biopose_demo.mp4`` (a sampled adult Anny body walking, seen from 45 deg, 480x640,
30 fps, 3.5 s) and ``biopose_demo.json`` (camera, phenotypes, anny-pig53 virtual markers in
OpenSim ground, mm). ``--check`` then runs the MediaPipe front end on the video and prints the
detection rate and the 2D error against the body's own projected keypoints.
Needs the ``anny`` and ``render`` extras and offscreen OpenGL (EGL).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opensim_biopose.body.anny_model import AnnyBody  # noqa: E402
from opensim_biopose.body.markers import load_marker_set  # noqa: E402
from opensim_biopose.demo import DEMO_SEED, DEMO_SPEC, METADATA_FORMAT  # noqa: E402
from opensim_biopose.io.atomic import write_text_atomic  # noqa: E402
from opensim_biopose.render.clip import RenderedClip, render_clip  # noqa: E402
from opensim_biopose.render.motions import sample_adult_shapes  # noqa: E402
from opensim_biopose.render.video import write_video  # noqa: E402


def metadata(clip: RenderedClip, shape_names: tuple[str, ...], video_name: str, codec: str, marker_set: str) -> dict:
    """JSON document of a rendered clip (see opensim_biopose.demo.load_truth)."""
    seq = clip.sequence
    return {
        "format": METADATA_FORMAT, "version": 1, "video": video_name, "codec": codec,
        "generator": "scripts/make_demo_video.py (opensim-biopose); body model anny 0.6.2 (CC0 assets)",
        "motion": clip.spec.motion, "view": clip.spec.view, "fps": clip.spec.fps,
        "frames": int(clip.frames.shape[0]), "camera": clip.rig.to_dict(),
        "body_model": "anny", "shape": {n: round(float(v), 6) for n, v in zip(shape_names, clip.shape)},
        "stature_m": round(clip.stature_m, 4),
        "marker_set": marker_set, "marker_names": list(seq.marker_names),
        "times": [round(float(t), 6) for t in clip.times],
        "markers_mm": np.round(seq.markers * 1000.0, 2).tolist(),
    }


def check_detection(video: Path, clip: RenderedClip, body: AnnyBody) -> None:
    """Print MediaPipe's detection rate and its 2D error against the projected true keypoints."""
    from opensim_biopose.detect import detect_video
    from opensim_biopose.render.scene import keypoints_ground

    seq = detect_video(video)
    names = [n for n in seq.layout.keypoint_names if n in body.keypoint_names and "ear" not in n
             and "eye" not in n and "mouth" not in n and n != "nose"]
    cols = [seq.layout.keypoint_names.index(n) for n in names]
    truth = clip.rig.project(keypoints_ground(body, clip.sequence, tuple(names)))
    err = np.linalg.norm(seq.xy[:, cols] - truth, axis=-1)
    print(f"detected in {int(seq.detected.sum())}/{seq.num_frames} frames; 2D error vs projected body keypoints: "
          f"median {np.nanmedian(err):.1f} px, mean {np.nanmean(err):.1f} px, 95th pct {np.nanpercentile(err, 95):.1f} px")
    for n, e in zip(names, np.nanmean(err, axis=0)):
        print(f"  {n:<18} {e:5.1f} px")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "opensim_biopose" / "demo")
    parser.add_argument("--check", action="store_true", help="run MediaPipe on the result and print its error")
    parser.add_argument("--marker-set", default="anny-pig53", help="virtual marker set of the truth (default: newest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    body = AnnyBody()
    shape = sample_adult_shapes(body, 1, seed=DEMO_SEED)[0]
    markers = load_marker_set(args.marker_set)
    pinned = f"{markers.name}@v{markers.version}"          # the truth names its marker-set version
    clip = render_clip(body, markers, shape, DEMO_SPEC, colour_seed=DEMO_SEED)
    video = args.out_dir / "biopose_demo.mp4"
    codec = write_video(clip.frames, video, DEMO_SPEC.fps)
    doc = metadata(clip, body.shape_names, video.name, codec, pinned)
    write_text_atomic(args.out_dir / "biopose_demo.json", json.dumps(doc, separators=(",", ":")))
    print(f"wrote {video} ({video.stat().st_size / 1e6:.2f} MB, {codec}, {clip.frames.shape[0]} frames) "
          f"and {video.with_suffix('.json').name}")
    if args.check:
        check_detection(video, clip, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
