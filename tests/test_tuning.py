"""The configuration search behind the "within 1.2x of the best configuration" goal (nox -s tune)."""

import platform

import pytest
from conftest import require_engine

from benchmarks.engines.base import Settings
from benchmarks.jobs import tune as tuning
from benchmarks.jobs import tune_chains
from benchmarks.jobs.common import RunOptions
from benchmarks.runpath.worker import _apply_overrides


def _config(label, times):
    return {"label": label, "runs": [{"inference_s": t, "compile_s": 0.1} for t in times], "errors": []}


def test_summary_compares_the_shipped_configuration_with_the_best():
    configs = [_config("as shipped", [1.3, 1.3, 1.4]), _config("other", [1.0, 1.1, 0.9])]
    s = tuning.summarize(configs)
    assert s["best_median_inference_s"] == 1.0
    assert s["shipped_ratio"] == pytest.approx(1.3) and not s["meets_goal"]
    s = tuning.summarize([_config("as shipped", [1.1, 1.15, 1.2]), _config("other", [1.0, 1.0, 1.0])])
    assert s["meets_goal"] and s["shipped_ratio"] == pytest.approx(1.15)


def test_a_failed_configuration_has_no_median_and_no_verdict():
    failed = {"label": "as shipped", "runs": [], "errors": ["RuntimeError: boom"]}
    s = tuning.summarize([failed, _config("other", [1.0])])
    assert s["shipped_ratio"] is None and not s["meets_goal"]
    assert "failed: RuntimeError: boom" in tuning.render_markdown(
        {"settings": {"chains": 4, "warmup": 1, "draws": 1}, "measure": "m", "seeds": [1], "rounds": 1,
         "problem": "p", "goal_ratio": 1.2, "engines": {"x": {"configs": [failed], **s}}})


def test_every_override_names_a_real_setting():
    for engine, configs in tuning.CANDIDATES.items():
        for c in configs:
            for target in c.overrides:
                module, _, attr = target.partition(":")
                mod = __import__(module, fromlist=["_"])
                name = attr.split("[")[0]
                assert hasattr(mod, name), (engine, target)


def test_a_worker_runs_a_configuration_in_a_fresh_process(tmp_path):
    require_engine("pystan")
    res = tuning.run_tuning(tmp_path, engines=["pystan"], seeds=1, rounds=1, cold=False,
                            settings=Settings(chains=2, warmup=100, draws=100), progress=lambda *_: None)
    e = res["engines"]["pystan"]
    assert len(e["configs"][0]["runs"]) == 1 and e["shipped_ratio"] == 1.0
    assert (tmp_path / "TUNING.md").exists() and (tmp_path / "tuning.json").exists()
    with pytest.raises(AttributeError, match="has no NOPE"):
        _apply_overrides({"benchmarks.engines.pymc_engine:NOPE": 1})


def test_cold_environment_moves_every_compile_cache(tmp_path):
    env = tuning.cold_env(tmp_path)
    assert env["HOME"] == str(tmp_path) and env["XDG_CACHE_HOME"].startswith(str(tmp_path))
    assert str(tmp_path) in env["PYTENSOR_FLAGS"] and env["NUMBA_CACHE_DIR"].startswith(str(tmp_path))
    assert env["JAX_COMPILATION_CACHE_DIR"] == ""  # unset: EIGHT_SCHOOLS_CACHE (under tmp_path) decides


def test_tune_on_a_local_cluster_runs_every_configuration_and_round_once(tmp_path, fakes):
    """--workers N: each (configuration, round) and the cold start is one Dask task that starts its own
    fresh worker process; the client gathers the same measurements the in-process order makes, each
    naming the machine that measured it."""
    pytest.importorskip("distributed")
    res = tuning.run_tuning(tmp_path, engines=["fake-ok"], seeds=2, rounds=2, cold=True,
                            settings=Settings(chains=2, warmup=50, draws=50), progress=lambda *_: None,
                            options=RunOptions(timeout=None, workers=2))
    e = res["engines"]["fake-ok"]
    assert [len(c["runs"]) for c in e["configs"]] == [4] and e["configs"][0]["errors"] == []
    assert e["configs"][0]["hosts"] == [platform.node()] and res["hosts"] == [platform.node()]
    assert len(e["cold"]["runs"]) == 1 and e["cold"]["runs"][0]["seed"] == 1
    # 2 rounds x (one discarded warm run + 2 seeds) + the cold start, each engine call exactly once
    assert len(fakes.read_text().splitlines()) == 2 * (1 + 2) + 1
    assert "Timings from" not in (tmp_path / "TUNING.md").read_text()  # one machine: no caveat


