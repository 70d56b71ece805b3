"""Shared fixtures: engines skip where their PPL (or CmdStan) is absent, with the reason, unless the
environment asks for every engine (EIGHT_SCHOOLS_ALL_ENGINES=1), where a skip becomes a failure.

An engine whose sampler is known broken upstream is listed in KNOWN_BROKEN: tests marked ``samples``
(those that run it) are strict xfails on that exception for it, so they fail the day upstream is fixed
and the entry can go; its other tests (log densities) run as for any engine."""

import os

import pytest

from benchmarks.engines import ENGINES, availability

REQUIRE_ALL = os.environ.get("EIGHT_SCHOOLS_ALL_ENGINES", "") not in ("", "0")


def require_engine(name: str) -> None:
    reason = availability(name)
    if reason is None:
        return
    if REQUIRE_ALL:
        pytest.fail(f"EIGHT_SCHOOLS_ALL_ENGINES is set but engine {name} is unavailable: {reason}")
    pytest.skip(reason)


#: engine -> (the exception its run raises, why): installed and importable, but cannot sample.
KNOWN_BROKEN: dict[str, tuple[type[BaseException], str]] = {
    "pymc-blackjax": (TypeError, "PyMC 6.4 + BlackJAX 1.7.1: progress_bar TypeError upstream"),
}


@pytest.fixture(params=list(ENGINES))
def engine_name(request):
    require_engine(request.param)
    if request.param in KNOWN_BROKEN and request.node.get_closest_marker("samples"):
        raises, reason = KNOWN_BROKEN[request.param]
        request.applymarker(pytest.mark.xfail(strict=True, raises=raises, reason=reason))
    return request.param
