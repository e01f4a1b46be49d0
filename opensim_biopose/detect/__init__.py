"""Keypoint detection: the detector interface, layouts, the video front end, post-processing.

``detect_video`` / ``DetectConfig`` (from :mod:`.frontend`) load lazily so that plugins
importing the types here do not pull in the plugin manager.
"""
from __future__ import annotations

from typing import Any

from opensim_biopose.detect.types import (
    DetectionFrames,
    Detector,
    FrameDetection,
    KeypointLayout,
    KeypointSequence,
    KeypointSource,
)

_LAZY = {"detect_video": "frontend", "DetectConfig": "frontend", "create_front_end": "frontend",
         "PostprocessConfig": "postprocess", "select_person": "postprocess",
         "save_keypoints": "keypoint_file", "load_keypoints": "keypoint_file"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DetectionFrames", "Detector", "FrameDetection", "KeypointLayout", "KeypointSequence",
           "KeypointSource", *_LAZY]
