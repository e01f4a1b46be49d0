"""Finding NeurIK weights for a model: explicit > shipped > user cache > train now.

Shipped weights live in ``opensim_biopose/neurik/weights/*.safetensors``; a file is used when
its metadata names the Skeleton's ``model_hash`` and exactly the requested marker names.
The user cache is ``~/.cache/opensim-biopose/neurik/<key>.safetensors`` (``XDG_CACHE_HOME`` honoured)
where ``key`` hashes the model hash, marker names and weights.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from opensim_biopose.errors import CheckpointError, InputError
from opensim_biopose.neurik.api import NeurIK
from opensim_biopose.neurik.checkpoint import read_metadata

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
# Rough training throughput per target on one CPU core, for the message: the default TrainConfig
# ("fk"), and LAB_IK ("ik": 6000 steps in 4.2 / 6.4 min while training tests/checkpoints on one niced
# thread at load ~4, i.e. ~940-1430 steps/min, since its IK targets are solved by the compiled kernel).
_STEPS_PER_MINUTE_CPU = {"fk": 400, "ik": 1000}


def cache_key(sk, marker_names: Sequence[str], marker_weights: Sequence[float] | None,
              train_cfg=None) -> str:
    """Stable file stem for a model + marker set + weights + what the network learns.

    The training target and window are part of the key: weights that learned the generating pose
    (``"fk"``, video pipeline) must not answer a request for OpenSim IK's answer (``"ik"``, the
    ``ik`` command on a lab model), nor the other way round.
    """
    from opensim_biopose.neurik.train import TrainConfig

    tc = train_cfg or TrainConfig()
    blob = json.dumps([sk.model_hash, list(marker_names), list(marker_weights or []), tc.target, tc.synth.window])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _target(train_cfg) -> str:
    return getattr(train_cfg, "target", "fk") if train_cfg is not None else "fk"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "opensim-biopose" / "neurik"


def find_shipped(sk, marker_names: Sequence[str], folder: Path = SHIPPED_DIR) -> Path | None:
    """Shipped weights trained for this model hash and marker set, or None."""
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.safetensors")):
        if path.name.endswith(".state.safetensors"):
            continue
        try:
            meta = read_metadata(path)
        except CheckpointError as exc:
            log.warning("skipping unreadable shipped NeurIK weights %s: %s", path, exc)
            continue
        if meta.model_hash == sk.model_hash and set(meta.marker_names) == set(marker_names):
            return path
    return None


def train_command(sk, out: Path, setup: str | None = None, subject_scaled: bool = False) -> str:
    """The CLI command that trains weights for ``sk`` into ``out`` (``subject_scaled``: the
    LAB_IK recipe, which learns OpenSim IK's answer and needs the IK setup)."""
    model = str(getattr(sk, "model_path", "MODEL.osim"))
    if subject_scaled:
        src = f"--setup {shlex.quote(setup or 'IK_SETUP.xml')} --subject-scaled"
    else:
        src = f"--setup {shlex.quote(setup)}" if setup else "--markers NAME,NAME,..."
    return f"opensim-biopose train-neurik --model {shlex.quote(model)} {src} --out {shlex.quote(str(out))}"


def load_or_train(sk, marker_names: Sequence[str], marker_weights: Sequence[float] | None, *,
                  weights: str | os.PathLike[str] | None = None, train: bool = True, progress: bool = True,
                  cache_dir: str | os.PathLike[str] | None = None, train_cfg=None,
                  coordinate_tasks=None) -> NeurIK:
    """NeurIK for ``sk`` and ``marker_names``, trained here if nothing fits.

    Order: ``weights`` (explicit path) > shipped weights for this model hash and markers >
    the user cache > training into the cache (``train=True``; prints how long it takes) or an
    InputError giving the exact ``train-neurik`` command (``train=False``).
    ``train_cfg`` (default ``TrainConfig()``; ``neurik.train.LAB_IK`` for a subject-scaled lab
    model) and ``coordinate_tasks`` (the IK setup's, see ``refine.coordinate_targets``) are
    passed to :func:`train_neurik`.
    """
    if weights is not None:
        return NeurIK.load(weights, sk)
    shipped = find_shipped(sk, marker_names)
    if shipped is not None:
        log.info("using shipped NeurIK weights %s", shipped)
        return NeurIK.load(shipped, sk)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = folder / f"{cache_key(sk, marker_names, marker_weights, train_cfg)}.safetensors"
    if cached.is_file():
        try:
            meta = read_metadata(cached)
            from opensim_biopose.neurik.train import TrainConfig
            # A finished run is used as is; an interrupted one is resumed when training is allowed.
            if not train or meta.steps >= (train_cfg or TrainConfig()).steps:
                return NeurIK.load(cached, sk)
        except CheckpointError as exc:
            log.warning("ignoring cached NeurIK weights %s: %s", cached, exc)
    if not train:
        raise InputError(
            f"no NeurIK weights for model {getattr(sk, 'model_path', '?')} with these {len(marker_names)} markers; "
            f"train them once with:\n  {train_command(sk, cached, subject_scaled=_target(train_cfg) == 'ik')}\n"
            "or pass weights explicitly")
    from opensim_biopose.neurik.train import TrainConfig, train_neurik

    tc = train_cfg or TrainConfig()
    print(f"opensim-biopose: no NeurIK weights for {getattr(sk, 'model_path', 'this model')} and its "
          f"{len(marker_names)} markers; training them now ({tc.steps} steps, roughly "
          f"{max(1, round(tc.steps / _STEPS_PER_MINUTE_CPU.get(tc.target, 400)))} min on one free CPU core, resumable). "
          f"They are cached in {cached}.", flush=True)
    train_neurik(sk, marker_names, marker_weights, None, tc, cached, resume=True, progress=progress,
                 coordinate_tasks=coordinate_tasks)
    return NeurIK.load(cached, sk)
