"""MediaPipe BlazePose detector plugin for opensim-biopose (detector name ``mediapipe``)."""
from __future__ import annotations

__version__ = "0.1.0"
