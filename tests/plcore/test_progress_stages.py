"""plcore.progress: stage strings carry a stage name and the step within it."""

from __future__ import annotations

import pytest

from plcore.progress import STEP_SEPARATOR, stage_name, with_step


@pytest.mark.parametrize(
    ("stage", "name"),
    [
        ("hessian norm", "hessian norm"),
        ("hessian norm: restart 2/3, iteration 14", "hessian norm"),
        ("radius search: rho 3/10: probe 2", "radius search"),
        ("", ""),
    ],
)
def test_stage_name_is_the_text_before_the_first_separator(stage: str, name: str) -> None:
    assert stage_name(stage) == name


def test_with_step_round_trips_through_stage_name() -> None:
    stage = with_step("checking run", "step 40/200")
    assert stage == f"checking run{STEP_SEPARATOR}step 40/200"
    assert stage_name(stage) == "checking run"
