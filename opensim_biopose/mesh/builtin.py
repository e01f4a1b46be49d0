"""Built-in mesh backends, registered through the plugin hooks."""
from __future__ import annotations

from opensim_biopose.hookspecs import Register, hookimpl
from opensim_biopose.mesh.keypoint_fit import build_keypoint_fit


@hookimpl
def register_mesh_backends(register: Register) -> None:
    register("keypoint-fit", build_keypoint_fit)
