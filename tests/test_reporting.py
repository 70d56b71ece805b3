"""benchmarks.reporting: a synthetic results folder (finished, failed, unavailable and known-break runs)
rendered to REPORT.md, tables and figures; the versions table on one machine and on two."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.text import Text

from benchmarks.reporting import failures, figures, readme, report, tables, versions
from models import PRESETS, RUBIN
from models.errors import UsageError
from models.files import write_json, write_netcdf
from reference import posterior

CHAINS, WARMUP, DRAWS = 2, 50, 200
BLACKJAX_LINK = "https://github.com/pymc-devs/pymc/issues/8367"
OTHER_LINK = "https://github.com/example/ppl/issues/7"
UNAVAILABLE = ("unavailable: no FakeStan install found: install it with `python -m fakestan.install` "
               "(or `conda install -c conda-forge fakestan-with-a-long-name`), or set FAKESTAN to an existing "
               "install (fakestan: No FakeStan installation found, run the installer or reactivate your env)")
#: divergent transitions written into each saved fit, (engine, param, seed) -> count
DIVERGENT = {("fake-a", "centered", 1): 7, ("fake-a", "centered", 2): 11, ("fake-a", "noncentered", 1): 0,
             ("fake-a", "noncentered", 2): 1, ("fake-d", "centered", 1): 3}
#: centred fake-a seed 1: this many tau draws pushed into the first bin, far above the exact density
SPIKE = 150


def _base(engine, param, seed, **kw):
    return {"key": f"main__{engine}__{param}__s{seed}", "section": "main", "engine": engine,
            "parameterization": param, "prior": "default", "prior_text": str(PRESETS["default"]),
            "data": "rubin", "J": 8, "seed": seed, "chains": CHAINS, "warmup": WARMUP, "draws": DRAWS,
            "target_accept": 0.8, "max_treedepth": 10, "error": None, **kw}


def _ok(engine, param, seed, rng):
    ess = float(rng.uniform(100, 400))
    grads = CHAINS * DRAWS * 7
    return _base(engine, param, seed, ppl="fakeppl", ppl_version="1.2.3", compile_s=0.5, compile_cached=True,
                 warmup_s=0.1, sampling_s=0.2, inference_s=0.3, total_s=0.8, min_ess_bulk=ess,
                 min_ess_tail=ess * 0.8, ess_bulk_per_s_wall=ess / 0.3, ess_bulk_per_s=ess / 0.2,
                 ess_tail_per_s=ess * 0.8 / 0.2, ess_phase="sampling", gradient_evals=grads,
                 ess_bulk_per_grad=ess / grads, divergences=DIVERGENT.get((engine, param, seed), 0),
                 max_rhat=float(1.0 + rng.uniform(0, 0.3)), check_passed=param == "noncentered",
                 check_max_abs_z=float(rng.uniform(1, 5)))


def _records() -> list[dict]:
    rng = np.random.default_rng(0)
    recs = [_ok("fake-a", p, s, rng) for p in ("centered", "noncentered") for s in (1, 2)]
    recs.append(_ok("fake-d", "centered", 1, rng))
    recs.append(_base("fake-d", "centered", 2, error="run exceeded the per-run limit of 5 s", error_kind="timeout"))
    for p in ("centered", "noncentered"):
        for s in (1, 2):
            recs.append(_base("fake-b", p, s, error=UNAVAILABLE, error_kind="unavailable",
                              machine="Fake CPU 9000, 8 cores @ host-a"))
            # an old record: no error_kind, classified from its text
            recs.append(_base("pymc-blackjax", p, s, error="TypeError: build_kernel.<locals>.kernel() got an "
                                                            "unexpected keyword argument 'progress_bar'"))
            recs.append(_base("fake-c", p, s, error="ValueError: upstream exploded", error_kind="known-break",
                              error_link=OTHER_LINK))
    return recs


def _draws(engine: str, param: str, seed: int) -> xr.DataTree:
    d = posterior(RUBIN, PRESETS["default"]).draws(CHAINS * DRAWS, seed=seed)
    shape = (CHAINS, DRAWS)
    tau = d["tau"].copy()
    if (engine, param, seed) == ("fake-a", "centered", 1):
        tau[:SPIKE] = 0.01
    div = np.zeros(CHAINS * DRAWS, bool)
    div[:DIVERGENT[(engine, param, seed)]] = True
    dims = ("chain", "draw")
    post = xr.Dataset({"mu": (dims, d["mu"].reshape(shape)), "tau": (dims, tau.reshape(shape)),
                       "theta": ((*dims, "school"), d["theta"].reshape(*shape, RUBIN.J))},
                      coords={"school": list(RUBIN.school)})
    stats = xr.Dataset({"diverging": (dims, div.reshape(shape))})
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


def _env(cpu: str, host: str) -> dict:
    return {"python": "3.12.1", "cpu": cpu, "cores": 8, "affinity": 8, "host": host, "git_revision": "abc123",
            "packages": {"arviz-stats": "9.9.9"}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results") / "compare"
    recs = _records()
    write_json(root / "runs.json", recs)
    write_json(root / "environment.json", _env("Fake CPU 9000", "host-a"))
    write_json(root / "manifests" / "fake-a-centered.json",
               {"engine": "fake-a", "ppl": "fakeppl", "ppl_version": "1.2.3", "cmdstan_version": "2.36.0"})
    for (engine, param, seed) in DIVERGENT:
        write_netcdf(_draws(engine, param, seed), root / "draws" / f"main__{engine}__{param}__s{seed}.nc")
    return root


@pytest.fixture(scope="module")
def rendered(run_dir) -> str:
    return report.render(run_dir).read_text()


def _table_rows(text: str, engine: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| {engine} |")]


def _footnote(text: str, engine: str) -> str:
    hits = [line for line in text.splitlines() if line.startswith("- [") and f"] {engine} (" in line]
    assert len(hits) == 1, hits
    return hits[0]


def test_report_explains_each_failure_once_with_its_link(rendered):
    for engine, label in (("pymc-blackjax", "known upstream break"), ("fake-c", "known upstream break"),
                          ("fake-b", "unavailable")):
        rows = _table_rows(rendered, engine)
        assert len(rows) == 2 and all(f"| {label} [" in row for row in rows), rows
        assert not any("Error" in row for row in rows)  # the raw exception stays in runs.json
    assert rendered.count(BLACKJAX_LINK) == 1 and rendered.count(OTHER_LINK) == 1
    assert "pymc-devs/pymc#8367" in _footnote(rendered, "pymc-blackjax")
    assert "1 of 2 runs: timed out [" in _table_rows(rendered, "fake-d")[0]
    assert _table_rows(rendered, "fake-a")[0].endswith("|  |")  # finished: an empty note


def test_long_reason_ends_at_a_boundary_never_mid_word(rendered):
    line = _footnote(rendered, "fake-b")
    reason = line.split("(unavailable): ", 1)[1]
    assert reason.endswith(" …")
    kept = reason.removesuffix(" …")
    message = UNAVAILABLE.removeprefix("unavailable: ")
    assert message.startswith(kept) and message[len(kept)] in " ,;(" and kept.count("`") % 2 == 0


def test_report_names_versions_machine_seeds_and_settings(rendered):
    versions_line = next(line for line in rendered.splitlines() if line.startswith("- versions:"))
    for part in ("CmdStan 2.36.0", "fakeppl 1.2.3", "arviz-stats 9.9.9"):
        assert part in versions_line
    assert "Fake CPU 9000, 8 cores @ host-a" in rendered
    settings = next(line for line in rendered.splitlines() if line.startswith("Every row:"))
    assert "prior `default`" in settings and "seeds 1, 2" in settings
    assert f"{CHAINS} chains × ({WARMUP} warmup + {DRAWS} draws)" in settings


def test_every_figure_is_written_and_linked(run_dir, rendered):
    for name in figures.FIGURES:
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}]({name})" in rendered
    assert not list(run_dir.rglob("*.tmp"))


#: run in a fresh interpreter: this test process may run JAX's threads (other tests), where make_figures
#: rightly does not fork
FORKED_FIGURES = """
import json, os, shutil, sys
from pathlib import Path
from benchmarks.reporting import figures

