"""Built-in body models and virtual marker sets, registered through the plugin hooks."""
from __future__ import annotations

import functools

from opensim_biopose.body.anny_model import build_anny
from opensim_biopose.body.markers import BUILTIN_SETS, build_builtin
from opensim_biopose.body.smpl_model import VARIANTS, make_factory
from opensim_biopose.hookspecs import Register, hookimpl


@hookimpl
def register_body_models(register: Register) -> None:
    register("anny", build_anny)
    for model_type in VARIANTS:
        register(model_type, make_factory(model_type))


@hookimpl
def register_marker_sets(register: Register) -> None:
    for name in BUILTIN_SETS:
        register(name, functools.partial(build_builtin, name))
