"""Files written atomically: a crash never leaves a half-written result behind.

The bottom layer of the suite (with :mod:`models.provenance`): ``reference/`` and ``benchmarks/``
both write through these functions, and nothing here imports either of them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_text", "write_bytes", "write_json", "write_netcdf"]


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same folder, so the rename is atomic); on success it
    replaces ``path``, on any failure it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; results are meant to be read by anyone
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _atomic(path: Path | str, write: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    return _atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes(path: Path | str, data: bytes) -> Path:
    return _atomic(path, lambda p: p.write_bytes(data))


def write_json(path: Path | str, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_netcdf(tree, path: Path | str) -> Path:
    """An xarray Dataset or DataTree (ArviZ layout) as NetCDF."""
    return _atomic(path, lambda p: tree.to_netcdf(p))
