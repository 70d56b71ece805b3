"""Shared fixtures: engines skip where their PPL (or CmdStan) is absent, with the reason, unless the
environment asks for every engine (EIGHT_SCHOOLS_ALL_ENGINES=1), where a skip becomes a failure.

An engine whose sampler is known broken upstream has an entry in the registry's KNOWN_BREAKS: tests
marked ``samples`` (those that run it) are strict xfails on that exception for it, so they fail the day
upstream is fixed and the entry can go; its other tests (log densities) run as for any engine."""

import builtins
import os
from pathlib import Path

import pytest
from fake_engines import REGISTRY_ENV

from benchmarks.engines import ENGINES, KNOWN_BREAKS, availability
from benchmarks.runpath.plugins import register_extra_engines

REQUIRE_ALL = os.environ.get("EIGHT_SCHOOLS_ALL_ENGINES", "") not in ("", "0")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and content hash (files) - what a call may not change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = ("dir",)
        for f in filenames:
            p = Path(dirpath) / f
            out[os.path.relpath(p, root)] = ("file", p.stat().st_size, hash(p.read_bytes()))
    return out


def require_engine(name: str) -> None:
    reason = availability(name)
    if reason is None:
        return
    if REQUIRE_ALL:
        pytest.fail(f"EIGHT_SCHOOLS_ALL_ENGINES is set but engine {name} is unavailable: {reason}")
    pytest.skip(f"{name}: {reason}")


def known_break_marker(name: str):
    """The strict xfail for an engine in KNOWN_BREAKS (None for the others)."""
    kb = KNOWN_BREAKS.get(name)
    if kb is None:
        return None
    raises = getattr(builtins, kb.exception, None)
    if not (isinstance(raises, type) and issubclass(raises, BaseException)):
        raise TypeError(f"KNOWN_BREAKS[{name!r}].exception = {kb.exception!r}: not a built-in exception")
    return pytest.mark.xfail(strict=True, raises=raises, reason=f"{kb.summary} ({kb.upstream})")


@pytest.fixture(params=list(ENGINES))
def engine_name(request):
    require_engine(request.param)
    marker = known_break_marker(request.param)
    if marker is not None and request.node.get_closest_marker("samples"):
        request.applymarker(marker)
    return request.param


#: the tests folder: stand-in engines (fake_engines.py) are imported from it by worker processes
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    """Fake engines registered here and in every worker; their calls logged to a file."""
    monkeypatch.setenv("EIGHT_SCHOOLS_EXTRA_ENGINES", REGISTRY_ENV)
    monkeypatch.setenv("PYTHONPATH", str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_ENGINE_LOG", str(log))
    added = register_extra_engines(REGISTRY_ENV)
    yield log
    for name in added:
        ENGINES.pop(name, None)
