"""Command-line options shared by ``plcert certify`` and ``plcert submit``."""

from __future__ import annotations

from typing import Annotated

import typer

TrainableOption = Annotated[
    list[str] | None,
    typer.Option(
        "--trainable",
        metavar="PAT",
        help="Train only these parameters: ONNX initializer names or spec parameter names, "
        "glob patterns allowed (repeatable; default: the loader's choice; the option "
        "'trainable').",
    ),
]
FrozenOption = Annotated[
    list[str] | None,
    typer.Option(
        "--frozen",
        metavar="PAT",
        help="Do not train these parameters (name or glob pattern, repeatable; the option "
        "'frozen').",
    ),
]
