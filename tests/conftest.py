"""Shared fixtures: the third-party reference data in ../shared/data (skip when absent), --runslow."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Anny phenotypes (gender, age, muscle, weight, height, proportions): the neutral body, then the
# corners that stress virtual-marker placement the most (height kept in 0.25-0.75, see DESIGN.md).
ANNY_SHAPES = {
    "neutral": (0.5, 0.5, 0.5, 0.5, 0.5, 0.5),
    "short-light-female": (0.0, 0.5, 0.0, 0.0, 0.25, 0.0),
    "tall-heavy-male": (1.0, 0.5, 1.0, 1.0, 0.75, 1.0),
    "old-muscular": (1.0, 1.0, 1.0, 0.5, 0.5, 0.5),
    "young-adult-thin-tall": (0.0, 0.35, 0.0, 0.0, 0.75, 1.0),
}
SHARED_DATA = Path(os.environ.get("BIOPOSE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skips the calling test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (third-party data kept in ../shared/data)")
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Keep OpenSim from writing opensim.log into the working directory.

    Done at configure time, before any fixture (module-scoped ones included) loads a model.
    """
    import opensim as osim

    osim.Logger.removeFileSink()
