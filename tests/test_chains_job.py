"""The chains job (issue 18): its plan is validated before anything runs, its crossover is computed as
defined, and a tiny run through the one run path (fake engines) writes CHAINS.md, the CSV and the figure."""

from __future__ import annotations

import json

import pytest

from benchmarks.cli import main as cli_main
from benchmarks.jobs.chains import CONFIG, load_chains, parse_counts
from benchmarks.reporting.chains import crossovers, yardstick
from models.errors import UsageError

TINY = """
parameterizations = ["noncentered", "centered"]
seeds = [1, 2]
[scaling]
counts = [2, 4]
warmup = 10
draws = 50
[scaling.max_chains]
"fake-ok" = 4
[yardstick]
engines = ["fake-ok"]
[step_size]
"""


def test_the_shipped_config_plans_every_part():
    plan = load_chains(CONFIG)
    names = [s.name for s in plan.sections]
    assert list(dict.fromkeys(names))[:6] == [f"scaling-c{n}" for n in (4, 16, 64, 256, 1024, 4096)]
    assert "yardstick" in names and any(n.startswith("step-") for n in names)
    vec = {s.name for s in plan.sections if "numpyro-vectorized" in s.engines}
    assert "scaling-c1024" not in vec and "scaling-c256" in vec  # its max_chains
    step = next(s for s in plan.sections if s.name.startswith("step-"))
    assert step.settings[0].option("step_size_scale") is not None


def test_an_engine_runs_at_its_own_warmup_where_the_config_names_one(tmp_path, fakes):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace('"fake-ok" = 4', '"fake-ok" = 4\n"fake-zero-tau" = 4\n[scaling.engine_warmup]\n"fake-ok" = 7'))
    plan = load_chains(cfg)
    at_4 = {(e, s.settings[0].warmup) for s in plan.sections if s.name == "scaling-c4" for e in s.engines}
    assert at_4 == {("fake-ok", 7), ("fake-zero-tau", 10)}
    for table, message in [('"fake-ok" = -1', r"scaling.engine_warmup.fake-ok = -1: must be a whole number"),
                           ('"nope" = 5', "engine = 'nope' is unknown"),
                           ('"fake-slow" = 5', "engine = 'fake-slow' is not in scaling.max_chains")]:
        cfg.write_text(TINY.replace('"fake-ok" = 4', f'"fake-ok" = 4\n[scaling.engine_warmup]\n{table}'))
        with pytest.raises(UsageError, match=message):
            load_chains(cfg)


@pytest.mark.parametrize("text, message", [
    ("4,x", "'x' is not a number of chains"), ("0", "'0' is not a number of chains"),
    ("200000", "from 1 to 100000"), ("4,4", "a count repeats"),
])
def test_bad_counts_are_named(text, message):
    with pytest.raises(UsageError, match=message):
        parse_counts(text)


def test_a_device_an_engine_lacks_is_refused_before_anything_runs(tmp_path, fakes):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace('"fake-ok" = 4', '"numpyro" = 4'))  # numpyro runs on the CPU only
    with pytest.raises(UsageError, match="device = .gpu.: engine numpyro runs on cpu only"):
        load_chains(cfg, device="gpu")
    with pytest.raises(UsageError, match="--device = 'tpu'"):
        load_chains(cfg, device="tpu")
    with pytest.raises(UsageError, match="engine = 'nope' is unknown"):
        load_chains(cfg, engines=["nope"])


def _rec(section, engine, param, chains, ess_s, passed=True, seed=1):
    return {"section": section, "engine": engine, "parameterization": param, "chains": chains, "seed": seed,
            "ess_bulk_per_s_wall": ess_s, "check_passed": passed, "error": None, "options": None}


def test_crossover_is_the_first_count_whose_median_beats_the_best_4_chain_nuts():
    records = [_rec("yardstick", "numpyro", "noncentered", 4, 100.0), _rec("yardstick", "blackjax", "noncentered", 4, 300.0),
               _rec("yardstick", "pymc-nutpie-flow", "noncentered", 4, 10_000.0)]  # a flow: not the NUTS yardstick
    for n, values in ((4, (50, 60, 70)), (16, (200, 310, 400)), (64, (900, 1000, 1100))):
        records += [_rec(f"scaling-c{n}", "blackjax-chees", "noncentered", n, v, seed=i) for i, v in enumerate(values)]
    records.append(_rec("scaling-c4", "blackjax-chees", "centered", 4, 1e9))  # centred: judged by the check alone
    assert yardstick(records)["noncentered"] == ("blackjax", 300.0)
    (row,) = crossovers(records)
    assert row["crossover_chains"] == 16 and row["ess_per_s_there"] == 310.0 and row["passed_there"] == (3, 3)
    assert row["best_chains"] == 64


def test_a_tiny_run_writes_chains_md_csv_and_figure(tmp_path, fakes):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    assert cli_main(["chains", "--config", str(cfg), "--results", str(tmp_path / "runs")]) == 0
    out = tmp_path / "runs" / "chains"
    assert not (tmp_path / "runs" / "chains.partial").exists()
    md = (out / "CHAINS.md").read_text()
    assert "## Crossover" in md and "## The centred funnel" in md and "ess_per_s_vs_chains.png" in md
    assert (out / "ess_per_s_vs_chains.png").stat().st_size > 1000
    records = json.loads((out / "runs.json").read_text())
    assert len(records) == 2 * 2 * 2 + 2 * 2  # scaling (2 counts x 2 params x 2 seeds) + yardstick
    assert {r["chains"] for r in records} == {2, 4}
    lines = (out / "chains.csv").read_text().splitlines()
    assert lines[0].startswith("section,engine,parameterization") and len(lines) == len(records) + 1
