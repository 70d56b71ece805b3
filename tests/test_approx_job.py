"""The approx job (issue 19): its plan is validated before anything runs, its k̂-versus-truth counts are
computed as defined, and a tiny run through the one run path writes APPROX.md, the CSV and the figures."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REQUIRE_ALL

from benchmarks.approx import APPROXIMATORS, availability
from benchmarks.cli import main as cli_main
from benchmarks.jobs.approx import CONFIG, load_approx
from benchmarks.jobs.config import ConfigError
from benchmarks.reporting.approx import khat_agreement
from benchmarks.runpath.approx_spec import ApproxSpec
from models.errors import UsageError

#: the fastest method here (a few L-BFGS iterations), for the end-to-end run
FAST = "blackjax-pathfinder"


def test_the_shipped_config_plans_every_method_section_and_seed():
    plan = load_approx(CONFIG)
    assert {s.engine for s in plan.specs} == set(APPROXIMATORS)
    sections = {s.section for s in plan.specs}
    assert sections == {"rubin", "sweep-J8", "sweep-J64"}
    rubin = [s for s in plan.specs if s.section == "rubin"]
    assert {s.parameterization for s in rubin} == {"centered", "noncentered"}
    assert len(plan.specs) == len({s.key for s in plan.specs})  # every fit its own record
    assert all(s.save_draws == (s.section == "rubin" and s.seed == 1) for s in plan.specs)


@pytest.mark.parametrize("body, message", [
    ('methods = ["nope"]', "method = 'nope' is unknown"),
    ("methods = []", "names no method"),
    ('[section.a]\nparameterizations = ["sideways"]', "'sideways' must be one of"),
    ('[section.a]\ndata = ["rubin:sigma_scale=-1"]', "sigma_scale"),
    ("foo = 1", "unknown keys ['foo']"),
    ("section = 5", "expected tables"),
    ('[section.a]\nsave_draws = "yes"', "save_draws = 'yes'"),
])
def test_bad_configs_are_named_before_anything_runs(tmp_path, body, message):
    cfg = tmp_path / "a.toml"
    cfg.write_text(body + "\n")
    with pytest.raises((ConfigError, UsageError), match=re.escape(message)):
        load_approx(cfg)


def test_unknown_method_or_section_on_the_command_line_exits_2(tmp_path):
    assert cli_main(["approx", "--methods", "nope", "--results", str(tmp_path)]) == 2
    assert cli_main(["approx", "--sections", "nope", "--results", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_an_approx_spec_names_its_method_and_keys_apart_from_engines():
    a = ApproxSpec(engine=FAST, parameterization="noncentered")
    assert a.wire()["kind"] == "approx" and a.key.startswith(f"main__{FAST}__noncentered")
    with pytest.raises(UsageError, match="method = 'nuts' is unknown"):
        ApproxSpec(engine="nuts", parameterization="centered")


def test_khat_agreement_counts_the_two_by_two_table():
    recs = [{"khat": k, "truly_fine": f, "error": None} for k, f in
            [(0.2, True), (0.5, False), (0.69, False), (0.9, True), (1.2, False), (1.5, False)]]
    recs.append({"khat": None, "truly_fine": False, "error": None})  # no k-hat: not counted
    assert khat_agreement(recs) == {"khat_ok_and_fine": 1, "khat_ok_not_fine": 2, "khat_high_and_fine": 1,
                                    "khat_high_not_fine": 2}


@pytest.mark.samples
def test_a_tiny_run_writes_approx_md_csv_and_figures(tmp_path):
    reason = availability(FAST)
    if reason is not None:
        if REQUIRE_ALL:
            pytest.fail(f"{FAST}: {reason}")
        pytest.skip(f"{FAST}: {reason}")
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'methods = ["{FAST}", "cmdstanpy-advi"]\nseeds = [1]\n[section.rubin]\n'
                   'parameterizations = ["noncentered"]\nsave_draws = true\n')
    assert cli_main(["approx", "--config", str(cfg), "--results", str(tmp_path / "runs")]) == 0
    out = tmp_path / "runs" / "approx"
    assert not (tmp_path / "runs" / "approx.partial").exists()
    md = (out / "APPROX.md").read_text()
    assert "## Rubin's data" in md and "## Does k̂ tell the truth?" in md
    for fig in ("tau_marginal.png", "tau_error_vs_scale.png", "khat_vs_error.png"):
        assert (out / fig).stat().st_size > 1000, fig
    records = {r["engine"]: r for r in json.loads((out / "runs.json").read_text())}
    fit = records[FAST]
    assert fit["error"] is None and fit["kind"] == "approx"
    assert 0 < fit["tau_coverage"] <= 1 and fit["tau_w1"] > 0 and fit["khat"] is not None
    assert set(fit["scores"]["draws"]["marginals"]) >= {"mu", "tau", "log_tau", "theta[1]"}
    energy = fit["scores"]["draws"]["energy"]  # the joint score, with its exact-vs-exact null
    assert energy["null_sd"] > 0 and fit["energy_z"] == pytest.approx(
        (energy["distance"] - energy["null_mean"]) / energy["null_sd"])
    row = next(line for line in md.splitlines() if line.startswith(f"| {FAST} | noncentered |"))
    assert f"({energy['null_mean']:.3f} ± {energy['null_sd']:.3f})" in row and "energy z" in md
    if records["cmdstanpy-advi"]["error"]:  # no CmdStan here: a record saying why, and the job went on
        assert records["cmdstanpy-advi"]["error_kind"] == "unavailable"
    assert (out / "approx.csv").read_text().splitlines()[0].startswith("key,digest,kind")
