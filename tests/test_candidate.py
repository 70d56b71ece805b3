"""The candidate gate (benchmarks/jobs/candidate.py): requirements parsed, engines mapped, the installed
candidate checked against its requirement, its commit read from a fake dist-info (PEP 610
direct_url.json) and from a temporary git checkout, and one real gate of the installed NumPyro release
against a small baseline made here, whose reports must name the candidate."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest
from conftest import require_engine

from benchmarks.cli import main as cli_main
from benchmarks.engines import ENGINES
from benchmarks.engines.base import Settings
from benchmarks.jobs.candidate import (
    SAMPLER_ALSO_USES,
    Candidate,
    check_installed,
    engines_for,
    git_commit,
    installed,
    parse_requirement,
    source_commit,
)
from benchmarks.jobs.common import RunOptions
from benchmarks.jobs.regress.config import RegressConfig
from benchmarks.jobs.regress.measure import measure
from models.errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE, UsageError
from models.files import write_json

ROOT = Path(__file__).resolve().parents[1]
CI_BASELINE = ROOT / "results" / "baselines" / "ci.json"

# --- requirements ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text,name,spec,url", [
    ("numpyro==0.22.0", "numpyro", "==0.22.0", None),
    ("pymc==6.4.0", "pymc", "==6.4.0", None),
    ("PyStan>=3.10,<4", "pystan", "<4,>=3.10", None),
    ("NumPyro @ file:///src/numpyro", "numpyro", "", "file:///src/numpyro"),
    ("numpyro @ git+https://github.com/pyro-ppl/numpyro@my-branch", "numpyro", "",
     "git+https://github.com/pyro-ppl/numpyro@my-branch"),
    ("git+https://github.com/pyro-ppl/numpyro@abc123#egg=numpyro", "numpyro", "",
     "git+https://github.com/pyro-ppl/numpyro@abc123"),
    ("https://example.org/wheels/numpyro-0.23.0.dev1-py3-none-any.whl", "numpyro", "==0.23.0.dev1",
     "https://example.org/wheels/numpyro-0.23.0.dev1-py3-none-any.whl"),
])
def test_requirements_name_their_distribution(text, name, spec, url):
    assert parse_requirement(text) == Candidate(text, name, spec, url)


def test_paths_to_wheels_sdists_and_folders(tmp_path):
    wheel = tmp_path / "dist" / "pymc-6.5.0-py3-none-any.whl"
    c = parse_requirement(str(wheel))
    assert (c.name, c.specifier, c.url) == ("pymc", "==6.5.0", wheel.as_uri())
    assert parse_requirement(str(tmp_path / "pystan-3.15.0.tar.gz")).name == "pystan"
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / "pyproject.toml").write_text('[project]\nname = "NumPyro"\nversion = "0.23.0"\n')
    c = parse_requirement(str(folder))
    assert (c.name, c.specifier, c.url) == ("numpyro", "", folder.as_uri())
    (folder / "pyproject.toml").write_text('[project]\ndynamic = ["name"]\n')
    with pytest.raises(UsageError, match="NAME @ file:///"):
        parse_requirement(str(folder))


@pytest.mark.parametrize("bad", ["", "   ", "numpyro===", "https://example.org/some/checkout", "!!"])
def test_unusable_requirements_are_usage_errors(bad):
    with pytest.raises(UsageError, match="REQUIREMENT = "):
        parse_requirement(bad)


# --- which engines a distribution gates -----------------------------------------------------------


def test_engines_of_each_ppl_include_the_samplers_that_run_through_it():
    assert set(engines_for("numpyro")) == {"numpyro", "pymc-numpyro", "numpyro-vectorized"}
    assert set(engines_for("pymc")) == {"pymc", *SAMPLER_ALSO_USES}
    assert engines_for("pystan") == ["pystan"]
    assert engines_for("no-such-distribution-here") == []
    for name, entry in ENGINES.items():  # every engine is gated by its own registry PPL
        assert name in engines_for(entry.ppl), name
    # restricted to a baseline's engines, in the baseline's order
    assert engines_for("numpyro", ["pystan", "numpyro"]) == ["numpyro"]
    assert engines_for("pymc", ["pystan", "numpyro"]) == []


def test_engines_follow_installed_runtime_dependencies():
    """A dependency's candidate (jax, httpstan) gates the engines whose PPL requires it, as installed."""
    for dep, ppl in (("jax", "numpyro"), ("httpstan", "pystan"), ("pytensor", "pymc")):
        try:
            needs = [r.split(";")[0] for r in metadata.requires(ppl) or [] if "extra ==" not in r]
        except metadata.PackageNotFoundError:
            continue
        if any(r.lower().startswith(dep) for r in needs):
            assert set(engines_for(ppl)) <= set(engines_for(dep)), dep