run_dir, tmp = Path(sys.argv[1]), Path(sys.argv[2])
records = json.loads((run_dir / "runs.json").read_text())
folders = {}
for how in ("one", "two", "child-fails"):
    folders[how] = tmp / how
    shutil.copytree(run_dir, folders[how])
    for name in figures.FIGURES:
        (folders[how] / name).unlink(missing_ok=True)
assert figures._can_fork(), "a fresh interpreter with two CPUs may fork"
out = {"two": figures.make_figures(folders["two"], records)}
figures._can_fork = lambda: False
out["one"] = figures.make_figures(folders["one"], records)
figures._can_fork = lambda: True
parent = os.getpid()
first = next(iter(figures.FIGURES))  # drawn by the child
draw = figures.FIGURES[first]

def fails_in_the_child(*args):
    if os.getpid() != parent:
        raise RuntimeError("drawing failed in the child")
    return draw(*args)

figures.FIGURES[first] = fails_in_the_child
out["child-fails"] = figures.make_figures(folders["child-fails"], records)
print(json.dumps(out))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="make_figures forks only with two CPUs")
def test_figures_drawn_in_two_processes_are_those_drawn_in_one_and_a_failing_child_is_redrawn(run_dir, tmp_path):
    """make_figures forks a child for every other figure where there are two CPUs: the same files as
    drawn in one process; a child whose drawing fails leaves its figures to the parent, which draws them."""
    done = subprocess.run([sys.executable, "-c", FORKED_FIGURES, str(run_dir), str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["two"] == out["one"] == out["child-fails"] == list(figures.FIGURES)
    for how in ("two", "child-fails"):
        for name in out["one"]:
            assert (tmp_path / how / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not list((tmp_path / how).rglob("*.tmp"))


def test_figures_are_drawn_in_this_process_where_a_runtime_runs_threads(monkeypatch):
    import types

    bridge = types.ModuleType("jax._src.xla_bridge")
    bridge._backends = {"cpu": object()}
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge", bridge)
    assert not figures._can_fork()


def _texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


@pytest.fixture(scope="module")
def drawn(run_dir):
    return figures.draw_figures(run_dir, json.loads((run_dir / "runs.json").read_text()))


def test_figures_show_failed_engines_as_failed_and_state_seeds_and_prior(drawn):
    assert set(drawn) == set(figures.FIGURES)
    for name, fig in drawn.items():
        text = _texts(fig)
        assert "prior default" in text and "seed" in text, name
        assert "failed: known upstream break (pymc-devs/pymc#8367)" in text.replace("\n", " "), name
        assert "(example/ppl#7)" in text.replace("\n", " "), name
        assert "unavailable: no FakeStan install found" in text.replace("\n", " "), name
    for name in ("ess_per_s.png", "divergences_rhat.png"):
        ticks = [t.get_text() for t in drawn[name].axes[0].get_yticklabels()]
        assert "fake-b · centred" in ticks and "pymc-blackjax · non-centred" in ticks


def test_funnel_pools_saved_seeds_and_counts_their_divergences(drawn):
    text = _texts(drawn["funnel.png"]).replace("\n", " ")
    assert "seeds 1, 2 pooled" in text
    for seed in (1, 2):
        assert f"seed {seed}: {DIVERGENT[('fake-a', 'centered', seed)]} of {CHAINS * DRAWS:,}" in text


def test_tau_marginal_labels_density_and_marks_a_clipped_spike(drawn):
    fig = drawn["tau_marginal.png"]
    drawn_axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_ylabel()]
    assert drawn_axes and all(ax.get_ylabel() == "posterior density of tau" for ax in drawn_axes)
    fake_a = next(ax for ax in drawn_axes if ax.get_title(loc="left").startswith("fake-a"))
    top = fake_a.get_ylim()[1]
    marks = [t for t in fake_a.texts if t.get_text().endswith("↑")]
    assert marks and all(float(t.get_text().split()[0]) > top for t in marks)


def test_console_table_short_labels_and_footnotes():
    text = tables.format_table(_records())
    rows = text.splitlines()
    for engine, label in (("pymc-blackjax", "known break ["), ("fake-c", "known break ["),
                          ("fake-b", "unavailable [")):
        mine = [r for r in rows if r.startswith(engine + " ")]
        assert len(mine) == 4 and all(label in r for r in mine), mine
    assert text.count(BLACKJAX_LINK) == 1 and text.count(OTHER_LINK) == 1
    notes = [r for r in rows if r.startswith("[")]
    assert len(notes) == 4  # unavailable, two known breaks, the timeout
    assert not any("TypeError" in r for r in rows if not r.startswith("["))


@pytest.mark.parametrize("text, limit, expected", [
    ("short reason", 50, "short reason"),
    ("alpha beta gamma delta", 12, "alpha beta …"),
    ("first clause, second clause that is long", 30, "first clause, second clause …"),
    ("a long first clause here, then more words", 30, "a long first clause here …"),
    ("run `conda install -c conda-forge x` now", 25, "run …"),
    ("line one\nline two", 50, "line one"),
])
def test_brief(text, limit, expected):
    assert failures.brief(text, limit) == expected


@pytest.mark.parametrize("rec, kind", [
    ({"engine": "x", "error": None}, None),
    ({"engine": "x", "error": "unavailable: no y"}, "unavailable"),
    ({"engine": "pymc-blackjax", "error": "TypeError: kernel() got an unexpected keyword argument 'progress_bar'"},
     "known-break"),
    ({"engine": "x", "error": "run exceeded the per-run limit of 5 s"}, "timeout"),
    ({"engine": "x", "error": "RuntimeError: boom"}, "error"),
    ({"engine": "x", "error": "RuntimeError: boom", "error_kind": "crashed"}, "crashed"),
])
def test_error_kind(rec, kind):
    assert failures.error_kind(rec) == kind


def _versions_root(tmp_path: Path, hosts: tuple[str, str]) -> Path:
    """Two releases of one PPL (one folder each, as `nox -s versions` writes them) and a known break."""
    rng = np.random.default_rng(1)
    root = tmp_path / "versions"
    for folder, version, host in (("fakeppl-1.0", "1.0", hosts[0]), ("fakeppl-2.0", "2.0", hosts[1])):
        recs = [{**_ok("fake-a", p, s, rng), "ppl_version": version} for p in ("centered", "noncentered")
                for s in (1, 2)]
        write_json(root / folder / "runs.json", recs)
        write_json(root / folder / "environment.json", _env("Fake CPU 9000", host))
    write_json(root / "blackjax-1.7.1" / "runs.json",
               [_base("pymc-blackjax", "centered", 1, error="TypeError: unexpected keyword 'progress_bar'")])
    write_json(root / "blackjax-1.7.1" / "environment.json", _env("Fake CPU 9000", hosts[0]))
    return root


def test_versions_table_one_machine(tmp_path):
    text = versions.versions_table(_versions_root(tmp_path, ("host-a", "host-a")))
    per_draw = f"{0.2 / (CHAINS * DRAWS) * 1e6:.0f} µs"
    assert "machine (every column): Fake CPU 9000, 8 cores @ host-a" in text
    assert f"· {per_draw} |" in text and "[" + per_draw not in text
    assert "| engine | param | pymc-blackjax blackjax-1.7.1 | fakeppl 1.0 | fakeppl 2.0 |" in text
    assert text.count(BLACKJAX_LINK) == 1 and "| 1 run: known upstream break [1] |" in text


def test_versions_table_flags_mixed_machines(tmp_path):
    root = _versions_root(tmp_path, ("host-a", "host-b"))
    text = versions.versions_table(root)
    per_draw = f"{0.2 / (CHAINS * DRAWS) * 1e6:.0f} µs"
    assert "- machine A: Fake CPU 9000, 8 cores @ host-a" in text and "- machine B: Fake CPU 9000, 8 cores @ host-b" in text
    assert "| pymc-blackjax blackjax-1.7.1 (A) | fakeppl 1.0 (A) | fakeppl 2.0 (B) |" in text
    rows = [line for line in text.splitlines() if line.startswith("| fake-a |")]
    assert rows and all(f"[{per_draw}]" in row and f"· {per_draw}" not in row for row in rows)
    assert "different machines" in text
    out = tmp_path / "V.md"
    assert versions.cmd_versions_report(argparse.Namespace(root=root, out=out)) == 0
    assert out.read_text() == text


def test_versions_table_without_runs_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no \\*/runs.json"):
        versions.versions_table(tmp_path)


def test_update_readme_rewrites_the_compare_block_only_where_results_exist(run_dir, rendered, tmp_path):
    text = ("# x\n<!-- compare-table:start -->\nold\n<!-- compare-table:end -->\n"
            "<!-- calibration-table:start -->\nkeep me\n<!-- calibration-table:end -->\n")
    path = tmp_path / "README.md"
    path.write_text(text)
    assert readme.update_readme(path, run_dir.parent) == ["compare-table"]
    new = path.read_text()
    assert "old" not in new and "keep me" in new and "Fake CPU 9000, 8 cores @ host-a" in new
    assert new.count(BLACKJAX_LINK) == 1 and "| pymc-blackjax | centered |" in new


def test_report_names_every_machine_when_records_differ():
    recs = [{"machine": "CPU A, 2 cores @ a"}, {"machine": "CPU B, 4 cores @ b"}]
    line = report.machines_line(_env("Fake CPU 9000", "host-a"), recs)
    assert "CPU A, 2 cores @ a" in line and "CPU B, 4 cores @ b" in line and "different machines" in line
    assert report.machines_line(_env("Fake CPU 9000", "host-a"), [{}]) == "machine: Fake CPU 9000, 8 cores @ host-a"


def test_exact_overlay_data_follows_the_sigma_scale_of_the_data_spec():
    assert figures._data("rubin") is RUBIN
    scaled = figures._data("rubin:sigma_scale=0.5")
    assert scaled.y == RUBIN.y and np.allclose(scaled.sigma_array, 0.5 * RUBIN.sigma_array)
    assert figures._data("synthetic:J=64") is None


@pytest.mark.parametrize("reason", [
    "no CmdStan install found (install: python -m cmdstanpy.install_cmdstan, or set CMDSTAN)",
    "no CmdStan install found: install CmdStan with python -m cmdstanpy.install_cmdstan",
])
def test_a_figure_names_an_unavailable_engine_by_the_reasons_first_clause(reason):
    """Not a clause cut in two ("no CmdStan install found (install")."""
    rec = {"engine": "cmdstanpy", "error_kind": "unavailable", "error": f"unavailable: {reason}"}
    assert figures.why_failed([rec]) == "unavailable: no CmdStan install found"


def test_the_durations_block_states_cold_warm_and_first_lines(tmp_path):
    run = lambda wall, first=None, own=None: {"wall_s": wall, "first_output_s": first, "first_own_line_s": own}  # noqa: E731
    write_json(tmp_path / "durations" / "durations.json", {
        "cpu": "AMD EPYC", "cores": 2, "git_revision": "0123456789abcdef",
        "scenarios": {"compare": {"setup": run(6.5), "cold": run(148.0, 0.2, 60.1), "warm": run(62.2, 0.2, 4.0),
                                  "regress_first_line": run(5.8, 0.3, 5.7), "bench_first_line": run(5.9, 0.3, 5.8)},
                      "tests": {"setup": run(6.6), "cold": run(1500.0), "warm": run(700.0)}}})
    text = readme._durations_block(tmp_path)
    assert "`nox -s compare` cold 2.5 min, warm 62 s" in text and "`nox -s tests` cold 25.0 min, warm 11.7 min" in text
    assert "before any install): compare 0.2 s (cold), regress 0.3 s, bench 0.3 s" in text
    assert "after its install: compare 60.1 s (cold), regress 5.7 s, bench 5.8 s" in text
