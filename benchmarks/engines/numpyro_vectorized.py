"""numpyro-vectorized: NumPyro's NUTS with the chains in lock-step, for many chains (64 to ~1024 x short
runs): the numpyro engine's machinery (numpyro_engine.NumPyroEngine: its kept programs, timings and
conversion) with chain_method "vectorized" (one vmapped program runs every chain, each NUTS step as
long as the slowest chain's) on the device of Settings.device (cpu or a JAX GPU).

The chains start in K superchains of M consecutive chains that share one initial point, drawn as
init_to_uniform(radius=2) draws it; M follows the one rule of the many-chain engines
(_many_chains.superchain_size: K the largest divisor of the chains from 4 to 16, else M = 1), and the
posterior records it as ``superchain_size``, so that the run path's nested R-hat (Margossian et al.
2024) sees the design.
"""

from __future__ import annotations

from ._many_chains import superchain_size
from .numpyro_engine import NumPyroEngine


def superchains_for(chains: int) -> int:
    """K, the number of superchains: chains / M."""
    return chains // superchain_size(chains)


ENGINE = NumPyroEngine("numpyro-vectorized", chain_method="vectorized", superchains=superchains_for,
                       sampler="numpyro NUTS, chains vectorized (jax.vmap), superchain initial points")
