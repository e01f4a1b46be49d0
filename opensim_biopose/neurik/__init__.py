"""NeurIK: neural inverse kinematics for any OpenSim model and marker set.

Synthetic windows from the model (:mod:`.synth`) train a spatio-temporal network
(:mod:`.model`) that maps marker trajectories to coordinates and segment scales; :class:`NeurIK`
solves trials with it, :func:`load_or_train` finds or trains weights for a model.
"""
from __future__ import annotations

from opensim_biopose.neurik.api import NeurIK, NeurIKResult
from opensim_biopose.neurik.loader import load_or_train
from opensim_biopose.neurik.model import NeurIKConfig, build_neurik
from opensim_biopose.neurik.synth import SynthConfig
from opensim_biopose.neurik.train import TrainConfig, TrainReport, default_config, train_neurik

__all__ = [
    "NeurIK", "NeurIKConfig", "NeurIKResult", "SynthConfig", "TrainConfig", "TrainReport",
    "build_neurik", "default_config", "load_or_train", "train_neurik",
]
