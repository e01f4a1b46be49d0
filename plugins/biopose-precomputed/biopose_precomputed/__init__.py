"""Keypoint sources for opensim-biopose: OpenPose JSON, COCO JSON, Pose2Sim/Sports2D .trc."""
from __future__ import annotations

__version__ = "0.1.0"
