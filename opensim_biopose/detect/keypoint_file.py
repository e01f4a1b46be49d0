"""Saving and loading a :class:`KeypointSequence` (``.npz`` or ``.json``), atomically.

Both formats hold the same fields (schema in ``docs/plugins.md``, "Keypoint file"):
``format`` = "opensim-biopose-keypoints", ``version`` = 1, ``layout`` (name,
keypoint_names, world_frame), ``image_size`` [width, height] px, ``fps``,
``focal_length_px``, ``meta``, and the arrays ``times`` (T,) s, ``detected`` (T,),
``xy`` (T, K, 2) px, ``confidence`` (T, K), ``interpolated`` (T, K), ``boxes`` (T, 4) px,
``world_xyz`` (T, K, 3) m. NaN is ``null`` in JSON. In ``.npz`` the scalars and the
layout sit in a JSON string array ``header``; absent optional arrays are left out.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from opensim_biopose.detect.types import KeypointLayout, KeypointSequence
from opensim_biopose.errors import InputError
from opensim_biopose.io.atomic import atomic_path

FORMAT = "opensim-biopose-keypoints"
VERSION = 1
_ARRAYS = ("times", "detected", "xy", "confidence", "interpolated", "boxes", "world_xyz")
_OPTIONAL = ("interpolated", "boxes", "world_xyz")


def _header(seq: KeypointSequence) -> dict[str, Any]:
    return {
        "format": FORMAT, "version": VERSION,
        "layout": {"name": seq.layout.name, "keypoint_names": list(seq.layout.keypoint_names),
                   "world_frame": seq.layout.world_frame},
        "image_size": list(seq.image_size), "fps": seq.fps,
        "focal_length_px": seq.focal_length_px, "meta": dict(seq.meta),
    }


def _nan_to_none(a: np.ndarray) -> Any:
    if a.dtype == bool:
        return a.tolist()
    return np.where(np.isnan(a), None, a).tolist()


def save_keypoints(path: str | os.PathLike[str], seq: KeypointSequence) -> Path:
    """Write ``seq`` to ``path`` (.npz or .json by suffix), atomically; returns the path."""
    path = Path(path)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise InputError(f"keypoint output {path}: unknown suffix; use .npz or .json")
    with atomic_path(path) as tmp:
        writer(tmp, seq)
    return path


def _write_json(tmp: Path, seq: KeypointSequence) -> None:
    doc = _header(seq)
    for key in _ARRAYS:
        value = getattr(seq, key)
        doc[key] = None if value is None else _nan_to_none(np.asarray(value))
    tmp.write_text(json.dumps(doc))


def _write_npz(tmp: Path, seq: KeypointSequence) -> None:
    arrays = {k: np.asarray(getattr(seq, k)) for k in _ARRAYS if getattr(seq, k) is not None}
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, header=np.array(json.dumps(_header(seq))), **arrays)


_WRITERS = {".json": _write_json, ".npz": _write_npz}


def load_keypoints(path: str | os.PathLike[str]) -> KeypointSequence:
    """Read a file written by :func:`save_keypoints`; InputError naming it when unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"keypoint file {path} does not exist")
    try:
        header, arrays = _READERS[path.suffix.lower()](path)
    except KeyError as exc:
        raise InputError(f"keypoint file {path}: unknown suffix or missing field {exc}; "
                         "expected a .npz/.json written by 'opensim-biopose detect'") from exc
    except (ValueError, OSError, TypeError) as exc:
        raise InputError(f"keypoint file {path} is corrupt or not a keypoint file: {exc}") from exc
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise InputError(f"{path} is not an {FORMAT} v{VERSION} file")
    lay = header["layout"]
    return KeypointSequence(
        layout=KeypointLayout(lay["name"], tuple(lay["keypoint_names"]), lay.get("world_frame")),
        times=arrays["times"].astype(float), xy=arrays["xy"].astype(float),
        confidence=arrays["confidence"].astype(float), detected=arrays["detected"].astype(bool),
        image_size=(int(header["image_size"][0]), int(header["image_size"][1])), fps=float(header["fps"]),
        world_xyz=_opt(arrays, "world_xyz", float), boxes=_opt(arrays, "boxes", float),
        focal_length_px=header.get("focal_length_px"), meta=dict(header.get("meta", {})),
        interpolated=_opt(arrays, "interpolated", bool),
    )


def _opt(arrays: dict[str, np.ndarray], key: str, dtype: type) -> np.ndarray | None:
    return arrays[key].astype(dtype) if arrays.get(key) is not None else None


def _read_json(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} document")
    arrays = {}
    for key in _ARRAYS:
        value = doc.get(key)
        if value is None:
            if key not in _OPTIONAL:
                raise KeyError(key)
            continue
        arrays[key] = np.array(value, dtype=bool if key in ("detected", "interpolated") else float)
    k = len(doc["layout"]["keypoint_names"])
    t = len(arrays["times"])
    for key, tail in (("xy", (k, 2)), ("confidence", (k,)), ("world_xyz", (k, 3)), ("boxes", (4,))):
        if key in arrays:   # an all-missing video still needs its (T, K, ...) shape
            arrays[key] = arrays[key].reshape(t, *tail)
    return doc, arrays


def _read_npz(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        arrays = {k: data[k] for k in _ARRAYS if k in data.files}
    return header, arrays


_READERS = {".json": _read_json, ".npz": _read_npz}
