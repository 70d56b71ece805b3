"""Shared fixtures: engines skip where their PPL (or CmdStan) is absent, with the reason, unless the
environment asks for every engine (EIGHT_SCHOOLS_ALL_ENGINES=1), where a skip becomes a failure."""

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


@pytest.fixture(params=list(ENGINES))
def engine_name(request):
    require_engine(request.param)
    return request.param
