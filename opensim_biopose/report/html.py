"""Assemble the report page: summary table, angle plots, quality plot, keyframe overlays."""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from opensim_biopose.io.atomic import write_text_atomic
from opensim_biopose.report.figures import (
    ARM_DOFS,
    LOWER_BODY_DOFS,
    Overlay,
    angle_figure,
    overlay_png,
    quality_figure,
)

if TYPE_CHECKING:
    from opensim_biopose.pipeline import BioPoseResult


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def keyframe_indices(num_frames: int, count: int, usable: np.ndarray) -> list[int]:
    """``count`` frame indices spread evenly over the usable (detected) frames."""
    candidates = np.flatnonzero(usable) if usable.any() else np.arange(num_frames)
    if candidates.size == 0:
        return []
    picks = np.linspace(0, candidates.size - 1, min(count, candidates.size)).round().astype(int)
    return sorted({int(candidates[i]) for i in picks})


def project_ground_markers(result: BioPoseResult) -> np.ndarray:
    """(T, M, 2) pixels of the fitted virtual markers (the fit's camera, full-resolution upright image)."""
    fit = result.mesh
    width, height = result.keypoints.image_size
    cam = (fit.markers - fit.ground_offset) @ fit.ground_from_camera       # R^T (p - o), row vectors
    z = np.clip(cam[..., 2:3], 0.05, None)
    return np.concatenate([fit.focal_px * cam[..., 0:1] / z + width / 2.0,
                           fit.focal_px * cam[..., 1:2] / z + height / 2.0], axis=-1)


def keyframe_overlays(result: BioPoseResult) -> list[tuple[Overlay, bytes]]:
    """Overlay PNGs of a few keyframes, re-read from the video (only those frames are kept)."""
    from opensim_biopose.io.video import VideoReader

    kp = result.keypoints
    picks = keyframe_indices(kp.num_frames, result.config.report.keyframes, np.asarray(kp.detected, bool))
    if not picks or not Path(result.video).is_file():
        return []
    markers_px = project_ground_markers(result)
    out: list[tuple[Overlay, bytes]] = []
    wanted = set(picks)
    with VideoReader(result.video, max_frames=max(picks) + 1) as reader:
        for frame in reader:
            if frame.index not in wanted:
                continue
            image = frame.image
            if frame.scale != 1.0:                     # never expected here (no max_side), kept correct anyway
                import cv2

                image = cv2.resize(image, tuple(kp.image_size))
            ov = Overlay(frame.index, float(kp.times[frame.index]), np.asarray(kp.xy[frame.index], float),
                         markers_px[frame.index])
            out.append((ov, overlay_png(image, ov)))
    return out


def _summary_rows(result: BioPoseResult) -> list[tuple[str, str]]:
    q = result.quality
    t = result.timings
    return [
        ("video", str(result.video)),
        ("frames", f"{result.num_frames} at {result.fps:g} fps"),
        ("detector", f"{result.config.detect.detector}: person found in {100 * result.keypoints.detection_rate:.0f}% of frames"),
        ("body model / markers", f"{result.mesh.body_model} / {result.mesh.marker_set} ({len(result.marker_names)} markers)"),
        ("OpenSim model", f"{result.model_name}; overall scale {result.scale_factors.overall:.3f}"
                          f"{'' if result.marker_scale == 1.0 else f', markers rescaled x{result.marker_scale:.3f} for the given height'}"),
        ("solver", result.solver),
        ("marker RMS (mean / max frame)", f"{1000 * np.nanmean(q.marker_rms_m):.1f} / {1000 * np.nanmax(q.marker_rms_m):.1f} mm"),
        ("fit residual (median)", f"{np.nanmedian(q.fit_residual_px):.1f} px ({100 * np.nanmedian(q.fit_residual):.1f}% of body size)"),
        ("doubtful frames", f"{int((~q.good).sum())} of {result.num_frames}"),
        ("time per stage (s)", f"detect {t.detect_s:.1f}, body model load {t.body_load_s:.1f}, mesh {t.mesh_s:.1f}, scale {t.scale_s:.1f}, "
                               f"NeurIK {t.neurik_s:.1f}, refine {t.refine_s:.1f}"),
    ]


_CSS = ("body{font-family:sans-serif;margin:1.5em;max-width:1200px} table{border-collapse:collapse}"
        "td{border:1px solid #ccc;padding:3px 8px} img{max-width:100%} .kf img{width:auto;margin:4px}")


def render_report(result: BioPoseResult) -> str:
    """The report as one HTML string (images inline)."""
    names = list(result.coordinate_names)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>BioPose report: "
             f"{html.escape(result.video.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>BioPose report: {html.escape(result.video.name)}</h1><table>"]
    parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _summary_rows(result)]
    parts.append("</table>")
    for title, dofs in (("Lower body and trunk (OpenCap's 12 DoFs)", LOWER_BODY_DOFS), ("Arms", ARM_DOFS)):
        png = angle_figure(result.times, names, result.q, dofs, title)
        if png is not None:
            parts.append(f"<h2>{html.escape(title)}</h2>{_img(png, title)}")
    q = result.quality
    parts.append("<h2>Quality</h2>" + _img(quality_figure(result.times, q.detection_confidence, q.fit_residual,
                                                         q.marker_rms_m, q.good), "per-frame quality"))
    overlays = keyframe_overlays(result)
    if overlays:
        parts.append("<h2>Keyframes</h2><p>red circles: detected keypoints; green dots: virtual markers of the "
                     "fitted body projected through the fit's camera</p><div class='kf'>")
        parts += [_img(png, f"keyframe {ov.index}") for ov, png in overlays]
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: BioPoseResult, path: str | os.PathLike[str]) -> Path:
    """Write the report to ``path`` atomically."""
    return write_text_atomic(path, render_report(result))
