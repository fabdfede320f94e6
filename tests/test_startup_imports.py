"""Starting the API, the CLI or a worker does not import the plotting and optimisation libraries.

matplotlib (about 0.8 s), scipy.optimize (0.6 s) and scipy.stats are needed only to draw a report
figure, by the dense brute-force Hessian norm and by a study's slope fit; every `plcert` command
and every server or worker start paid for them before they were imported where they are used.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("matplotlib", "scipy.optimize", "scipy.stats")


@pytest.mark.parametrize("module", ["service.main", "service.cli", "worker.tasks"])
def test_entry_points_do_not_import_plotting_or_scipy_optimize(module: str) -> None:
    code = (
        f"import json, sys, {module}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing {module} loads {loaded[:5]}"


def test_drawing_a_figure_still_imports_matplotlib() -> None:
    code = (
        "import sys\n"
        "from plcore.report.plots_base import new_axes, to_data_uri\n"
        "fig, ax = new_axes()\n"
        "ax.plot([0, 1], [1, 2])\n"
        "print(to_data_uri(fig)[:22], 'matplotlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["data:image/png;base64,", "True"]
