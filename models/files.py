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

from .errors import UsageError

__all__ = ["atomic_path", "write_text", "write_bytes", "write_json", "write_netcdf", "is_netcdf", "check_replaceable"]

#: the first bytes of a NetCDF file: classic (CDF 1, 2, 5) or NetCDF-4 (HDF5)
NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")


def is_netcdf(path: Path | str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(NETCDF_MAGIC)


def check_replaceable(path: Path | str, field: str, suffix: str = ".nc") -> None:
    """Refuse to replace an existing file that is not one of ours: draws go to a NetCDF file, so an
    existing file is replaced only if its name ends in ``suffix`` or it is NetCDF already (earlier draws)."""
    path = Path(path)
    if path.exists() and not path.name.endswith(suffix) and not is_netcdf(path):
        raise UsageError(f"{field} = {str(path)!r}: exists and is not a NetCDF file; refusing to replace it "
                         f"(name a {suffix} file)")


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
