"""``python -m benchmarks candidate REQUIREMENT [--baseline FILE]``: gate a candidate build of a PPL.

The candidate is any pip requirement: ``numpyro==0.22.0``, ``numpyro @ file:///path/to/checkout``,
a wheel or sdist path, a VCS URL (``numpyro @ git+https://github.com/pyro-ppl/numpyro@branch`` or
``git+https://...#egg=numpyro``). ``nox -s candidate -- REQUIREMENT`` installs it beside the suite in a
fresh environment and then runs this command, which

1. reads the distribution from the requirement and checks that what is installed is that candidate:
   the version satisfies the requirement's specifier and, for a URL or a path, the installed copy came
   from that URL (PEP 610 ``direct_url.json``), else exit 2 saying what is installed;
2. finds the engines that use the distribution (:func:`engines_for`) among the baseline's engines
   (none: exit 2, naming the baseline's engines);
3. reruns the baseline's own configuration for those engines and gates against it (``run_gate``);
4. writes JUnit XML and a markdown summary naming the candidate (requirement, installed version, and
   for a VCS or local install its commit) under ``<results>/candidate/<distribution>/``, and appends the
   summary to ``$GITHUB_STEP_SUMMARY`` when set.

Exit 0: no regression; 1: a regression; 2: unusable input; 3: internal error.

Which engines use a distribution. An engine uses its registry ``ppl`` (``benchmarks.engines.ENGINES``),
the PPLs its sampler runs through besides (:data:`SAMPLER_ALSO_USES`: the ``pymc-*`` engines build the
model and its gradient in PyMC/PyTensor and sample it with another PPL's NUTS), and every distribution
those require at run time, transitively, as installed here (``Requires-Dist`` without extras): so a
``jax`` candidate gates numpyro, blackjax and the PyMC-on-JAX engines, ``httpstan`` gates pystan,
``pytensor`` gates every PyMC engine, and ``numpy`` gates them all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from models.errors import UsageError
from models.files import write_json, write_text
from models.provenance import REPO

from ..engines import ENGINES
from .common import add_run_options
from .regress.command import run_gate
from .regress.measure import load_baseline
from .regress.reports import junit_xml, markdown_summary
from .regress.thresholds import ALPHA
from .validate import check_output_folder

__all__ = ["HELP", "configure", "main", "Candidate", "Installed", "parse_requirement", "installed",
           "check_installed", "source_commit", "git_commit", "engines_for", "requirement_closure",
           "SAMPLER_ALSO_USES", "DEFAULT_BASELINE"]

HELP = "gate a candidate PPL build (a requirement) against a baseline, in a fresh venv"

DEFAULT_BASELINE = REPO / "results" / "baselines" / "ci.json"

#: engine -> PyPI distributions its sampler runs through besides its registry ``ppl`` (the registry's
#: ``also_uses``). The PyMC-model engines sample with another PPL (the registry names that one) but build
#: the model, its log density and gradient in PyMC, so a PyMC candidate changes what they measure too.
SAMPLER_ALSO_USES: dict[str, tuple[str, ...]] = {n: e.also_uses for n, e in ENGINES.items() if e.also_uses}

#: seconds a ``git`` query of a local checkout may take before the commit is reported unknown
GIT_TIMEOUT_S = 30.0

_VCS_PREFIX = re.compile(r"^(git|hg|svn|bzr)\+", re.IGNORECASE)
_ARCHIVES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")


@dataclass(frozen=True)
class Candidate:
    requirement: str  #: as given
    name: str  #: canonical distribution name (PEP 503)
    specifier: str  #: version specifier ("" when none)
    url: str | None  #: direct reference (a URL; a path becomes a file:// URL), None for an index release


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    direct_url: dict | None  #: PEP 610 direct_url.json, None when installed from an index
    location: str


def _usage(req: str, what: str) -> UsageError:
    return UsageError(f"REQUIREMENT = {req!r}: {what}")


def _from_archive_name(req: str, filename: str, url: str) -> Candidate:
    try:
        if filename.endswith(".whl"):
            name, version, *_ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename) as e:
        raise _usage(req, f"not a wheel or sdist file name ({e})") from None
    return Candidate(req, canonicalize_name(name), f"=={version}", url)


def _project_name(req: str, folder: Path) -> str:
    try:
        project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        project = {}
    name = project.get("name") if isinstance(project, dict) else None
    if not isinstance(name, str) or not name:
        raise _usage(req, f"cannot tell which distribution the folder {str(folder)!r} builds (no [project] name in "
                          "its pyproject.toml): write it as 'NAME @ file:///absolute/path'")
    return name


def parse_requirement(text: str) -> Candidate:
    """The candidate a pip requirement names (raises UsageError, naming the requirement, when it cannot)."""
    req = str(text).strip()
    if not req:
        raise _usage(str(text), "empty; name a candidate, e.g. 'numpyro==0.22.0' or 'numpyro @ file:///path'")
    looks_like_path = req.startswith((".", "/", "~")) or os.sep in req or req.lower().endswith(_ARCHIVES)
    if "://" not in req and looks_like_path and " @ " not in req:
        path = Path(req).expanduser().resolve()
        if path.is_dir():
            return Candidate(req, canonicalize_name(_project_name(req, path)), "", path.as_uri())
        return _from_archive_name(req, path.name, path.as_uri())
    if "://" in req and " @ " not in req and not re.match(r"^[A-Za-z0-9][\w.-]*\s*@", req):
        parsed = urlparse(_VCS_PREFIX.sub("", req))
        egg = re.search(r"(?:^|&)egg=([A-Za-z0-9][\w.-]*)", parsed.fragment)
        if egg:
            return Candidate(req, canonicalize_name(egg.group(1)), "", req.split("#")[0])
        filename = unquote(parsed.path.rsplit("/", 1)[-1])
        if filename.lower().endswith(_ARCHIVES):
            return _from_archive_name(req, filename, req)
        raise _usage(req, "a URL without a distribution name: write it as 'NAME @ URL' (or add '#egg=NAME')")
    try:
        r = Requirement(req)
    except InvalidRequirement as e:
        raise _usage(req, f"not a pip requirement ({str(e).splitlines()[0]})") from None
    return Candidate(req, canonicalize_name(r.name), str(r.specifier), r.url)


def installed(name: str) -> Installed:
    """What is installed here under the distribution ``name`` (UsageError when nothing is)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise UsageError(f"distribution = {name!r}: not installed in this environment (`nox -s candidate -- "
                         "REQUIREMENT` installs the candidate first)") from None
    text = dist.read_text("direct_url.json")
    try:
        direct = json.loads(text) if text else None
    except json.JSONDecodeError:
        direct = None
    return Installed(canonicalize_name(dist.metadata["Name"] or name), dist.version, direct,
                     str(dist.locate_file("")))


