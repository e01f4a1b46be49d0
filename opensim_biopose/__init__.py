"""opensim-biopose: biomechanically accurate OpenSim motion from monocular video.

Data flow (one direction): video -> detector -> body mesh -> virtual markers ->
NeurIK (markers -> OpenSim coordinates) -> optional refinement -> .trc/.mot/.osim.
"""
from __future__ import annotations

__version__ = "0.1.0"

from opensim_biopose.errors import BioPoseError, InputError  # noqa: E402
from opensim_biopose.hookspecs import hookimpl  # noqa: E402

__all__ = ["__version__", "BioPoseError", "InputError", "hookimpl"]
