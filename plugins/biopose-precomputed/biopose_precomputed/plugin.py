"""Registers the keypoint sources ``openpose-json``, ``coco-json`` and ``trc-keypoints``."""
from __future__ import annotations

from typing import Any

from opensim_biopose import hookimpl
from opensim_biopose.hookspecs import Register


def _factory(class_name: str) -> Any:
    def make(**options: Any) -> Any:
        from biopose_precomputed import sources
        return getattr(sources, class_name)(sources.SourceConfig(**options))

    return make


@hookimpl
def register_keypoint_sources(register: Register) -> None:
    register("openpose-json", _factory("OpenPoseJsonSource"))
    register("coco-json", _factory("CocoJsonSource"))
    register("trc-keypoints", _factory("TrcKeypointSource"))
