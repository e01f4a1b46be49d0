"""Report figures as PNG bytes: joint angles, per-frame quality, keyframe overlays.

Plots use matplotlib's Agg backend (no display). Angles are drawn in degrees; marker errors in mm.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The 12 DoFs OpenCap reports (Uhlrich et al. 2023) and the arms; bilateral ones as _r/_l pairs.
LOWER_BODY_DOFS: tuple[str, ...] = (
    "pelvis_tilt", "pelvis_list", "pelvis_rotation", "hip_flexion", "hip_adduction", "hip_rotation",
    "knee_angle", "ankle_angle", "subtalar_angle", "lumbar_extension", "lumbar_bending", "lumbar_rotation",
)
ARM_DOFS: tuple[str, ...] = ("arm_flex", "arm_add", "arm_rot", "elbow_flex", "pro_sup")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _columns(dof: str, names: Sequence[str]) -> list[tuple[str, str]]:
    """(label, coordinate) pairs of a DoF: itself or its right/left coordinates."""
    if dof in names:
        return [(dof, dof)]
    return [(f"{dof}_{s}", f"{dof}_{s}") for s in ("r", "l") if f"{dof}_{s}" in names]


def angle_figure(times: np.ndarray, names: Sequence[str], q: np.ndarray, dofs: Sequence[str], title: str) -> bytes | None:
    """A grid of angle plots (degrees) for ``dofs``; ``q`` (T, n) radians. None if none is present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(d, _columns(d, names)) for d in dofs]
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.4 * rows), squeeze=False, sharex=True)
    for ax, (dof, cols_) in zip(axes.flat, panels):
        for label, name in cols_:
            style = "-" if label.endswith("_r") or label == dof else "--"
            ax.plot(times, np.degrees(q[:, list(names).index(name)]), style, label=label)
        ax.set_title(dof, fontsize=9)
        ax.set_ylabel("deg", fontsize=8)
        if len(cols_) > 1:
            ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    # Fixed margins for this fixed grid: tight_layout measured every tick label, ~0.2 s a figure.
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.12 / rows, top=1.0 - 0.3 / rows, wspace=0.22, hspace=0.35)
    return _png(fig)


def quality_figure(times: np.ndarray, detection: np.ndarray, fit_residual: np.ndarray, marker_rms_m: np.ndarray,
                   good: np.ndarray) -> bytes:
    """Three stacked panels: detector confidence, fit residual (% of body size), marker RMS (mm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(12, 6), sharex=True)
    axes[0].plot(times, detection)
    axes[0].set_ylabel("detector\nconfidence")
    axes[0].set_ylim(0, 1.05)
    fitted = np.isfinite(fit_residual)              # frames fitted at a reduced rate: NaN in between
    axes[1].plot(times[fitted], 100 * fit_residual[fitted], ".-" if (~fitted).any() else "-")
    axes[1].set_ylabel("fit residual\n% body size")
    axes[2].plot(times, 1000 * marker_rms_m)
    axes[2].set_ylabel("marker RMS\nmm")
    axes[2].set_xlabel("time (s)")
    for start, end in doubtful_spans(times, good):
        for ax in axes:     # one band per run of doubtful frames (not a line per frame: long videos)
            ax.axvspan(start, end, color="red", alpha=0.15, lw=0)
    fig.suptitle("Per-frame quality (red bands: doubtful frames)")
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.09, top=0.92, hspace=0.12)
    return _png(fig)


def doubtful_spans(times: np.ndarray, good: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of each run of frames that are not ``good``, half a frame wider on each side."""
    times = np.asarray(times, float)
    bad = ~np.asarray(good, bool)
    if not bad.any():
        return []
    half = 0.5 * float(np.median(np.diff(times))) if times.size > 1 else 0.5
    edges = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(float(times[a]) - half, float(times[b]) + half) for a, b in zip(starts, ends)]


@dataclass(frozen=True)
class Overlay:
    """One keyframe: its index, time, and points to draw (pixels in the full-resolution upright image)."""

    index: int
    time: float
    keypoints_px: np.ndarray        # (K, 2), NaN where missing
    markers_px: np.ndarray          # (M, 2)


def overlay_png(image_bgr: np.ndarray, overlay: Overlay, max_side: int = 480) -> bytes:
    """The frame, shrunk to ``max_side``, with detected keypoints (red) and projected virtual markers (green)."""
    import cv2

    h, w = image_bgr.shape[:2]
    s = min(1.0, max_side / max(h, w))
    img = cv2.resize(image_bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    for xy, colour, radius in ((overlay.markers_px, (40, 220, 40), 3), (overlay.keypoints_px, (40, 40, 230), 4)):
        for x, y in np.asarray(xy, float):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(img, (int(round(x * s)), int(round(y * s))), radius, colour, -1 if radius == 3 else 1,
                           lineType=cv2.LINE_AA)
    cv2.putText(img, f"frame {overlay.index}  t={overlay.time:.2f}s", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (255, 255, 255), 1, cv2.LINE_AA)
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return data.tobytes()
