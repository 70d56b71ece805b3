"""Property-based test of every command line (Hypothesis): any options and configuration files given to
any sub-command of ``python -m benchmarks`` and ``python -m reference`` are validated before the command
acts. Generated values (wrong types, empty texts and lists, NaN/inf, huge numbers, paths that are
files, folders or missing, TOML documents of every shape) give exit 0, 1 or 2, never 3 and never a
traceback, within a bounded time; exit 2 prints one line and leaves every file as it was.

How it stays fast (seconds, in-process): the options each command takes are read from its own parser,
so a new option is covered without an edit here. What a command does once its input is accepted
(create its results folder, take its lock, start a worker or a cluster, write a file) is replaced by a
stand-in that records that the command *acted* and stops it: an accepted input ends there (exit 3 from
the stand-in, which counts as acted, not as a failure), so no example samples. Acting is allowed; exit
2 after acting is not reachable by construction, and exit 2 before it must leave nothing behind.
Tiny real runs of accepted input are the other test-files' business (tests/test_validate_first.py,
test_runpath.py). ``engines`` is left out: listing them imports every PPL (tests/test_cli.py runs it).

Budget: ``EXAMPLES`` examples per command (``derandomize``: the same examples every run), each a few
milliseconds once the command's modules are imported; EIGHT_SCHOOLS_HYPOTHESIS=explore searches 20x harder.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from conftest import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import benchmarks.jobs.publish as publish_job
import models.errors
import models.files
import reference.cli as reference_cli
from benchmarks.cli import COMMANDS, build_parser
from benchmarks.cli import main as bench_main
from benchmarks.runpath import store as store_mod
from benchmarks.runpath.dask_executor import DaskExecutor
from benchmarks.runpath.executors import SerialExecutor
from benchmarks.runpath.worker import Worker

EXPLORE = os.environ.get("EIGHT_SCHOOLS_HYPOTHESIS", "") == "explore"
#: examples per command: ~15 commands x this, a few ms each once imported
EXAMPLES = 400 if EXPLORE else 20
SETTINGS = settings(derandomize=not EXPLORE, database=None, deadline=None, max_examples=EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
#: seconds one call may take before it counts as a hang (the first call of a command imports its modules)
HANG_S = 60.0


class _Acted(BaseException):
    """Raised by the stand-ins: the command accepted its input and began to act."""


class _Hung(BaseException):
    pass


@pytest.fixture
def cli(tmp_path, monkeypatch, fakes):
    """(work folder, call): ``call(main, argv)`` -> (exit code, stderr lines, acted)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("EIGHT_SCHOOLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    _files(work)
    state = {"acted": False}

    def act(*args, **kwargs):
        state["acted"] = True
        raise _Acted()

    for owner, name in ((store_mod.ResultsStore, "open"), (SerialExecutor, "__init__"), (DaskExecutor, "__init__"),
                        (Worker, "spawn"), (store_mod, "prepare_dir"), (models.files, "atomic_path"),
                        (publish_job, "_replace"), (reference_cli, "write_results")):
        monkeypatch.setattr(owner, name, act)
    monkeypatch.setattr(models.errors, "_log_traceback", lambda prog, argv: None)

    def on_alarm(signum, frame):
        raise _Hung()

    def call(main, argv, capsys):
        state["acted"] = False
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        try:
            code = main(argv)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        out = capsys.readouterr()
        return code, out.err.strip().splitlines(), state["acted"]

    return work, call


def _files(work: Path) -> None:
    """What the generated paths point at: a file, a folder, a text file, a finished-looking run."""
    (work / "file.txt").write_text("a file\n")
    (work / "dir").mkdir()
    (work / "dir" / "calibration.json").write_text('{"a": 1}')
    (work / "notes.txt").write_text("notes\n")
    (work / "runs" / "bench").mkdir(parents=True)
    (work / "runs" / "bench" / "REPORT.md").write_text("# bench\n")
    (work / "snap").mkdir()
    assert reference_cli.main(["--draws", "40", "--out", str(work / "draws.nc")]) == 0  # before the stand-ins


# --- values ------------------------------------------------------------------------------------------

#: argv can hold no NUL character (exec refuses it) and no lone surrogate
_chars = st.characters(codec="utf-8", exclude_characters="\x00")
NUMBERS = st.one_of(
    st.sampled_from(["0", "1", "2", "3", "4", "8", "-1", "nan", "inf", "-inf", "1e999", "1e308", "0.5", "1.5", "",
                     " ", "99999999999999999999", "100000", "4096", "0x10", "1_000"]),
    st.integers(-(10**30), 10**30).map(str),
    st.floats().map(repr),
)
TEXTS = st.one_of(st.sampled_from(["", " ", ",", "x", "-", "--", "none", "default", "1-3", "3-1", "1-", "a,b"]),
                  st.text(_chars, max_size=10))
PATHS = st.sampled_from(["file.txt", "dir", "missing", "missing/deeper", "file.txt/child", "notes.txt", "new.nc",
                         "runs", ".", "/", "gen.toml", "/no/such/path"])
ENGINES = st.sampled_from(["fake-ok", "numpyro", "", ",", "nope", "fake-ok,fake-ok", "fake-ok,nope", " fake-ok",
                           "fake-ok,"])
PARAMS = st.sampled_from(["centered", "noncentered", "", "both"])
PRIORS = st.sampled_from(["default", "bda3", "notebook", "mu=flat;tau=flat", "normal(0, 5)", "half_cauchy(0, 5)",
                          "fixed(8)", "uniform(0, -1)", "normal(0, 1e999)", "", "x", "lognormal(200, 1)"])
DATA = st.sampled_from(["rubin", "rubin:sigma_scale=0.1", "synthetic:J=4", "synthetic:J=1", "synthetic:J=99999999999",
                        "", "rubin:sigma_scale=nan", "file.txt", "dir", "missing.csv"])
SCHEDULERS = st.sampled_from(["tcp://127.0.0.1:8786", "127.0.0.1:8786", "garbage", "foo://127.0.0.1:8786", "",
                              "tcp://:1", "tcp://h:99999", "tcp://[::1]:8786", "tls://h:1"])
RUN_IDS = st.sampled_from(["x", "", "../x", "a/b", ".", "..", "ok-id", "-x", "a" * 200])
REQUIREMENTS = st.sampled_from(["numpyro", "numpyro==0.0.1", "", "nope-dist", "dir", "file.txt",
                                "numpyro @ file:///no/such", "git+https://example.invalid/x", "numpyro>=0"])
CONFIG_NAMES = st.sampled_from(["ci", "full", "nope", "", "gen.toml", "gen.toml:ci", "file.txt:x"])
JOBS = st.lists(st.sampled_from(["bench", "compare", "sweep", "nope", "", "baselines"]), min_size=1, max_size=3)

#: option dest -> values; options not named here get values by their type
BY_DEST = {
    "engine": ENGINES, "engines": ENGINES, "param": PARAMS, "prior": PRIORS, "mu_prior": PRIORS, "tau_prior": PRIORS,
    "data": DATA, "scheduler": SCHEDULERS, "run_id": RUN_IDS, "requirement": REQUIREMENTS, "jobs": JOBS,
    "device": st.sampled_from(["cpu", "gpu", "", "tpu"]), "J": TEXTS, "scales": TEXTS, "counts": TEXTS,
}


# --- TOML documents ----------------------------------------------------------------------------------

_scalar = st.one_of(
    st.sampled_from(["fake-ok", "numpyro", "centered", "noncentered", "default", "rubin", "", "gpu", "cpu",
                     "rubin:sigma_scale={sigma_scale}", "synthetic:J=8:sigma_scale={sigma_scale}"]),
    st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, 2, 4, 100, -1]),
    st.floats(), st.booleans(), st.text(st.characters(codec="utf-8", max_codepoint=0xFFFF,
                                                      exclude_characters="\x00"), max_size=6),
)
_settings_keys = ["chains", "warmup", "draws", "target_accept", "max_treedepth", "seed", "device", "options", "foo"]
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from([*_settings_keys, "step_size_scale", "8", "64", "x"]), inner, max_size=4), max_leaves=8)
_keys = ["engines", "parameterizations", "priors", "data", "seeds", "settings", "draws", "save_draws", "description",
         "foo"]


