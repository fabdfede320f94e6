"""``plcert certify --dry-run``: print what a certification would cost, computing nothing.

The estimate comes from :func:`plcore.estimate.cost.estimate_for` (sizes of the loaded model
and data, the budget); ``--json`` prints it as one JSON object (the body of ``POST
/v1/estimates`` without the worker's limit).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def print_estimate(estimate: Any, *, as_json: bool) -> None:
    """Print ``estimate`` (a ``CostEstimate``) as a table, or as JSON on stdout."""
    if as_json:
        print(json.dumps(estimate.as_dict(), indent=2))
        return
    size = estimate.size
    console = Console(file=sys.stdout, highlight=False)
    console.print(
        f"dry run (budget {estimate.budget}): N = {size.N} outputs "
        f"({size.n_samples} samples x {size.n_outputs}), m = {size.n_params} parameters, "
        f"{'structured' if size.structured_kernel else 'reference'} kernel; nothing computed",
        markup=False,
    )
    table = Table("stage", "time (typical)", "time (at most)", "memory above baseline")
    for stage in estimate.stages:
        table.add_row(
            stage.name,
            _seconds(stage.seconds),
            _seconds(stage.seconds_upper),
            _mib(stage.memory_bytes),
        )
    table.add_row(
        "total",
        _seconds(estimate.time_s),
        _seconds(estimate.time_upper_s),
        f"peak {_mib(estimate.peak_memory_bytes)}",
    )
    console.print(table)
    console.print(f"accuracy: {estimate.accuracy}", markup=False)
