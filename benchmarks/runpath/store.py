"""A results folder with one writer: records, draws, manifests, tables, a lock, and proof of origin.

Each run ends in one record written atomically to ``<run_dir>/records/<key>.json``: those files are
the crash-safe truth, so a killed matrix loses nothing finished and ``--resume`` continues where it
stopped. ``runs.csv``/``runs.json`` are rewritten (atomically) from memory at most every
``TABLE_INTERVAL_S`` seconds and whenever the matrix stops.

One writer: :meth:`ResultsStore.open` takes an exclusive ``flock`` on ``<run_dir>/.lock`` for as long
as the store is open; a second writer gets a :class:`~models.errors.UsageError` (exit 2) naming the
holder. The kernel drops the lock when its holder dies, so a lock file left by a killed run is
simply taken over. Every folder the store creates holds a marker file (``MARKER``); the suite deletes
or replaces only folders that carry it, and a run id is confined to its results root.
"""

from __future__ import annotations

import csv
import datetime as _dt
import fcntl
import io
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

from models.errors import UsageError
from models.files import write_bytes, write_json, write_text

from .record import RECORD_FIELDS, csv_value, ordered

__all__ = ["ResultsStore", "MARKER", "check_run_id", "remove_created", "point_latest", "TABLE_INTERVAL_S",
           "read_records", "read_checks"]

MARKER = ".eight-schools-ppl"
#: runs.csv/runs.json are rewritten at most this often while a matrix runs (and always at its end)
TABLE_INTERVAL_S = 30.0
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")


def check_run_id(run_id: str) -> str:
    """A run id is one plain folder name inside the results root: no separators, no '..'."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
        raise UsageError(f"--run-id = {run_id!r}: must be one folder name (letters, digits, '.', '_', '=', '-'), "
                         "inside --results")
    return run_id


def _created_by_us(path: Path) -> bool:
    return (path / MARKER).is_file()


def _mark(path: Path, what: str) -> None:
    write_json(path / MARKER, {"created_by": "eight-schools-ppl", "what": what, "pid": os.getpid(),
                               "host": socket.gethostname(),
                               "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})


def prepare_dir(path: Path, what: str) -> Path:
    """Create ``path`` (marked as ours), or accept it if it is ours or empty; refuse anything else.
    Also proves the folder is writable, before any sampling."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"results folder = {str(path)!r}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not _created_by_us(path):
        raise UsageError(f"results folder = {str(path)!r}: holds files this suite did not write; "
                         "choose another folder (it is never overwritten)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not _created_by_us(path):
            _mark(path, what)
        probe = path / f".probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"results folder = {str(path)!r}: not writable ({e.strerror or e})") from None
    return path


def remove_created(path: Path) -> None:
    """Delete a folder the suite created (it carries the marker); refuse any other."""
    path = Path(path)
    if not path.exists():
        return
    if path.is_symlink() or not _created_by_us(path):
        raise UsageError(f"{str(path)!r}: not a folder this suite created; refusing to delete it")
    shutil.rmtree(path)


def point_latest(results: Path, run_dir: Path) -> None:
    """``<results>/latest`` -> run_dir (a relative symlink, replaced atomically); run_dir must be in
    ``results``."""
    results, run_dir = Path(results), Path(run_dir)
    target = run_dir.resolve().relative_to(results.resolve())
    link = results / "latest"
    if link.exists() and not link.is_symlink():
        raise UsageError(f"{str(link)!r}: exists and is not the suite's link; refusing to replace it")
    tmp = results / f".latest.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def read_records(run_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((Path(run_dir) / "records").glob("*.json"))}


def read_checks(run_dir: Path, key: str) -> dict | None:
    path = Path(run_dir) / "checks" / f"{key}.json"
    return json.loads(path.read_text()) if path.is_file() else None


class ResultsStore:
    """The one writer of a results folder while open (use as a context manager)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.records: dict[str, dict] = {}
        self._lock_fd: int | None = None
        self._last_tables = time.monotonic()
        self._manifests: set[str] = set()

    @classmethod
    def open(cls, run_dir: Path, *, resume: bool = False, what: str = "matrix run") -> ResultsStore:
        store = cls(run_dir)
        prepare_dir(store.run_dir, what)
        store._lock()
        try:
            store.records = read_records(store.run_dir)
            if store.records and not resume:
                raise UsageError(f"results folder = {str(store.run_dir)!r}: already holds "
                                 f"{len(store.records)} records; pass --resume or another --run-id")
            (store.run_dir / "records").mkdir(exist_ok=True)
        except BaseException:
            store.close()
            raise
        return store

    def _lock(self) -> None:
        path = self.run_dir / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UsageError(f"results folder = {str(self.run_dir)!r}: in use by {holder}; wait for it to "
                             "finish or use another --run-id") from None
        os.ftruncate(fd, 0)
        os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')} "
                      f"({' '.join(sys.argv)[:200]})").encode())
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def clear(self) -> None:
        """Empty this folder (ours: it carries the marker, and we hold its lock) but for the marker and
        the lock: a staging folder a killed run left behind."""
        for child in self.run_dir.iterdir():
            if child.name in (MARKER, ".lock"):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        self.records = {}
        self._manifests = set()
        (self.run_dir / "records").mkdir(exist_ok=True)

    # writing
    def has(self, key: str) -> bool:
        return key in self.records

    def put(self, rec: dict, *, manifest: dict | None = None, draws_nc: bytes | None = None,
            checks: dict | None = None) -> dict:
        rec = ordered(rec)
        if checks is not None:  # the reference check's every z-score, when the job asked for them
            write_json(self.run_dir / "checks" / f"{rec['key']}.json", checks)
        if draws_nc is not None:
            write_bytes(self.run_dir / "draws" / f"{rec['key']}.nc", draws_nc)
        name = f"{rec['engine']}-{rec['parameterization']}"
        if manifest is not None and name not in self._manifests:
            path = self.run_dir / "manifests" / f"{name}.json"
            if not path.exists():  # what each engine ran with, for FAIRNESS.md
                write_json(path, manifest)
            self._manifests.add(name)
        write_json(self.run_dir / "records" / f"{rec['key']}.json", rec)
        self.records[rec["key"]] = rec
        if time.monotonic() - self._last_tables >= TABLE_INTERVAL_S:
            self.write_tables()
        return rec

    def write_tables(self) -> list[dict]:
        records = [self.records[k] for k in sorted(self.records)]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=RECORD_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: csv_value(v) for k, v in r.items()} for r in records)
        write_text(self.run_dir / "runs.csv", buf.getvalue())
        write_json(self.run_dir / "runs.json", records)
        self._last_tables = time.monotonic()
        return records

    def write_json(self, name: str, obj) -> Path:
        return write_json(self.run_dir / name, obj)
