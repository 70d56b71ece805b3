"""``python -m benchmarks.jobs.power``: see :mod:`benchmarks.jobs.power.command`."""

from benchmarks.jobs.power.command import cli

raise SystemExit(cli())