def _normal_url(url: str) -> str:
    """A URL compared loosely: VCS prefix, revision, fragment, credentials and trailing / or .git dropped."""
    u = urlparse(_VCS_PREFIX.sub("", url.strip()))
    path = u.path
    if _VCS_PREFIX.match(url.strip()) and "@" in path:
        path = path.rsplit("@", 1)[0]
    if u.scheme == "file":
        path = str(Path(url2pathname(path)).resolve())
    host = (u.hostname or "").lower()
    return f"{u.scheme.lower()}://{host}{path.rstrip('/').removesuffix('.git')}"


def check_installed(cand: Candidate, inst: Installed) -> None:
    """Is ``inst`` the candidate?  The version must satisfy its specifier and, for a URL or a path, the
    installed copy must have come from that URL. UsageError (exit 2) says what is installed instead."""
    have = f"installed {inst.name} is {inst.version}"
    if cand.specifier:
        try:
            ok = SpecifierSet(cand.specifier).contains(Version(inst.version), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            raise _usage(cand.requirement, f"{have}, which does not satisfy {cand.specifier} (install the candidate "
                                           "first: nox -s candidate -- REQUIREMENT)")
    if cand.url:
        got = (inst.direct_url or {}).get("url")
        if not got:
            raise _usage(cand.requirement, f"{have} from a package index, not from {cand.url} (reinstall it: "
                                           f"pip install --force-reinstall '{cand.requirement}')")
        if _normal_url(got) != _normal_url(cand.url):
            raise _usage(cand.requirement, f"{have} from {got}, not from {cand.url}")


def git_commit(folder: Path | str) -> str | None:
    """HEAD of the git checkout holding ``folder`` (``-dirty`` appended when tracked files have uncommitted
    changes, as ``git describe --dirty`` counts them), or None when ``folder`` is not tracked by git."""
    folder = str(folder)

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None

    head = git("rev-parse", "--verify", "HEAD")
    if head is None or head.returncode != 0:
        return None
    tracked = git("ls-files", "--", ".")  # a folder inside some other repository (an unpacked sdist) is not it
    if tracked is None or tracked.returncode != 0 or not tracked.stdout.strip():
        return None
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    dirty = status is not None and status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")


def source_commit(inst: Installed) -> tuple[str | None, str]:
    """(commit, source) of an installed distribution: the VCS commit pip recorded (PEP 610 ``vcs_info``),
    or a local folder's git HEAD; source says where it came from."""
    d = inst.direct_url
    if not d:
        return None, "package index"
    url = d.get("url", "")
    if "vcs_info" in d:
        v = d["vcs_info"]
        rev = f"@{v['requested_revision']}" if v.get("requested_revision") else ""
        return v.get("commit_id"), f"{v.get('vcs', 'vcs')} {url}{rev}"
    if "dir_info" in d:
        editable = " (editable)" if d["dir_info"].get("editable") else ""
        parsed = urlparse(url)
        folder = Path(url2pathname(parsed.path)) if parsed.scheme == "file" else None
        return (git_commit(folder) if folder else None), f"local folder {url}{editable}"
    if "archive_info" in d:
        a = d["archive_info"]
        digest = a.get("hash") or next((f"{k}={v}" for k, v in (a.get("hashes") or {}).items()), None)
        return None, f"archive {url}" + (f" ({digest})" if digest else "")
    return None, f"direct URL {url}"


def requirement_closure(names: set[str] | list[str] | tuple[str, ...]) -> set[str]:
    """``names`` and every distribution they require at run time, transitively, as installed here
    (requirements behind an extra or a marker false here are left out; what is not installed ends the walk)."""
    seen = {canonicalize_name(n) for n in names}
    todo = list(seen)
    while todo:
        try:
            reqs = metadata.requires(todo.pop()) or []
        except metadata.PackageNotFoundError:
            continue
        for text in reqs:
            try:
                r = Requirement(text)
            except InvalidRequirement:
                continue
            if r.marker is not None and not r.marker.evaluate({"extra": ""}):
                continue
            n = canonicalize_name(r.name)
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def engines_for(dist: str, engines: list[str] | None = None) -> list[str]:
    """The engines (of ``engines``, default every registered one) that use the distribution ``dist``."""
    target = canonicalize_name(dist)
    out = []
    for name in engines if engines is not None else list(ENGINES):
        if name not in ENGINES:
            continue
        direct = {ENGINES[name].ppl, *SAMPLER_ALSO_USES.get(name, ())}
        if target in requirement_closure(direct):
            out.append(name)
    return out


@contextlib.contextmanager
def _no_step_summary() -> Iterator[str | None]:
    """run_gate appends its own summary to $GITHUB_STEP_SUMMARY; the candidate's (which names the
    candidate) replaces it, so the variable is hidden from run_gate and handed back."""
    saved = os.environ.pop("GITHUB_STEP_SUMMARY", None)
    try:
        yield saved
    finally:
        if saved is not None:
            os.environ["GITHUB_STEP_SUMMARY"] = saved


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("requirement", help="the candidate: any pip requirement ('numpyro==0.22.0', "
                   "'numpyro @ file:///path', a wheel, 'numpyro @ git+https://...@branch')")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE,
                   help=f"baseline file (default: {DEFAULT_BASELINE.relative_to(REPO)})")
    p.add_argument("--out", type=Path, help="reports folder (default: <results>/candidate/<distribution>/)")
    p.add_argument("--alpha", type=float, default=ALPHA, help=f"per-check false-alarm rate (default {ALPHA})")
    p.add_argument("--strict-time", action="store_true", help="fail (not warn) when time per draw rises")
    add_run_options(p)


