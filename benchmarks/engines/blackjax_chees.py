"""blackjax-chees: BlackJAX's jittered dynamic HMC after its ChEES adaptation (Hoffman, Radul & Sountsov
2021), every chain in one vmapped program, on the JAX log density of models/jax_model.py (unconstrained,
with the log-Jacobians), float64.

Warmup: ``blackjax.chees_adaptation`` over the ensemble of chains for ``warmup`` steps: dual averaging
of one shared step size to BlackJAX's documented target (the harmonic mean of the chains' acceptance
probabilities at 0.651, the paper's optimal-HMC value; Settings.target_accept is NOT used), and Adam
(optax) on the log trajectory length maximising the ChEES criterion, learning rate ``learning_rate``
(option; default 0.1, measured by ``nox -s tune``; TFP's reference implementation,
``GradientBasedTrajectoryLengthAdaptation``, adapts at 0.025), initial step size 0.1, and BlackJAX's opt-in
ensemble-estimated diagonal metric with its slow-direction trajectory-length floor
(``mass_matrix_estimation="diagonal"``; option ``mass_matrix`` "identity" for BlackJAX's default
identity metric). Measured at 1024 chains x (300 + 100), non-centred, default prior, seed 1, on this
suite's loaded 2-core machine: identity metric 2573 min bulk ESS at ~3 gradients per draw (ESS per
gradient ~0.008; R-hat 1.35: the trajectory, ~1 in length, never grew to mu's scale of ~3 within 300
steps), diagonal 37182 at 4.4 (~0.083); Adam at 0.1 instead: 62701 at 15.3 (identity), 72304 at 17.1
(diagonal), ~0.04 per gradient. ChEES needs an ensemble: with fewer than 32 chains the warmup runs 32
(the extra chains from their own initial points) and keeps the first ``chains``. The chains job runs it
with 75 warmup steps (benchmarks/configs/chains.toml, measured by ``nox -s tune``).

Draws: ``blackjax.dynamic_hmc`` with the adapted step size and trajectory length; each transition takes
ceil(halton(i) * L / step) velocity-Verlet steps, the same i (so the same count) for every chain, as
BlackJAX's ChEES does. sample_stats: n_steps = those integration steps (one gradient each), diverging =
BlackJAX's energy-error > 1000 flag, energy and acceptance_rate from the HMC transition, tree_depth 0
(no tree). Chains are grouped in superchains sharing initial points (_many_chains).
"""

from __future__ import annotations

import math

from ._jax_common import jax, jnp
from ._many_chains import (
    MIN_ENSEMBLE,
    Algorithm,
    ManyChainEngine,
    constrained,
    ensemble_size,
    initial_positions,
    keys,
    one_of,
    positive,
    scan_draws,
    stats_dict,
    superchain_index,
)

TARGET_ACCEPTANCE_RATE = 0.651  #: blackjax.adaptation.chees_adaptation.OPTIMAL_TARGET_ACCEPTANCE_RATE
#: Adam's rate on the log trajectory length, measured by ``nox -s tune`` at 1024 chains x (150 + 100),
#: non-centred: 0.1 gave 1.4-1.5x the bulk ESS/s of 0.025 (TFP's ChEES default adaptation_rate) and of
#: 0.05, 1.9x that of 0.2, every seed passing the check (results/tuning/TUNING.md)
LEARNING_RATE = 0.1
INITIAL_STEP_SIZE = 0.1
DIVERGENCE_THRESHOLD = 1000.0  #: blackjax.dynamic_hmc's default


def _ensemble(chains: int) -> int:
    return ensemble_size(chains, minimum=MIN_ENSEMBLE)


def _max_bits(settings) -> int:
    """As chees_adaptation.run: bits of the Halton sequence for warmup + draws transitions."""
    return int(math.ceil(math.log2(settings.warmup + settings.draws)))


