"""Reporting: records -> tables, figures, REPORT.md, the README snapshot and the versions table.

``tables`` (console and markdown tables, footnotes for failed runs via ``failures``), ``figures``
(the PNGs), ``report`` (``render(run_dir)`` writes REPORT.md, FAIRNESS.md/OVERHEAD.md from ``fairness``
and the figures), ``readme`` (``update_readme``), ``versions`` (``versions_table``). Everything is
computed from a results folder; nothing here runs an engine. Import the submodules directly: this
package imports nothing, so ``import benchmarks.reporting.tables`` does not load matplotlib.
"""
