"""Shared fixtures: the third-party reference data in ../shared/data (skip when absent), --runslow."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
