"""Virtual marker sets: named anatomical points on a body model's mesh, stored as versioned JSON.

File format (``format: opensim-biopose.virtual-markers``, integer ``version``)::

    {"name": "anny-pig53", "body_model": "anny", "num_vertices": 13718,
     "markers": {"LASI": {"vertices": [10959], "weights": [1.0], "description": "..."}, ...}}

A marker is a weighted sum of vertices (weights summing to 1): one vertex, a barycentric point
(three vertices of a face), or a regressed point such as the joint centres of ``anny-pig53`` v3
(many vertices, signed weights; see :mod:`.joint_centres`). Positions come out in the frame and
units of the vertices given (metres).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from opensim_biopose.body.base import VertexRegressor
from opensim_biopose.errors import InputError

FORMAT = "opensim-biopose.virtual-markers"
# The file layout is the same in every version; the version number counts index changes.
SUPPORTED_VERSIONS = (1, 2, 3)

# Built-in sets: name -> version -> file in this folder. The bare name loads the newest version;
# "<name>@v<N>" pins one (results and trained networks made with an older set stay reproducible).
BUILTIN_VERSIONS: dict[str, dict[int, str]] = {
    "anny-pig53": {1: "anny_pig53_v1.json", 2: "anny_pig53_v2.json", 3: "anny_pig53_v3.json"},
}


def _builtin_names(versions: dict[str, dict[int, str]]) -> dict[str, str]:
    """Registry name -> file: ``name`` (newest version) and ``name@vN`` for every version."""
    names: dict[str, str] = {}
    for name, files in versions.items():
        names[name] = files[max(files)]
        names.update({f"{name}@v{v}": f for v, f in sorted(files.items())})
    return names


BUILTIN_SETS: dict[str, str] = _builtin_names(BUILTIN_VERSIONS)


@dataclass(frozen=True)
class VirtualMarkerSet:
    """Named virtual markers of one body model.

    ``names``: M marker names (the OpenSim model's marker names); ``body_model``: the body
    model name the vertex indices belong to; ``descriptions``: M anatomical landmarks.
    """

    name: str
    version: int
    body_model: str
    num_vertices: int
    names: tuple[str, ...]
    descriptions: tuple[str, ...]
    regressor: VertexRegressor

    def positions(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, M, 3) marker positions from (B, V, 3) vertices, same frame and units."""
        if vertices.shape[-2] != self.num_vertices:
            raise InputError(
                f"marker set {self.name!r} is defined on {self.num_vertices}-vertex {self.body_model!r} "
                f"meshes; got {vertices.shape[-2]} vertices"
            )
        return self.regressor.positions(vertices)


def load_marker_set(path_or_name: str | os.PathLike[str]) -> VirtualMarkerSet:
    """A built-in set by name (``"anny-pig53"``: newest; ``"anny-pig53@v1"``: that version) or a JSON file."""
    key = str(path_or_name)
    if key in BUILTIN_SETS:
        text = resources.files(__name__).joinpath(BUILTIN_SETS[key]).read_text()
        return parse_marker_set(json.loads(text), source=f"built-in marker set {key}")
    path = Path(path_or_name)
    if not path.is_file():
        raise InputError(
            f"virtual marker set {key!r} is neither a built-in set ({', '.join(BUILTIN_SETS)}) "
            "nor an existing JSON file"
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"virtual marker set {path} is not valid JSON: {exc}") from exc
    return parse_marker_set(doc, source=str(path))


def parse_marker_set(doc: dict, source: str) -> VirtualMarkerSet:
    """Validate a decoded marker-set document and build the set."""
    if doc.get("format") != FORMAT or doc.get("version") not in SUPPORTED_VERSIONS:
        raise InputError(
            f"{source}: not a virtual marker set of a supported version "
            f"(need format {FORMAT!r}, version in {SUPPORTED_VERSIONS})"
        )
    for key in ("name", "body_model", "num_vertices", "markers"):
        if key not in doc:
            raise InputError(f"{source}: missing the {key!r} field")
    markers = doc["markers"]
    rows = {n: (m["vertices"], m.get("weights", [1.0] * len(m["vertices"]))) for n, m in markers.items()}
    regressor = VertexRegressor.from_rows(rows)
    regressor.check_vertex_count(int(doc["num_vertices"]), source)
    return VirtualMarkerSet(
        name=doc["name"], version=int(doc["version"]), body_model=doc["body_model"],
        num_vertices=int(doc["num_vertices"]), names=tuple(markers),
        descriptions=tuple(m.get("description", "") for m in markers.values()),
        regressor=regressor,
    )


def build_builtin(name: str) -> VirtualMarkerSet:
    """Factory for a built-in set (registered in :mod:`opensim_biopose.body.builtin`)."""
    return load_marker_set(name)