def _choice(label, rates, passes):
    return {"label": label, "errors": [],
            "runs": [{"ess_bulk_per_s_wall": r, "check_passed": p} for r, p in zip(rates, passes, strict=True)]}


def test_a_many_chain_choice_counts_only_where_every_seed_passes_the_check():
    """tune_chains: the best configuration is the fastest one that is right on every seed; the shipped
    choice's verdict is best / shipped against the goal, and none where the shipped one is wrong."""
    configs = [_choice("as shipped", [100, 110, 90], [True] * 3), _choice("faster, wrong once", [500, 500, 500],
               [True, False, True]), _choice("faster", [115, 125, 120], [True] * 3)]
    s = tune_chains.summarize_choices(configs, tuning.GOAL_RATIO)
    assert s["best"] == "faster" and s["shipped_ratio"] == pytest.approx(1.2) and s["meets_goal"]
    assert configs[1]["sound"] is False and configs[1]["median_ess_per_s"] == 500
    s = tune_chains.summarize_choices([_choice("as shipped", [100] * 3, [True] * 3), _choice("b", [130] * 3, [True] * 3)], tuning.GOAL_RATIO)
    assert s["shipped_ratio"] == pytest.approx(1.3) and not s["meets_goal"]
    s = tune_chains.summarize_choices([_choice("as shipped", [200] * 3, [False] * 3), _choice("b", [130] * 3, [True] * 3)], tuning.GOAL_RATIO)
    assert s["shipped_ratio"] is None and not s["meets_goal"] and s["best"] == "b"


def test_the_many_chain_choices_run_through_the_run_path_with_their_settings(tmp_path, fakes, monkeypatch):
    """Every choice of an engine: one discarded run, then one run per seed; a choice's settings reach the
    run (its warmup here) and TUNING.md gets the section."""
    monkeypatch.setitem(tune_chains.CHOICES, "fake-ok", lambda w: [tune_chains.Choice("as shipped"),
                                                                 tune_chains.Choice("fewer warmup", settings={"warmup": 20})])
    monkeypatch.setattr(tune_chains, "CHAINS", 2)
    monkeypatch.setattr(tune_chains, "WARMUP", 40)
    monkeypatch.setattr(tune_chains, "DRAWS", 200)
    res = tuning.run_tuning(tmp_path, engines=["fake-ok"], seeds=2, rounds=1, cold=False, progress=lambda *_: None)
    e = res["chains"]["engines"]["fake-ok"]
    assert [len(c["runs"]) for c in e["configs"]] == [2, 2] and e["shipped_ratio"] is not None
    assert res["engines"] == {}  # a many-chain engine's choices, not the configurations of tune.py
    assert [[r["warmup"] for r in c["runs"]] for c in e["configs"]] == [[40, 40], [20, 20]]
    assert len(fakes.read_text().splitlines()) == 2 * (1 + 2)  # two choices x (discarded + two seeds), once each
    assert "## The many-chain samplers' choices" in (tmp_path / "TUNING.md").read_text()


def test_the_many_chain_choices_start_from_what_the_chains_job_ships():
    """Each engine's first choice is what the chains job runs (its warmup from chains.toml, its option
    values from the engine's constants); the alternatives differ from it, and the job's grid is tune's."""
    from benchmarks.engines import blackjax_chees, blackjax_mclmc
    from benchmarks.jobs.chains import CONFIG, load_chains
    from benchmarks.jobs.config import read_toml

    scaling = read_toml(CONFIG)["scaling"]
    assert (tune_chains.WARMUP, tune_chains.DRAWS) == (scaling["warmup"], scaling["draws"])
    plan = load_chains(CONFIG)
    for engine, make in tune_chains.CHOICES.items():
        w = tune_chains.shipped_warmup(engine)
        choices = make(w)
        assert choices[0].label.startswith("as shipped") and f"{w} warmup steps" in choices[0].label
        assert not choices[0].options and not choices[0].settings
        assert all(c.options or c.settings.get("warmup", w) != w for c in choices[1:])
        assert len({c.label for c in choices}) == len(choices)
        ran = {s.settings[0].warmup for s in plan.sections if s.name == "scaling-c1024" and engine in s.engines}
        assert ran == {w}
    assert f"Adam {blackjax_chees.LEARNING_RATE:g}" in tune_chains.CHOICES["blackjax-chees"](75)[0].label
    assert f"acceptance {blackjax_mclmc.TARGET_ACCEPTANCE_RATE:g}" in tune_chains.CHOICES["blackjax-mclmc-adjusted"](300)[0].label
