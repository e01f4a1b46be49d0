"""Keypoint detection: the detector interface, built-in registrations, post-processing."""
from __future__ import annotations

from opensim_biopose.detect.types import Detector, FrameDetection, KeypointLayout, KeypointSequence

__all__ = ["Detector", "FrameDetection", "KeypointLayout", "KeypointSequence"]
