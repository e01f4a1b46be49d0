"""NeurIK checkpoints: safetensors files (no pickle anywhere) with JSON metadata.

The weights file holds the network's tensors; its metadata holds what is needed to check
that a checkpoint belongs to a model and marker set (coordinate names, marker names, the
Skeleton's ``model_hash``), the network config and the training history. Optimiser and RNG
state for resuming live in a sidecar ``<name>.state.safetensors`` so shipped weights stay small.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from opensim_biopose.errors import CheckpointError
from opensim_biopose.io.atomic import atomic_path
from opensim_biopose.neurik.model import NeurIKConfig

FORMAT = "opensim-biopose-neurik/1"


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about itself (all JSON-serialisable)."""

    coordinate_names: tuple[str, ...]
    marker_names: tuple[str, ...]
    marker_weights: tuple[float, ...]
    model_hash: str
    config: NeurIKConfig
    synth: dict
    steps: int = 0
    train_seconds: float = 0.0
    model_file: str = ""


def _encode(meta: CheckpointMeta) -> dict[str, str]:
    return {
        "format": FORMAT,
        "coordinate_names": json.dumps(list(meta.coordinate_names)),
        "marker_names": json.dumps(list(meta.marker_names)),
        "marker_weights": json.dumps(list(meta.marker_weights)),
        "model_hash": meta.model_hash,
        "config": json.dumps(dataclasses.asdict(meta.config)),
        "synth": json.dumps(meta.synth),
        "steps": str(meta.steps),
        "train_seconds": f"{meta.train_seconds:.1f}",
        "model_file": meta.model_file,
    }


def _decode(raw: dict[str, str], path: Path) -> CheckpointMeta:
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a NeurIK checkpoint (format {raw.get('format')!r}, expected {FORMAT!r})")
    try:
        return CheckpointMeta(
            coordinate_names=tuple(json.loads(raw["coordinate_names"])),
            marker_names=tuple(json.loads(raw["marker_names"])),
            marker_weights=tuple(float(w) for w in json.loads(raw["marker_weights"])),
            model_hash=raw["model_hash"],
            config=NeurIKConfig(**json.loads(raw["config"])),
            synth=json.loads(raw["synth"]),
            steps=int(raw["steps"]),
            train_seconds=float(raw["train_seconds"]),
            model_file=raw.get("model_file", ""),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: NeurIK checkpoint metadata is incomplete or malformed ({exc}); "
                              "retrain it with `opensim-biopose train-neurik`") from exc


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: CheckpointMeta) -> Path:
    """Write weights + metadata atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=_encode(meta))
    return path


def read_metadata(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Metadata only (cheap); raises CheckpointError for a missing, corrupt or foreign file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"NeurIK checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"NeurIK checkpoint {path} is corrupt or not a safetensors file ({exc}); "
                              "delete it and retrain or download it again") from exc
    return _decode(raw, path)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Weights and metadata; raises CheckpointError for a missing, corrupt or foreign file."""
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"NeurIK checkpoint {path} is corrupt ({exc}); delete it and retrain") from exc
    return tensors, meta


def state_path(path: str | os.PathLike[str]) -> Path:
    """Sidecar file with optimiser / RNG state for resuming training."""
    p = Path(path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".state.safetensors")


def save_state(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], info: dict) -> None:
    with atomic_path(state_path(path)) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={"format": FORMAT + "/state", "info": json.dumps(info)})


def load_state(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Resume state next to checkpoint ``path``, or None when there is none (or it is unreadable)."""
    from safetensors import safe_open

    p = state_path(path)
    if not p.is_file():
        return None
    try:
        with safe_open(str(p), framework="pt") as f:
            info = json.loads((f.metadata() or {}).get("info", "{}"))
        return load_file(str(p)), info
    except (SafetensorError, OSError, ValueError):
        return None
