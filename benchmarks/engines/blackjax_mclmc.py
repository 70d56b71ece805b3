"""blackjax-mclmc and blackjax-mclmc-adjusted: BlackJAX's microcanonical Langevin Monte Carlo (Robnik et
al.), unadjusted (MCLMC) and Metropolis-adjusted (MAMS, ``adjusted_mclmc_dynamic``), every chain in one
vmapped program, on the JAX log density of models/jax_model.py (unconstrained, with the log-Jacobians),
float64. Both integrate with BlackJAX's default isokinetic McLachlan (minimal-norm, two-stage) integrator:
two gradient evaluations per integration step, which is what n_steps counts.

Tuning (``warmup`` steps per chain): BlackJAX's own tuner on every chain at once (vmapped), then one set
of parameters for all chains, pooled across them: the median step size, the median L, the mean diagonal
inverse mass matrix. Chosen over tuning one chain: each chain's tune is as cheap as one (vmapped), the
pooled values are far less noisy than one chain's short tune (its L comes from an ESS over ~warmup/3
steps), and one step size for every chain makes unadjusted MCLMC's bias one function of it.

* blackjax-mclmc: ``blackjax.mclmc_find_L_and_step_size`` (diagonal preconditioning, BlackJAX's
  desired energy variance 5e-4) over ``num_steps = warmup`` with each of its three phases 0.3 of it
  (BlackJAX's 1:1:1 split, summing to ~warmup steps), then draws of ``blackjax.mcmc.mclmc`` at the pooled
  L and ``step_size_scale`` (option, default 1.0) times the pooled step size: no accept/reject, so its
  draws are biased by the step size (a result, not a bug; a job can scan ``step_size_scale``).
  sample_stats: n_steps 2 (one McLachlan step per draw), diverging = the kernel's NaN guard fired (the
  step was reverted), acceptance_rate 1.0 (nothing is rejected), energy = the potential energy -lp
  (MCLMC's isokinetic dynamics has no resampled Hamiltonian; E-BFMI from it is not NUTS's E-BFMI).
* blackjax-mclmc-adjusted: ``blackjax.adjusted_mclmc_find_L_and_step_size`` (dual averaging to
  ``target_acceptance_rate``, option, default 0.65, measured by ``nox -s tune`` (the MAMS paper's 0.9 gave
  a third of its ESS/s here); BlackJAX's
  target_num_integration_steps 2 and tuning_factor 1.3; each of its passes a third of ``warmup``), then
  ``adjusted_mclmc_dynamic`` draws with a random number of integration steps per transition, uniform
  with mean L / step (BlackJAX's ``make_random_trajectory_length_fn(True)``). n_steps = 2 x the
  transition's integration steps; diverging = BlackJAX's energy-error > 1000 flag; energy and
  acceptance_rate from the transition.

tree_depth is 0 for both (no tree). Chains are grouped in superchains sharing initial points
(_many_chains).
"""

from __future__ import annotations

from ._jax_common import jax
from ._many_chains import (
    Algorithm,
    ManyChainEngine,
    constrained,
    initial_positions,
    keys,
    pooled,
    positive,
    probability,
    scan_draws,
    stats_dict,
    superchain_index,
)

GRADIENTS_PER_STEP = 2  #: isokinetic McLachlan: two position updates, each followed by one gradient
FRAC_TUNE = 0.3  #: each of mclmc_find_L_and_step_size's three phases (its default split 1:1:1)
ADJUSTED_FRAC_TUNE = 1 / 3  #: each of adjusted_mclmc_find_L_and_step_size's three DA passes
#: adjusted MCLMC's target acceptance (``adjusted_mclmc_find_L_and_step_size`` has no default): measured by
#: ``nox -s tune`` at 1024 chains x (300 + 100), non-centred: 0.65 gave 3.2x the bulk ESS/s of the MAMS
#: paper's 0.9 and 1.5x that of 0.8, every seed passing the check (results/tuning/TUNING.md)
TARGET_ACCEPTANCE_RATE = 0.65
DIVERGENCE_THRESHOLD = 1000.0  #: adjusted_mclmc_dynamic's default


def _tuned_states(model, settings, chains, init, tune):
    """Every chain's initial state and BlackJAX's tune of it, vmapped; the pooled parameters."""

    def warmup(seed, y, sigma):
        k_init, k_warm, _ = keys(seed)
        positions = initial_positions(k_init, superchain_index(chains, chains), model.dim)
        def logdensity(x):
            return model.log_density(x, y, sigma)
        k_mom, k_tune = jax.random.split(k_warm)
        states = jax.vmap(lambda p, k: init(p, logdensity, k))(positions, jax.random.split(k_mom, chains))
        states, params = jax.vmap(lambda s, k: tune(s, k, logdensity))(states, jax.random.split(k_tune, chains))
        return states, pooled(params.step_size), pooled(params.L), pooled(params.inverse_mass_matrix, "mean")

    return warmup


