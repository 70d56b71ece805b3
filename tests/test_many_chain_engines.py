"""The many-chain BlackJAX engines (blackjax-chees, blackjax-meads, blackjax-mclmc-adjusted,
blackjax-mclmc): superchains and their shared initial points, the draws checked against the exact
reference, kept programs, refused options. (What every engine must do is in test_engines.py.)

Smoke sizes only: 64 chains x (200 warmup + 100 draws). A cold run compiles each program (~10-20 s
per engine here); the persistent compilation cache makes a re-run ~1 s per program."""

import dataclasses
import importlib

import numpy as np
import pytest
from conftest import require_engine

from benchmarks.engines import ENGINES, Settings, SettingsError, check_capabilities, get_engine
from benchmarks.engines._jax_common import jax
from benchmarks.engines.base import COMPILED, REUSED
from models import PRESETS, RUBIN
from models.problem import Problem

pytestmark = pytest.mark.skipif(jax is None, reason="jax is not installed")

NAMES = ("blackjax-chees", "blackjax-meads", "blackjax-mclmc-adjusted", "blackjax-mclmc")
SMOKE = Settings(chains=64, warmup=200, draws=100, seed=3)
NONCENTRED = Problem(RUBIN, PRESETS["default"], "noncentered")


def _engine(name):
    require_engine(name)
    return get_engine(name)


def _many():
    return importlib.import_module("benchmarks.engines._many_chains")


@pytest.mark.parametrize(("chains", "m"), [(1, 1), (2, 1), (7, 1), (8, 1), (16, 1), (32, 2), (64, 4), (100, 10),
                                           (97, 1), (1024, 64), (100_000, 6250)])
def test_superchain_size_rule(chains, m):
    assert _many().superchain_size(chains) == m


