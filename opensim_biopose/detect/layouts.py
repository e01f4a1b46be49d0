"""Keypoint layouts of common detectors, with one naming scheme across them.

The same anatomical point has the same snake_case name in every layout ("left_hip",
"right_ankle", ...), so later stages match keypoints by name, never by index. "left" is
the subject's left. Orders follow each detector's published output order (MediaPipe Pose
landmark enum; COCO 2017 person keypoints; OpenPose BODY_25 output format; HALPE 26).
"""
from __future__ import annotations

from opensim_biopose.detect.types import KeypointLayout

BLAZEPOSE33 = KeypointLayout(
    name="blazepose33",
    keypoint_names=(
        "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
        "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "left_heel", "right_heel", "left_foot_index", "right_foot_index",
    ),
    # MediaPipe's pose_world_landmarks: origin at the midpoint of the hips, x towards the
    # image's right, y down the image, z away from the camera (camera-aligned axes), metres.
    world_frame="mediapipe world: origin mid-hip, x image-right, y image-down, z away from camera, metres",
)

COCO17 = KeypointLayout(
    name="coco17",
    keypoint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
)

OPENPOSE_BODY25 = KeypointLayout(
    name="openpose_body25",
    keypoint_names=(
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
        "left_shoulder", "left_elbow", "left_wrist", "mid_hip",
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
        "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    ),
)

# HALPE 26 (COCO 17 + head, neck, mid-hip, toes, heels): RTMPose/Pose2Sim/Sports2D default.
HALPE26 = KeypointLayout(
    name="halpe26",
    keypoint_names=(*COCO17.keypoint_names, "head", "neck", "mid_hip", "left_big_toe", "right_big_toe",
                    "left_small_toe", "right_small_toe", "left_heel", "right_heel"),
)

LAYOUTS: dict[str, KeypointLayout] = {l.name: l for l in (BLAZEPOSE33, COCO17, OPENPOSE_BODY25, HALPE26)}

# Points to draw as a stick figure (overlay) when both ends exist in a layout.
SKELETON_EDGES: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("left_ankle", "left_heel"), ("right_ankle", "right_heel"),
    ("left_heel", "left_foot_index"), ("right_heel", "right_foot_index"),
    ("left_ankle", "left_big_toe"), ("right_ankle", "right_big_toe"),
    ("nose", "left_eye"), ("nose", "right_eye"), ("nose", "neck"),
)
