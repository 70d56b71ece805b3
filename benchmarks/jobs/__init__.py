"""The jobs: one module each (compare, bench, sweep, regress, calibrate, tune, notebook, candidate,
publish). Each turns its configuration into run specs and runs them through ``benchmarks.runpath``."""