def integration_steps_fn(max_bits: int):
    """chees_adaptation's own integration_steps_fn (jitter_amount 1, Halton jitter), rebuilt for the
    sampling program (the warmup program returns arrays only)."""
    from blackjax.mcmc.dynamic_hmc import halton_sequence

    def fn(random_generator_arg, num_leapfrog_steps):
        return jnp.asarray(jnp.ceil(halton_sequence(random_generator_arg, max_bits) * num_leapfrog_steps), dtype=int)

    return fn


def _build(model, settings, opts, chains):
    import blackjax
    import optax
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    n = _ensemble(chains)
    index = superchain_index(chains, n)
    mass = None if opts["mass_matrix"] == "identity" else "diagonal"

    def warmup(seed, y, sigma):
        k_init, k_warm, _ = keys(seed)
        positions = initial_positions(k_init, index, model.dim)
        adaptation = blackjax.chees_adaptation(
            lambda x: model.log_density(x, y, sigma), n,
            target_acceptance_rate=TARGET_ACCEPTANCE_RATE,
            adaptation_info_fn=get_filter_adapt_info_fn(),
            mass_matrix_estimation=mass,
        )
        (states, params), _ = adaptation.run(
            k_warm, positions, INITIAL_STEP_SIZE, optax.adam(opts["learning_rate"]),
            settings.warmup, max_sampling_steps=settings.draws)
        states = jax.tree.map(lambda x: x[:chains], states)
        return (states, params["step_size"], params["inverse_mass_matrix"], params["integration_steps_params"][0])

    steps_fn = integration_steps_fn(_max_bits(settings))

    def sample(seed, carry, y, sigma):
        states, step_size, imm, num_leapfrog = carry
        _, _, k_sample = keys(seed)
        kernel = blackjax.mcmc.dynamic_hmc.build_kernel(
            divergence_threshold=DIVERGENCE_THRESHOLD, next_random_arg_fn=lambda i: i + 1,
            integration_steps_fn=steps_fn)
        def logdensity(x):
            return model.log_density(x, y, sigma)

        def step(ks, states):
            states, info = jax.vmap(
                lambda k, s: kernel(k, s, logdensity, step_size, imm, (num_leapfrog,)))(ks, states)
            stats = stats_dict(diverging=info.is_divergent, n_steps=info.num_integration_steps,
                               step_size=step_size, energy=info.energy, lp=states.logdensity,
                               acceptance_rate=info.acceptance_rate, shape=(chains,))
            return states, (states.position, stats)

        positions, stats = scan_draws(step, states, k_sample, settings.draws, chains)
        return constrained(model, positions), stats

    return warmup, sample


def _manifest(settings, opts, chains):
    return {
        "adaptation": (f"blackjax.chees_adaptation over {_ensemble(chains)} chains: dual averaging of the step "
                       f"size to target_acceptance_rate {TARGET_ACCEPTANCE_RATE} (BlackJAX's default; "
                       f"settings.target_accept unused), optax.adam(learning_rate={opts['learning_rate']}) on "
                       f"the log trajectory length, initial step size {INITIAL_STEP_SIZE}, Halton jitter, "
                       f"mass_matrix_estimation={opts['mass_matrix']}"),
        "target_acceptance_rate": TARGET_ACCEPTANCE_RATE,
        "learning_rate": opts["learning_rate"],
        "initial_step_size": INITIAL_STEP_SIZE,
        "divergence_threshold": DIVERGENCE_THRESHOLD,
        "mass_matrix": opts["mass_matrix"],
        "n_steps": "velocity-Verlet steps per transition: ceil(halton(i) * trajectory length / step size)",
    }


ALGORITHM = Algorithm(
    name="blackjax-chees",
    sampler="blackjax.dynamic_hmc (jittered trajectory length; velocity Verlet) after blackjax.chees_adaptation",
    options={"learning_rate": (LEARNING_RATE, positive),
             "mass_matrix": ("diagonal", one_of("identity", "diagonal"))},
    build=_build,
    manifest=_manifest,
    ensemble=lambda chains, opts: _ensemble(chains),
)

ENGINE = ManyChainEngine(ALGORITHM)
