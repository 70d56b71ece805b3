"""blackjax-meads: BlackJAX's generalized HMC (persistent momentum, non-reversible slice) after its MEADS
adaptation (Hoffman & Sountsov 2022), every chain in one vmapped program, on the JAX log density of
models/jax_model.py (unconstrained, with the log-Jacobians), float64.

Warmup: ``blackjax.meads_adaptation`` over the ensemble for ``warmup`` steps with BlackJAX's (the
paper's) defaults: ``num_folds`` folds (option, default 4; fold t mod K frozen at step t, parameters of
fold k from fold k-1's statistics), step size multiplier 0.5, damping slowdown 1, a diagonal momentum
scale. MEADS needs an ensemble: the warmup runs max(chains, 32) chains rounded up to a multiple of
``num_folds`` (the extra chains from their own initial points) and keeps the first ``chains``.
BlackJAX reshuffles the chains across folds every ``num_folds`` steps; the engine replays that
permutation from the same keys (:func:`fold_shuffle_origin`) and puts each chain back in its own slot,
so that chain c's draws descend from chain c's initial point (its superchain's: nested R-hat needs it).

Draws: ``blackjax.ghmc`` with the fold-averaged parameters BlackJAX returns: one velocity-Verlet step per
transition, so n_steps = 1 (one gradient per draw). diverging = BlackJAX's energy-error > 1000 flag;
acceptance_rate = min(1, exp(-energy error)) (the slice sampler's accept decision uses the persistent
slice variable, not a fresh uniform); energy from the HMC transition; tree_depth 0 (no tree).
"""

from __future__ import annotations

from ._jax_common import jax, jnp
from ._many_chains import (
    MIN_ENSEMBLE,
    Algorithm,
    ManyChainEngine,
    constrained,
    ensemble_size,
    initial_positions,
    keys,
    scan_draws,
    stats_dict,
    superchain_index,
)

NUM_FOLDS = 4  #: blackjax.meads_adaptation's default (the paper's K)
STEP_SIZE_MULTIPLIER = 0.5  #: its default
DAMPING_SLOWDOWN = 1.0  #: its default
DIVERGENCE_THRESHOLD = 1000.0  #: blackjax.ghmc's default


def _folds(v) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() and 1 <= v <= 64
    return None if ok else "must be an integer in 1..64"


def _ensemble(chains: int, folds: int = NUM_FOLDS) -> int:
    return ensemble_size(chains, multiple=folds, minimum=max(MIN_ENSEMBLE, 2 * folds))


def fold_shuffle_origin(k_warm, n: int, num_steps: int, num_folds: int):
    """Which initial chain's descendant each slot holds after meads_adaptation.run(k_warm, ., num_steps):
    replays its keys (run: split(k_warm) -> adaptation key -> one key per step; step t: split(key, n + 1),
    the last the shuffle key) and its permutation, applied after steps t with (t + 1) % num_folds == 0."""
    origin = jnp.arange(n)
    if num_folds <= 1 or num_steps == 0:
        return origin
    _, key_adapt = jax.random.split(k_warm)

    def body(origin, xs):
        t, k = xs
        perm = jax.random.permutation(jax.random.split(k, n + 1)[n], n)
        return jnp.where((t + 1) % num_folds == 0, origin[perm], origin), None

    origin, _ = jax.lax.scan(body, origin, (jnp.arange(num_steps), jax.random.split(key_adapt, num_steps)))
    return origin


def _build(model, settings, opts, chains):
    import blackjax
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    folds = int(opts["num_folds"])
    n = _ensemble(chains, folds)
    index = superchain_index(chains, n)

    def warmup(seed, y, sigma):
        k_init, k_warm, _ = keys(seed)
        positions = initial_positions(k_init, index, model.dim)
        adaptation = blackjax.meads_adaptation(
            lambda x: model.log_density(x, y, sigma), n, num_folds=folds,
            step_size_multiplier=STEP_SIZE_MULTIPLIER, damping_slowdown=DAMPING_SLOWDOWN,
            adaptation_info_fn=get_filter_adapt_info_fn())
        (states, params), _ = adaptation.run(k_warm, positions, num_steps=settings.warmup)
        slot_of = jnp.argsort(fold_shuffle_origin(k_warm, n, settings.warmup, folds))  # chain c is in slot_of[c]
        states = jax.tree.map(lambda x: x[slot_of[:chains]], states)
        return (states, params["step_size"], params["momentum_inverse_scale"], params["alpha"], params["delta"])

    def sample(seed, carry, y, sigma):
        states, step_size, scale, alpha, delta = carry
        _, _, k_sample = keys(seed)
        kernel = blackjax.mcmc.ghmc.build_kernel(divergence_threshold=DIVERGENCE_THRESHOLD)
        def logdensity(x):
            return model.log_density(x, y, sigma)

        def step(ks, states):
            states, info = jax.vmap(lambda k, s: kernel(k, s, logdensity, step_size, scale, alpha, delta))(ks, states)
            stats = stats_dict(diverging=info.is_divergent, n_steps=1, step_size=step_size, energy=info.energy,
                               lp=states.logdensity, acceptance_rate=info.acceptance_rate, shape=(chains,))
            return states, (states.position, stats)

        positions, stats = scan_draws(step, states, k_sample, settings.draws, chains)
        return constrained(model, positions), stats

    return warmup, sample


def _manifest(settings, opts, chains):
    folds = int(opts["num_folds"])
    return {
        "adaptation": (f"blackjax.meads_adaptation over {_ensemble(chains, folds)} chains, num_folds {folds}, "
                       f"step_size_multiplier {STEP_SIZE_MULTIPLIER}, damping_slowdown {DAMPING_SLOWDOWN} "
                       "(BlackJAX's defaults); fold shuffles undone so chain c descends from its own initial "
                       "point; draws with the fold-averaged parameters"),
        "num_folds": folds,
        "step_size_multiplier": STEP_SIZE_MULTIPLIER,
        "damping_slowdown": DAMPING_SLOWDOWN,
        "divergence_threshold": DIVERGENCE_THRESHOLD,
        "n_steps": "1 velocity-Verlet step (one gradient) per transition",
    }


ALGORITHM = Algorithm(
    name="blackjax-meads",
    sampler="blackjax.ghmc (persistent momentum, non-reversible slice; velocity Verlet) after "
            "blackjax.meads_adaptation",
    options={"num_folds": (NUM_FOLDS, _folds)},
    build=_build,
    manifest=_manifest,
    ensemble=lambda chains, opts: _ensemble(chains, int(opts["num_folds"])),
)

ENGINE = ManyChainEngine(ALGORITHM)