# --- the installed candidate and its commit -------------------------------------------------------


def _fake_dist(site: Path, name: str, version: str, direct_url: dict | None) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


def test_commit_from_a_vcs_install_and_version_checks(tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    _fake_dist(tmp_path, "fake-ppl", "1.3.0.dev4",
               {"url": "https://github.com/example/fake-ppl.git",
                "vcs_info": {"vcs": "git", "commit_id": commit, "requested_revision": "feature"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    inst = installed("Fake_PPL")
    assert (inst.name, inst.version) == ("fake-ppl", "1.3.0.dev4")
    got, source = source_commit(inst)
    assert got == commit and "git https://github.com/example/fake-ppl.git@feature" == source
    check_installed(parse_requirement("fake-ppl @ git+https://github.com/example/fake-ppl@feature"), inst)
    check_installed(parse_requirement("fake-ppl>=1.3.0.dev1"), inst)  # pre-releases satisfy a candidate's range
    with pytest.raises(UsageError, match=r"installed fake-ppl is 1\.3\.0\.dev4, which does not satisfy ==1\.2\.0"):
        check_installed(parse_requirement("fake-ppl==1.2.0"), inst)
    with pytest.raises(UsageError, match="from https://github.com/example/fake-ppl.git, not from git\\+https://github.com/other/fork"):
        check_installed(parse_requirement("fake-ppl @ git+https://github.com/other/fork@feature"), inst)
    with pytest.raises(UsageError, match="not installed"):
        installed("fake-ppl-that-is-absent")


def test_index_install_is_not_a_url_candidate(tmp_path, monkeypatch):
    _fake_dist(tmp_path, "fake-ppl", "2.0.0", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    inst = installed("fake-ppl")
    assert source_commit(inst) == (None, "package index")
    with pytest.raises(UsageError, match="from a package index, not from file:///"):
        check_installed(parse_requirement(f"fake-ppl @ {(tmp_path / 'src').as_uri()}"), inst)


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=test", "-c", "user.email=test@example.org",
                           "-c", "commit.gpgsign=false", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_commit_from_a_local_git_checkout(tmp_path, monkeypatch):
    repo = tmp_path / "ppl"
    repo.mkdir()
    (repo / "pyproject.toml").write_text('[project]\nname = "fake-ppl"\nversion = "3.0.0"\n')
    _git(repo, "init", "-q")
    _git(repo, "add", "pyproject.toml")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    site = tmp_path / "site"
    _fake_dist(site, "fake-ppl", "3.0.0", {"url": repo.as_uri(), "dir_info": {}})
    monkeypatch.syspath_prepend(str(site))
    inst = installed("fake-ppl")
    check_installed(parse_requirement(f"fake-ppl @ {repo.as_uri()}"), inst)
    check_installed(parse_requirement(str(repo)), inst)  # a bare path names the same folder
    assert source_commit(inst) == (head, f"local folder {repo.as_uri()}")
    (repo / "build.log").write_text("untracked: not a change to the source\n")
    assert git_commit(repo) == head
    (repo / "pyproject.toml").write_text('[project]\nname = "fake-ppl"\nversion = "3.0.1"\n')
    assert git_commit(repo) == f"{head}-dirty"
    plain = tmp_path / "not-a-checkout"
    plain.mkdir()
    assert git_commit(plain) is None
    (repo / "unpacked").mkdir()  # a folder inside a checkout but not tracked by it is not that checkout
    assert git_commit(repo / "unpacked") is None


# --- the command ----------------------------------------------------------------------------------


def test_no_engine_of_the_baseline_uses_the_candidate(capsys):
    require_engine("pymc")
    code = cli_main(["candidate", f"pymc=={metadata.version('pymc')}", "--baseline", str(CI_BASELINE)])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no engine of the baseline" in err and "pystan, numpyro" in err


def test_version_that_is_not_installed_is_a_usage_error(capsys):
    require_engine("numpyro")
    code = cli_main(["candidate", "numpyro==0.0.1", "--baseline", str(CI_BASELINE)])
    assert code == EXIT_USAGE
    assert f"installed numpyro is {metadata.version('numpyro')}" in capsys.readouterr().err


SMALL = RegressConfig(name="candidate-small", engines=["numpyro"], parameterizations=["noncentered"],
                      seeds=[1, 2, 3], settings=Settings(chains=2, warmup=200, draws=200), timeout_s=180)


@pytest.fixture(scope="module")
def small_baseline(tmp_path_factory) -> Path:
    require_engine("numpyro")
    root = tmp_path_factory.mktemp("candidate")
    path = root / "baseline.json"
    write_json(path, measure(SMALL, run_dir=root / "baseline.runs", options=RunOptions(results=root)))
    return path


def _suite(path: Path) -> ET.Element:
    (suite,) = ET.parse(path).getroot().findall("testsuite")
    return suite


@pytest.mark.samples
def test_installed_release_gated_against_a_small_baseline_names_its_version(small_baseline, tmp_path, monkeypatch):
    step = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    version = metadata.version("numpyro")
    code = cli_main(["candidate", f"numpyro=={version}", "--baseline", str(small_baseline),
                     "--results", str(tmp_path)])
    assert code == EXIT_OK  # the same build on the same seeds reproduces the baseline's draws
    out = tmp_path / "candidate" / "numpyro"
    suite = _suite(out / "junit.xml")
    assert suite.get("name") == f"ppl-candidate numpyro {version}"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["candidate.version"] == version and props["candidate.requirement"] == f"numpyro=={version}"
    assert {c.get("classname") for c in suite.iter("testcase")} == {"ppl-regress.numpyro.noncentered"}
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    summary = (out / "summary.md").read_text()
    assert summary.startswith(f"# Candidate `numpyro` {version}: ✅ no regression")
    assert f"requirement: `numpyro=={version}`" in summary and "source: package index" in summary
    assert step.read_text() == summary  # the candidate's summary, once; not the plain gate's as well
    doc = json.loads((out / "candidate.json").read_text())
    assert doc["exit_code"] == EXIT_OK and doc["engines"] == ["numpyro"] and doc["commit"] is None


def test_candidate_that_breaks_the_engine_is_a_regression(small_baseline, tmp_path, monkeypatch):
    """The baseline's numpyro replaced (client and workers) by a stand-in that raises: the candidate's
    engine ran in the baseline and errors now, so the command exits 1 and its reports say so."""
    spec = "numpyro=fake_engines:RAISE"
    monkeypatch.setenv("EIGHT_SCHOOLS_EXTRA_ENGINES", spec)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setitem(ENGINES, "numpyro", ENGINES["numpyro"])  # restored after the test
    version = metadata.version("numpyro")
    code = cli_main(["candidate", f"numpyro=={version}", "--baseline", str(small_baseline),
                     "--results", str(tmp_path)])
    assert code == EXIT_FAIL
    out = tmp_path / "candidate" / "numpyro"
    failures = [c for c in _suite(out / "junit.xml").iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["error"]
    assert "engine exploded" in failures[0].find("failure").get("message")
    summary = (out / "summary.md").read_text()
    assert summary.startswith(f"# Candidate `numpyro` {version}: ❌ regression")
    assert json.loads((out / "candidate.json").read_text())["failed"] == ["numpyro noncentered error"]
