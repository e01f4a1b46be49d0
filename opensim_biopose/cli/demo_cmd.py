"""``opensim-biopose demo``: the whole pipeline on the project's own rendered demo video.

The video (``opensim_biopose/demo/biopose_demo.mp4``: an Anny body walking, 480x640, 30 fps)
ships with its camera and exact virtual-marker truth (``biopose_demo.json``); the demo runs
``run`` on it, writes the four outputs, and compares the recovered virtual markers with the truth
after a similarity alignment (monocular video fixes position, heading and size only up to one).
``--model-only`` keeps the earlier behaviour: build the default model and summarize it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

NAME = "demo"
HELP = "run the pipeline on the shipped demo video (or --model-only: build and summarize the default model)"

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"
DEMO_VIDEO = DEMO_DIR / "biopose_demo.mp4"
DEMO_TRUTH = DEMO_DIR / "biopose_demo.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("biopose_demo"), metavar="DIR",
                        help="output folder (default ./biopose_demo)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="only the first N frames of the video")
    parser.add_argument("--model-only", action="store_true", help="only build the default model and summarize it")


def _model_only(out: Path) -> int:
    import opensim as osim

    from osim_models.build_default_model import MODEL_NAME, write_ik_setup, write_model
    from osim_models.summary import summarize

    osim.Logger.removeFileSink()
    model_path = write_model(out / f"{MODEL_NAME}.osim")
    setup_path = write_ik_setup(out / f"{MODEL_NAME}_ik_setup.xml")
    model = osim.Model(str(model_path))  # loaded back from disk: what the file says, not what was built
    summary = summarize(model)
    print(f"wrote {model_path} and {setup_path}")
    print("\n".join(summary.lines()))
    print(f"markers ({len(summary.markers)}): " + " ".join(summary.markers))
    return 0


def similarity_align(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """Points (N, 3) ``source`` moved onto ``target`` by the best rotation, uniform scale and
    translation (Umeyama 1991, least squares); returns the moved points and the scale."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    u, d, vt = np.linalg.svd(t.T @ s / len(s))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / (s ** 2).sum(1).mean())
    return scale * s @ rot.T + mu_t, scale


def compare_with_truth(names: tuple[str, ...], xyz: np.ndarray, truth_path: Path) -> tuple[float, float] | None:
    """Mean marker distance (mm) to the rendered truth after a similarity alignment, and its scale."""
    doc = json.loads(truth_path.read_text())
    truth = np.asarray(doc["markers_mm"], float) / 1000.0
    t = min(len(truth), len(xyz))
    index = {n: i for i, n in enumerate(doc["marker_names"])}
    shared = [i for i, n in enumerate(names) if n in index]
    if not shared:
        return None
    ours = xyz[:t, shared].reshape(-1, 3)
    ref = truth[:t, [index[names[i]] for i in shared]].reshape(-1, 3)
    ok = np.isfinite(ours).all(1)
    moved, scale = similarity_align(ours[ok], ref[ok])
    return float(1000 * np.linalg.norm(moved - ref[ok], axis=1).mean()), scale


def run(args: argparse.Namespace) -> int:
    if args.model_only:
        return _model_only(args.out)
    from opensim_biopose.detect.frontend import DetectConfig
    from opensim_biopose.errors import InputError
    from opensim_biopose.pipeline import PipelineConfig, SolverConfig, run_pipeline

    if not DEMO_VIDEO.is_file():
        raise InputError(f"the demo video {DEMO_VIDEO} is missing from this installation; "
                         "reinstall the package or run 'opensim-biopose demo --model-only'")
    camera = json.loads(DEMO_TRUTH.read_text())["camera"] if DEMO_TRUTH.is_file() else {}
    config = PipelineConfig(
        detect=DetectConfig(max_frames=args.max_frames, focal_length_px=camera.get("fx")),
        # Never train here: shipped NeurIK weights are used when present, else refinement from the default pose.
        solver=SolverConfig(train=False),
        progress=True,
    )
    result = run_pipeline(DEMO_VIDEO, config)
    files = result.write(args.out, overwrite=True)
    q = result.quality
    print(f"{result.num_frames} frames in {result.timings.total_s:.1f} s ({result.solver}); "
          f"mean marker error {1000 * float(np.nanmean(q.marker_rms_m)):.1f} mm")
    if DEMO_TRUTH.is_file():
        found = compare_with_truth(result.marker_names, result.marker_xyz, DEMO_TRUTH)
        if found is not None:
            print(f"virtual markers vs the rendered truth: {found[0]:.1f} mm mean after alignment "
                  f"(size factor {found[1]:.3f})")
    print("outputs:")
    for path in files.all():
        print(f"  {path.resolve()}")
    return 0
