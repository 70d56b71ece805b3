"""The layout keeps its promises: dependencies one way (models <- reference <- benchmarks), no import
cycle among module-level imports, no module over 500 lines, and function-level imports only where a
heavy or optional package (a PPL, Dask, matplotlib) must stay lazy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "reference", "benchmarks")
#: the most lines a module may have (issue 12)
MAX_LINES = 500
#: packages a function may import lazily: PPLs and their compilers and optimisers (seconds to import, optional
#: extras), Dask (optional), matplotlib (figures only), and the PPL-side modules of this project
LAZY_OK = ("pymc", "pytensor", "numpyro", "jax", "jaxlib", "blackjax", "nutpie", "stan", "httpstan",
           "cmdstanpy", "distributed", "dask", "matplotlib", "arviz_plots", "optax", "pymc_extras", "flowjax", "models.pymc_model",
           "models.numpyro_model", "models.jax_model", "models.stan_program")


#: (module, what it imports inside a function) -> why that import must be lazy
ALLOWED = {
    ("benchmarks.runpath.worker", "benchmarks.runpath.execute"):
        "a worker pins its CPUs and starts its watchdog before NumPy and the run path load",
    ("benchmarks.runpath.worker", "benchmarks.runpath.plugins"): "as above (plugins import the registry)",
    ("benchmarks.runpath.sibling", "benchmarks.engines"): "as above: the worker imports the sibling module",
    ("reference.draws", "arviz_base"):
        "a process that only reads the reference (the report's) then never loads it, nor the lazy JAX stand-in "
        "it registers, which Matplotlib's array checks would resolve by importing JAX",
    ("benchmarks.runpath.checker", "reference.check"):
        "the check's helper process imports it beside the worker's own imports; the worker imports the "
        "checker before the run path",
    ("benchmarks.runpath.checker", "reference.core"): "as above",
    ("benchmarks.reporting.warm", "benchmarks.reporting.report"):
        "the report's imports (Matplotlib, ~1 s) load in a thread while compare's worker starts, so the "
        "client reaches its worker first (issue 21: the whole command's time)",
    ("benchmarks.reporting.warm", "benchmarks.reporting.figures"): "as above",
    ("benchmarks.reporting.warm", "numpy"): "as above: the NetCDF read it warms",
    ("benchmarks.reporting.warm", "xarray"): "as above",
    ("benchmarks.reporting.warm", "netCDF4"): "as above",
    ("benchmarks.jobs.compare", "benchmarks.reporting.report"): "as above: warm_up has imported it by then",
}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def _resolve(module: str, node: ast.ImportFrom, is_pkg: bool, known: dict | None = None) -> list[str]:
    """The modules an ImportFrom loads: ``from . import x`` loads the submodule x (its package is being
    imported already), ``from .m import name`` loads m."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        parts = parts if is_pkg else parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    subs = [f"{base}.{a.name}" for a in node.names if known is not None and f"{base}.{a.name}" in known]
    return subs if subs else [base]


def module_level_imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:  # module level only: what runs at import
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                deps |= set(_resolve(name, node, path.name == "__init__.py", mods))
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def test_no_import_cycle_anywhere():
    mods = modules()
    graph = module_level_imports(mods)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for d in graph.get(node, ()):
                if d == start:
                    return [*path, d]
                if d not in seen:
                    seen.add(d)
                    stack.append((d, [*path, d]))
        return None

    cycles = sorted({" -> ".join(c) for m in graph if (c := cycle_from(m))})
    assert cycles == [], cycles


def test_dependencies_point_one_way():
    graph = module_level_imports(modules())
    rank = {"models": 0, "reference": 1, "benchmarks": 2}
    upward = [f"{m} imports {d}" for m, deps in graph.items() for d in deps
              if rank[d.split(".")[0]] > rank[m.split(".")[0]]]
    assert upward == []


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_module_over_500_lines(pkg):
    long = {str(p.relative_to(REPO)): n for p in (REPO / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_function_level_imports_are_only_the_lazy_heavy_ones():
    """Imports inside functions hide ties between modules; only PPLs, Dask and matplotlib may be lazy."""
    hidden = []
    mods = modules()
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    targets = _resolve(name, node, path.name == "__init__.py", mods)
                else:
                    continue
                for t in targets:
                    if (name, t) in ALLOWED:
                        continue
                    if not any(t == ok or t.startswith(ok + ".") for ok in LAZY_OK) and not _lazy_ppl_module(t):
                        hidden.append(f"{path.relative_to(REPO)}:{node.lineno} imports {t}")
    assert hidden == [], "\n".join(hidden)


def _lazy_ppl_module(target: str) -> bool:
    """This project's modules that import a PPL at their top, loaded lazily: every engine module the
    registry names (so a new engine needs no edit here) and the engines' private helpers."""
    from benchmarks.engines import ENGINES

    registered = {e.target.split(":", 1)[0] for e in ENGINES.values()}
    return target in registered or (target.startswith("benchmarks.engines.") and target.rsplit(".", 1)[-1] in (
        "_httpstan", "_stan_preload", "_jax_common", "_call_timing"))