def _build_unadjusted(model, settings, opts, chains):
    import blackjax
    from blackjax.mcmc import mclmc

    kernel = mclmc.build_kernel()

    def tune(state, key, logdensity):
        state, params, _ = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel, num_steps=settings.warmup, state=state, rng_key=key, logdensity_fn=logdensity,
            frac_tune1=FRAC_TUNE, frac_tune2=FRAC_TUNE, frac_tune3=FRAC_TUNE, diagonal_preconditioning=True)
        return state, params

    warmup = _tuned_states(model, settings, chains, mclmc.init, tune)
    scale = float(opts["step_size_scale"])

    def sample(seed, carry, y, sigma):
        states, step_size, L, imm = carry
        _, _, k_sample = keys(seed)
        def logdensity(x):
            return model.log_density(x, y, sigma)
        eps = step_size * scale

        def step(ks, states):
            states, info = jax.vmap(lambda k, s: kernel(k, s, logdensity, imm, L, eps))(ks, states)
            stats = stats_dict(diverging=~info.nonans, n_steps=GRADIENTS_PER_STEP, step_size=eps,
                               energy=-states.logdensity, lp=states.logdensity, acceptance_rate=1.0,
                               shape=(chains,))
            return states, (states.position, stats)

        positions, stats = scan_draws(step, states, k_sample, settings.draws, chains)
        return constrained(model, positions), stats

    return warmup, sample


def _build_adjusted(model, settings, opts, chains):
    import blackjax
    from blackjax.mcmc import adjusted_mclmc_dynamic as amclmc

    kernel = amclmc.build_kernel(integration_steps_fn=amclmc.make_random_trajectory_length_fn(True),
                                 divergence_threshold=DIVERGENCE_THRESHOLD)
    target = float(opts["target_acceptance_rate"])

    def tune(state, key, logdensity):
        state, params, _ = blackjax.adjusted_mclmc_find_L_and_step_size(
            mclmc_kernel=kernel, logdensity_fn=logdensity, num_steps=settings.warmup, state=state, rng_key=key,
            target=target, frac_tune1=ADJUSTED_FRAC_TUNE, frac_tune2=ADJUSTED_FRAC_TUNE, frac_tune3=0.0,
            diagonal_preconditioning=True)
        return state, params

    warmup = _tuned_states(model, settings, chains,
                           lambda p, logdensity, k: amclmc.init(p, logdensity, random_generator_arg=k), tune)

    def sample(seed, carry, y, sigma):
        states, step_size, L, imm = carry
        _, _, k_sample = keys(seed)
        def logdensity(x):
            return model.log_density(x, y, sigma)
        average_steps = L / step_size

        def one(k, s):
            return kernel(rng_key=k, state=s, logdensity_fn=logdensity, step_size=step_size, inverse_mass_matrix=imm,
                          integration_steps_params=(average_steps,))

        def step(ks, states):
            states, info = jax.vmap(one)(ks, states)
            stats = stats_dict(diverging=info.is_divergent,
                               n_steps=GRADIENTS_PER_STEP * info.num_integration_steps, step_size=step_size,
                               energy=info.energy, lp=states.logdensity, acceptance_rate=info.acceptance_rate,
                               shape=(chains,))
            return states, (states.position, stats)

        positions, stats = scan_draws(step, states, k_sample, settings.draws, chains)
        return constrained(model, positions), stats

    return warmup, sample


POOLING = ("BlackJAX's tuner on every chain (vmapped), then pooled: median step size, median L, mean diagonal "
           "inverse mass matrix")


def _manifest_unadjusted(settings, opts, chains):
    return {"adaptation": (f"blackjax.mclmc_find_L_and_step_size(num_steps={settings.warmup}, frac_tune1..3="
                           f"{FRAC_TUNE}, diagonal_preconditioning=True; BlackJAX's other defaults); {POOLING}; "
                           f"draws at step_size_scale {opts['step_size_scale']} x the pooled step size"),
            "step_size_scale": opts["step_size_scale"], "integrator": "isokinetic_mclachlan",
            "metropolis_adjusted": False,
            "n_steps": f"{GRADIENTS_PER_STEP} gradients per draw (one isokinetic McLachlan step)"}


def _manifest_adjusted(settings, opts, chains):
    return {"adaptation": (f"blackjax.adjusted_mclmc_find_L_and_step_size(num_steps={settings.warmup}, "
                           f"target={opts['target_acceptance_rate']}, frac_tune1=frac_tune2={ADJUSTED_FRAC_TUNE:.4g}, "
                           "frac_tune3=0, diagonal_preconditioning=True; BlackJAX's other defaults); "
                           f"{POOLING}"),
            "target_acceptance_rate": opts["target_acceptance_rate"], "integrator": "isokinetic_mclachlan",
            "metropolis_adjusted": True, "divergence_threshold": DIVERGENCE_THRESHOLD,
            "n_steps": f"{GRADIENTS_PER_STEP} x the transition's integration steps (uniform, mean L / step size)"}


UNADJUSTED = Algorithm(
    name="blackjax-mclmc",
    sampler="blackjax.mcmc.mclmc (unadjusted: no accept/reject; isokinetic McLachlan)",
    options={"step_size_scale": (1.0, positive)},
    build=_build_unadjusted,
    manifest=_manifest_unadjusted,
)

ADJUSTED = Algorithm(
    name="blackjax-mclmc-adjusted",
    sampler="blackjax.mcmc.adjusted_mclmc_dynamic (MAMS: Metropolis-adjusted; isokinetic McLachlan)",
    options={"target_acceptance_rate": (TARGET_ACCEPTANCE_RATE, probability)},
    build=_build_adjusted,
    manifest=_manifest_adjusted,
)

#: registry targets: benchmarks.engines.blackjax_mclmc:ENGINES[unadjusted] and ENGINES[adjusted]
ENGINES = {"unadjusted": ManyChainEngine(UNADJUSTED), "adjusted": ManyChainEngine(ADJUSTED)}

