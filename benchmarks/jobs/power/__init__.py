"""The regression gate's power, measured: known regressions injected into real runs of an unchanged
sampler, and how often the gate's own decisions catch them (``python -m benchmarks.jobs.power``).

Modules: ``inject`` (the injections, pure), ``resample`` (power by resampling a pool of runs),
``pool`` (the pool, through the run path), ``analyse`` (requirements and wall times), ``report``
(POWER.md, power.png), ``command`` (the command line).
"""
