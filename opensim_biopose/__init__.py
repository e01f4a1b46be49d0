"""opensim-biopose: biomechanically accurate OpenSim motion from monocular video.

Data flow (one direction): video -> detector -> body mesh -> virtual markers ->
NeurIK (markers -> OpenSim coordinates) -> optional refinement -> .trc/.mot/.osim.
"""
from __future__ import annotations

__version__ = "0.1.0"

from opensim_biopose.errors import BioPoseError, InputError  # noqa: E402
from opensim_biopose.hookspecs import hookimpl  # noqa: E402

from typing import Any  # noqa: E402

# The pipeline's public API loads on first use, so that ``import opensim_biopose`` stays light
# (no torch, opensim or detector imports until a name below is touched).
_LAZY: dict[str, str] = {
    "BioPose": "opensim_biopose.api", "BioPoseResult": "opensim_biopose.pipeline",
    "PipelineConfig": "opensim_biopose.pipeline", "run_inverse_kinematics": "opensim_biopose.api",
    "run_inverse_dynamics": "opensim_biopose.api", "run_analyze_body_kinematics": "opensim_biopose.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'opensim_biopose' has no attribute {name!r}")


__all__ = ["__version__", "BioPoseError", "InputError", "hookimpl", *_LAZY]
