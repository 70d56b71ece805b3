"""The check's input limits, in a module of their own (standard library only): the run path's specs
refuse unusable settings on the client before anything samples, without importing the reference."""

__all__ = ["MIN_DRAWS_PER_CHAIN"]

#: fewest draws per chain for which arviz-stats' ESS (and so an MCSE) is defined
MIN_DRAWS_PER_CHAIN = 4
