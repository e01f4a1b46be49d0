"""Registers the ``mediapipe`` detector (entry point ``opensim_biopose: mediapipe``)."""
from __future__ import annotations

from opensim_biopose import hookimpl
from opensim_biopose.hookspecs import Register


@hookimpl
def register_detectors(register: Register) -> None:
    def factory(**options: object) -> object:
        from biopose_mediapipe.detector import MediaPipeConfig, MediaPipeDetector  # mediapipe loads lazily
        return MediaPipeDetector(MediaPipeConfig(**options))  # type: ignore[arg-type]

    register("mediapipe", factory)
