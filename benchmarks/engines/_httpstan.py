"""What the pystan engine needs from httpstan beyond PyStan's API: one compiled-program cache per
machine, shared by every virtual environment, and a process pool that never forks this process.

**Compiled programs.** httpstan keeps each compiled program (a Python extension module, ~35 MB, ~40 s
of g++) in ``<user cache>/httpstan/<version>/models/<name>/``, the name a hash of the program text,
httpstan's version, the platform, the Python version *and* ``sys.executable``: every venv (each nox
session's, the developer's) compiles its own copy of every program, identical but for the name.
The module is otherwise venv-independent: it needs only ``libtbb`` from httpstan's ``lib`` folder,
found through the RUNPATH the build records (the building venv's folder; checked with readelf -d:
NEEDED libtbb.so.2 and the C/C++ runtime, RUNPATH <venv>/site-packages/httpstan/lib), and httpstan
loads whatever module it finds in the model's folder, whatever its name.

So the store keeps one build per content key (program text, httpstan version, platform, word size,
Python version: httpstan's own hash without the executable) under
``<cache_root>/httpstan/<httpstan version>/<key>/`` and *seeds* httpstan's folder for this
interpreter's name from it before ``stan.build`` (a hard link, a copy across file systems), which
then loads the module instead of compiling; a fresh build (or one httpstan made before the store
existed) is stored back. A file lock per key makes two processes on a cold cache build once: the
second waits, then loads the first one's build. A build whose venv has gone (its ``lib`` folder no
longer exists, so the loader could not find libtbb) is built again and replaces it.

**The process pool.** httpstan runs each chain in a ``ProcessPoolExecutor`` that *forks* this
process. Forking after JAX (or any library) has started threads risks a deadlock in the child, and
JAX warns so ("os.fork() was called ..."). :func:`ensure_pool` gives httpstan's executor the
forkserver start method instead (spawn where there is no forkserver): its workers fork from a small
single-threaded server process that imported httpstan's services module once, and they start with
``__main__`` hidden, so that neither the server nor a worker imports the main module again.
Measured (Rubin's data, default prior, 4 chains x 2000 iterations, a process run as ``python -m``
doing 5-7 runs, 2 cores shared at load ~4.5, 5 processes each): runs after the first take the same
wall time (median 1.02 s forkserver, 1.01 s fork, 12 runs each); the first run of a process takes
~2 s more (median 4.4 s against 2.4 s): starting the server and the workers (``pool_start_s`` in the
manifest, ~0.7 s, outside inference_s), and the workers loading the compiled program on their
first chain (inside the first run's inference_s, where forking them was before).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import types
from collections.abc import Iterator
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import httpstan
import httpstan.cache
import httpstan.models
import httpstan.services_stub
from filelock import FileLock

from models.files import atomic_path, write_json, write_text

from .caches import httpstan_store

__all__ = ["compiled", "entry_dir", "content_key", "model_name", "ensure_pool", "pool_start_method"]

log = logging.getLogger(__name__)

#: the compiled module's file name in a store entry (its extension suffix appended)
MODULE = "stan_services"
#: the build's description in a store entry; its presence marks the entry complete
META = "build.json"
#: httpstan's log files, read back when it finds a model in its cache
LOGS = ("stanc.log", "stderr.log")
#: in a seeded httpstan model folder: the id of the store build it holds
MARKER = ".eight-schools-ppl-build"


def content_key(code: str) -> str:
    """httpstan's model-name hash without ``sys.executable``: what the compiled module depends on."""
    h = hashlib.sha256()
    for part in (code, httpstan.__version__, sys.platform, str(sys.maxsize), sys.version):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def entry_dir(code: str) -> Path:
    return httpstan_store() / httpstan.__version__ / content_key(code)


def model_name(code: str) -> str:
    """httpstan's name for ``code`` in this interpreter (``models/<id>``)."""
    return httpstan.models.calculate_model_name(code)


def _lib_dir() -> Path:
    """The folder httpstan links its modules' RUNPATH to (models.py: PACKAGE_DIR / "lib")."""
    return httpstan.models.PACKAGE_DIR / "lib"


def _module_file(folder: Path) -> Path | None:
    """The extension module in ``folder`` (httpstan loads the first file with an extension suffix)."""
    try:
        return next((p for p in sorted(folder.iterdir()) if p.suffix in EXTENSION_SUFFIXES and p.is_file()), None)
    except FileNotFoundError:
        return None


def _suffix(path: Path) -> str:
    """The full extension suffix of ``path`` (e.g. ``.cpython-312-x86_64-linux-gnu.so``)."""
    return next(s for s in sorted(EXTENSION_SUFFIXES, key=len, reverse=True) if path.name.endswith(s))


