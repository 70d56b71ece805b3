"""The report's one-off start-up costs, paid while the worker starts instead of after the last run.

A job whose report draws figures (compare) calls :func:`warm_up` in a thread beside the worker's own
start-up (``run_specs(meanwhile=...)``): it imports the report's modules (Matplotlib, the tables, the
reference), turns a lazy ``jax`` stub into the module where one was registered (arviz-base registers one
when it is imported; Matplotlib's array checks look it up and would import JAX inside the first figure;
the report's own modules do not import arviz-base), and draws one small figure in the report's
style to a buffer, so fonts and the Agg machinery are loaded, and reads a tiny NetCDF file as the
figures read the draws. It writes nothing outside a temporary folder; the report does the same
work the same way without it, only later.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

__all__ = ["warm_up"]


def warm_up() -> None:
    """Import and initialise what :func:`benchmarks.reporting.report.render` needs; never raises (a
    failure here shows again, with its reason, when the report is rendered)."""
    try:
        import matplotlib
        from matplotlib.figure import Figure

        from . import report  # noqa: F401 - the import is the work
        from .figures import DPI, STYLE

        jax = sys.modules.get("jax")
        if jax is not None:
            getattr(jax, "Array", None)  # a lazy stub loads here; a loaded module is unchanged
        with matplotlib.rc_context(STYLE):
            fig = Figure(figsize=(3, 2), layout="constrained")
            ax = fig.subplots()
            ax.plot([1, 10], [1, 100], marker="o", label="warm-up")
            ax.set(xscale="log", yscale="log", xlabel="x", ylabel="y", title="warm-up")
            ax.legend()
            fig.savefig(io.BytesIO(), dpi=DPI, format="png")
        _read_netcdf_once()
    except Exception:  # noqa: BLE001, S110 - an optimisation only: render reports any real failure
        pass


def _read_netcdf_once() -> None:
    """Read a tiny NetCDF file as the figures read the runs' draws (``xr.open_datatree``): the first read in a
    process loads xarray's NetCDF backend and, decoding a coordinate of strings (the schools), Dask: 0.25 s
    measured, which the report's process and the child it forks for half the figures would otherwise each
    pay at the end. The file is written with netCDF4 itself: xarray's writer would import dask.distributed
    as well, which the report never needs."""
    import netCDF4
    import numpy as np
    import xarray as xr

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warm-up.nc"
        with netCDF4.Dataset(path, "w") as nc:
            group = nc.createGroup("posterior")
            group.createDimension("draw", 2)
            group.createVariable("tau", "f8", ("draw",))[:] = [1.0, 2.0]
            group.createDimension("school", 2)
            group.createVariable("school", str, ("school",))[:] = np.array(["A", "B"], dtype=object)
        with xr.open_datatree(path) as read:
            read.load()
