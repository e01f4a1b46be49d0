"""The HTML report of a run: one self-contained page (PNG images embedded as base64).

:func:`write_report` / :func:`render_report` take a :class:`opensim_biopose.pipeline.BioPoseResult`.
"""
from __future__ import annotations

from opensim_biopose.report.html import keyframe_overlays, render_report, write_report

__all__ = ["keyframe_overlays", "render_report", "write_report"]
