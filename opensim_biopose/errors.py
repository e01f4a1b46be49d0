"""Exceptions raised for bad input; the CLI turns them into one message and a non-zero exit."""
from __future__ import annotations


class BioPoseError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(BioPoseError, ValueError):
    """An input file or argument is missing, malformed or inconsistent.

    The message names the input and says what to do about it.
    """


class UnsupportedModelError(BioPoseError):
    """An OpenSim model uses a construct this package cannot reproduce exactly."""


class CheckpointError(BioPoseError):
    """A NeurIK checkpoint is corrupt or belongs to another model/marker set."""