def _header(info: dict, code: int) -> str:
    commit = f", commit `{info['commit']}`" if info["commit"] else ""
    verdict = "❌ regression" if code else "✅ no regression"
    return (f"# Candidate `{info['distribution']}` {info['version']}: {verdict}\n\n"
            f"- requirement: `{info['requirement']}`\n- installed: {info['distribution']} {info['version']}"
            f"{commit}\n- source: {info['source']}\n- engines gated: {', '.join(info['engines'])} "
            f"(those of the baseline that use {info['distribution']})\n\n")


def _junit(results, info: dict, baseline: Path, alpha: float, current: dict, time_s: float) -> str:
    props = {"baseline": str(baseline), "alpha": alpha, **{f"candidate.{k}": ", ".join(v) if isinstance(v, list) else v for k, v in info.items() if v},
             **{f"version.{p}": v for p, v in current["environment"]["packages"].items() if v}}
    root = ET.fromstring(junit_xml(results, properties=props, time_s=time_s).split("\n", 1)[1])
    commit = f" {info['commit'][:12]}" if info["commit"] else ""
    name = f"ppl-candidate {info['distribution']} {info['version']}{commit}"
    for el in (root, *root.findall("testsuite")):
        el.set("name", name)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def main(a: argparse.Namespace) -> int:
    cand = parse_requirement(a.requirement)
    inst = installed(cand.name)
    check_installed(cand, inst)
    baseline = load_baseline(a.baseline)
    base_engines = list(baseline["engines"])
    engines = engines_for(cand.name, base_engines)
    if not engines:
        raise _usage(cand.requirement, f"no engine of the baseline {str(a.baseline)!r} uses {cand.name} (the "
                                       f"baseline's engines: {', '.join(base_engines)}; engines that use it: "
                                       f"{', '.join(engines_for(cand.name)) or 'none'})")
    commit, source = source_commit(inst)
    info = {"requirement": cand.requirement, "distribution": inst.name, "version": inst.version, "commit": commit,
            "source": source, "engines": engines}
    out = a.out or Path(a.results) / "candidate" / cand.name
    check_output_folder(out, "--out")
    if not 0 < a.alpha < 1:
        raise UsageError(f"--alpha = {a.alpha!r}: must be in (0, 1)")
    print(f"candidate {inst.name} {inst.version}" + (f" (commit {commit})" if commit else "") + f" from {source}: "
          f"gating {', '.join(engines)} against {a.baseline}")
    t0 = time.perf_counter()
    with _no_step_summary() as step:
        _, results, current = run_gate(a.baseline, options=a, engines=engines, run_dir=out / "runs",
                                       save=out / "current.json", alpha=a.alpha, strict_time=a.strict_time)
    results = [r for r in results if r.engine in engines]  # the baseline's other engines were not rerun
    code = 1 if any(r.failed for r in results) else 0
    md = _header(info, code) + markdown_summary(results, baseline, current, baseline_path=str(a.baseline),
                                                alpha=a.alpha)
    write_text(out / "junit.xml", _junit(results, info, a.baseline, a.alpha, current, time.perf_counter() - t0))
    write_text(out / "summary.md", md)
    write_json(out / "candidate.json", {**info, "exit_code": code, "baseline": str(a.baseline),
                                        "installed": asdict(inst), "failed": [f"{r.engine} {r.param} {r.kind}"
                                                                              for r in results if r.failed]})
    if step:
        with open(step, "a", encoding="utf-8") as f:  # GitHub's file: appended to, as GitHub asks
            f.write(md)
    width = max(len(f"{r.engine} {r.param} {r.kind}") for r in results)
    for r in results:
        print(f"{r.status.upper():>5}  {f'{r.engine} {r.param} {r.kind}':<{width}}  {r.message}")
    failed = sorted({f"{r.engine} {r.param} {r.kind}" for r in results if r.failed})
    print(f"\ncandidate {inst.name} {inst.version}: " + (f"REGRESSION ({', '.join(failed)})" if failed else
                                                          "no regression")
          + f"; JUnit {out / 'junit.xml'}, summary {out / 'summary.md'}")
    return code