def _good_key(key: str):
    return {"engines": st.just(["fake-ok"]), "parameterizations": st.just(["noncentered"]),
            "priors": st.just(["default"]), "data": st.just(["rubin"]), "seeds": st.just([1]),
            "settings": st.just({"chains": 2, "warmup": 10, "draws": 50}), "draws": st.just([50]),
            "save_draws": st.booleans(), "description": st.just("d"), "foo": st.just(1)}[key]


@st.composite
def toml_documents(draw, command: str) -> str:
    """A matrix (a sweep's, for ``sweep``) configuration: about half well formed, else broken in a key or two."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.text(_chars, max_size=40))  # not TOML at all, usually
    doc = {k: draw(_good_key(k)) for k in draw(st.lists(st.sampled_from(_keys[:6]), unique=True, max_size=6))}
    for _ in range(max(0, draw(st.integers(0, 3)) - 1)):
        doc[draw(st.sampled_from(_keys))] = draw(_value)
    lines = [f"{_key(k)} = {_toml(v)}" for k, v in doc.items()]
    if command == "sweep":
        scales = draw(st.one_of(st.just([0.5, 1.0]), _value))
        spec = draw(st.one_of(st.just("rubin:sigma_scale={sigma_scale}"), _scalar))
        lines += ["[sweep]", f"sigma_scales = {_toml(scales)}", "[sweep.data]",
                  f"{draw(st.sampled_from(['8', '8', '64', '1', 'x']))} = {_toml(spec)}"]
    elif draw(st.integers(0, 3)) == 0:
        for name in draw(st.lists(st.sampled_from(["main", "b", "section"]), unique=True, min_size=1, max_size=2)):
            table = draw(st.dictionaries(st.sampled_from(_keys), _value, max_size=3))
            lines += [f"[section.{name}]", *(f"{_key(k)} = {_toml(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return "{ " + ", ".join(f"{_key(k)} = {_toml(x)}" for k, x in v.items()) + " }"


# --- command lines from each command's own parser ----------------------------------------------------


#: option dest -> a value that works, drawn about half the time so that examples get past each check
GOOD = {
    "engine": "fake-ok", "engines": "fake-ok", "param": "noncentered", "prior": "default", "mu_prior": "normal(0, 5)",
    "tau_prior": "half_cauchy(0, 5)", "data": "rubin", "scheduler": "tcp://127.0.0.1:8786", "run_id": "ok-id",
    "requirement": "numpyro", "jobs": ["bench"], "seeds": "1", "chains": "2", "warmup": "10", "draws": "50",
    "target_accept": "0.8", "max_treedepth": "5", "seed": "1", "timeout": "60", "workers": "1", "results": "res",
    "reps": "10", "long_draws": "0", "rounds": "1", "alpha": "0.01", "posterior": "draws.nc", "panels": "8",
    "outdir": "outdir", "root": "dir", "run_dir": "dir", "readme": "notes.txt", "to": "snap", "runs": "runs",
    "J": "8", "scales": "1", "counts": "4", "device": "cpu", "junit": "junit.xml", "summary": "summary.md",
    "save": "save.json", "baseline": str(Path(__file__).resolve().parents[1] / "results" / "baselines" / "ci.json"),
}


def _good(action: argparse.Action, command: str):
    if action.dest == "out":
        return "new.nc" if command in ("run", "summary") else "outdir"
    if action.dest == "config":
        return "ci" if action.type is None else "gen.toml"
    return GOOD.get(action.dest)


def _values(action: argparse.Action, command: str):
    good = _good(action, command)
    odd = _odd(action, command)
    if good is None:
        return odd
    return st.integers(0, 3).flatmap(lambda i: odd if i == 0 else st.just(good))  # a working value 3 times in 4


def _odd(action: argparse.Action, command: str):
    if action.dest in BY_DEST:
        return BY_DEST[action.dest]
    if action.dest == "config":
        return CONFIG_NAMES if action.type is None else PATHS
    if action.type in (int, float):
        return NUMBERS
    if action.type is Path or action.dest in ("out", "posterior", "outdir", "root", "run_dir"):
        return PATHS
    return st.one_of(TEXTS, NUMBERS, PATHS)


@st.composite
def command_lines(draw, parser: argparse.ArgumentParser, command: str) -> list[str]:
    argv = []
    exclusive = {id(a): g for g in parser._mutually_exclusive_groups for a in g._group_actions}
    taken: set[int] = set()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if not action.option_strings:  # a positional: nearly always given
            if draw(st.integers(0, 9)) == 0 and action.nargs in ("?", "*"):
                continue
            v = draw(_values(action, command))
            argv += v if isinstance(v, list) else [v]
            continue
        if not action.required and draw(st.integers(0, 2)) != 0:  # each option in about a third of the examples
            continue
        group = exclusive.get(id(action))
        if group is not None and id(group) in taken and draw(st.integers(0, 4)) != 0:
            continue  # mostly one of a mutually exclusive group (both: argparse's own exit 2)
        taken.add(id(group))
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
            continue
        v = draw(_values(action, command))
        if isinstance(v, list):
            argv += [flag, *v]
        else:  # --flag=-1: a value that starts with '-' reaches the option (argparse would take it for a flag)
            argv += [f"{flag}={v}"] if v.startswith("-") and flag.startswith("--") else [flag, v]
    return argv


def _check(work: Path, call, capsys, main, argv: list[str], toml: str, tally: Counter) -> None:
    (work / "gen.toml").write_text(toml)
    before = snapshot(work)
    code, err, acted = call(main, argv, capsys)
    assert not any("Traceback" in line for line in err), (argv, err)
    tally["acted" if acted else f"exit {code}"] += 1
    if acted:
        return
    assert code in (0, 1, 2), (argv, err)
    if code == 2:
        assert len(err) == 1, (argv, err)
        assert snapshot(work) == before, (argv, err)


BENCH_COMMANDS = [c for c in COMMANDS if c != "engines"]


@pytest.mark.parametrize("command", BENCH_COMMANDS)
def test_any_command_line_of_benchmarks_is_validated_before_it_acts(cli, capsys, command):
    work, call = cli
    parser, _ = build_parser(command)

    tally: Counter = Counter()

    @SETTINGS
    @given(argv=command_lines(parser, command), toml=toml_documents(command))
    def prop(argv, toml):
        _check(work, call, capsys, bench_main, [command, *argv], toml, tally)

    prop()
    print(f"{command}: {dict(tally)}")
    assert tally["exit 2"] > 0  # the examples reach the refusals (and, for most commands, acting too)


REFERENCE_COMMANDS = list(reference_cli.COMMANDS)


@pytest.mark.parametrize("command", REFERENCE_COMMANDS)
def test_any_command_line_of_reference_is_validated_before_it_acts(cli, capsys, command):
    work, call = cli
    sub = next(a for a in reference_cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]

    @SETTINGS
    @given(argv=command_lines(parser, command), toml=toml_documents(command), named=st.booleans())
    def prop(argv, toml, named):
        head = [command] if named or command != reference_cli.DEFAULT_COMMAND else []
        _check(work, call, capsys, reference_cli.main, [*head, *argv], toml, tally)

    tally: Counter = Counter()
    prop()
    print(f"reference {command}: {dict(tally)}")
    assert tally["exit 2"] > 0 or command == "write-results"  # it takes only a folder