def test_chains_share_initial_points_within_a_superchain_only():
    mc = _many()
    chains, ensemble = 64, 72  # 8 extra warmup chains of a padded ensemble: each its own point
    index = mc.superchain_index(chains, ensemble)
    points = np.asarray(mc.initial_positions(mc.keys(7)[0], index, 10))
    m = mc.superchain_size(chains)
    assert m == 4
    for c in range(chains):
        np.testing.assert_array_equal(points[c], points[(c // m) * m])
    distinct = {tuple(p) for p in points}
    assert len(distinct) == chains // m + (ensemble - chains)
    assert np.all(np.abs(points) <= 2.0)
    again = np.asarray(mc.initial_positions(mc.keys(7)[0], index, 10))
    np.testing.assert_array_equal(points, again)  # from the seed only


def test_meads_fold_shuffles_are_replayed(monkeypatch):
    """blackjax.meads_adaptation permutes the chains every num_folds steps; fold_shuffle_origin replays
    the permutations it draws, from the same keys (spied on while it runs)."""
    require_engine("blackjax-meads")
    import blackjax

    from benchmarks.engines.blackjax_meads import fold_shuffle_origin

    n, steps, folds = 8, 9, 4
    seen = []
    real = jax.random.permutation

    def spy(key, x, *args, **kwargs):
        perm = real(key, x, *args, **kwargs)
        jax.debug.callback(lambda p: seen.append(np.asarray(p)), perm, ordered=True)
        return perm

    monkeypatch.setattr(jax.random, "permutation", spy)
    key = jax.random.key(5)
    positions = jax.random.normal(jax.random.key(6), (n, 3))
    adaptation = blackjax.meads_adaptation(lambda x: -0.5 * (x**2).sum(), n, num_folds=folds)
    jax.block_until_ready(adaptation.run(key, positions, num_steps=steps)[0].state)
    jax.effects_barrier()
    monkeypatch.setattr(jax.random, "permutation", real)
    assert len(seen) == steps
    origin = np.arange(n)
    for t, perm in enumerate(seen):
        if (t + 1) % folds == 0:
            origin = origin[perm]
    np.testing.assert_array_equal(np.asarray(fold_shuffle_origin(key, n, steps, folds)), origin)
    assert not np.array_equal(origin, np.arange(n))  # two shuffles happened


def test_chees_integration_steps_are_blackjaxs():
    """The sampling program rebuilds chees_adaptation's integration_steps_fn (Halton jitter)."""
    require_engine("blackjax-chees")
    import blackjax
    import optax

    from benchmarks.engines.blackjax_chees import integration_steps_fn

    warmup, draws = 200, 100
    got = {}

    def run(positions):
        adaptation = blackjax.chees_adaptation(lambda x: -0.5 * (x**2).sum(), 4)
        (_, params), _ = adaptation.run(jax.random.key(0), positions, 0.1, optax.adam(0.025), warmup,
                                        max_sampling_steps=draws)
        got.update(params)
        return params["step_size"]

    jax.make_jaxpr(run)(jax.numpy.zeros((4, 3)))
    ours = integration_steps_fn(int(np.ceil(np.log2(warmup + draws))))
    for i in range(0, warmup + draws, 7):
        for length in (1.0, 3.7, 12.0):
            assert int(ours(jax.numpy.int64(i), length)) == int(got["integration_steps_fn"](jax.numpy.int64(i), length))


@pytest.mark.parametrize("name", NAMES)
def test_registry_entries(name):
    entry = ENGINES[name]
    assert entry.group == "chains" and entry.devices == ("cpu", "gpu") and entry.ppl == "blackjax"
    assert entry.options  # every one takes an option (its documented default recorded in the manifest)


@pytest.mark.parametrize(("name", "option", "value"), [
    ("blackjax-chees", "learning_rate", -0.1), ("blackjax-chees", "mass_matrix", "dense"),
    ("blackjax-meads", "num_folds", 2.5), ("blackjax-mclmc-adjusted", "target_acceptance_rate", 1.5),
    ("blackjax-mclmc", "step_size_scale", 0)])
def test_a_bad_option_value_is_refused_naming_field_and_value(name, option, value):
    settings = dataclasses.replace(SMOKE, options={option: value})
    check_capabilities(name, settings)  # the registry knows the option; its value is the engine's to judge
    with pytest.raises(SettingsError, match=f"options.{option} = {value!r}: "):
        _engine(name).run(NONCENTRED, settings)


@pytest.mark.parametrize("name", NAMES)
def test_an_option_of_another_engine_is_refused(name):
    settings = dataclasses.replace(SMOKE, options={"no_such_option": 1})
    with pytest.raises(SettingsError, match="options.no_such_option = 1: engine .* has no such option"):
        check_capabilities(name, settings)
    with pytest.raises(SettingsError, match="options.no_such_option = 1"):
        _engine(name).run(NONCENTRED, settings)


def test_no_warmup_is_refused():
    with pytest.raises(SettingsError, match="warmup = 0: engine blackjax-chees tunes during its warmup"):
        _engine("blackjax-chees").run(NONCENTRED, dataclasses.replace(SMOKE, warmup=0))


@pytest.mark.samples
@pytest.mark.parametrize("name", NAMES)
def test_smoke_fit_passes_the_reference_check_and_a_second_seed_compiles_nothing(name):
    from reference import posterior
    from reference.check import check

    engine = _engine(name)
    first = engine.run(NONCENTRED, SMOKE)
    verdict = check(first.draws, posterior(RUBIN, PRESETS["default"]))
    assert verdict.passed, (name, verdict.failed, verdict.max_abs_z, verdict.threshold)
    post, stats = first.draws["posterior"], first.draws["sample_stats"]
    assert post.sizes["chain"] == 64 and post.sizes["draw"] == 100
    m = post.attrs["superchain_size"]
    assert isinstance(m, int) and m == 4
    assert first.manifest["superchains"] == 16 and first.manifest["superchain_size"] == 4
    assert first.manifest["device"].startswith("cpu")
    assert first.manifest["options"] and all(k in ENGINES[name].options for k in first.manifest["options"])
    assert np.all(stats["n_steps"].values >= 1) and np.all(stats["tree_depth"].values == 0)
    assert not np.array_equal(post["mu"].values[0], post["mu"].values[1])  # one start, two chains
    again = engine.run(NONCENTRED, dataclasses.replace(SMOKE, seed=4))
    assert first.manifest["program"] in (COMPILED, REUSED) and again.manifest["program"] == REUSED
    assert again.timings.compile_s < 0.05 and again.timings.compile_cached
    assert not np.array_equal(first.draws["posterior"]["mu"].values, again.draws["posterior"]["mu"].values)


@pytest.mark.samples
@pytest.mark.parametrize("name", ["blackjax-chees", "blackjax-meads"])
def test_one_chain_runs_from_a_padded_warmup_ensemble(name):
    result = _engine(name).run(NONCENTRED, Settings(chains=1, warmup=100, draws=20, seed=1))
    assert result.draws["posterior"].sizes["chain"] == 1
    assert result.manifest["warmup_chains"] == 32 and result.manifest["superchain_size"] == 1
    assert np.all(np.isfinite(result.draws["posterior"]["tau"].values))
