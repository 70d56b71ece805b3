"""``python -m benchmarks publish JOB...``: refresh the committed snapshot from finished runs.

A user's run never modifies tracked files: every job writes under ``results/runs/`` (git ignores it).
Publishing is the explicit step that copies a finished run into ``results/<job>/`` (what the
repository page shows) and regenerates the README's generated blocks from it. Only the snapshot
folders named in :data:`SNAPSHOTS` are ever replaced, each whole (copied beside, then swapped).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
from pathlib import Path

from models.errors import UsageError
from models.provenance import REPO

from ..reporting.readme import update_readme
from ..runpath.store import MARKER
from .common import RUNS, SNAPSHOT
from .validate import check_output_folder

__all__ = ["HELP", "configure", "main", "SNAPSHOTS", "publish", "check_publishable"]

HELP = "copy finished runs from results/runs/ into the committed snapshot and the README"

#: job -> (folder under results/runs/, the file that proves it finished); the folder replaces the
#: snapshot's whole, except for the collections in MERGED, whose entries replace their namesakes one by one
SNAPSHOTS: dict[str, tuple[str, str]] = {
    "compare": ("compare", "REPORT.md"),
    "bench": ("bench", "REPORT.md"),
    "sweep": ("sweep", "SWEEP.md"),
    "chains": ("chains", "CHAINS.md"),
    "chains-gpu": ("chains-gpu", "CHAINS.md"),
    "approx": ("approx", "APPROX.md"),
    "calibration": ("calibration", "CALIBRATION.md"),
    "tuning": ("tuning", "TUNING.md"),
    "notebook": ("notebook", "README.md"),
    "reference": ("reference", "rubin-default.json"),
    "baselines": ("baselines", "ci.json"),
    "versions": ("versions", "VERSIONS.md"),
    "power": ("power", "POWER.md"),
    "durations": ("durations", "durations.json"),
}
#: collections published entry by entry (a baseline file, a release's folder), so that publishing one
#: baseline or one release keeps the others
MERGED = {"baselines", "versions"}
#: never copied into the snapshot: the lock, staging folders, per-run record files (runs.json holds
#: every record), per-run check files, and a job's own store of runs (runs/, pools/: the records its
#: summary is computed from, with draws; they stay with the run)
SKIP = {".lock", "records", "checks", "latest", "runs", "pools"}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("jobs", nargs="+", help=f"one or more of {', '.join(SNAPSHOTS)}")
    p.add_argument("--runs", type=Path, default=RUNS, help=f"where the runs are (default {RUNS})")
    p.add_argument("--to", type=Path, default=SNAPSHOT, help=f"the snapshot root (default {SNAPSHOT})")
    p.add_argument("--readme", type=Path, default=REPO / "README.md")


def _ignore(folder: str, names: list[str]) -> set[str]:
    # a baseline's run records (<name>.runs/) stay with the run: the baseline file holds what the gate reads
    return {n for n in names if n in SKIP or n.endswith(".partial") or n.endswith(".runs")}


def _not_in_use(src: Path) -> None:
    lock = src / ".lock"
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(f"{str(src)!r}: a run is still writing it; publish when it has finished") from None
    finally:
        os.close(fd)


def _replace(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` (a folder or a file), swapped in whole."""
    tmp, old = dst.with_name(f".{dst.name}.publishing"), dst.with_name(f".{dst.name}.old")
    for p in (tmp, old):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    if src.is_dir():
        shutil.copytree(src, tmp, ignore=_ignore, symlinks=False)
        (tmp / MARKER).unlink(missing_ok=True)
    else:
        shutil.copy2(src, tmp)
    if dst.is_symlink():
        raise UsageError(f"{str(dst)!r}: a link, not a snapshot entry; refusing to replace it")
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()


def check_publishable(job: str, runs: Path = RUNS, to: Path = SNAPSHOT) -> tuple[Path, Path]:
    """(source, destination) of publishing ``job``, every check made and nothing touched."""
    if job not in SNAPSHOTS:
        raise UsageError(f"job = {job!r}: not a published snapshot; one of {', '.join(SNAPSHOTS)}")
    folder, proof = SNAPSHOTS[job]
    src, dst = Path(runs) / folder, Path(to) / folder
    if not (src / proof).is_file():
        raise UsageError(f"{str(src)!r}: no finished {job} run there ({proof} missing); run `nox -s {job}` first")
    _not_in_use(src)
    if dst.exists() and (dst.is_symlink() or not dst.is_dir()):
        raise UsageError(f"{str(dst)!r}: not a snapshot folder; refusing to replace it")
    return src, dst


def publish(job: str, runs: Path = RUNS, to: Path = SNAPSHOT) -> Path:
    src, dst = check_publishable(job, runs, to)
    if job in MERGED:
        dst.mkdir(parents=True, exist_ok=True)
        for entry in sorted(src.iterdir()):
            if entry.name in _ignore(str(src), [entry.name]) or entry.name in (MARKER, ".lock"):
                continue
            if entry.is_dir():
                _not_in_use(entry)
            _replace(entry, dst / entry.name)
    else:
        _replace(src, dst)
    return dst


def _check_readme(readme: Path) -> None:
    try:
        Path(readme).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--readme = {str(readme)!r}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--readme = {str(readme)!r}: is a folder; name the README file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--readme = {str(readme)!r}: unreadable ({e})") from None
    if not os.access(readme, os.W_OK):
        raise UsageError(f"--readme = {str(readme)!r}: not writable")


def main(a: argparse.Namespace) -> int:
    # validate, then act: every job, the folders and the README checked before anything is copied;
    # the job names first, as they need no folder (a clone has no results/runs until a job has run)
    for job in a.jobs:
        if job not in SNAPSHOTS:
            raise UsageError(f"job = {job!r}: not a published snapshot; one of {', '.join(SNAPSHOTS)}")
    if not Path(a.runs).is_dir():
        raise UsageError(f"--runs = {str(a.runs)!r}: not a folder")
    check_output_folder(a.to, "--to")
    _check_readme(a.readme)
    if len(set(a.jobs)) != len(a.jobs):
        raise UsageError(f"jobs = {' '.join(a.jobs)!r}: a job repeats")
    for job in a.jobs:
        check_publishable(job, a.runs, a.to)
    for job in a.jobs:
        print(f"published {publish(job, a.runs, a.to)}")
    done = update_readme(a.readme, a.to)
    print(f"README blocks regenerated: {', '.join(done) or 'none'}")
    return 0
