"""The main job: every available engine x both parameterisations on one data set and prior."""

from __future__ import annotations

import sys

from models import Prior, SchoolsData
from models.logdensity import PARAMETERIZATIONS

from .engines import ENGINES, Settings
from .runner import run_one
from .table import format_table


def compare(*, data: SchoolsData, prior: Prior, settings: Settings, engines: list[str] | None = None,
            out=sys.stdout) -> int:
    names = engines or list(ENGINES)
    for n in names:
        if n not in ENGINES:
            raise ValueError(f"engine = {n!r} is unknown; engines: {', '.join(ENGINES)}")
    print(f"compare: {prior} · data {data.name} (J = {data.J}) · {settings.chains} chains × "
          f"{settings.warmup} warmup + {settings.draws} draws · target_accept {settings.target_accept} "
          f"· seed {settings.seed}", file=out, flush=True)
    records = []
    for name in names:
        for param in PARAMETERIZATIONS:
            outcome = run_one(name, data, prior, param, settings)
            records.append(outcome.record)
            status = outcome.record.get("error") or "ok"
            print(f"  {name:<10} {param:<12} {status}", file=out, flush=True)
    print(file=out)
    print(format_table(records), file=out)
    ran = [r for r in records if not r.get("error")]
    # The main job fails only when nothing ran: an unavailable or failing engine is a row, not a crash.
    return 0 if ran else 1
