"""The engines that run other NUTS samplers on the PyMC model through pm.sample(nuts_sampler=...):
what each sampler names or lacks is converted honestly (pymc_external.py)."""

import numpy as np
import pytest
import xarray as xr
from conftest import require_engine

from benchmarks.engines import Settings, get_engine
from benchmarks.engines.pymc_external import SAMPLERS, _sample_stats
from models import PRESETS, RUBIN
from models.pymc_model import build_model

SHORT = Settings(chains=2, warmup=150, draws=100, seed=3)


@pytest.mark.samples
@pytest.mark.parametrize("engine", ["pymc-nutpie", "pymc-numpyro"])
def test_lp_is_the_models_log_density_at_the_draw(engine):
    """lp is +log density on the unconstrained scale (Jacobian included), whatever the sampler called it
    (PyMC stores NumPyro's potential_energy, its negative, under 'lp')."""
    require_engine(engine)
    prior = PRESETS["default"]
    result = get_engine(engine).run(RUBIN, prior, "noncentered", SHORT)
    model = build_model(RUBIN, prior, "noncentered")
    logp = model.compile_logp(jacobian=True)
    post, lp = result.draws["posterior"], result.draws["sample_stats"]["lp"]
    for chain, draw in [(0, 0), (0, SHORT.draws - 1), (SHORT.chains - 1, 7)]:
        point = {
            "mu": post["mu"].values[chain, draw],
            "tau_log__": np.log(post["tau"].values[chain, draw]),
            "theta_tilde": post["theta_tilde"].values[chain, draw],
        }
        assert lp.values[chain, draw] == pytest.approx(float(logp(point)), rel=1e-9)


def test_pymc_blackjax_without_a_step_size_fails_loudly():
    """PyMC's BlackJAX path records no step size: the conversion names it rather than invent one."""
    shape = (2, 3)
    native = xr.Dataset({
        "diverging": (("chain", "draw"), np.zeros(shape, bool)),
        "energy": (("chain", "draw"), np.ones(shape)),
        "tree_depth": (("chain", "draw"), np.full(shape, 3)),
        "n_steps": (("chain", "draw"), np.full(shape, 7)),
        "acceptance_rate": (("chain", "draw"), np.full(shape, 0.8)),
        "lp": (("chain", "draw"), np.full(shape, -40.0)),
    })
    with pytest.raises(RuntimeError, match=r"pymc-blackjax: .* records no step_size \(looked for 'step_size'\)"):
        _sample_stats(SAMPLERS["blackjax"], native)
    stats = _sample_stats(SAMPLERS["blackjax"], native.assign(step_size=(("chain", "draw"), np.ones(shape))))
    np.testing.assert_array_equal(stats["tree_depth"], 3)
