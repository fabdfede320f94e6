"""The ``plcert`` command line.

Exit codes: 0 done, 1 not certified (with ``--fail-if-not-certified``), 2 bad input or usage.
Each sub-command lives in its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="plcert",
    help="Certify that gradient descent trains a network to zero loss (PL* theory).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Sub-commands register themselves on import.
from service.cli import certify as _certify  # noqa: E402,F401
from service.cli import compare as _compare  # noqa: E402,F401
from service.cli import gc as _gc  # noqa: E402,F401
from service.cli import keys as _keys  # noqa: E402,F401
from service.cli import serve as _serve  # noqa: E402,F401
from service.cli import study as _study  # noqa: E402,F401
from service.cli import submit as _submit  # noqa: E402,F401


def main() -> None:
    """Console-script entry point. Usage errors exit with status 2 (click's convention)."""
    app()
