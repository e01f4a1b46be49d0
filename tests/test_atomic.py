"""Atomic writes: a failure leaves nothing behind; success gives an ordinary file."""
from __future__ import annotations

import os
import stat

import pytest

from opensim_biopose.errors import InputError
from opensim_biopose.io.atomic import atomic_path, write_text_atomic


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.mot"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_kept_without_overwrite(tmp_path):
    target = write_text_atomic(tmp_path / "a.trc", "first")
    with pytest.raises(InputError, match="--overwrite"):
        write_text_atomic(target, "second", overwrite=False)
    assert target.read_text() == "first"


def test_output_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = write_text_atomic(tmp_path / "a.mot", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