def _meta(entry: Path) -> dict | None:
    """The entry's description if the entry is complete and usable here, else None."""
    try:
        meta = json.loads((entry / META).read_text())
    except (OSError, ValueError):
        return None
    module = entry / meta.get("module", "")
    if not (module.is_file() and all((entry / f).is_file() for f in LOGS)):
        return None
    if not Path(meta.get("runtime_lib_dir", "")).is_dir():  # the venv that built it is gone
        log.info("stored Stan build %s links to %s, which no longer exists: building again", entry,
                 meta.get("runtime_lib_dir"))
        return None
    return meta


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes ``src``'s content, atomically: a hard link where possible, else a copy (the
    temporary name ends in .tmp, not an extension suffix, so httpstan never loads it half-written)."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(src, tmp)


def _store(code: str, name: str, entry: Path) -> dict:
    """Copy httpstan's build of ``name`` into the store entry (published by one rename)."""
    src_dir = httpstan.cache.model_directory(name)
    module = _module_file(src_dir)
    if module is None:
        raise RuntimeError(f"httpstan reported {name} built, but {src_dir} holds no extension module")
    digest = hashlib.sha256(module.read_bytes()).hexdigest()
    meta = {
        "id": digest[:24],
        "module": MODULE + _suffix(module),
        "httpstan_version": httpstan.__version__,
        "python": sys.version,
        "platform": sys.platform,
        "built_as": name,
        "built_by": sys.executable,
        "runtime_lib_dir": str(_lib_dir()),
    }
    staging = entry.with_name(f"{entry.name}.{os.getpid()}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _link_or_copy(module, staging / meta["module"])
    for f in LOGS:
        write_text(staging / f, (src_dir / f).read_text() if (src_dir / f).is_file() else "")
    write_text(staging / "program.stan", code)
    write_json(staging / META, meta)
    shutil.rmtree(entry, ignore_errors=True)  # a stale entry (its venv gone); we hold the key's lock
    os.rename(staging, entry)
    write_text(src_dir / MARKER, meta["id"])
    return meta


def _seed(entry: Path, meta: dict, name: str) -> None:
    """Make httpstan's folder for ``name`` hold the store's build (unless it already does)."""
    dst_dir = httpstan.cache.model_directory(name)
    marker = dst_dir / MARKER
    if marker.is_file() and marker.read_text() == meta["id"] and _module_file(dst_dir) is not None:
        return
    dst_dir.mkdir(parents=True, exist_ok=True)
    for f in LOGS:  # read by httpstan when it finds the module: written before the module appears
        write_text(dst_dir / f, (entry / f).read_text())
    stan_model_name = f"model_{name.split('/')[1]}"  # httpstan's own file name for the module
    target = dst_dir / f"stan_services_{stan_model_name}{_suffix(entry / meta['module'])}"
    for other in dst_dir.iterdir():  # httpstan would load whichever it lists first
        if other.suffix in EXTENSION_SUFFIXES and other != target:
            other.unlink()
    _link_or_copy(entry / meta["module"], target)
    write_text(marker, meta["id"])


@contextlib.contextmanager
def compiled(code: str) -> Iterator[bool]:
    """Yields True when the program ``code`` is now loadable by this interpreter's httpstan without
    compiling (from the store, or httpstan's own cache); yields False, holding the program's lock,
    when the caller must build it now (``stan.build``), and stores that build on exit."""
    entry = entry_dir(code)
    name = model_name(code)
    meta = _meta(entry)
    if meta is not None:
        _seed(entry, meta, name)
        yield True
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(entry.with_name(f"{entry.name}.lock")):
        meta = _meta(entry)
        if meta is not None:  # another process built it while this one waited
            _seed(entry, meta, name)
            yield True
            return
        own = httpstan.cache.model_directory(name)
        if _module_file(own) is not None and not (own / MARKER).exists():
            _store(code, name, entry)  # httpstan built it in this venv before the store existed
            yield True
            return
        httpstan.cache.delete_model_directory(name)  # a stale seed, or a half-built folder
        yield False
        _store(code, name, entry)


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """``__main__`` replaced by an empty module while worker processes start: multiprocessing would
    otherwise import the main module (a script, or a ``python -m`` module) in the forkserver and again
    in every worker (seconds of imports each, measured) though httpstan's tasks never need it."""
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


def pool_start_method() -> str | None:
    """The start method of httpstan's worker pool (None if httpstan's layout is not as expected)."""
    ctx = getattr(getattr(httpstan.services_stub, "executor", None), "_mp_context", None)
    return ctx.get_start_method() if ctx is not None else None


def ensure_pool() -> str | None:
    """Give httpstan's chain pool a start method that does not fork this process, with its workers
    started now (one per CPU, as httpstan's own pool); returns the start method."""
    method = pool_start_method()
    if method != "fork":
        return method
    old = httpstan.services_stub.executor
    if getattr(old, "_processes", None):  # already forked its workers: keep them, nothing forks again
        return method
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["httpstan.services_stub"])  # what every task unpickles
    workers = getattr(old, "_max_workers", None) or os.cpu_count() or 1
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                                  initializer=httpstan.services_stub.init_worker)
    with _main_hidden():  # all workers start here: submitted at once, none is idle before the last
        concurrent.futures.wait([pool.submit(os.getpid) for _ in range(workers)])
    httpstan.services_stub.executor = pool
    old.shutdown(wait=False)
    return ctx.get_start_method()
