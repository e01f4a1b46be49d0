"""Atomic output: write to a temporary file beside the target, then rename over it.

A failed run therefore never leaves a half-written .mot/.trc/.osim behind.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from opensim_biopose.errors import InputError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``target``.

    Use for writers that insist on a file name (OpenSim adapters, ``Model.printToXML``).
    On an exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists already; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the mode a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(target: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` to ``target`` atomically and return the path."""
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(target)
